//! The command service (`ledger run writer`): the only process that appends events.
//!
//! 1. **Standby until leader.** [`run`] waits for a NATS connection, then for the store's
//!    writer lock (a PostgreSQL advisory lock); a second instance waits there and takes over
//!    within seconds when the first dies.
//! 2. **Recovery.** It compares the JetStream stream's last sequence with the table's last
//!    position and republishes the missing tail; if the stream is ahead of the table it refuses
//!    to start. Once after migration V15, it records which customers hold the provider objects
//!    of the events appended before (the `fill` module).
//! 3. **Intake.** Only then does it subscribe to `<prefix>.cmd.>` and to `<prefix>.delivery.>`
//!    (verified provider webhooks from ingest). Each request is decoded (commands as protobuf
//!    or JSON by `Content-Type`, deliveries as protobuf) and queued in one bounded queue, in
//!    arrival order; malformed, oversized or mismatched requests are answered at once, and a
//!    full queue answers `busy`.
//! 4. **Group commit.** Commands that arrive together are decided in arrival order against the
//!    customers' states (a bounded in-memory cache, the store as fallback), so a later command
//!    sees the earlier ones' events, and appended in one transaction. A delivery is parsed,
//!    resolved to its customer and normalized against that customer's state
//!    (`ledger_connectors`), its commands decided all or nothing, and it is recorded in the
//!    provider inbox in the same transaction (the `delivery` module).
//! 5. **Ordered publication.** Each appended event is published with `Nats-Msg-Id = event_id`
//!    and `Nats-Expected-Last-Sequence = position - 1`, so the stream sequence equals the global
//!    position; acknowledgements are awaited per batch. Replies go out only after commit and
//!    publication. Publishing runs as a second stage: the next batch is decided and appended
//!    while the previous one is being published.
//!
//! [`serve`] runs [`run`] again after every failure that waiting can fix (PostgreSQL or NATS
//! gone, the lock's connection lost), with capped exponential backoff: the writer gives up
//! leadership (its lock connection is dropped) and competes for it again. It competes only
//! while connected to NATS, and a leader that cannot reach JetStream releases the lock rather
//! than holding it while it waits, so a standby that can reach it takes over
//! (docs/decisions/0020-staying-up.md).
//!
//! It knows nothing about HTTP; the domain decides, the store appends.

mod delivery;
mod envelope;
mod fill;
mod intake;
pub mod metrics;
mod pipeline;
mod publish;
mod waiting;

use std::future::Future;

use ledger_bus::BusConfig;
use ledger_store::{Store, StoreError};

pub use envelope::{SCHEMA_VERSION, append_request, request_fingerprint};

/// How the writer batches and bounds its work.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub bus: BusConfig,
    /// Commands waiting to be decided; when full, new commands are answered `busy`.
    pub queue_commands_max: usize,
    /// Commands decided and appended in one transaction at most.
    pub batch_commands_max: usize,
    /// Bytes of customer states kept in memory at most (by `Stream::approximate_bytes`): a
    /// bound on bytes, not customers, because a state grows with the customer's history.
    pub cache_bytes_max: u64,
    /// `false`: one transaction per command (for comparison in `ledger bench writer`).
    pub group_commit: bool,
    /// Seals integration secrets in the events before they are recorded (docs/security.md,
    /// "Secrets and key rotation"). `None`: integration targets are refused, since their
    /// secrets could only be recorded in clear text.
    pub secrets: Option<std::sync::Arc<ledger_secrets::SecretKeys>>,
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig {
            bus: BusConfig::default(),
            queue_commands_max: 10_000,
            batch_commands_max: 1_000,
            // `ledger run writer --cache-mib`'s default.
            cache_bytes_max: 256 * 1024 * 1024,
            group_commit: true,
            secrets: None,
        }
    }
}

/// Batches appended and waiting to be published at most: the decider runs this far ahead.
const PIPELINE_BATCHES_MAX: usize = 2;

/// Why the writer stopped. Any of these ends the process's leadership: a standby takes over.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
    /// JetStream holds events the table does not: the stream belongs to another database, the
    /// table was restored from an older backup, or its last events were deleted. Refuse to
    /// publish over it; the stream may be the only evidence of a deletion.
    #[error(
        "JetStream stream {stream} is ahead of the event table (stream sequence {stream_last}, \
         table position {table_last}): the stream was filled from another database, the table \
         was restored from an older backup, or events {first_missing}..={stream_last} were \
         deleted from the table. Run `ledger audit verify` first; keep the stream until you know \
         which (it may be the only copy of deleted events), then point the writer at the right \
         database or, for a deliberate restore, recreate the stream",
        first_missing = table_last + 1
    )]
    StreamAhead {
        stream: String,
        stream_last: u64,
        table_last: u64,
    },
    /// Publication kept failing after recovery attempts; the events are committed and will be
    /// republished by the next writer.
    #[error("publishing to JetStream failed: {0}")]
    Publish(String),
    /// The task appending a batch ended without an answer (it panicked): whether the batch
    /// was committed is unknown, so the writer starts again from the table.
    #[error("the append task ended without an answer: {0}")]
    Append(String),
    /// The writer lock's connection is gone: another writer may already hold the lock.
    #[error("lost the writer lock (its PostgreSQL connection closed)")]
    LockLost,
    /// A stored event cannot be read back into a customer's state.
    #[error("stored event at global position {global_position} cannot be decoded: {reason}")]
    CorruptEvent {
        global_position: u64,
        reason: String,
    },
}

impl WriterError {
    /// Whether an operator must act before the writer can run again: the stream is ahead of
    /// the table, or stored data is corrupt. Every other error passes with time (a server
    /// restarts, a connection is made again) and [`serve`] retries it.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            WriterError::StreamAhead { .. }
                | WriterError::CorruptEvent { .. }
                | WriterError::Store(StoreError::Corrupt { .. } | StoreError::InvalidUrl { .. })
        )
    }
}

/// Runs the writer until `shutdown` completes, through outages of PostgreSQL and NATS of any
/// length: after each failure that [`WriterError::needs_operator`] does not flag, it waits
/// (capped exponential backoff with jitter, logged once per change of state) and starts over
/// as a standby competing for the lock.
///
/// # Errors
///
/// Only the errors an operator must act on.
pub async fn serve(
    store: Store,
    nats: async_nats::Client,
    config: WriterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WriterError> {
    ledger_bus::retry::supervise(
        "writer",
        shutdown,
        |attempt| {
            let up = attempt.clone();
            lead(
                store.clone(),
                nats.clone(),
                config.clone(),
                attempt.stopped(),
                move || up.up(),
            )
        },
        WriterError::needs_operator,
    )
    .await
}

/// Runs the writer until `shutdown` completes (then in-flight commands finish and queued ones
/// are answered) or a fatal error.
pub async fn run(
    store: Store,
    nats: async_nats::Client,
    config: WriterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WriterError> {
    lead(store, nats, config, shutdown, || {}).await
}

/// [`run`], calling `leading` once it leads (lock held, stream reconciled, intake open).
async fn lead(
    store: Store,
    nats: async_nats::Client,
    config: WriterConfig,
    shutdown: impl Future<Output = ()>,
    leading: impl FnOnce(),
) -> Result<(), WriterError> {
    tokio::pin!(shutdown);
    // Registered before the lock is won, so a standby shows its metrics too (leader at 0).
    let metrics = metrics::WriterMetrics::register();
    // Compete for the lock only with NATS at hand: a leader without it could not publish.
    tokio::select! {
        () = ledger_bus::connected(&nats) => {}
        () = &mut shutdown => return Ok(()),
    }
    let writer = tokio::select! {
        writer = store.writer() => writer?,
        () = &mut shutdown => return Ok(()),
    };
    let publisher = publish::Publisher::connect(&nats, &config.bus).await?;
    let published_through = publisher.reconcile(&store).await?;
    tracing::info!(
        published_through,
        "writer is the leader; stream and table agree"
    );
    tokio::select! {
        filled = fill::fill_provider_objects(&store, &writer, published_through) => filled?,
        () = &mut shutdown => return Ok(()),
    }
    let subscribe = |subject: String| async {
        nats.subscribe(subject)
            .await
            .map_err(|error| WriterError::Nats(ledger_store::error_text(&error)))
    };
    let commands = subscribe(config.bus.command_wildcard()).await?;
    let deliveries = subscribe(config.bus.delivery_wildcard()).await?;
    let (queue, mut queued) = tokio::sync::mpsc::channel(config.queue_commands_max);
    let intake = AbortOnDrop(tokio::spawn(intake::run(
        commands,
        deliveries,
        queue.clone(),
        nats.clone(),
        config.bus.clone(),
        metrics.clone(),
    )));
    leading();
    let _leading = metrics.leading();
    let mut awaiting = waiting::Awaiting::load(&store).await?;
    let released = fill::released(&store, &mut awaiting).await?;
    let _rerun = AbortOnDrop(tokio::spawn(rerun(released, queue)));
    let mut decider =
        pipeline::Decider::new(store.clone(), writer, &config, awaiting, metrics.clone());
    let mut announcer =
        pipeline::Announcer::new(store, publisher, nats, published_through, metrics.clone());
    let (decided, mut to_announce) = tokio::sync::mpsc::channel(PIPELINE_BATCHES_MAX);
    let mut announcing = AbortOnDrop(tokio::spawn(async move {
        while let Some(batch) = to_announce.recv().await {
            announcer.publish_and_answer(batch).await?;
        }
        announcer.flush().await;
        Ok::<(), WriterError>(())
    }));
    let deciding = async {
        // The batch being appended while the next one is decided (decision 0036).
        let mut appending: Option<pipeline::Appending> = None;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = decider.lock_lost() => return Err(WriterError::LockLost),
                appended = pipeline::appended(&mut appending) => {
                    if let Some(earlier) = appending.take() {
                        let (earlier, _) = decider.finish(earlier, appended)?;
                        if !announce(&decided, vec![earlier]).await {
                            // The announcer stopped; its error is returned below.
                            return Ok(());
                        }
                    }
                }
                batch = pipeline::next_batch(&mut queued, config.batch_commands_max) => {
                    let Some(batch) = batch else { break };
                    metrics.queue(queued.len());
                    let queue = (&mut queued, config.batch_commands_max);
                    if !decide_and_announce(&mut decider, batch, queue, &mut appending, &decided)
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
        // Stop intake (unsubscribing), then answer what was already queued.
        intake.0.abort();
        queued.close();
        while let Some(batch) = pipeline::next_batch(&mut queued, config.batch_commands_max).await {
            let queue = (&mut queued, config.batch_commands_max);
            if !decide_and_announce(&mut decider, batch, queue, &mut appending, &decided).await? {
                return Ok(());
            }
        }
        if let Some(mut last) = appending.take() {
            let appended = last.appended().await;
            let (last, _) = decider.finish(last, appended)?;
            announce(&decided, vec![last]).await;
        }
        Ok::<(), WriterError>(())
    }
    .await;
    drop(decided);
    let announced = (&mut announcing.0)
        .await
        .map_err(|error| WriterError::Publish(format!("the publishing task failed: {error}")))?;
    deciding?;
    announced?;
    tracing::info!("writer stopped");
    Ok(())
}

/// Decides `batch` and starts appending it (`Decider::decide_and_append`), and hands the
/// batches appended meanwhile to the announcer; `false` once the announcer has stopped. When
/// the batch cannot be decided, the batches appended before it, and the one still being
/// appended, are handed over first: what was committed is published and answered before the
/// error ends the writer.
async fn decide_and_announce(
    decider: &mut pipeline::Decider,
    batch: Vec<pipeline::Incoming>,
    queue: (&mut tokio::sync::mpsc::Receiver<pipeline::Incoming>, usize),
    appending: &mut Option<pipeline::Appending>,
    announcer: &tokio::sync::mpsc::Sender<pipeline::Decided>,
) -> Result<bool, WriterError> {
    let mut appended = Vec::new();
    if let Err(error) = decider
        .decide_and_append(batch, queue, appending, &mut appended)
        .await
    {
        if let Some(mut earlier) = appending.take() {
            let outcome = earlier.appended().await;
            if let Ok((earlier, _)) = decider.finish(earlier, outcome) {
                appended.push(earlier);
            }
        }
        announce(announcer, appended).await;
        return Err(error);
    }
    Ok(announce(announcer, appended).await)
}

/// Hands appended batches to the announcer, in order; `false` once it has stopped (its error
/// is returned by its task).
async fn announce(
    announcer: &tokio::sync::mpsc::Sender<pipeline::Decided>,
    batches: Vec<pipeline::Decided>,
) -> bool {
    for batch in batches {
        if announcer.send(batch).await.is_err() {
            return false;
        }
    }
    true
}

/// Queues `deliveries` (re-runs) to be decided as if ingest had sent them, unanswered (the
/// inbox row records the outcome), each only once the queue is empty, so that no request is
/// answered `busy` for them (with a queue of 4 and 1,000 re-runs let in while it was under
/// half full, 40 % of a helper's concurrent commands were).
async fn rerun(
    deliveries: Vec<ledger_domain::proto::ProviderDelivery>,
    queue: tokio::sync::mpsc::Sender<pipeline::Incoming>,
) {
    for delivery in deliveries {
        while queue.capacity() < queue.max_capacity() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let incoming = pipeline::Incoming {
            request: pipeline::Request::Delivery(delivery::Admitted::new(delivery)),
            reply_to: None,
            encoding: ledger_bus::Encoding::Protobuf,
            received_at: std::time::Instant::now(),
        };
        if queue.send(incoming).await.is_err() {
            return;
        }
    }
}

/// A spawned task that ends with its owner: dropping [`run`] (a leader killed mid-flight)
/// stops its intake and publishing too.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
