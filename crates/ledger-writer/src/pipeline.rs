//! Group commit in stages: the [`Decider`] decides a batch of commands in arrival order and
//! appends them in one transaction; the [`Announcer`] publishes the new events, then answers
//! every command. The stages run concurrently: batch N+1 is decided while batch N is being
//! appended (on top of what N decided, decision 0036) and appended while N is being published,
//! and batches are published in the order they were appended.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subject};
use ledger_bus::{CONTENT_TYPE_HEADER, Encoding, encode_reply};
use ledger_domain::proto::{self, RejectionKind, command::Kind};
use ledger_domain::{Event, Rejection, Stream, decode_event, occurred_at_unix_micros};
use ledger_store::{
    AppendRejection, AppendRequest, Committed, ExpectedVersion, InboxSource, InboxWrite,
    RecordedEvent, RequestFingerprint, Store, Writer,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::delivery::{Admitted, DeliveryPlan};
use crate::metrics::WriterMetrics;
use crate::publish::Publisher;
use crate::waiting::{Awaiting, RELEASE_DEPTH_MAX};
use crate::{AbortOnDrop, WriterConfig, WriterError, append_request, request_fingerprint};
use tracing::Instrument as _;

#[cfg(test)]
mod tests;

/// Recovery attempts after a failed publication before the writer gives up its leadership.
const RECOVERY_ATTEMPTS_MAX: u32 = 5;
/// Pause before recovery attempt n is n times this.
const RECOVERY_BACKOFF_MS: u64 = 200;
/// How often an idle leader checks that its lock connection is still open.
const LOCK_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// A decoded request waiting for its answer.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) request: Request,
    /// Where the answer goes; `None` for a re-run the writer queued itself (its inbox row
    /// records the outcome).
    pub(crate) reply_to: Option<Subject>,
    pub(crate) encoding: Encoding,
    pub(crate) received_at: Instant,
}

/// What arrived: a command, or a verified provider webhook delivery from ingest.
#[derive(Debug)]
pub(crate) enum Request {
    Command(proto::Command),
    Delivery(Admitted),
    /// A page of deliveries (the backfill), decided in order as if each had been sent alone
    /// and answered once; a delivery intake refused alone holds its answer.
    DeliveryPage(Vec<Result<Admitted, proto::CommandReply>>),
}

impl Incoming {
    /// What the request counts for in a batch's bound: a page, its deliveries; else 1.
    pub(crate) fn weight(&self) -> usize {
        match &self.request {
            Request::DeliveryPage(parts) => parts.len().max(1),
            Request::Command(_) | Request::Delivery(_) => 1,
        }
    }
}

/// Waits for one request, then takes whatever else is already queued while the batch holds
/// fewer than `max` commands and deliveries (a page counts its deliveries, so a batch may end
/// up to one page, [`ledger_bus::PAGE_DELIVERIES_MAX`], over `max`).
pub(crate) async fn next_batch(
    queued: &mut mpsc::Receiver<Incoming>,
    max: usize,
) -> Option<Vec<Incoming>> {
    let first = queued.recv().await?;
    let mut batch = vec![first];
    take_queued(queued, &mut batch, max);
    Some(batch)
}

/// Adds to `batch` what is already queued while it holds fewer than `max` commands and
/// deliveries (a page counts its deliveries).
fn take_queued(queued: &mut mpsc::Receiver<Incoming>, batch: &mut Vec<Incoming>, max: usize) {
    let mut weight: usize = batch.iter().map(Incoming::weight).sum();
    while weight < max {
        match queued.try_recv() {
            Ok(incoming) => {
                weight += incoming.weight();
                batch.push(incoming);
            }
            Err(_) => break,
        }
    }
}

/// What `decide` made of one request of the batch.
pub(crate) enum Plan {
    Rejected(Rejection),
    Append {
        stream_id: Uuid,
        request_index: usize,
    },
    /// A delivery recorded in the inbox with the batch.
    Delivery(DeliveryPlan),
    /// A delivery refused before it was recorded: this answer, nothing stored.
    DeliveryRefused(proto::CommandReply),
    /// A command refused as the store would refuse it (a unique key another customer holds),
    /// so that what it would have done is not seen by the requests decided after it.
    Refused(proto::CommandReply),
    /// A page: the plan of each of its deliveries (`Delivery` or `DeliveryRefused`), in order.
    DeliveryPage(Vec<Plan>),
}

/// What the batch has claimed so far, beyond the store: unique keys' owners (`None`:
/// released) and the provider events recorded, so that a later request of the batch sees the
/// earlier ones.
#[derive(Default)]
pub(crate) struct BatchClaims {
    pub(crate) owners: HashMap<String, Option<Uuid>>,
    pub(crate) provider_events: std::collections::HashSet<(ledger_domain::Provider, String)>,
    /// The latest snapshot seen (Unix microseconds) of provider objects, by this batch.
    pub(crate) snapshots_seen: HashMap<(ledger_domain::Provider, String), i64>,
    /// The customer of provider objects whose snapshot this batch saw (the first one).
    pub(crate) snapshot_customers: HashMap<(ledger_domain::Provider, String), Uuid>,
    /// The customer of each object the batch's events made known, by object key
    /// (`ledger_connectors::AwaitedObject::key`): the first one, as `provider_objects` keeps
    /// the first holder.
    pub(crate) objects: HashMap<String, Uuid>,
    /// Objects made known since the waiting deliveries were last released.
    pub(crate) made_known: Vec<String>,
    /// The idempotency key of each request of the batch, with the fingerprint of the first
    /// request that used it.
    pub(crate) keys: HashMap<String, RequestFingerprint>,
}

impl BatchClaims {
    pub(crate) fn record(&mut self, stream_id: Uuid, changes: &ledger_domain::UniqueKeyChanges) {
        record_owners(&mut self.owners, stream_id, changes);
    }

    /// Notes the idempotency key of a request of the batch.
    pub(crate) fn use_key(&mut self, request: &AppendRequest) {
        self.keys
            .entry(request.idempotency_key.clone())
            .or_insert(request.request_fingerprint);
    }

    /// Notes the objects (keys) that events appended for `stream_id` made known.
    pub(crate) fn know(&mut self, stream_id: Uuid, objects: Vec<String>) {
        for object in objects {
            self.objects.entry(object.clone()).or_insert(stream_id);
            self.made_known.push(object);
        }
    }
}

/// A batch decided and being appended, as the next batch, decided meanwhile, sees it
/// (decision 0036): the states of its streams that the next batch has not taken, what it
/// claimed (unique keys, provider events, snapshots, objects, its requests' idempotency keys)
/// and its inbox rows. The next batch is decided
/// on top of it as if both were one batch, and decided again if it is not appended as decided.
#[derive(Default)]
pub(crate) struct Uncommitted {
    pub(crate) states: HashMap<Uuid, Stream>,
    pub(crate) claims: BatchClaims,
    pub(crate) rows: HashMap<Uuid, (ledger_domain::Provider, bytes::Bytes, InboxSource)>,
}

/// A batch decided, not yet appended.
#[derive(Default)]
struct Planned {
    batch: Vec<Incoming>,
    plans: Vec<Plan>,
    /// The plans of the deliveries it released.
    released: Vec<Plan>,
    requests: Vec<AppendRequest>,
    inbox: Vec<InboxWrite>,
    working: HashMap<Uuid, Stream>,
    claims: BatchClaims,
    decide_time: Duration,
}

/// A batch being appended on a task of its own (aborted when dropped).
pub(crate) struct Appending {
    batch: Vec<Incoming>,
    plans: Vec<Plan>,
    released: Vec<Plan>,
    uncommitted: Uncommitted,
    append: AbortOnDrop<Result<Appended, ledger_store::StoreError>>,
    decide_time: Duration,
}

/// What the store answered a batch's append, and how long it took (`None`: nothing to append).
#[derive(Default)]
pub(crate) struct Appended {
    outcomes: Vec<Result<Committed, AppendRejection>>,
    took: Option<Duration>,
}

/// The end of an append's task.
pub(crate) type AppendResult =
    Result<Result<Appended, ledger_store::StoreError>, tokio::task::JoinError>;

impl Appending {
    /// Waits for the append to end (cancel-safe: the task goes on).
    pub(crate) async fn appended(&mut self) -> AppendResult {
        (&mut self.append.0).await
    }
}

/// Waits for the append of the batch in `appending`; never completes when there is none.
pub(crate) async fn appended(appending: &mut Option<Appending>) -> AppendResult {
    match appending {
        Some(appending) => appending.appended().await,
        None => std::future::pending().await,
    }
}

/// The keys of the objects that `events`, decided from `command`, make known
/// (`ledger_connectors::made_known`, of the command's provider).
pub(crate) fn objects_made_known(command: &proto::Command, events: &[Event]) -> Vec<String> {
    let provider = command
        .metadata
        .as_ref()
        .and_then(|metadata| ledger_domain::Provider::try_from(metadata.payment_provider()).ok());
    let Some(provider) = provider else {
        return Vec::new();
    };
    events
        .iter()
        .filter_map(|event| ledger_connectors::made_known(provider, event))
        .map(|object| object.key())
        .collect()
}

/// Sets `stream_id` as the owner of the keys `changes` claims and no one as the owner of those
/// it releases.
pub(crate) fn record_owners(
    owners: &mut HashMap<String, Option<Uuid>>,
    stream_id: Uuid,
    changes: &ledger_domain::UniqueKeyChanges,
) {
    for key in &changes.releases {
        owners.insert(key.storage_key(), None);
    }
    for key in &changes.claims {
        owners.insert(key.storage_key(), Some(stream_id));
    }
}

/// A batch after the append: committed (or failed as a whole), waiting to be published and
/// answered.
pub(crate) struct Decided {
    batch: Vec<Incoming>,
    outcome: BatchOutcome,
}

enum BatchOutcome {
    Appended {
        plans: Vec<Plan>,
        outcomes: Vec<Result<Committed, AppendRejection>>,
    },
    /// Nothing of the batch was appended; every command gets this answer.
    Failed(proto::CommandReply),
}

/// Stage 1: decides commands against the customers' states and appends them.
pub(crate) struct Decider {
    pub(crate) store: Store,
    /// Shared with the task appending the batch in flight.
    writer: std::sync::Arc<Writer>,
    /// Streams' states (customers' and integrations') as of the last commit. Only this writer appends while it holds the
    /// lock, so an entry is authoritative; a batch takes the states it needs out and puts back
    /// only those whose appends went as decided, and every request carries the version it was
    /// decided on.
    pub(crate) cache: moka::sync::Cache<Uuid, Stream>,
    group_commit: bool,
    metrics: WriterMetrics,
    secrets: Option<std::sync::Arc<ledger_secrets::SecretKeys>>,
    /// The deliveries waiting for an object, released by the batch that makes it known.
    awaiting: Awaiting,
}

impl Decider {
    pub(crate) fn new(
        store: Store,
        writer: Writer,
        config: &WriterConfig,
        awaiting: Awaiting,
        metrics: WriterMetrics,
    ) -> Decider {
        Decider {
            metrics,
            store,
            writer: std::sync::Arc::new(writer),
            cache: moka::sync::Cache::builder()
                .max_capacity(config.cache_bytes_max)
                .weigher(|_, state: &Stream| {
                    u32::try_from(state.approximate_bytes()).unwrap_or(u32::MAX)
                })
                .build(),
            group_commit: config.group_commit,
            secrets: config.secrets.clone(),
            awaiting,
        }
    }

    /// Completes once the writer's lock connection is gone (checked every
    /// [`LOCK_CHECK_INTERVAL`]): an idle leader notices a PostgreSQL restart too, and stops
    /// taking commands before a standby takes the lock.
    pub(crate) async fn lock_lost(&self) {
        while !self.writer.is_closed() {
            tokio::time::sleep(LOCK_CHECK_INTERVAL).await;
        }
    }

    /// Decides `batch` and starts appending it; pushes onto `decided` the batches appended
    /// meanwhile, to announce in order, even when it then fails. With group commit the batch
    /// is one transaction, decided while the batch before it (`appending`) is still being
    /// appended, on top of what that one decided (decision 0036); it is decided again if that
    /// one was not appended as decided. Its append is left in `appending`; on an error the
    /// batch before it may still be there, being appended. Without group commit each command
    /// is decided and appended alone, in turn.
    pub(crate) async fn decide_and_append(
        &mut self,
        batch: Vec<Incoming>,
        (queued, max): (&mut mpsc::Receiver<Incoming>, usize),
        appending: &mut Option<Appending>,
        decided: &mut Vec<Decided>,
    ) -> Result<(), WriterError> {
        if !self.group_commit {
            for incoming in batch {
                let planned = self.plan(vec![incoming], None).await?;
                let mut alone = self.start_append(planned);
                let appended = alone.appended().await;
                decided.push(self.finish(alone, appended)?.0);
            }
            return Ok(());
        }
        let mut planned = self
            .plan(
                batch,
                appending.as_mut().map(|earlier| &mut earlier.uncommitted),
            )
            .await?;
        if let Some(mut earlier) = appending.take() {
            let appended = earlier.appended().await;
            let (earlier, as_decided) = self.finish(earlier, appended)?;
            decided.push(earlier);
            // What arrived while the batch before was appended joins a batch of commands, as
            // it did when nothing was decided during an append: commands are decided in a
            // fraction of their append, and batches stay as large (`ledger bench writer`).
            // Deliveries take about as long to decide as to append: what arrives meanwhile is
            // decided during the next append instead (`ledger bench sync`).
            let mut more = Vec::new();
            let weight: usize = planned.batch.iter().map(Incoming::weight).sum();
            let commands_only = planned
                .batch
                .iter()
                .all(|incoming| matches!(incoming.request, Request::Command(_)));
            if commands_only && weight < max {
                take_queued(queued, &mut more, max - weight);
            }
            // A delivery (or a page) taken with them may resolve its customer by what the
            // batch's commands claimed, yet in a batch of commands only their idempotency
            // keys and unique keys were not looked up (`Decider::key_used`): the batch is
            // decided again as one holding deliveries.
            let joined_deliveries = more
                .iter()
                .any(|incoming| !matches!(incoming.request, Request::Command(_)));
            if !as_decided || joined_deliveries {
                // Decided on top of what the store does not hold (or without the look-ups a
                // delivery needs): decide again, from the store, with the waiting deliveries
                // read again from the inbox.
                if !as_decided {
                    self.metrics.redecided();
                }
                self.awaiting.mark_stale();
                let mut batch = planned.batch;
                batch.append(&mut more);
                planned = self.plan(batch, None).await?;
            } else if !more.is_empty() {
                self.plan_more(&mut planned, more, None).await?;
            }
        }
        *appending = Some(self.start_append(planned));
        Ok(())
    }

    /// Decides `batch` in arrival order against the streams' states, on top of `earlier` (the
    /// batch being appended, if any): what it appends and what to answer.
    async fn plan(
        &mut self,
        batch: Vec<Incoming>,
        earlier: Option<&mut Uncommitted>,
    ) -> Result<Planned, WriterError> {
        let mut planned = Planned::default();
        self.plan_more(&mut planned, batch, earlier).await?;
        Ok(planned)
    }

    /// Decides `batch` after what `planned` decided, as later requests of the same batch.
    async fn plan_more(
        &mut self,
        planned: &mut Planned,
        mut batch: Vec<Incoming>,
        earlier: Option<&mut Uncommitted>,
    ) -> Result<(), WriterError> {
        self.awaiting.refresh(&self.store).await?;
        let started = Instant::now();
        let mut nothing_earlier = Uncommitted::default();
        let earlier = earlier.unwrap_or(&mut nothing_earlier);
        let Planned {
            working,
            requests,
            inbox,
            claims,
            plans,
            released,
            ..
        } = planned;
        let prefetched = self.prefetch(&batch, working, earlier).await?;
        plans.reserve(batch.len());
        for incoming in &mut batch {
            let mut batch = crate::delivery::Batch {
                working: &mut *working,
                requests: &mut *requests,
                inbox: &mut *inbox,
                claims: &mut *claims,
                prefetched: &prefetched,
                earlier: &mut *earlier,
            };
            let plan = match &mut incoming.request {
                Request::Command(command) => {
                    let span = command_span(command);
                    let plan = self
                        .decide(command, &mut batch)
                        .instrument(span.clone())
                        .await?;
                    tracing::debug!(parent: &span, "command decided");
                    self.release(&mut batch, released).await?;
                    plan
                }
                Request::Delivery(admitted) => {
                    self.plan_delivery(admitted, &mut batch, released).await?
                }
                Request::DeliveryPage(parts) => {
                    let mut page = Vec::with_capacity(parts.len());
                    for part in parts {
                        page.push(match part {
                            Ok(admitted) => {
                                self.plan_delivery(admitted, &mut batch, released).await?
                            }
                            Err(refusal) => Plan::DeliveryRefused(refusal.clone()),
                        });
                    }
                    Plan::DeliveryPage(page)
                }
            };
            plans.push(plan);
        }
        planned.batch.append(&mut batch);
        planned.decide_time += started.elapsed();
        Ok(())
    }

    /// Starts appending a decided batch in one transaction, on a task of its own.
    fn start_append(&self, planned: Planned) -> Appending {
        let Planned {
            batch,
            plans,
            released,
            requests,
            inbox,
            working,
            claims,
            decide_time,
        } = planned;
        let uncommitted = Uncommitted {
            states: working,
            claims,
            rows: inbox
                .iter()
                .map(|write| {
                    let row = &write.row;
                    (row.id, (row.provider, row.body.clone(), row.source))
                })
                .collect(),
        };
        let writer = std::sync::Arc::clone(&self.writer);
        let append = tokio::spawn(async move {
            if requests.is_empty() && inbox.is_empty() {
                return Ok(Appended::default());
            }
            let started = Instant::now();
            let outcomes = writer.append_with_inbox(requests, inbox).await?;
            Ok(Appended {
                outcomes,
                took: Some(started.elapsed()),
            })
        });
        Appending {
            batch,
            plans,
            released,
            uncommitted,
            append: AbortOnDrop(append),
            decide_time,
        }
    }

    /// Takes the answer of a batch's append: the batch to announce, and whether every request
    /// was appended as decided. The states of its streams that the next batch did not take go
    /// back to the cache, those appended as decided.
    pub(crate) fn finish(
        &mut self,
        appending: Appending,
        appended: AppendResult,
    ) -> Result<(Decided, bool), WriterError> {
        let Appending {
            batch,
            plans,
            released,
            uncommitted,
            decide_time,
            ..
        } = appending;
        let appended = appended
            .map_err(|error| WriterError::Append(error.to_string()))
            .and_then(|appended| appended.map_err(WriterError::Store));
        let Appended { outcomes, took } = match appended {
            Ok(appended) => appended,
            Err(error) => {
                // The batch's states stay out of the cache: they are replayed next time; the
                // waiting deliveries are read again from the inbox.
                self.awaiting.mark_stale();
                if self.writer.is_closed() {
                    return Err(WriterError::LockLost);
                }
                if let WriterError::Append(_) = error {
                    return Err(error);
                }
                self.metrics.append_failed();
                tracing::error!(%error, commands = batch.len(), "append failed");
                let reply = rejected(RejectionKind::Unavailable, "store_unavailable", &error);
                let failed = Decided {
                    batch,
                    outcome: BatchOutcome::Failed(reply),
                };
                return Ok((failed, false));
            }
        };
        if let Some(took) = took {
            self.metrics.appended(took);
            self.metrics.events(&outcomes);
        }
        self.update_cache(plans.iter().chain(&released), &outcomes, uncommitted.states);
        self.metrics.batch(batch.len());
        tracing::debug!(
            commands = batch.len(),
            decide_us = decide_time.as_micros(),
            append_us = took.unwrap_or_default().as_micros(),
            "decided and appended batch"
        );
        let as_decided = outcomes
            .iter()
            .all(|outcome| matches!(outcome, Ok(committed) if !committed.duplicate));
        let decided = Decided {
            batch,
            outcome: BatchOutcome::Appended { plans, outcomes },
        };
        Ok((decided, as_decided))
    }

    /// Plans one delivery (alone or of a page), notes whether it waits, then releases the
    /// deliveries waiting for what it made known.
    async fn plan_delivery(
        &mut self,
        admitted: &mut Admitted,
        batch: &mut crate::delivery::Batch<'_>,
        released: &mut Vec<Plan>,
    ) -> Result<Plan, WriterError> {
        let span = tracing::info_span!(
            "delivery",
            correlation_id = admitted.delivery.correlation_id.as_str()
        );
        let recorded = batch.inbox.len();
        let plan = self
            .decide_delivery(&admitted.delivery, admitted.parsed.take(), batch)
            .instrument(span)
            .await?;
        self.awaiting.record(&batch.inbox[recorded..]);
        self.release(batch, released).await?;
        Ok(plan)
    }

    /// Decides again, right after the request that made their object known, the deliveries
    /// waiting for the objects the batch made known since the last call, and those waiting for
    /// what these make known, up to [`RELEASE_DEPTH_MAX`] rounds. Their plans go to `released`.
    async fn release(
        &mut self,
        batch: &mut crate::delivery::Batch<'_>,
        released: &mut Vec<Plan>,
    ) -> Result<(), WriterError> {
        for _ in 0..RELEASE_DEPTH_MAX {
            if batch.claims.made_known.is_empty() || self.awaiting.is_empty() {
                break;
            }
            let known = std::mem::take(&mut batch.claims.made_known);
            for delivery in self.awaiting.release(&known) {
                let recorded = batch.inbox.len();
                released.push(self.decide_delivery(&delivery, None, batch).await?);
                self.awaiting.record(&batch.inbox[recorded..]);
            }
        }
        batch.claims.made_known.clear();
        Ok(())
    }

    /// Decides one command against the batch's working state of its stream.
    async fn decide(
        &self,
        command: &proto::Command,
        batch: &mut crate::delivery::Batch<'_>,
    ) -> Result<Plan, WriterError> {
        let (stream_id, new_stream) = match stream_id_of(command) {
            Ok(stream) => stream,
            Err(rejection) => return Ok(Plan::Rejected(rejection)),
        };
        let state = match batch.take_working(stream_id) {
            Some(state) => state,
            None if new_stream => Stream::Empty,
            None => self.load(stream_id).await?,
        };
        let expected = ExpectedVersion::Exact(state.version());
        let decided = state.decide(command).and_then(|events| {
            let events = self.seal(stream_id, events)?;
            let unique_keys = state.unique_key_changes(&events);
            let request =
                append_request(stream_id, command, unique_keys, events.clone(), expected)?;
            Ok((request, events))
        });
        // A delivery of the batch, or one this command releases, may resolve a customer by the
        // keys this command claims: a key another customer holds is refused here, as the store
        // would refuse it, rather than recorded as this customer's for the requests decided
        // after it.
        let retry = matches!(&decided, Ok((request, _))
            if Decider::key_used(&request.idempotency_key, &request.request_fingerprint, batch));
        let taken = match &decided {
            Ok((request, events))
                if !retry
                    && !request.unique_keys.claims.is_empty()
                    && (batch.prefetched.with_deliveries()
                        || self
                            .awaiting
                            .awaits_any(&objects_made_known(command, events))) =>
            {
                self.unique_key_taken(request, batch).await?
            }
            _ => None,
        };
        match decided {
            Ok((request, _)) if retry => {
                // A retry (or a reuse) of a key already used: the store answers it with the
                // first request's result (or refuses it), so nothing of what it was decided
                // to do is seen by the requests decided after it.
                if !new_stream {
                    batch.working.insert(stream_id, state);
                }
                batch.claims.use_key(&request);
                batch.requests.push(request);
                Ok(Plan::Append {
                    stream_id,
                    request_index: batch.requests.len() - 1,
                })
            }
            Ok(_) if let Some(rejection) = &taken => {
                if !new_stream {
                    batch.working.insert(stream_id, state);
                }
                Ok(Plan::Refused(store_rejection(rejection)))
            }
            Ok((request, events)) => {
                batch.claims.record(stream_id, &request.unique_keys);
                batch
                    .claims
                    .know(stream_id, objects_made_known(command, &events));
                batch.claims.use_key(&request);
                batch.requests.push(request);
                let occurred_at_unix_micros = occurred_at_unix_micros(command);
                batch.working.insert(
                    stream_id,
                    events.iter().fold(state, |state, event| {
                        state.evolve(event, occurred_at_unix_micros)
                    }),
                );
                Ok(Plan::Append {
                    stream_id,
                    request_index: batch.requests.len() - 1,
                })
            }
            Err(rejection) => {
                batch.working.insert(stream_id, state);
                Ok(Plan::Rejected(rejection))
            }
        }
    }

    /// Seals the integration secrets of `events` (an integration's) so that none is recorded
    /// in clear text; without keys an integration's target is refused.
    pub(crate) fn seal(
        &self,
        stream_id: Uuid,
        events: Vec<Event>,
    ) -> Result<Vec<Event>, Rejection> {
        let refused = Rejection::InvalidField {
            field: "target",
            reason: "the writer cannot seal its secrets: start it with LEDGER_SECRETS_KEYS or LEDGER_SECRETS_KEY_FILE",
        };
        events
            .into_iter()
            .map(|event| match (&self.secrets, &event) {
                (Some(keys), _) => keys
                    .seal_event(stream_id, event)
                    .map_err(|_| refused.clone()),
                (None, Event::IntegrationRegistered(_) | Event::IntegrationUpdated(_)) => {
                    Err(refused.clone())
                }
                (None, _) => Ok(event),
            })
            .collect()
    }

    /// A stream's state: taken out of the cache (moved, not cloned; the batch puts it back),
    /// or replayed from the store.
    pub(crate) async fn load(&self, stream_id: Uuid) -> Result<Stream, WriterError> {
        if let Some(state) = self.cache.remove(&stream_id) {
            return Ok(state);
        }
        replay(&self.store.read_stream(stream_id, 1).await?)
    }

    /// Puts back the batch's states of streams whose every request was appended as decided;
    /// the others stay out, so that they are replayed from the store next time.
    fn update_cache<'a>(
        &self,
        plans: impl IntoIterator<Item = &'a Plan>,
        outcomes: &[Result<Committed, AppendRejection>],
        working: HashMap<Uuid, Stream>,
    ) {
        let mut as_decided: HashMap<Uuid, bool> = HashMap::new();
        let appended = |request_index: usize| matches!(&outcomes[request_index], Ok(committed) if !committed.duplicate);
        let pages = |plan: &'a Plan| match plan {
            Plan::DeliveryPage(page) => page.as_slice(),
            plan => std::slice::from_ref(plan),
        };
        for plan in plans.into_iter().flat_map(pages) {
            match plan {
                Plan::Append {
                    stream_id,
                    request_index,
                } => {
                    *as_decided.entry(*stream_id).or_insert(true) &= appended(*request_index);
                }
                Plan::Delivery(delivery) => {
                    if let Some(stream_id) = delivery.customer_id {
                        let all = delivery.requests.iter().all(|index| appended(*index));
                        *as_decided.entry(stream_id).or_insert(true) &= all;
                    }
                }
                Plan::Rejected(_)
                | Plan::Refused(_)
                | Plan::DeliveryRefused(_)
                | Plan::DeliveryPage(_) => {}
            }
        }
        for (stream_id, state) in working {
            if as_decided.get(&stream_id).copied().unwrap_or(true) {
                self.cache.insert(stream_id, state);
            }
        }
    }
}

/// The state of a stream from its stored events, in order.
pub(crate) fn replay(stored: &[RecordedEvent]) -> Result<Stream, WriterError> {
    let mut state = Stream::Empty;
    for recorded in stored {
        let event =
            decode_event(&recorded.event.payload).map_err(|error| WriterError::CorruptEvent {
                global_position: recorded.global_position,
                reason: error.to_string(),
            })?;
        state = state.evolve(&event, recorded.event.occurred_at_unix_micros());
    }
    Ok(state)
}

/// Stage 2: publishes each batch's new events, in order, then answers its commands.
pub(crate) struct Announcer {
    store: Store,
    publisher: Publisher,
    nats: async_nats::Client,
    /// The stream holds every event up to here (recovery may publish ahead of the batches).
    published_through: u64,
    metrics: WriterMetrics,
}

impl Announcer {
    pub(crate) fn new(
        store: Store,
        publisher: Publisher,
        nats: async_nats::Client,
        published_through: u64,
        metrics: WriterMetrics,
    ) -> Announcer {
        Announcer {
            store,
            publisher,
            nats,
            published_through,
            metrics,
        }
    }

    pub(crate) async fn publish_and_answer(&mut self, decided: Decided) -> Result<(), WriterError> {
        let started = Instant::now();
        let Decided { batch, outcome } = decided;
        let (plans, outcomes) = match outcome {
            BatchOutcome::Appended { plans, outcomes } => (plans, outcomes),
            BatchOutcome::Failed(reply) => {
                for incoming in batch {
                    match incoming.request {
                        Request::Command(_) => self.reply(incoming, &reply).await,
                        Request::Delivery(_) => {
                            let answer = delivery_rejected(reply.clone());
                            reply_to_delivery(&self.nats, incoming.reply_to, &answer).await;
                        }
                        Request::DeliveryPage(_) => {
                            let answer = page_rejected(reply.clone());
                            reply_to_page(&self.nats, incoming.reply_to, &answer).await;
                        }
                    }
                }
                self.flush().await;
                return Ok(());
            }
        };
        let unpublished: Vec<&RecordedEvent> = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .filter(|committed| !committed.duplicate)
            .flat_map(|committed| committed.events.iter())
            .filter(|event| event.global_position > self.published_through)
            .collect();
        match self.publisher.publish(&unpublished).await {
            Ok(()) => {
                if let Some(last) = unpublished.last() {
                    self.published_through = last.global_position;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "publication failed; recovering from the table");
                self.published_through = self.recover().await?;
            }
        }
        let published = Instant::now();
        if !unpublished.is_empty() {
            self.metrics.published(published - started);
        }

        for (incoming, plan) in batch.into_iter().zip(plans) {
            let command = match (&incoming.request, plan) {
                (Request::Command(command), plan) => (command, plan),
                (Request::Delivery(_), plan) => {
                    let answer = delivery_answer(plan, &outcomes);
                    reply_to_delivery(&self.nats, incoming.reply_to, &answer).await;
                    continue;
                }
                (Request::DeliveryPage(_), plan) => {
                    let plans = match plan {
                        Plan::DeliveryPage(plans) => plans,
                        plan => vec![plan],
                    };
                    let replies = plans
                        .into_iter()
                        .map(|plan| delivery_answer(plan, &outcomes))
                        .collect();
                    let answer = proto::DeliveryPageReply {
                        result: Some(proto::delivery_page_reply::Result::Recorded(
                            proto::DeliveryReplies { replies },
                        )),
                    };
                    reply_to_page(&self.nats, incoming.reply_to, &answer).await;
                    continue;
                }
            };
            let (command, plan) = command;
            let reply = match plan {
                Plan::Rejected(rejection) => {
                    let key = command
                        .metadata
                        .as_ref()
                        .map(|metadata| metadata.idempotency_key.as_str())
                        .unwrap_or_default();
                    // A retry of a command already appended is answered with the original
                    // result, even though deciding it again against today's state fails; the
                    // key used for another request is refused without naming it.
                    match self.store.find_by_idempotency_key(key).await? {
                        Some(stored) => {
                            if stored.is_same_request(&request_fingerprint(command)) {
                                accepted(&Committed {
                                    events: stored.events,
                                    duplicate: true,
                                })
                            } else {
                                store_rejection(&AppendRejection::IdempotencyKeyReused {
                                    idempotency_key: key.to_owned(),
                                })
                            }
                        }
                        _ => domain_rejection(&rejection),
                    }
                }
                Plan::Append { request_index, .. } => match &outcomes[request_index] {
                    Ok(committed) => accepted(committed),
                    Err(rejection) => store_rejection(rejection),
                },
                Plan::Refused(reply) => reply,
                Plan::Delivery(_) | Plan::DeliveryRefused(_) | Plan::DeliveryPage(_) => rejected(
                    RejectionKind::Unspecified,
                    "internal",
                    "a command was planned as a delivery",
                ),
            };
            self.reply(incoming, &reply).await;
        }
        self.flush().await;
        tracing::debug!(
            events = unpublished.len(),
            publish_us = (published - started).as_micros(),
            reply_us = published.elapsed().as_micros(),
            "published and answered batch"
        );
        Ok(())
    }

    /// Makes sure every reply sent so far has left the process.
    pub(crate) async fn flush(&self) {
        if let Err(error) = self.nats.flush().await {
            tracing::warn!(%error, "flushing replies failed");
        }
    }

    /// Republishes from the table until the stream has every committed event; returns the
    /// position the stream now ends at.
    async fn recover(&self) -> Result<u64, WriterError> {
        let mut last_error = None;
        for attempt in 1..=RECOVERY_ATTEMPTS_MAX {
            tokio::time::sleep(Duration::from_millis(
                RECOVERY_BACKOFF_MS * u64::from(attempt),
            ))
            .await;
            match self.publisher.reconcile(&self.store).await {
                Ok(stream_last) => {
                    tracing::info!(stream_last, attempt, "stream recovered");
                    return Ok(stream_last);
                }
                Err(error @ WriterError::StreamAhead { .. }) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, attempt, "recovery failed");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or(WriterError::Publish("recovery failed".to_owned())))
    }

    async fn reply(&self, incoming: Incoming, message: &proto::CommandReply) {
        tracing::trace!(
            latency_us = incoming.received_at.elapsed().as_micros(),
            "answering command"
        );
        self.metrics.answered(message);
        reply(&self.nats, incoming.reply_to, incoming.encoding, message).await;
    }
}

/// The stream a command is for (a customer or an integration), and whether it is a new one
/// whose id the writer chose.
pub(crate) fn stream_id_of(command: &proto::Command) -> Result<(Uuid, bool), Rejection> {
    let metadata = command
        .metadata
        .as_ref()
        .ok_or(Rejection::MissingField { field: "metadata" })?;
    if metadata.customer_id.is_empty() {
        return match command.kind {
            Some(Kind::RegisterCustomer(_) | Kind::RegisterIntegration(_)) => {
                Ok((Uuid::now_v7(), true))
            }
            _ => Err(Rejection::MissingField {
                field: "metadata.customer_id",
            }),
        };
    }
    let customer_id = metadata
        .customer_id
        .parse()
        .map_err(|_| Rejection::InvalidField {
            field: "metadata.customer_id",
            reason: "not a UUID",
        })?;
    Ok((customer_id, false))
}

pub(crate) fn rejected(
    kind: RejectionKind,
    code: &str,
    message: impl Display,
) -> proto::CommandReply {
    proto::CommandReply {
        result: Some(proto::command_reply::Result::Rejected(proto::Rejected {
            kind: kind as i32,
            code: code.to_owned(),
            message: message.to_string(),
        })),
    }
}

fn domain_rejection(rejection: &Rejection) -> proto::CommandReply {
    let kind = match rejection {
        Rejection::VersionConflict { .. } => RejectionKind::Conflict,
        Rejection::CustomerNotRegistered | Rejection::IntegrationNotRegistered => {
            RejectionKind::NotFound
        }
        _ => RejectionKind::Invalid,
    };
    rejected(kind, rejection.rejection_code(), rejection)
}

fn store_rejection(rejection: &AppendRejection) -> proto::CommandReply {
    let (kind, code) = match rejection {
        AppendRejection::Conflict { .. } => (RejectionKind::Conflict, "conflict"),
        AppendRejection::UniqueKeyTaken { .. } => (RejectionKind::Invalid, "unique_key_taken"),
        AppendRejection::IdempotencyKeyReused { .. } => {
            (RejectionKind::Invalid, "idempotency_key_reused")
        }
        AppendRejection::Invalid { .. } => (RejectionKind::Invalid, "invalid_event"),
    };
    rejected(kind, code, rejection)
}

fn accepted(committed: &Committed) -> proto::CommandReply {
    proto::CommandReply {
        result: Some(proto::command_reply::Result::Accepted(proto::Accepted {
            customer_id: committed
                .events
                .first()
                .map(|event| event.stream_id.to_string())
                .unwrap_or_default(),
            events: committed
                .events
                .iter()
                .map(|recorded| proto::AcceptedEvent {
                    event_id: recorded.event.event_id.to_string(),
                    global_position: recorded.global_position,
                    stream_version: recorded.stream_version,
                    event_type: recorded.event.event_type.clone(),
                })
                .collect(),
            duplicate: committed.duplicate,
        })),
    }
}

/// The answer to a delivery that was not recorded: the rejection of `reply`.
pub(crate) fn delivery_rejected(reply: proto::CommandReply) -> proto::DeliveryReply {
    let rejected = match reply.result {
        Some(proto::command_reply::Result::Rejected(rejected)) => rejected,
        _ => proto::Rejected {
            kind: RejectionKind::Unspecified as i32,
            code: "internal".to_owned(),
            message: "the writer had no answer for this delivery".to_owned(),
        },
    };
    proto::DeliveryReply {
        result: Some(proto::delivery_reply::Result::Rejected(rejected)),
    }
}

/// The answer to a delivery planned as `plan`, once the batch is committed.
fn delivery_answer(
    plan: Plan,
    outcomes: &[Result<Committed, AppendRejection>],
) -> proto::DeliveryReply {
    match plan {
        Plan::Delivery(delivery) => delivery.reply(outcomes),
        Plan::DeliveryRefused(refusal) => delivery_rejected(refusal),
        _ => delivery_rejected(rejected(
            RejectionKind::Unspecified,
            "internal",
            "unplanned delivery",
        )),
    }
}

/// The answer to a page of which nothing was recorded: the rejection of `reply`.
pub(crate) fn page_rejected(reply: proto::CommandReply) -> proto::DeliveryPageReply {
    let rejected = match delivery_rejected(reply).result {
        Some(proto::delivery_reply::Result::Rejected(rejected)) => rejected,
        _ => proto::Rejected::default(),
    };
    proto::DeliveryPageReply {
        result: Some(proto::delivery_page_reply::Result::Rejected(rejected)),
    }
}

/// Sends `message` (protobuf) to a page's requester.
pub(crate) async fn reply_to_page(
    nats: &async_nats::Client,
    reply_to: Option<Subject>,
    message: &proto::DeliveryPageReply,
) {
    publish_reply(nats, reply_to, prost::Message::encode_to_vec(message)).await;
}

/// Sends `message` (protobuf) to a delivery's requester.
pub(crate) async fn reply_to_delivery(
    nats: &async_nats::Client,
    reply_to: Option<Subject>,
    message: &proto::DeliveryReply,
) {
    publish_reply(nats, reply_to, prost::Message::encode_to_vec(message)).await;
}

/// Publishes a protobuf answer to a delivery or a page.
async fn publish_reply(nats: &async_nats::Client, reply_to: Option<Subject>, body: Vec<u8>) {
    let Some(reply_to) = reply_to else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, Encoding::Protobuf.content_type());
    if let Err(error) = nats
        .publish_with_headers(reply_to, headers, bytes::Bytes::from(body))
        .await
    {
        tracing::warn!(%error, "sending a delivery's reply failed; its sender will retry");
    }
}

pub(crate) async fn reply(
    nats: &async_nats::Client,
    reply_to: Option<Subject>,
    encoding: Encoding,
    message: &proto::CommandReply,
) {
    let Some(reply_to) = reply_to else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, encoding.content_type());
    if let Err(error) = nats
        .publish_with_headers(reply_to, headers, encode_reply(encoding, message))
        .await
    {
        tracing::warn!(%error, "sending a reply failed; the caller will retry");
    }
}

/// The span a command is decided in, with its correlation id (docs/observability.md). At debug
/// level: the writer decides thousands of commands a second, and a disabled span costs
/// nothing, not even its fields.
fn command_span(command: &proto::Command) -> tracing::Span {
    let metadata = command.metadata.as_ref();
    tracing::debug_span!(
        "command",
        correlation_id = metadata.map(|metadata| metadata.correlation_id.as_str()),
        idempotency_key = metadata.map(|metadata| metadata.idempotency_key.as_str()),
    )
}
