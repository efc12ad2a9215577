//! Catch up from the table, then consume the stream live.

use std::future::Future;
use std::time::Instant;

use async_nats::jetstream::{self, consumer};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use ledger_bus::{BusConfig, decode_recorded_event, ensure_event_stream};
use ledger_store::{RecordedEvent, Store};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};
use tracing::Instrument as _;

use crate::metrics::ProjectorMetrics;
use crate::{Projected, Projector, ProjectorError, checkpoint};

/// Messages the consumer may have delivered and not yet acknowledged.
const ACK_PENDING_MAX: i64 = 20_000;

/// Where the events come from and how the work is bounded.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub bus: BusConfig,
    /// Events read from the table and applied per transaction while catching up.
    pub table_page_events: u64,
    /// Stream messages applied per transaction at most while consuming live.
    pub live_batch_events_max: usize,
    /// Bytes of per-customer states each projector keeps between batches, by their estimated
    /// size ([`crate::StreamStates`]).
    pub states_bytes_max: usize,
}

impl Default for ProjectorConfig {
    fn default() -> ProjectorConfig {
        ProjectorConfig {
            bus: BusConfig::default(),
            // A rebuild writes each customer's rows once per page that holds its events: large
            // pages make that rare (see `ledger bench projectors`).
            table_page_events: 100_000,
            live_batch_events_max: 1_000,
            states_bytes_max: crate::STATES_BYTES_MAX,
        }
    }
}

/// Runs `projector` until `shutdown` completes: catches up from the table, then consumes the
/// stream live. `progress` is called with the checkpoint after every committed batch.
pub async fn run<P: Projector>(
    projector: P,
    database_url: &str,
    nats: async_nats::Client,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(u64),
) -> Result<(), ProjectorError> {
    run_or_rebuild(
        projector,
        database_url,
        nats,
        config,
        shutdown,
        progress,
        false,
    )
    .await
}

/// Drops the projector's schema and rebuilds it from position 1, then goes on live like
/// [`run`]: no event is missed or applied twice across the switch.
pub async fn replay<P: Projector>(
    projector: P,
    database_url: &str,
    nats: async_nats::Client,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(u64),
) -> Result<(), ProjectorError> {
    run_or_rebuild(
        projector,
        database_url,
        nats,
        config,
        shutdown,
        progress,
        true,
    )
    .await
}

/// [`replay`] with `rebuild`, else [`run`]: for a supervisor that rebuilds on its first attempt
/// only. A rebuild refuses ([`ProjectorError::Running`]) while another process runs the
/// projector; a run waits for it as a standby.
pub async fn run_or_rebuild<P: Projector>(
    projector: P,
    database_url: &str,
    nats: async_nats::Client,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(u64),
    rebuild: bool,
) -> Result<(), ProjectorError> {
    let mut projector = projector;
    projector.bound_states(config.states_bytes_max);
    let store = Store::connect(database_url)?;
    let name = projector.name();
    // One instance per projector: a rebuild refuses to start next to a running instance; a
    // run waits as a standby until the lock is free.
    let lock = if rebuild {
        store
            .try_lock_projector(name)
            .await?
            .map_err(|holder| ProjectorError::Running {
                projector: name,
                holder,
            })?
    } else {
        store.lock_projector(name).await?
    };
    let outcome = tokio::select! {
        outcome = run_locked(projector, database_url, store, nats, config, shutdown, progress, rebuild) => outcome,
        () = lock.lost() => Err(ProjectorError::LockLost { projector: name }),
    };
    lock.release().await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run_locked<P: Projector>(
    projector: P,
    database_url: &str,
    store: Store,
    nats: async_nats::Client,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
    mut progress: impl FnMut(u64),
    rebuild: bool,
) -> Result<(), ProjectorError> {
    tokio::pin!(shutdown);
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "projector connection closed");
        }
    });
    checkpoint::ensure_schema(&mut client, &projector, rebuild).await?;
    let checkpoint = checkpoint::read(&client, &projector).await?;
    let mut applier = Applier {
        subject: config.bus.projection_subject(projector.name()),
        metrics: ProjectorMetrics::register(projector.name()),
        projector,
        client,
        nats: nats.clone(),
        checkpoint: checkpoint.global_position,
        checkpoint_hash: checkpoint.hash,
    };

    // Catch up from the table: everything appended before the consumer starts.
    let table_last = store.last_position().await?;
    let stopped = applier
        .catch_up_from_table(&store, table_last, config, &mut progress, &mut shutdown)
        .await?;
    // `shutdown` is polled again only if it has not completed: a completed future must not be.
    if stopped || (&mut shutdown).now_or_never().is_some() {
        return Ok(());
    }

    // Then live, from the stream: the consumer starts after the checkpoint (a durable one may
    // start earlier; what it delivers again is skipped).
    // Caught up from the table; wait for NATS (while it is down) rather than fail on it.
    tokio::select! {
        () = ledger_bus::connected(&nats) => {}
        () = &mut shutdown => return Ok(()),
    }
    let jetstream = jetstream::new(nats);
    let stream = ensure_event_stream(&jetstream, &config.bus)
        .await
        .map_err(|error| ProjectorError::Nats(ledger_store::error_text(&error)))?;
    let durable_name = format!("projector_{}", applier.projector.name());
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable_name,
            consumer::pull::Config {
                durable_name: Some(durable_name.clone()),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: applier.checkpoint + 1,
                },
                ack_policy: consumer::AckPolicy::All,
                max_ack_pending: ACK_PENDING_MAX,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| ProjectorError::Nats(ledger_store::error_text(&error)))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| ProjectorError::Nats(ledger_store::error_text(&error)))?;
    tracing::info!(
        projector = applier.projector.name(),
        checkpoint = applier.checkpoint,
        "consuming the event stream"
    );
    loop {
        let first = tokio::select! {
            biased;
            () = &mut shutdown => break,
            message = messages.next() => message,
        };
        let Some(first) = first else {
            return Err(ProjectorError::Nats(
                "the consumer's message stream ended".to_owned(),
            ));
        };
        let mut batch =
            vec![first.map_err(|error| ProjectorError::Nats(ledger_store::error_text(&error)))?];
        while batch.len() < config.live_batch_events_max {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(error))) => {
                    return Err(ProjectorError::Nats(ledger_store::error_text(&error)));
                }
                Some(None) | None => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for message in &batch {
            let event = decode_recorded_event(&message.payload).map_err(|error| {
                ProjectorError::CorruptEvent {
                    global_position: message.info().map_or(0, |info| info.stream_sequence),
                    reason: error.to_string(),
                }
            })?;
            events.push(event);
        }
        applier.apply_from_stream(&store, events).await?;
        if let Some(info) = batch.last().and_then(|last| last.info().ok()) {
            applier.metrics.behind(info.pending);
        }
        if let Some(last) = batch.last() {
            // Acknowledges every message up to this one (AckPolicy::All), after the commit.
            last.ack()
                .await
                .map_err(|error| ProjectorError::Nats(ledger_store::error_text(error.as_ref())))?;
        }
        progress(applier.checkpoint);
    }
    tracing::info!(
        projector = applier.projector.name(),
        checkpoint = applier.checkpoint,
        "projector stopped"
    );
    Ok(())
}

/// The span a batch is applied in: the projector, the positions and, when every event of the
/// batch carries the same one (a single command's events, the usual live batch), the
/// correlation id (docs/observability.md).
fn batch_span(projector: &'static str, projected: &[Projected]) -> tracing::Span {
    let first = projected.first().map(|event| &event.recorded);
    let span = tracing::info_span!(
        "batch",
        projector,
        first_position = first.map(|event| event.global_position),
        last_position = projected.last().map(|event| event.recorded.global_position),
        correlation_id = tracing::field::Empty,
    );
    if let Some(id) = first.and_then(|event| event.event.correlation_id)
        && projected
            .iter()
            .all(|event| event.recorded.event.correlation_id == Some(id))
    {
        span.record("correlation_id", tracing::field::display(id));
    }
    span
}

/// Pages read from the table and decoded ahead of the one being applied.
const PAGES_AHEAD: usize = 1;

/// Reads the table's events after `after` up to `target` in pages, decodes them and sends them
/// to `pages`, until done, an error (sent too) or the receiver is gone. It runs as its own task
/// so that reading and decoding the next page use a core while the current one is applied.
async fn read_pages(
    store: Store,
    mut after: u64,
    target: u64,
    page_events: u64,
    pages: mpsc::Sender<Result<Vec<Projected>, ProjectorError>>,
) {
    while after < target {
        let reading = Instant::now();
        let page = store
            .read_all(after + 1, page_events.min(target - after))
            .map_err(ProjectorError::from)
            .and_then(|recorded| std::future::ready(Projected::decode(recorded)))
            .try_collect::<Vec<Projected>>()
            .await;
        if let Ok(page) = &page {
            tracing::debug!(
                events = page.len(),
                read_us = reading.elapsed().as_micros(),
                "read and decoded a page of the event table"
            );
            match page.last() {
                Some(last) => after = last.recorded.global_position,
                None => return,
            }
        }
        let failed = page.is_err();
        if pages.send(page).await.is_err() || failed {
            return;
        }
    }
}

/// Applies batches with the checkpoint in one transaction.
struct Applier<P> {
    projector: P,
    client: Client,
    nats: async_nats::Client,
    subject: String,
    checkpoint: u64,
    /// The chain hash of the checkpoint's event.
    checkpoint_hash: ledger_store::Hash,
    metrics: ProjectorMetrics,
}

impl<P: Projector> Applier<P> {
    /// Applies table pages until the checkpoint reaches `target`, or `shutdown` completes
    /// (then `true`: the caller must not poll `shutdown` again). The next page is read and
    /// decoded by another task while the current one is applied.
    async fn catch_up_from_table(
        &mut self,
        store: &Store,
        target: u64,
        config: &ProjectorConfig,
        progress: &mut impl FnMut(u64),
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<bool, ProjectorError> {
        let (sender, mut pages) = mpsc::channel(PAGES_AHEAD);
        // The reader stops when `pages` is dropped, on every way out of this function.
        tokio::spawn(read_pages(
            store.clone(),
            self.checkpoint,
            target,
            config.table_page_events,
            sender,
        ));
        while let Some(page) = pages.recv().await {
            if shutdown.now_or_never().is_some() {
                return Ok(true);
            }
            self.apply(page?).await?;
            self.metrics.behind(target.saturating_sub(self.checkpoint));
            progress(self.checkpoint);
        }
        Ok(false)
    }

    /// Applies what the stream delivered: skips positions at or below the checkpoint
    /// (redeliveries), fills any gap from the table.
    async fn apply_from_stream(
        &mut self,
        store: &Store,
        delivered: Vec<RecordedEvent>,
    ) -> Result<(), ProjectorError> {
        let mut contiguous = Vec::with_capacity(delivered.len());
        let mut expected = self.checkpoint + 1;
        for event in delivered {
            if event.global_position < expected {
                continue;
            }
            if event.global_position > expected {
                let missing = event.global_position - expected;
                tracing::warn!(
                    from = expected,
                    missing,
                    "gap in the stream; reading it from the table"
                );
                let fill: Vec<RecordedEvent> =
                    store.read_all(expected, missing).try_collect().await?;
                if fill.len() as u64 != missing {
                    return Err(ProjectorError::Store(ledger_store::StoreError::Corrupt {
                        global_position: expected,
                        reason: "the stream delivered a position the table does not have yet"
                            .to_owned(),
                    }));
                }
                contiguous.extend(fill);
            }
            expected = event.global_position + 1;
            contiguous.push(event);
        }
        let projected = contiguous
            .into_iter()
            .map(Projected::decode)
            .collect::<Result<Vec<_>, ProjectorError>>()?;
        self.apply(projected).await
    }

    /// Applies consecutive events from checkpoint + 1 on and moves the checkpoint, in one
    /// transaction; then announces the new position.
    async fn apply(&mut self, projected: Vec<Projected>) -> Result<(), ProjectorError> {
        let Some((last, newest_recorded_at)) = projected.last().map(|event| {
            (
                (event.recorded.global_position, event.recorded.hash),
                event.recorded.recorded_at,
            )
        }) else {
            return Ok(());
        };
        let started = Instant::now();
        // Each event must continue the chain from the checkpoint: a stream filled from another
        // table, or a gap, cannot slip into the read model.
        let mut previous_hash = self.checkpoint_hash;
        for event in &projected {
            if event.recorded.prev_hash != previous_hash {
                return Err(ProjectorError::ChainMismatch {
                    projector: self.projector.name(),
                    global_position: event.recorded.global_position,
                });
            }
            previous_hash = event.recorded.hash;
        }
        let transaction = self.client.transaction().await?;
        let span = batch_span(self.projector.name(), &projected);
        self.projector
            .apply(&transaction, &projected)
            .instrument(span.clone())
            .await?;
        let applied = Instant::now();
        let (last_position, last_hash) = last;
        let to = checkpoint::Checkpoint {
            global_position: last_position,
            hash: last_hash,
        };
        checkpoint::advance(&transaction, &self.projector, self.checkpoint, to).await?;
        transaction.commit().await?;
        self.metrics.applied(
            projected.len(),
            started.elapsed(),
            std::time::SystemTime::from(newest_recorded_at),
        );
        tracing::debug!(
            parent: &span,
            events = projected.len(),
            apply_us = (applied - started).as_micros(),
            commit_us = applied.elapsed().as_micros(),
            "applied batch"
        );
        self.checkpoint = last_position;
        self.checkpoint_hash = last_hash;
        if let Err(error) = self
            .nats
            .publish(self.subject.clone(), last_position.to_string().into())
            .await
        {
            tracing::warn!(%error, "announcing the projection position failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ledger_store::GENESIS_HASH;
    use ledger_testkit::commands::register;
    use ledger_testkit::ledger::TestLedger;

    use super::*;

    /// Records each applied position under a primary key: applying one twice fails.
    struct Positions;

    impl Projector for Positions {
        fn name(&self) -> &'static str {
            "unit_positions"
        }

        fn schema_version(&self) -> i32 {
            1
        }

        fn schema_sql(&self) -> String {
            "CREATE TABLE applied (global_position bigint PRIMARY KEY);".to_owned()
        }

        fn readable_by_query(&self) -> bool {
            false
        }

        async fn apply(
            &self,
            transaction: &tokio_postgres::Transaction<'_>,
            events: &[Projected],
        ) -> Result<(), ProjectorError> {
            for projected in events {
                let position = i64::try_from(projected.recorded.global_position).unwrap_or(0);
                transaction
                    .execute(
                        "INSERT INTO unit_positions.applied VALUES ($1)",
                        &[&position],
                    )
                    .await?;
            }
            Ok(())
        }
    }

    /// The stream can lose messages while a projector is live (retention, an operator): the
    /// holes are read from the table, and what is delivered again is skipped.
    #[tokio::test]
    async fn holes_in_a_delivery_are_filled_from_the_table_and_redeliveries_skipped() {
        let ledger = TestLedger::new().await;
        let writer = ledger.start_writer();
        let client = ledger.client();
        for n in 0..6 {
            client
                .send(&register(&format!("k{n}"), &format!("{n}@example.com")))
                .await
                .expect("accepted");
        }
        let table = ledger.table_events().await;
        let delivered = |positions: &[usize]| -> Vec<RecordedEvent> {
            positions.iter().map(|&p| table[p - 1].clone()).collect()
        };
        let (mut database, connection) = tokio_postgres::connect(ledger.database().url(), NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        checkpoint::ensure_schema(&mut database, &Positions, false)
            .await
            .expect("schema");
        let mut applier = Applier {
            projector: Positions,
            client: database,
            nats: ledger.nats.clone(),
            subject: ledger.bus.projection_subject("unit_positions"),
            checkpoint: 0,
            checkpoint_hash: GENESIS_HASH,
            metrics: ProjectorMetrics::register("unit_positions"),
        };

        applier
            .apply_from_stream(&ledger.store, delivered(&[1, 2, 5]))
            .await
            .expect("3 and 4 are read from the table");
        assert_eq!(applier.checkpoint, 5);
        applier
            .apply_from_stream(&ledger.store, delivered(&[1, 2, 3, 4, 5, 6]))
            .await
            .expect("1 to 5 are skipped");
        assert_eq!(applier.checkpoint, 6);
        let applied: Vec<i64> = applier
            .client
            .query(
                "SELECT global_position FROM unit_positions.applied ORDER BY 1",
                &[],
            )
            .await
            .expect("applied")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(applied, vec![1, 2, 3, 4, 5, 6]);
        writer.stop().await.expect("writer");
    }
}
