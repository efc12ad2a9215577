//! The writer's Prometheus metrics (docs/observability.md), through the `metrics` facade: they
//! cost nothing until the binary installs a recorder.
//!
//! The handles are registered once, when a writer starts to lead, so the hot path records into
//! a handle (an atomic add) and never builds a label or looks a name up.

use std::sync::Arc;
use std::time::Duration;

use ledger_domain::proto::{self, RejectionKind};
use ledger_store::{AppendRejection, Committed};
use metrics::{Counter, Gauge, Histogram};

/// Commands per appended batch (histogram).
pub const BATCH_COMMANDS: &str = "ledger_writer_batch_commands";
/// Seconds to append one batch to PostgreSQL, one transaction (histogram).
pub const APPEND_SECONDS: &str = "ledger_writer_append_seconds";
/// Seconds to publish one batch's new events to JetStream and have them acknowledged
/// (histogram).
pub const PUBLISH_SECONDS: &str = "ledger_writer_publish_seconds";
/// Commands waiting to be decided, sampled as each batch is taken (gauge).
pub const QUEUE_COMMANDS: &str = "ledger_writer_queue_commands";
/// 1 while this process leads (holds the store's lock), 0 while it waits as a standby (gauge).
pub const LEADER: &str = "ledger_writer_leader";
/// Batches whose append failed for the store (PostgreSQL unreachable, an error): every command
/// of the batch was answered `unavailable` (counter).
pub const APPEND_FAILURES: &str = "ledger_writer_append_failures_total";
/// Batches decided again because the batch before them, on top of which they were decided while
/// it was being appended, was not appended as decided (counter; decision 0036).
pub const BATCHES_REDECIDED: &str = "ledger_writer_batches_redecided_total";
/// Commands answered, by `outcome` (counter).
pub const COMMANDS: &str = "ledger_writer_commands_total";
/// Events appended, by `event_type` (one of [`ledger_domain::EVENT_TYPES`]; counter).
pub const EVENTS: &str = "ledger_writer_events_total";

/// The values of [`COMMANDS`]'s `outcome` label: `accepted` (events appended), `duplicate`
/// (a retry answered with the events first appended), `rejected` (the command's fault: malformed,
/// invalid, conflict, not found, too large), `busy` (the queue was full) and `unavailable` (the
/// store or the stream failed; retry with the same idempotency key).
const OUTCOMES: [&str; 5] = ["accepted", "duplicate", "rejected", "busy", "unavailable"];

/// Registered handles, shared by a leader's tasks.
#[derive(Debug, Clone)]
pub(crate) struct WriterMetrics(Arc<Handles>);

#[derive(Debug)]
struct Handles {
    batch_commands: Histogram,
    append_seconds: Histogram,
    publish_seconds: Histogram,
    queue_commands: Gauge,
    leader: Gauge,
    append_failures: Counter,
    batches_redecided: Counter,
    /// One per [`OUTCOMES`] entry, in its order.
    commands: [Counter; OUTCOMES.len()],
    /// One per [`ledger_domain::EVENT_TYPES`] entry, in its order.
    events: Vec<Counter>,
}

impl WriterMetrics {
    /// Registers the writer's metrics with the installed recorder (all of them, so a scrape
    /// shows each from the start, at zero).
    pub(crate) fn register() -> WriterMetrics {
        describe();
        WriterMetrics(Arc::new(Handles {
            batch_commands: metrics::histogram!(BATCH_COMMANDS),
            append_seconds: metrics::histogram!(APPEND_SECONDS),
            publish_seconds: metrics::histogram!(PUBLISH_SECONDS),
            queue_commands: metrics::gauge!(QUEUE_COMMANDS),
            leader: metrics::gauge!(LEADER),
            append_failures: metrics::counter!(APPEND_FAILURES),
            batches_redecided: metrics::counter!(BATCHES_REDECIDED),
            commands: OUTCOMES.map(|outcome| metrics::counter!(COMMANDS, "outcome" => outcome)),
            events: ledger_domain::EVENT_TYPES
                .iter()
                .map(|&event_type| metrics::counter!(EVENTS, "event_type" => event_type))
                .collect(),
        }))
    }

    /// A batch of `commands` was decided (and appended, when any of them had events).
    pub(crate) fn batch(&self, commands: usize) {
        #[expect(clippy::cast_precision_loss, reason = "small counts are exact in f64")]
        self.0.batch_commands.record(commands as f64);
    }

    /// A batch's transaction committed after `elapsed`.
    pub(crate) fn appended(&self, elapsed: Duration) {
        self.0.append_seconds.record(elapsed);
    }

    /// Counts the events a batch appended (not those of duplicates, appended before).
    pub(crate) fn events(&self, outcomes: &[Result<Committed, AppendRejection>]) {
        let appended = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .filter(|committed| !committed.duplicate)
            .flat_map(|committed| &committed.events);
        for event in appended {
            let event_type = event.event.event_type.as_str();
            if let Some(index) = ledger_domain::EVENT_TYPES
                .iter()
                .position(|&known| known == event_type)
            {
                self.0.events[index].increment(1);
            }
        }
    }

    pub(crate) fn append_failed(&self) {
        self.0.append_failures.increment(1);
    }

    pub(crate) fn redecided(&self) {
        self.0.batches_redecided.increment(1);
    }

    pub(crate) fn published(&self, elapsed: Duration) {
        self.0.publish_seconds.record(elapsed);
    }

    pub(crate) fn queue(&self, commands: usize) {
        #[expect(
            clippy::cast_precision_loss,
            reason = "the queue holds at most its capacity"
        )]
        self.0.queue_commands.set(commands as f64);
    }

    /// Counts an answer to a command by its outcome.
    pub(crate) fn answered(&self, reply: &proto::CommandReply) {
        let outcome = match &reply.result {
            Some(proto::command_reply::Result::Accepted(accepted)) if accepted.duplicate => 1,
            Some(proto::command_reply::Result::Accepted(_)) => 0,
            Some(proto::command_reply::Result::Rejected(rejected)) => match rejected.kind() {
                RejectionKind::Busy => 3,
                RejectionKind::Unavailable | RejectionKind::Unspecified => 4,
                _ => 2,
            },
            None => 4,
        };
        self.0.commands[outcome].increment(1);
    }

    /// Sets [`LEADER`] to 1 until the returned guard is dropped (leadership ends however
    /// `lead` returns).
    pub(crate) fn leading(&self) -> Leading {
        self.0.leader.set(1.0);
        Leading(self.clone())
    }
}

/// See [`WriterMetrics::leading`].
#[derive(Debug)]
pub(crate) struct Leading(WriterMetrics);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.0.leader.set(0.0);
        self.0.0.queue_commands.set(0.0);
    }
}

fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(BATCH_COMMANDS, Unit::Count, "Commands per appended batch.");
    metrics::describe_histogram!(
        APPEND_SECONDS,
        Unit::Seconds,
        "Time to append one batch to PostgreSQL."
    );
    metrics::describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "Time to publish one batch's events to JetStream, acknowledged."
    );
    metrics::describe_gauge!(
        QUEUE_COMMANDS,
        Unit::Count,
        "Commands waiting to be decided."
    );
    metrics::describe_gauge!(
        LEADER,
        "1 while this writer leads, 0 while it waits as a standby."
    );
    metrics::describe_counter!(
        APPEND_FAILURES,
        Unit::Count,
        "Batches whose append failed in the store (commands answered unavailable)."
    );
    metrics::describe_counter!(EVENTS, Unit::Count, "Events appended, by event type.");
    metrics::describe_counter!(
        COMMANDS,
        Unit::Count,
        "Commands answered, by outcome: accepted, duplicate, rejected, busy, unavailable."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_reply() {
        let rejected = |kind: RejectionKind| proto::CommandReply {
            result: Some(proto::command_reply::Result::Rejected(proto::Rejected {
                kind: kind as i32,
                code: String::new(),
                message: String::new(),
            })),
        };
        let accepted = |duplicate| proto::CommandReply {
            result: Some(proto::command_reply::Result::Accepted(proto::Accepted {
                duplicate,
                ..proto::Accepted::default()
            })),
        };
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let metrics = WriterMetrics::register();
            metrics.answered(&accepted(false));
            metrics.answered(&accepted(true));
            metrics.answered(&rejected(RejectionKind::Invalid));
            metrics.answered(&rejected(RejectionKind::Busy));
            metrics.answered(&rejected(RejectionKind::Unavailable));
            metrics.answered(&rejected(RejectionKind::Unavailable));
        });
        let text = handle.render();
        let mut counted: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("ledger_writer_commands_total{"))
            .collect();
        counted.sort_unstable();
        assert_eq!(
            counted,
            [
                "ledger_writer_commands_total{outcome=\"accepted\"} 1",
                "ledger_writer_commands_total{outcome=\"busy\"} 1",
                "ledger_writer_commands_total{outcome=\"duplicate\"} 1",
                "ledger_writer_commands_total{outcome=\"rejected\"} 1",
                "ledger_writer_commands_total{outcome=\"unavailable\"} 2",
            ]
        );
    }
}
