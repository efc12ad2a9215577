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

use std::collections::BTreeMap;

use ledger_domain::{Event, MRR_UNITS_PER_MINOR};
use ledger_projector::{Projected, Projector, ProjectorError, stream_events_before};
use ledger_store::{RecordedEvent, Store};
use time::{Date, UtcOffset};
use tokio_postgres::Transaction;
use uuid::Uuid;

pub use contributions::Movement;
pub use timeline::RevenueSettings;

use crate::timeline::{CustomerMrr, Timeline};
use crate::write::BatchChanges;

/// Customers whose timeline is kept in memory between batches.
const CACHE_CUSTOMERS_MAX: u64 = 200_000;

/// The `revenue` projector.
#[derive(Debug)]
pub struct RevenueProjector {
    store: Store,
    settings: RevenueSettings,
    /// Timelines as of the last applied batch; valid only for the run that filled it (a failed
    /// batch stops the run).
    cache: moka::sync::Cache<Uuid, CustomerMrr>,
}

impl RevenueProjector {
    /// `store` is read when a customer is not in the cache, and when an event is dated before
    /// its customer's earlier events.
    pub fn new(store: Store, settings: RevenueSettings) -> RevenueProjector {
        RevenueProjector {
            store,
            settings,
            cache: moka::sync::Cache::new(CACHE_CUSTOMERS_MAX),
        }
    }

    /// The customer's timeline from its events before `first` (its first in this batch).
    async fn mrr_before(&self, first: &RecordedEvent) -> Result<CustomerMrr, ProjectorError> {
        if first.stream_version == 1 {
            return Ok(CustomerMrr::default());
        }
        if let Some(mrr) = self.cache.remove(&first.stream_id)
            && mrr.version() + 1 == first.stream_version
        {
            return Ok(mrr);
        }
        self.replayed(first.stream_id, first.global_position).await
    }

    /// The customer's timeline from all its events before `global_position`.
    async fn replayed(
        &self,
        stream_id: Uuid,
        global_position: u64,
    ) -> Result<CustomerMrr, ProjectorError> {
        let events = stream_events_before(&self.store, stream_id, global_position).await?;
        let dated: Vec<(Date, &Event)> = events
            .iter()
            .map(|projected| (business_day(&projected.recorded), &projected.event))
            .collect();
        Ok(CustomerMrr::from_events(&dated, &self.settings))
    }
}

/// The UTC day an event is dated on.
fn business_day(recorded: &RecordedEvent) -> Date {
    recorded.event.occurred_at.to_offset(UtcOffset::UTC).date()
}

impl Projector for RevenueProjector {
    fn name(&self) -> &'static str {
        "revenue"
    }

    fn schema_version(&self) -> i32 {
        1
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
            .replace("3326400000", &MRR_UNITS_PER_MINOR.to_string())
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        // Per customer: its timeline before the batch, and its state as the batch goes on.
        let mut customers: BTreeMap<Uuid, (Timeline, CustomerMrr)> = BTreeMap::new();
        for projected in events {
            let recorded = &projected.recorded;
            let (_, mrr) = match customers.entry(recorded.stream_id) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    let mrr = self.mrr_before(recorded).await?;
                    entry.insert((mrr.timeline.clone(), mrr))
                }
            };
            if !mrr.push(business_day(recorded), &projected.event, &self.settings) {
                // Dated before an earlier event: recompute from all of them.
                *mrr = self
                    .replayed(recorded.stream_id, recorded.global_position + 1)
                    .await?;
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
        for (customer, (_, mrr)) in customers {
            self.cache.insert(customer, mrr);
        }
        Ok(())
    }
}
