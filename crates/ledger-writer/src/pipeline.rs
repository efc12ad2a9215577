//! Group commit: decide a batch of commands in arrival order, append them in one transaction,
//! publish the new events, then answer every command.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subject};
use ledger_bus::{CONTENT_TYPE_HEADER, Encoding, encode_reply};
use ledger_domain::proto::{self, RejectionKind, command::Kind};
use ledger_domain::{Customer, Rejection, decide, evolve};
use ledger_store::{AppendRejection, AppendRequest, Committed, ExpectedVersion, Store, Writer};
use prost::Message;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::publish::Publisher;
use crate::{WriterConfig, WriterError, append_request};

/// Recovery attempts after a failed publication before the writer gives up its leadership.
const RECOVERY_ATTEMPTS_MAX: u32 = 5;
/// Pause before recovery attempt n is n times this.
const RECOVERY_BACKOFF_MS: u64 = 200;

/// A decoded command waiting for its answer.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) command: proto::Command,
    pub(crate) reply_to: Subject,
    pub(crate) encoding: Encoding,
    pub(crate) received_at: Instant,
}

/// Waits for one command, then takes whatever else is already queued, up to `max`.
pub(crate) async fn next_batch(
    queued: &mut mpsc::Receiver<Incoming>,
    max: usize,
) -> Option<Vec<Incoming>> {
    let first = queued.recv().await?;
    let mut batch = vec![first];
    while batch.len() < max {
        match queued.try_recv() {
            Ok(incoming) => batch.push(incoming),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// What `decide` made of one command of the batch.
enum Plan {
    Rejected(Rejection),
    Append {
        stream_id: Uuid,
        request_index: usize,
    },
}

pub(crate) struct Pipeline {
    store: Store,
    writer: Writer,
    publisher: Publisher,
    nats: async_nats::Client,
    /// Customers' states as of the last commit. Only this writer appends while it holds the
    /// lock, so an entry is authoritative; a batch takes the states it needs out and puts back
    /// only those whose appends went as decided, and every request carries the version it was
    /// decided on.
    cache: moka::sync::Cache<Uuid, Customer>,
    group_commit: bool,
}

impl Pipeline {
    pub(crate) fn new(
        store: Store,
        writer: Writer,
        publisher: Publisher,
        nats: async_nats::Client,
        config: &WriterConfig,
    ) -> Pipeline {
        Pipeline {
            store,
            writer,
            publisher,
            nats,
            cache: moka::sync::Cache::new(config.cache_customers_max),
            group_commit: config.group_commit,
        }
    }

    pub(crate) async fn process(&mut self, batch: Vec<Incoming>) -> Result<(), WriterError> {
        if self.group_commit {
            self.process_group(batch).await
        } else {
            for incoming in batch {
                self.process_group(vec![incoming]).await?;
            }
            Ok(())
        }
    }

    /// Makes sure every reply sent so far has left the process.
    pub(crate) async fn flush(&self) {
        if let Err(error) = self.nats.flush().await {
            tracing::warn!(%error, "flushing replies failed");
        }
    }

    async fn process_group(&mut self, batch: Vec<Incoming>) -> Result<(), WriterError> {
        let started = Instant::now();
        let commands = batch.len();
        let mut working: HashMap<Uuid, Customer> = HashMap::new();
        let mut requests: Vec<AppendRequest> = Vec::new();
        let mut plans = Vec::with_capacity(batch.len());
        for incoming in &batch {
            plans.push(self.decide(incoming, &mut working, &mut requests).await?);
        }
        let decided = Instant::now();
        let outcomes = if requests.is_empty() {
            Vec::new()
        } else {
            match self.writer.append(requests).await {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    // The batch's states stay out of the cache: they are replayed next time.
                    if self.writer.is_closed() {
                        return Err(WriterError::LockLost);
                    }
                    tracing::error!(%error, commands = batch.len(), "append failed");
                    let reply = rejected(RejectionKind::Unavailable, "store_unavailable", &error);
                    for incoming in batch {
                        self.reply(incoming, &reply).await;
                    }
                    self.flush().await;
                    return Ok(());
                }
            }
        };
        self.update_cache(&plans, &outcomes, working);
        let appended_at = Instant::now();

        let appended: Vec<_> = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .filter(|committed| !committed.duplicate)
            .flat_map(|committed| committed.events.iter().cloned())
            .collect();
        if let Err(error) = self.publisher.publish(&appended).await {
            tracing::warn!(%error, "publication failed; recovering from the table");
            self.recover().await?;
        }
        let published = Instant::now();

        for (incoming, plan) in batch.into_iter().zip(plans) {
            let reply = match plan {
                Plan::Rejected(rejection) => {
                    let key = incoming
                        .command
                        .metadata
                        .as_ref()
                        .map(|metadata| metadata.idempotency_key.as_str())
                        .unwrap_or_default();
                    // A retry of a command already appended is answered with the original
                    // result, even though deciding it again against today's state fails.
                    match self.store.find_by_idempotency_key(key).await? {
                        Some(events) if !key.is_empty() => accepted(&Committed {
                            events,
                            duplicate: true,
                        }),
                        _ => domain_rejection(&rejection),
                    }
                }
                Plan::Append { request_index, .. } => match &outcomes[request_index] {
                    Ok(committed) => accepted(committed),
                    Err(rejection) => store_rejection(rejection),
                },
            };
            self.reply(incoming, &reply).await;
        }
        self.flush().await;
        tracing::debug!(
            commands,
            events = appended.len(),
            decide_us = (decided - started).as_micros(),
            append_us = (appended_at - decided).as_micros(),
            publish_us = (published - appended_at).as_micros(),
            reply_us = published.elapsed().as_micros(),
            "processed batch"
        );
        Ok(())
    }

    /// Decides one command against the batch's working state of its customer.
    async fn decide(
        &self,
        incoming: &Incoming,
        working: &mut HashMap<Uuid, Customer>,
        requests: &mut Vec<AppendRequest>,
    ) -> Result<Plan, WriterError> {
        let command = &incoming.command;
        let (stream_id, new_customer) = match stream_id_of(command) {
            Ok(stream) => stream,
            Err(rejection) => return Ok(Plan::Rejected(rejection)),
        };
        let state = match working.remove(&stream_id) {
            Some(state) => state,
            None if new_customer => Customer::default(),
            None => self.load(stream_id).await?,
        };
        let expected = ExpectedVersion::Exact(state.version);
        let decided = decide(&state, command).and_then(|events| {
            let request = append_request(stream_id, command, &state, events.clone(), expected)?;
            Ok((request, events))
        });
        match decided {
            Ok((request, events)) => {
                requests.push(request);
                working.insert(stream_id, events.iter().fold(state, evolve));
                Ok(Plan::Append {
                    stream_id,
                    request_index: requests.len() - 1,
                })
            }
            Err(rejection) => {
                working.insert(stream_id, state);
                Ok(Plan::Rejected(rejection))
            }
        }
    }

    /// A customer's state: taken out of the cache (moved, not cloned; the batch puts it back),
    /// or replayed from the store.
    async fn load(&self, stream_id: Uuid) -> Result<Customer, WriterError> {
        if let Some(state) = self.cache.remove(&stream_id) {
            return Ok(state);
        }
        let stored = self.store.read_stream(stream_id, 1).await?;
        let mut state = Customer::default();
        for recorded in &stored {
            let corrupt = |reason: String| WriterError::CorruptEvent {
                global_position: recorded.global_position,
                reason,
            };
            let event = proto::Event::decode(&recorded.event.payload[..])
                .map_err(|error| corrupt(error.to_string()))?
                .kind
                .ok_or_else(|| corrupt("the payload has no event".to_owned()))?;
            state = evolve(state, &event);
        }
        Ok(state)
    }

    /// Puts back the batch's states of customers whose every request was appended as decided;
    /// the others stay out, so that they are replayed from the store next time.
    fn update_cache(
        &self,
        plans: &[Plan],
        outcomes: &[Result<Committed, AppendRejection>],
        working: HashMap<Uuid, Customer>,
    ) {
        let mut as_decided: HashMap<Uuid, bool> = HashMap::new();
        for plan in plans {
            if let Plan::Append {
                stream_id,
                request_index,
            } = plan
            {
                let appended = matches!(&outcomes[*request_index], Ok(c) if !c.duplicate);
                *as_decided.entry(*stream_id).or_insert(true) &= appended;
            }
        }
        for (stream_id, state) in working {
            if as_decided.get(&stream_id).copied().unwrap_or(true) {
                self.cache.insert(stream_id, state);
            }
        }
    }

    /// Republishes from the table until the stream has every committed event.
    async fn recover(&self) -> Result<(), WriterError> {
        let mut last_error = None;
        for attempt in 1..=RECOVERY_ATTEMPTS_MAX {
            tokio::time::sleep(Duration::from_millis(
                RECOVERY_BACKOFF_MS * u64::from(attempt),
            ))
            .await;
            match self.publisher.reconcile(&self.store).await {
                Ok(republished) => {
                    tracing::info!(republished, attempt, "stream recovered");
                    return Ok(());
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
        reply(&self.nats, incoming.reply_to, incoming.encoding, message).await;
    }
}

/// The customer a command is for, and whether it is a new one whose id the writer chose.
fn stream_id_of(command: &proto::Command) -> Result<(Uuid, bool), Rejection> {
    let metadata = command
        .metadata
        .as_ref()
        .ok_or(Rejection::MissingField { field: "metadata" })?;
    if metadata.customer_id.is_empty() {
        return match command.kind {
            Some(Kind::RegisterCustomer(_)) => Ok((Uuid::now_v7(), true)),
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
        Rejection::CustomerNotRegistered => RejectionKind::NotFound,
        _ => RejectionKind::Invalid,
    };
    rejected(kind, rejection.rejection_code(), rejection)
}

fn store_rejection(rejection: &AppendRejection) -> proto::CommandReply {
    let (kind, code) = match rejection {
        AppendRejection::Conflict { .. } => (RejectionKind::Conflict, "conflict"),
        AppendRejection::UniqueKeyTaken { .. } => (RejectionKind::Invalid, "unique_key_taken"),
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

pub(crate) async fn reply(
    nats: &async_nats::Client,
    reply_to: Subject,
    encoding: Encoding,
    message: &proto::CommandReply,
) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, encoding.content_type());
    if let Err(error) = nats
        .publish_with_headers(reply_to, headers, encode_reply(encoding, message))
        .await
    {
        tracing::warn!(%error, "sending a reply failed; the caller will retry");
    }
}
