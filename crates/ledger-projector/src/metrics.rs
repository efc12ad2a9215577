//! The projectors' Prometheus metrics (docs/observability.md), labelled by `projector` (the
//! read model's name: a handful of values), through the `metrics` facade: they cost nothing
//! until the binary installs a recorder. Handles are registered once per projector run.

use std::time::{Duration, SystemTime};

use metrics::{Counter, Gauge, Histogram, Unit};

/// Events appended that the projector has not applied yet (gauge): while catching up, the
/// table's last position at start minus the checkpoint; live, the messages the stream holds
/// for the projector's consumer beyond the last batch.
pub const LAG_EVENTS: &str = "ledger_projector_lag_events";
/// How old the newest event of the last applied batch was when its batch committed, in
/// seconds since the writer recorded it (gauge).
pub const LAG_SECONDS: &str = "ledger_projector_lag_seconds";
/// Seconds to apply one batch and move the checkpoint, committed (histogram).
pub const BATCH_SECONDS: &str = "ledger_projector_batch_seconds";
/// Events applied (counter).
pub const EVENTS_APPLIED: &str = "ledger_projector_events_applied_total";

#[derive(Debug)]
pub(crate) struct ProjectorMetrics {
    lag_events: Gauge,
    lag_seconds: Gauge,
    batch_seconds: Histogram,
    events_applied: Counter,
}

impl ProjectorMetrics {
    /// Registers the metrics of projector `name` (all of them, at zero).
    pub(crate) fn register(name: &'static str) -> ProjectorMetrics {
        metrics::describe_gauge!(LAG_EVENTS, Unit::Count, "Events not applied yet.");
        metrics::describe_gauge!(
            LAG_SECONDS,
            Unit::Seconds,
            "Age of the newest event of the last batch when it was applied."
        );
        metrics::describe_histogram!(
            BATCH_SECONDS,
            Unit::Seconds,
            "Time to apply one batch with its checkpoint."
        );
        metrics::describe_counter!(EVENTS_APPLIED, Unit::Count, "Events applied.");
        ProjectorMetrics {
            lag_events: metrics::gauge!(LAG_EVENTS, "projector" => name),
            lag_seconds: metrics::gauge!(LAG_SECONDS, "projector" => name),
            batch_seconds: metrics::histogram!(BATCH_SECONDS, "projector" => name),
            events_applied: metrics::counter!(EVENTS_APPLIED, "projector" => name),
        }
    }

    /// A batch of `events` committed after `elapsed`; its newest event was recorded at
    /// `newest_recorded_at`.
    pub(crate) fn applied(&self, events: usize, elapsed: Duration, newest_recorded_at: SystemTime) {
        self.batch_seconds.record(elapsed);
        self.events_applied
            .increment(u64::try_from(events).unwrap_or(u64::MAX));
        let age = SystemTime::now()
            .duration_since(newest_recorded_at)
            .unwrap_or_default();
        self.lag_seconds.set(age.as_secs_f64());
    }

    /// `events` remain to be applied.
    pub(crate) fn behind(&self, events: u64) {
        #[expect(clippy::cast_precision_loss, reason = "exact up to 2^53 events")]
        self.lag_events.set(events as f64);
    }
}
