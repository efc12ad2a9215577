//! Read model `revenue`: MRR per currency by business day, its movements (new, expansion,
//! contraction, churn, reactivation), monthly churn and cohorts, as defined in
//! `docs/metrics.md`.
//!
//! Figures are dated by the events' `occurred_at` (UTC days), not by their arrival: an event
//! dated before days already computed is placed on its own day, and every later figure it
//! changes is corrected. Per customer, the projector keeps its MRR timeline
//! ([`timeline`]) and turns it into contributions to the tables ([`contributions`]); a batch
//! writes the difference its customers' contributions made. Amounts stay exact integers
//! (MRR units) until the views round them.

mod contributions;
mod timeline;
mod write;

use std::collections::{BTreeMap, BTreeSet};

use ledger_domain::{MRR_UNITS_PER_MINOR, is_integration_event};
use ledger_projector::{
    Projected, Projector, ProjectorError, STATES_BYTES_MAX, StreamStates, streams_before,
};
use ledger_store::Store;
use time::UtcOffset;
use tokio_postgres::Transaction;
use uuid::Uuid;

pub use contributions::Movement;
pub use timeline::RevenueSettings;

use crate::timeline::{CustomerMrr, Dated, Timeline};
use crate::write::BatchChanges;

/// The `revenue` projector.
#[derive(Debug)]
pub struct RevenueProjector {
    store: Store,
    settings: RevenueSettings,
    timelines: StreamStates<CustomerMrr>,
}

impl RevenueProjector {
    /// `store` is read when a customer is not in the cache, and when an event is dated before
    /// its customer's earlier events.
    pub fn new(store: Store, settings: RevenueSettings) -> RevenueProjector {
        RevenueProjector {
            store,
            settings,
            timelines: StreamStates::new(STATES_BYTES_MAX, CustomerMrr::approximate_bytes),
        }
    }

    /// The timelines of `customers` from all their events before `global_position`.
    async fn replayed(
        &self,
        customers: &[Uuid],
        global_position: u64,
    ) -> Result<Vec<(Uuid, CustomerMrr)>, ProjectorError> {
        let streams = streams_before(&self.store, customers, global_position).await?;
        Ok(customers
            .iter()
            .map(|customer| {
                let events = streams.get(customer).map_or(&[][..], Vec::as_slice);
                (*customer, self.timeline_of(events))
            })
            .collect())
    }

    fn timeline_of(&self, events: &[Projected]) -> CustomerMrr {
        let dated: Vec<Dated<'_>> = events.iter().map(dated).collect();
        CustomerMrr::from_events(&dated, &self.settings)
    }
}

/// The event with its business time: the UTC day it is dated on and `occurred_at`.
fn dated(projected: &Projected) -> Dated<'_> {
    let occurred_at = &projected.recorded.event;
    Dated {
        day: occurred_at.occurred_at.to_offset(UtcOffset::UTC).date(),
        occurred_at_unix_micros: occurred_at.occurred_at_unix_micros(),
        event: &projected.event,
    }
}

impl Projector for RevenueProjector {
    fn name(&self) -> &'static str {
        "revenue"
    }

    fn schema_version(&self) -> i32 {
        // 2: stale changes ignored, never-paid past-due subscriptions and the period end of a
        // pending cancellation (decisions 0014, 0015).
        2
    }

    fn readable_by_query(&self) -> bool {
        true
    }

    fn bound_states(&mut self, bytes_max: usize) {
        self.timelines.set_bytes_max(bytes_max);
    }

    fn schema_sql(&self) -> String {
        let past_due_churn_days = self
            .settings
            .past_due_churn_days
            .map_or("NULL".to_owned(), |days| days.to_string());
        include_str!("schema.sql")
            .replace(
                "{churn_recognition}",
                self.settings.rules.churn_recognition.as_str(),
            )
            .replace("{past_due_churn_days}", &past_due_churn_days)
            .replace("{discounts}", self.settings.rules.discounts.as_str())
            .replace(
                "{unpaid_subscriptions}",
                self.settings.rules.unpaid_subscriptions.as_str(),
            )
            .replace("3326400000", &MRR_UNITS_PER_MINOR.to_string())
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        // Integrations' streams are configuration, not customers.
        let customer_events = || {
            events
                .iter()
                .filter(|projected| !is_integration_event(&projected.event))
        };
        // Per customer: its timeline before the batch, and as the batch goes on.
        let mut customers: BTreeMap<Uuid, (Timeline, CustomerMrr)> = self
            .timelines
            .before_batch(
                &self.store,
                customer_events(),
                CustomerMrr::version,
                |earlier| self.timeline_of(earlier),
            )
            .await?
            .into_iter()
            .map(|(customer, mrr)| (customer, (mrr.timeline.clone(), mrr)))
            .collect();
        // Customers with an event dated before their earlier ones: recomputed from all their
        // events once the batch is folded.
        let mut late = BTreeSet::new();
        for projected in customer_events() {
            let recorded = &projected.recorded;
            if late.contains(&recorded.stream_id) {
                continue;
            }
            if let Some((_, mrr)) = customers.get_mut(&recorded.stream_id)
                && !mrr.push(&dated(projected), &self.settings)
            {
                late.insert(recorded.stream_id);
            }
        }
        let late: Vec<Uuid> = late.into_iter().collect();
        for (customer, mrr) in self
            .replayed(&late, last.recorded.global_position + 1)
            .await?
        {
            if let Some((_, current)) = customers.get_mut(&customer) {
                *current = mrr;
            }
        }
        let mut changes = BatchChanges::default();
        for (customer, (before, after)) in &customers {
            if *before != after.timeline {
                changes.replace(
                    *customer,
                    &before.contributions(),
                    &after.timeline.contributions(),
                );
            }
        }
        changes.write(transaction).await?;
        self.timelines.keep(
            customers
                .into_iter()
                .map(|(customer, (_, mrr))| (customer, mrr)),
        );
        Ok(())
    }
}
