//! Read model `customers`: one row per customer (profile, registration account, a summary
//! status, MRR, last payment), its subscriptions (with the provider holding each), provider
//! accounts, lifetime totals per currency, its payments with their refunds, and its event
//! timeline.
//!
//! The rows are derived from the domain's customer aggregate (`ledger_domain::evolve`), never
//! from a second copy of its rules: the projector keeps the aggregates of recently seen
//! customers in a bounded cache and replays a customer's earlier events from the store on a
//! miss. A batch writes only the rows its events changed. Integrations' events (their own
//! streams) are skipped. It writes
//! only inside its own schema, and knows nothing about NATS or HTTP.

mod rows;

use ledger_domain::{Customer, evolve, is_integration_event};
use ledger_projector::{Projected, Projector, ProjectorError, STATES_BYTES_MAX, StreamStates};
use ledger_store::Store;
use tokio_postgres::Transaction;

use crate::rows::Rows;

/// The `customers` projector.
#[derive(Debug)]
pub struct CustomersProjector {
    store: Store,
    states: StreamStates<Customer>,
}

impl CustomersProjector {
    /// `store` is read for the customers whose aggregate is not in memory.
    pub fn new(store: Store) -> CustomersProjector {
        CustomersProjector {
            store,
            states: StreamStates::new(STATES_BYTES_MAX, Customer::approximate_bytes),
        }
    }
}

impl Projector for CustomersProjector {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn schema_version(&self) -> i32 {
        // 2: stale changes of a subscription are ignored, never-paid past-due subscriptions
        // count no MRR (decisions 0014, 0015). 3: the timeline keeps each event's causation id
        // (a provider event's inbox row). 4: and its subscription id and failure reason (the
        // dashboard pairs an operator's request with the provider's answer). 5: payments, with
        // their refunds and refund requests (the dashboard's refund form). 6: the provider
        // holding each subscription (the dashboard asks that provider for a pause or resume,
        // decision 0032).
        6
    }

    fn readable_by_query(&self) -> bool {
        true
    }

    fn bound_states(&mut self, bytes_max: usize) {
        self.states.set_bytes_max(bytes_max);
    }

    fn schema_sql(&self) -> String {
        include_str!("schema.sql").to_owned()
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        // Integrations' streams are configuration, not customers.
        let customer_events = || {
            events
                .iter()
                .filter(|projected| !is_integration_event(&projected.event))
        };
        let mut states = self
            .states
            .before_batch(
                &self.store,
                customer_events(),
                |state| state.version,
                |earlier| Customer::from_events(earlier.iter().map(Projected::timed)),
            )
            .await?;
        let mut rows = Rows::default();
        for projected in customer_events() {
            // `before_batch` gave every customer of the batch a state.
            if let Some(state) = states.get_mut(&projected.recorded.stream_id) {
                rows.record_event(projected, state);
                let (occurred_at_unix_micros, event) = projected.timed();
                *state = evolve(std::mem::take(state), event, occurred_at_unix_micros);
            }
        }
        rows.write(transaction, &states).await?;
        self.states.keep(states);
        Ok(())
    }
}
