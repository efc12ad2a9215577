//! Read model `customers`: one row per customer (profile, registration account, a summary
//! status, MRR, last payment), its subscriptions, provider accounts, lifetime totals per
//! currency, and its event timeline.
//!
//! The rows are derived from the domain's customer aggregate (`ledger_domain::evolve`), never
//! from a second copy of its rules: the projector keeps the aggregates of recently seen
//! customers in a bounded cache and replays a customer's earlier events from the store on a
//! miss. Integrations' events (their own streams) are skipped. It writes only inside its own schema, and knows nothing about NATS or HTTP.

mod rows;

use std::collections::BTreeMap;

use ledger_domain::{Customer, Event, evolve, is_integration_event, proto};
use ledger_projector::{Projected, Projector, ProjectorError};
use ledger_store::{RecordedEvent, Store};
use prost::Message;
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

    /// The customer's aggregate just before `first` (its first event in this batch).
    async fn state_before(&self, first: &RecordedEvent) -> Result<Customer, ProjectorError> {
        if first.stream_version == 1 {
            return Ok(Customer::default());
        }
        if let Some(state) = self.cache.remove(&first.stream_id)
            && state.version + 1 == first.stream_version
        {
            return Ok(state);
        }
        let earlier = self.store.read_stream(first.stream_id, 1).await?;
        let mut state = Customer::default();
        for recorded in earlier
            .iter()
            .take_while(|recorded| recorded.global_position < first.global_position)
        {
            state = evolve(state, &decode(recorded)?);
        }
        Ok(state)
    }
}

fn decode(recorded: &RecordedEvent) -> Result<Event, ProjectorError> {
    let corrupt = |reason: String| ProjectorError::CorruptEvent {
        global_position: recorded.global_position,
        reason,
    };
    proto::Event::decode(&recorded.event.payload[..])
        .map_err(|error| corrupt(error.to_string()))?
        .kind
        .ok_or_else(|| corrupt("the payload has no event".to_owned()))
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
                None => self.state_before(&projected.recorded).await?,
            };
            rows.record_event(projected);
            states.insert(stream_id, evolve(state, &projected.event));
        }
        rows.write(transaction, &states).await?;
        for (stream_id, state) in states {
            self.cache.insert(stream_id, state);
        }
        Ok(())
    }
}
