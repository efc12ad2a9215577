//! Read model `customers`: one row per customer (profile, registration account, a summary
//! status, MRR, last payment), its subscriptions, provider accounts, lifetime totals per
//! currency, and its event timeline.
//!
//! The rows are derived from the domain's customer aggregate (`ledger_domain::evolve`), never
//! from a second copy of its rules: the projector keeps the aggregates of recently seen
//! customers in a bounded cache and replays a customer's earlier events from the store on a
//! miss ([`CustomerStates`]). Integrations' events (their own streams) are skipped. It writes
//! only inside its own schema, and knows nothing about NATS or HTTP.

mod rows;

use std::collections::BTreeMap;

use ledger_domain::{Customer, evolve, is_integration_event};
use ledger_projector::{CustomerStates, Projected, Projector, ProjectorError};
use ledger_store::Store;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::rows::Rows;

/// Customers whose aggregate is kept in memory between batches.
const CACHE_CUSTOMERS_MAX: u64 = 100_000;

/// The `customers` projector.
#[derive(Debug)]
pub struct CustomersProjector {
    states: CustomerStates,
}

impl CustomersProjector {
    /// `store` is read on a cache miss: a customer's events before the batch being applied.
    pub fn new(store: Store) -> CustomersProjector {
        CustomersProjector {
            states: CustomerStates::new(store, CACHE_CUSTOMERS_MAX),
        }
    }
}

impl Projector for CustomersProjector {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn schema_version(&self) -> i32 {
        1
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("schema.sql")
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        let mut states: BTreeMap<Uuid, Customer> = BTreeMap::new();
        let mut rows = Rows::default();
        for projected in events {
            // Integrations' streams are configuration, not customers.
            if is_integration_event(&projected.event) {
                continue;
            }
            let stream_id = projected.recorded.stream_id;
            let state = match states.remove(&stream_id) {
                Some(state) => state,
                None => self.states.before(&projected.recorded).await?,
            };
            rows.record_event(projected);
            states.insert(stream_id, evolve(state, &projected.event));
        }
        rows.write(transaction, &states).await?;
        for (stream_id, state) in states {
            self.states.keep(stream_id, state);
        }
        Ok(())
    }
}
