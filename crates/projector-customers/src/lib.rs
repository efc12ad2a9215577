//! Read model `customers`: one row per customer (profile, registration account, a summary
//! status, MRR, last payment), its subscriptions, provider accounts, lifetime totals per
//! currency, and its event timeline.
//!
//! The rows are derived from the domain's customer aggregate (`ledger_domain::evolve`), never
//! from a second copy of its rules: the projector keeps the aggregates of recently seen
//! customers in a bounded cache and replays a customer's earlier events from the store on a
//! miss. It writes only inside its own schema, and knows nothing about NATS or HTTP.

mod rows;

use std::collections::{BTreeMap, BTreeSet};

use ledger_domain::{Customer, evolve};
use ledger_projector::{Projected, Projector, ProjectorError, streams_before};
use ledger_store::Store;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::rows::Rows;

/// Customers whose aggregate is kept in memory between batches.
const CACHE_CUSTOMERS_MAX: u64 = 100_000;

/// The `customers` projector.
///
/// Its cache holds the aggregates as of the last applied batch. It is only valid for the run it
/// was filled in: if a batch's transaction fails, the runtime stops and the projector (with its
/// cache) is dropped; a new run starts with an empty cache.
#[derive(Debug)]
pub struct CustomersProjector {
    store: Store,
    cache: moka::sync::Cache<Uuid, Customer>,
}

impl CustomersProjector {
    /// `store` is read on a cache miss: a customer's events before the batch being applied.
    pub fn new(store: Store) -> CustomersProjector {
        CustomersProjector {
            store,
            cache: moka::sync::Cache::new(CACHE_CUSTOMERS_MAX),
        }
    }

    /// The aggregates of the batch's customers just before their first event in it: from the
    /// cache, or replayed from the store (one query for all that are missing).
    async fn states_before(
        &self,
        events: &[Projected],
    ) -> Result<BTreeMap<Uuid, Customer>, ProjectorError> {
        let mut states = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for projected in events {
            let recorded = &projected.recorded;
            if states.contains_key(&recorded.stream_id) || missing.contains(&recorded.stream_id) {
                continue;
            }
            match self.cache.remove(&recorded.stream_id) {
                _ if recorded.stream_version == 1 => {
                    states.insert(recorded.stream_id, Customer::default());
                }
                Some(state) if state.version + 1 == recorded.stream_version => {
                    states.insert(recorded.stream_id, state);
                }
                _ => {
                    missing.insert(recorded.stream_id);
                }
            }
        }
        let Some(first) = events.first() else {
            return Ok(states);
        };
        let missing: Vec<Uuid> = missing.into_iter().collect();
        let replayed =
            streams_before(&self.store, &missing, first.recorded.global_position).await?;
        for stream_id in missing {
            let earlier = replayed.get(&stream_id).map_or(&[][..], Vec::as_slice);
            let state = earlier
                .iter()
                .fold(Customer::default(), |state, projected| {
                    evolve(state, &projected.event)
                });
            states.insert(stream_id, state);
        }
        Ok(states)
    }
}

impl Projector for CustomersProjector {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn schema_version(&self) -> i32 {
        1
    }

    fn schema_sql(&self) -> String {
        include_str!("schema.sql").to_owned()
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        let mut states = self.states_before(events).await?;
        let mut rows = Rows::default();
        for projected in events {
            rows.record_event(projected);
            if let Some(state) = states.get_mut(&projected.recorded.stream_id) {
                *state = evolve(std::mem::take(state), &projected.event);
            }
        }
        rows.write(transaction, &states).await?;
        for (stream_id, state) in states {
            self.cache.insert(stream_id, state);
        }
        Ok(())
    }
}
