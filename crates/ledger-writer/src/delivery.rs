//! Provider deliveries in the decide stage: a verified webhook body from ingest is parsed,
//! resolved to a customer (provider account, else email: the unique keys, including those
//! claimed earlier in the batch), normalized against that customer's authoritative state
//! (`ledger_connectors::normalize`), and its commands are decided in order against the same
//! working state, all or nothing. The delivery is recorded in the inbox (`provider_inbox`)
//! with the batch, whatever became of it; its events carry the inbox row's id as their
//! causation id. A delivery waiting for an object is decided again by the batch that makes the
//! object known (the `waiting` module), as a re-run of its inbox row.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use ledger_connectors::{
    KnownCustomer, Normalized, ObjectKind, ProviderMessage, RelatedObject, View,
};
use ledger_domain::proto::{self, RejectionKind};
use ledger_domain::{Provider, Rejection, Stream, UniqueKey};
use ledger_store::{
    AppendRejection, AppendRequest, Committed, DeliveryLookups, ExpectedVersion, InboxOutcome,
    InboxSource, InboxWrite, NewInboxRow, RequestFingerprint,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pipeline::{
    BatchClaims, Decider, Incoming, Plan, Request, Uncommitted, objects_made_known, record_owners,
    rejected, replay, stream_id_of,
};
use crate::{WriterError, append_request, request_fingerprint};

/// The batch being planned, as a delivery sees and extends it.
pub(crate) struct Batch<'a> {
    pub(crate) working: &'a mut HashMap<Uuid, Stream>,
    pub(crate) requests: &'a mut Vec<AppendRequest>,
    pub(crate) inbox: &'a mut Vec<InboxWrite>,
    pub(crate) claims: &'a mut BatchClaims,
    pub(crate) prefetched: &'a Prefetched,
    /// The batch decided before this one and still being appended (empty when none is): what
    /// it decided counts as if both were one batch.
    pub(crate) earlier: &'a mut Uncommitted,
}

impl Batch<'_> {
    /// Takes the stream's state out of the batch's working states, else out of the earlier
    /// batch's.
    pub(crate) fn take_working(&mut self, stream_id: Uuid) -> Option<Stream> {
        self.working
            .remove(&stream_id)
            .or_else(|| self.earlier.states.remove(&stream_id))
    }

    /// Whether the batch or the earlier one recorded the provider event.
    fn event_recorded(&self, event: &(Provider, String)) -> bool {
        self.claims.provider_events.contains(event)
            || self.earlier.claims.provider_events.contains(event)
    }

    /// The key's owner as the batch, else the earlier one, left it (`Some(None)`: released);
    /// `None` when neither changed it.
    fn owner_claimed(&self, storage_key: &str) -> Option<Option<Uuid>> {
        self.claims
            .owners
            .get(storage_key)
            .or_else(|| self.earlier.claims.owners.get(storage_key))
            .copied()
    }

    /// The latest snapshot of the object the batch or the earlier one saw.
    fn snapshot_seen(&self, object: &(Provider, String)) -> Option<i64> {
        let seen = |claims: &BatchClaims| claims.snapshots_seen.get(object).copied();
        seen(self.claims).max(seen(&self.earlier.claims))
    }

    /// The first customer of an object (by its key) that the earlier batch, else this one, made
    /// known or whose snapshot of it (a subscription) they saw.
    fn object_customer(&self, key: &str, snapshot: Option<&(Provider, String)>) -> Option<Uuid> {
        let known = |claims: &BatchClaims| {
            claims.objects.get(key).copied().or_else(|| {
                snapshot.and_then(|object| claims.snapshot_customers.get(object).copied())
            })
        };
        known(&self.earlier.claims).or_else(|| known(self.claims))
    }

    /// What is known, without asking the store now, of the idempotency key: used by an
    /// earlier request of the batch or of the earlier batch, else as looked up before the batch
    /// (`Some(None)`: unused; `Some(Some(true))`: used with `fingerprint`); `None` when it was
    /// not looked up.
    fn key_known(&self, key: &str, fingerprint: &RequestFingerprint) -> Option<Option<bool>> {
        self.claims
            .keys
            .get(key)
            .or_else(|| self.earlier.claims.keys.get(key))
            .map(|used| Some(used == fingerprint))
            .or_else(|| self.prefetched.stored(key, fingerprint))
    }

    /// The provider, body and source of an inbox row the batch or the earlier one recorded.
    fn row(&self, id: Uuid) -> Option<(Provider, Bytes, InboxSource)> {
        self.inbox
            .iter()
            .find(|write| write.row.id == id)
            .map(|write| (write.row.provider, write.row.body.clone(), write.row.source))
            .or_else(|| self.earlier.rows.get(&id).cloned())
    }
}

/// A delivery as the intake admitted it, its body parsed there: on the intake's task, off the
/// decider's serial path (`ledger bench sync`). `None` for a re-normalization, whose body the
/// decider reads from the inbox, and for a delivery that names no provider, which it refuses.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) delivery: proto::ProviderDelivery,
    pub(crate) parsed: Option<Result<ProviderMessage, String>>,
}

impl Admitted {
    pub(crate) fn new(delivery: proto::ProviderDelivery) -> Admitted {
        let parsed = Provider::try_from(delivery.provider())
            .ok()
            .filter(|_| delivery.renormalizes_inbox_id.is_empty())
            .map(|provider| {
                ledger_connectors::parse(provider, &delivery.body)
                    .map_err(|error| error.to_string())
            });
        Admitted { delivery, parsed }
    }
}

/// How a mapping's `Ignored` reason starts when the snapshot matches what the ledger holds
/// (PayPal's and Xendit's mappings): the snapshot counts as seen for `normalize_after`.
const SNAPSHOT_ALREADY_APPLIED: &str = "already applied";

/// Commands per message whose idempotency keys are looked up before the batch is decided;
/// a message yielding more (a Stripe subscription snapshot with several changes) has the rest
/// looked up one by one. Each key prefetched is an index probe of the event table per
/// delivery, so the bound stays at what most messages yield (`ledger bench sync`: 8 keys a
/// message cost about a tenth of the import rate).
const PREFETCHED_COMMANDS: usize = 2;

/// What the store said, before the batch, about its deliveries: looked up together rather than
/// one delivery at a time. Only this writer appends, so it stays true but for the changes of
/// the batch and of the batch being appended, which their [`BatchClaims`] hold and which take
/// precedence.
#[derive(Default)]
pub(crate) struct Prefetched {
    /// The batch holds deliveries (alone or in pages).
    with_deliveries: bool,
    events: HashSet<(Provider, String)>,
    unique_keys: HashSet<String>,
    idempotency_keys: HashSet<String>,
    snapshot_objects: HashSet<(Provider, String)>,
    provider_objects: HashSet<String>,
    lookups: DeliveryLookups,
}

impl Prefetched {
    /// Whether the batch holds deliveries, which resolve customers by their unique keys.
    pub(crate) fn with_deliveries(&self) -> bool {
        self.with_deliveries
    }

    /// Whether the event has a non-duplicate inbox row; `None` when it was not looked up.
    fn recorded(&self, event: &(Provider, String)) -> Option<bool> {
        self.events
            .contains(event)
            .then(|| self.lookups.recorded_events.contains(event))
    }

    /// The key's owner; `None` when it was not looked up.
    fn owner(&self, storage_key: &str) -> Option<Option<Uuid>> {
        self.unique_keys
            .contains(storage_key)
            .then(|| self.lookups.owners.get(storage_key).copied())
    }

    /// Who holds the provider object (`Some(None)`: no one); `None` when it was not looked up.
    fn holder(&self, object_key: &str) -> Option<Option<Uuid>> {
        self.provider_objects
            .contains(object_key)
            .then(|| self.lookups.holders.get(object_key).copied())
    }

    /// When a snapshot of the object was last seen in the store (`Some(None)`: never);
    /// `None` when it was not looked up.
    fn snapshot_seen(&self, object: &(Provider, String)) -> Option<Option<i64>> {
        self.snapshot_objects
            .contains(object)
            .then(|| self.lookups.snapshots_seen.get(object).copied())
    }

    /// Whether the key was used (`Some(true)`: by the request with `fingerprint`); `None`
    /// when it was not looked up.
    fn stored(&self, key: &str, fingerprint: &RequestFingerprint) -> Option<Option<bool>> {
        self.idempotency_keys.contains(key).then(|| {
            self.lookups
                .stored_keys
                .get(key)
                .map(|stored| stored.is_none_or(|stored| stored == *fingerprint))
        })
    }
}

/// A delivery recorded with the batch, waiting for its answer.
pub(crate) struct DeliveryPlan {
    inbox_id: Uuid,
    outcome: InboxOutcome,
    reason: String,
    pub(crate) customer_id: Option<Uuid>,
    /// Indexes of its append requests in the batch.
    pub(crate) requests: Vec<usize>,
    changed_keys: Vec<String>,
}

impl DeliveryPlan {
    /// The answer once the batch is committed: the outcome and the positions appended.
    pub(crate) fn reply(
        &self,
        outcomes: &[Result<Committed, AppendRejection>],
    ) -> proto::DeliveryReply {
        let mut global_positions = Vec::new();
        let mut refused = None;
        for index in &self.requests {
            match outcomes.get(*index) {
                Some(Ok(committed)) if !committed.duplicate => global_positions
                    .extend(committed.events.iter().map(|event| event.global_position)),
                Some(Ok(_)) => {}
                other => {
                    tracing::error!(
                        inbox_id = %self.inbox_id,
                        outcome = ?other,
                        "the store refused a request of a delivery the writer had checked; \
                         its inbox row is recorded failed"
                    );
                    if let (None, Some(Err(rejection))) = (&refused, other) {
                        refused = Some(ledger_store::refused_delivery_reason(rejection));
                    }
                }
            }
        }
        // As the store recorded the row (`ledger_store::refused_delivery_reason`).
        let (outcome, reason) = match refused {
            Some(reason) => (InboxOutcome::Failed, reason),
            None => (self.outcome, self.reason.clone()),
        };
        let outcome = match outcome {
            InboxOutcome::Appended => proto::DeliveryOutcome::Appended,
            InboxOutcome::Duplicate => proto::DeliveryOutcome::Duplicate,
            InboxOutcome::Ignored => proto::DeliveryOutcome::Ignored,
            InboxOutcome::Stale => proto::DeliveryOutcome::Stale,
            InboxOutcome::Failed => proto::DeliveryOutcome::Failed,
            InboxOutcome::Waiting => proto::DeliveryOutcome::Waiting,
        };
        proto::DeliveryReply {
            result: Some(proto::delivery_reply::Result::Recorded(
                proto::DeliveryRecorded {
                    outcome: outcome as i32,
                    inbox_id: self.inbox_id.to_string(),
                    global_positions,
                    reason,
                    customer_id: self
                        .customer_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    changed_idempotency_keys: self.changed_keys.clone(),
                },
            )),
        }
    }
}

/// What normalizing and deciding a message came to, before it is recorded.
struct Decision {
    outcome: InboxOutcome,
    reason: String,
    customer_id: Option<Uuid>,
    /// The append requests of its commands, in order (empty unless appended).
    requests: Vec<AppendRequest>,
    changed_keys: Vec<String>,
    /// The key of the object it waits for (outcome `waiting`).
    awaited_object: Option<String>,
    /// The payment its events recorded as succeeded.
    payment_id: Option<String>,
}

impl Decision {
    fn nothing(outcome: InboxOutcome, reason: String, customer_id: Option<Uuid>) -> Decision {
        Decision {
            outcome,
            reason,
            customer_id,
            requests: Vec::new(),
            changed_keys: Vec::new(),
            awaited_object: None,
            payment_id: None,
        }
    }
}

fn refused(kind: RejectionKind, code: &str, message: impl std::fmt::Display) -> Plan {
    Plan::DeliveryRefused(rejected(kind, code, message))
}

/// The inbox's `source` of a delivery's `source` field (unspecified: a webhook, what every
/// sender before the field meant).
fn inbox_source(source: proto::DeliverySource) -> InboxSource {
    match source {
        proto::DeliverySource::Unspecified | proto::DeliverySource::Webhook => InboxSource::Webhook,
        proto::DeliverySource::Backfill => InboxSource::Backfill,
        proto::DeliverySource::Repair => InboxSource::Repair,
        proto::DeliverySource::Sync => InboxSource::Sync,
    }
}

/// `text` as an optional UUID (empty: none).
fn optional_uuid(field: &str, text: &str) -> Result<Option<Uuid>, Plan> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        refused(
            RejectionKind::Malformed,
            "malformed",
            format!("{field} {text:?} is not a UUID"),
        )
    })
}

/// Whether a provider's text fits the inbox (1 to 255 bytes, or empty where allowed; no NUL).
fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<(), Plan> {
    match ledger_store::text_problem(value, may_be_empty) {
        None => Ok(()),
        Some(reason) => Err(refused(
            RejectionKind::Malformed,
            "malformed",
            format!("the message's {field} {reason}"),
        )),
    }
}

impl Decider {
    /// Looks up, for every delivery of `batch` (alone or in a page, but re-normalizations), whether
    /// its event is in the inbox, who owns its account and email, whether its commands' idempotency
    /// keys were used, when its object's snapshot was last seen, and loads into `working` the
    /// states of the customers it may be about that are not cached: a few queries for the whole
    /// batch instead of several per delivery.
    pub(crate) async fn prefetch(
        &self,
        batch: &[Incoming],
        working: &mut HashMap<Uuid, Stream>,
        earlier: &Uncommitted,
    ) -> Result<Prefetched, WriterError> {
        let mut prefetched = Prefetched::default();
        let mut streams = Vec::new();
        // The accounts' keys, with the stream of a customer first seen through each.
        let mut accounts = Vec::new();
        let mut command_keys = Vec::new();
        // Commands' keys are looked up in a batch holding deliveries (`Decider::key_used`).
        let with_deliveries = batch
            .iter()
            .any(|incoming| !matches!(incoming.request, Request::Command(_)));
        prefetched.with_deliveries = with_deliveries;
        let messages: Vec<&ProviderMessage> = batch
            .iter()
            .flat_map(|incoming| match &incoming.request {
                Request::Command(command) => {
                    // Whether its key was used (`Decider::key_used`), in the same query.
                    // (A key the store cannot hold is refused before it is looked up.)
                    if let Some(metadata) = &command.metadata
                        && with_deliveries
                        && ledger_store::text_problem(&metadata.idempotency_key, false).is_none()
                    {
                        command_keys.push(metadata.idempotency_key.clone());
                    }
                    Vec::new()
                }
                Request::Delivery(admitted) => vec![admitted],
                Request::DeliveryPage(parts) => {
                    parts.iter().filter_map(|part| part.as_ref().ok()).collect()
                }
            })
            .filter_map(|admitted| admitted.parsed.as_ref()?.as_ref().ok())
            .collect();
        prefetched.idempotency_keys.extend(command_keys);
        for message in messages {
            let provider = message.provider;
            if let Some(account_id) = &message.account_id {
                let key = UniqueKey::ProviderAccount(provider, account_id.clone()).storage_key();
                prefetched.unique_keys.insert(key.clone());
                accounts.push((
                    key,
                    ledger_connectors::customer_id_for_account(provider, account_id),
                ));
            }
            if let Some(email) = message
                .email
                .as_deref()
                .filter(|email| !email.trim().is_empty())
            {
                prefetched
                    .unique_keys
                    .insert(UniqueKey::email(email).storage_key());
            }
            prefetched
                .idempotency_keys
                .insert(ledger_connectors::idempotency_key(message, 0, 1));
            for index in 0..PREFETCHED_COMMANDS {
                prefetched
                    .idempotency_keys
                    .insert(ledger_connectors::idempotency_key(
                        message,
                        index,
                        PREFETCHED_COMMANDS,
                    ));
            }
            if let Some(object) = ledger_connectors::snapshot_object(message) {
                prefetched
                    .snapshot_objects
                    .insert((provider, object.to_owned()));
            }
            prefetched.provider_objects.extend(
                ledger_connectors::related_objects(message)
                    .into_iter()
                    .map(|related| related.key(provider)),
            );
            prefetched
                .events
                .insert((provider, message.event_id.clone()));
        }
        if prefetched.events.is_empty() && prefetched.idempotency_keys.is_empty() {
            return Ok(prefetched);
        }
        let events: Vec<(Provider, String)> = prefetched.events.iter().cloned().collect();
        let unique_keys: Vec<String> = prefetched.unique_keys.iter().cloned().collect();
        let idempotency_keys: Vec<String> = prefetched.idempotency_keys.iter().cloned().collect();
        let snapshot_objects: Vec<(Provider, String)> =
            prefetched.snapshot_objects.iter().cloned().collect();
        let provider_objects: Vec<String> = prefetched.provider_objects.iter().cloned().collect();
        prefetched.lookups = self
            .store
            .delivery_lookups(
                &events,
                &unique_keys,
                &idempotency_keys,
                &snapshot_objects,
                &provider_objects,
            )
            .await?;
        streams.extend(prefetched.lookups.owners.values().copied());
        streams.extend(prefetched.lookups.holders.values().copied());
        streams.sort_unstable();
        streams.dedup();
        let unknown = |stream_id: &Uuid| {
            !working.contains_key(stream_id)
                && !earlier.states.contains_key(stream_id)
                && !self.cache.contains_key(stream_id)
        };
        streams.retain(unknown);
        // A customer first seen through an account is registered with it and holds its key
        // from its first event on: the stream of an account no one owns is empty, not read (a
        // look-up per new customer of a backfill). Were it not, the store would refuse the
        // registration (expected version 0) and the delivery would be recorded failed.
        let new_streams: Vec<Uuid> = accounts
            .into_iter()
            .filter(|(key, stream_id)| {
                !prefetched.lookups.owners.contains_key(key) && unknown(stream_id)
            })
            .map(|(_, stream_id)| stream_id)
            .collect();
        for stream_id in new_streams {
            working.insert(stream_id, Stream::Empty);
        }
        if streams.is_empty() {
            return Ok(prefetched);
        }
        let stored = self
            .store
            .read_streams_before(&streams, i64::MAX.unsigned_abs())
            .await?;
        for stream_id in streams {
            working.insert(stream_id, Stream::Empty);
        }
        for events in stored.chunk_by(|a, b| a.stream_id == b.stream_id) {
            working.insert(events[0].stream_id, replay(events)?);
        }
        Ok(prefetched)
    }

    /// Plans one delivery: refused (nothing recorded) when its body is not a message of its
    /// provider; otherwise recorded in the inbox with the batch, with the outcome and the
    /// append requests of its commands.
    pub(crate) async fn decide_delivery(
        &self,
        delivery: &proto::ProviderDelivery,
        parsed: Option<Result<ProviderMessage, String>>,
        batch: &mut Batch<'_>,
    ) -> Result<Plan, WriterError> {
        let Ok(provider) = Provider::try_from(delivery.provider()) else {
            return Ok(refused(
                RejectionKind::Malformed,
                "malformed",
                "the delivery names no payment provider",
            ));
        };
        let ids = optional_uuid("renormalizes_inbox_id", &delivery.renormalizes_inbox_id).and_then(
            |renormalizes| {
                Ok((
                    renormalizes,
                    optional_uuid("correlation_id", &delivery.correlation_id)?,
                ))
            },
        );
        let (renormalizes, correlation_id) = match ids {
            Ok(ids) => ids,
            Err(plan) => return Ok(plan),
        };
        // A re-run's body: from a row recorded earlier in this batch or the earlier one (a
        // delivery released by the batch that recorded it waiting), else from the inbox.
        let in_batch = renormalizes.and_then(|id| batch.row(id));
        let (body, source) = match renormalizes {
            None => (delivery.body.clone(), inbox_source(delivery.source())),
            Some(_)
                if in_batch
                    .as_ref()
                    .is_some_and(|(stored, _, _)| *stored == provider) =>
            {
                in_batch
                    .map(|(_, body, source)| (body, source))
                    .unwrap_or_default()
            }
            Some(id) => match self.store.inbox_row(id).await? {
                Some(stored) if stored.row.provider == provider => {
                    (stored.row.body, stored.row.source)
                }
                _ => {
                    return Ok(refused(
                        RejectionKind::NotFound,
                        "inbox_row_not_found",
                        format!("there is no {provider} inbox row {id} to re-normalize"),
                    ));
                }
            },
        };
        let parsed = match parsed {
            Some(parsed) if renormalizes.is_none() => parsed,
            _ => ledger_connectors::parse(provider, &body).map_err(|error| error.to_string()),
        };
        let message = match parsed {
            Ok(message) => message,
            Err(error) => return Ok(refused(RejectionKind::Malformed, "malformed", error)),
        };
        let checked = check_text("event id", &message.event_id, false)
            .and_then(|()| check_text("event type", &message.event_type, true));
        if let Err(plan) = checked {
            return Ok(plan);
        }
        let Ok(received_at) = OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(delivery.received_at_unix_micros) * 1_000,
        ) else {
            return Ok(refused(
                RejectionKind::Malformed,
                "malformed",
                "received_at_unix_micros is out of range",
            ));
        };

        let inbox_id = Uuid::now_v7();
        let event_key = (provider, message.event_id.clone());
        let redelivered = renormalizes.is_none()
            && (batch.event_recorded(&event_key)
                || match batch.prefetched.recorded(&event_key) {
                    Some(recorded) => recorded,
                    None => {
                        self.store
                            .inbox_has_event(provider, &message.event_id)
                            .await?
                    }
                });
        let decision = if redelivered {
            Decision::nothing(
                InboxOutcome::Duplicate,
                format!("{provider} event {} was recorded before", message.event_id),
                None,
            )
        } else {
            self.normalize_and_decide(&message, inbox_id, correlation_id, batch)
                .await?
        };
        if decision.outcome != InboxOutcome::Duplicate {
            batch.claims.provider_events.insert(event_key);
        }
        let snapshot_object = ledger_connectors::snapshot_object(&message).map(str::to_owned);
        let snapshot_seen = matches!(
            decision.outcome,
            InboxOutcome::Appended | InboxOutcome::Stale
        ) || (decision.outcome == InboxOutcome::Ignored
            && decision.reason.starts_with(SNAPSHOT_ALREADY_APPLIED));
        let mut provider_objects = Vec::new();
        let snapshot_seen_at = match &snapshot_object {
            Some(object) if snapshot_seen => {
                if let Some(customer_id) = decision.customer_id {
                    batch
                        .claims
                        .snapshot_customers
                        .entry((provider, object.clone()))
                        .or_insert(customer_id);
                    // Held even when the snapshot appended nothing (already applied).
                    if ledger_connectors::found_through(provider, ObjectKind::Subscription)
                        && ledger_store::text_problem(object, false).is_none()
                    {
                        provider_objects.push(RelatedObject::Subscription(object).key(provider));
                    }
                }
                let seen = batch
                    .claims
                    .snapshots_seen
                    .entry((provider, object.clone()))
                    .or_insert(message.created_at_unix_micros);
                *seen = (*seen).max(message.created_at_unix_micros);
                OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(message.created_at_unix_micros) * 1_000,
                )
                .ok()
            }
            _ => None,
        };
        let snapshot_object =
            snapshot_object.filter(|object| ledger_store::text_problem(object, false).is_none());
        let first = batch.requests.len();
        let requests: Vec<usize> = (first..first + decision.requests.len()).collect();
        for request in &decision.requests {
            batch.claims.use_key(request);
        }
        batch.requests.extend(decision.requests);
        // A line per webhook; a backfill's objects (a million for a large account, each in the
        // inbox and counted in the run's report) at debug: formatting and writing their lines
        // was a tenth of the process's CPU in `ledger bench sync`.
        macro_rules! delivery_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    %inbox_id,
                    %provider,
                    event_id = message.event_id,
                    event_type = message.event_type,
                    outcome = %decision.outcome,
                    reason = decision.reason,
                    %source,
                    "provider delivery"
                )
            };
        }
        if source == InboxSource::Backfill {
            delivery_line!(tracing::Level::DEBUG);
        } else {
            delivery_line!(tracing::Level::INFO);
        }
        batch.inbox.push(InboxWrite {
            row: NewInboxRow {
                id: inbox_id,
                provider,
                provider_event_id: message.event_id,
                event_type: message.event_type,
                received_at,
                body,
                outcome: decision.outcome,
                reason: decision.reason.clone(),
                customer_id: decision.customer_id,
                correlation_id,
                renormalizes_inbox_id: renormalizes,
                snapshot_object,
                snapshot_seen_at,
                awaited_object: decision.awaited_object,
                payment_id: decision
                    .payment_id
                    .filter(|payment_id| ledger_store::text_problem(payment_id, false).is_none()),
                source,
            },
            requests: requests.clone(),
            provider_objects,
        });
        Ok(Plan::Delivery(DeliveryPlan {
            inbox_id,
            outcome: decision.outcome,
            reason: decision.reason,
            customer_id: decision.customer_id,
            requests,
            changed_keys: decision.changed_keys,
        }))
    }

    /// Resolves the customer, normalizes against its state and decides the commands, all or
    /// nothing: on any rejection the working state of the customer is left as it was.
    async fn normalize_and_decide(
        &self,
        message: &ProviderMessage,
        inbox_id: Uuid,
        correlation_id: Option<Uuid>,
        batch: &mut Batch<'_>,
    ) -> Result<Decision, WriterError> {
        let resolved = self.resolve(message, batch).await?;
        let mut state = match resolved {
            Some((customer_id, _)) => self.take_state(customer_id, batch).await?,
            None => Stream::Empty,
        };
        let view = View {
            customer: match (&resolved, &state) {
                (Some((customer_id, account_linked)), Stream::Customer(customer)) => {
                    Some(KnownCustomer {
                        customer_id: *customer_id,
                        state: customer,
                        account_linked: *account_linked,
                    })
                }
                _ => None,
            },
        };
        let seen = match ledger_connectors::snapshot_object(message) {
            None => None,
            Some(object) => {
                let key = (message.provider, object.to_owned());
                let stored = match batch.prefetched.snapshot_seen(&key) {
                    Some(seen) => seen,
                    None => self.store.snapshot_seen(message.provider, object).await?,
                };
                stored.max(batch.snapshot_seen(&key))
            }
        };
        let normalized = ledger_connectors::normalize_after(message, &view, seen);
        let resolved_id = resolved.map(|(customer_id, _)| customer_id);
        let give_back = |working: &mut HashMap<Uuid, Stream>, state: Stream| {
            if let Some(customer_id) = resolved_id {
                working.insert(customer_id, state);
            }
        };
        let commands = match normalized {
            Normalized::Commands(commands) if !commands.is_empty() => commands,
            Normalized::Commands(_) => {
                give_back(batch.working, state);
                return Ok(Decision::nothing(
                    InboxOutcome::Ignored,
                    "the message yields no command".to_owned(),
                    resolved_id,
                ));
            }
            Normalized::Ignored { reason } => {
                give_back(batch.working, state);
                return Ok(Decision::nothing(
                    InboxOutcome::Ignored,
                    reason,
                    resolved_id,
                ));
            }
            Normalized::Stale { reason } => {
                give_back(batch.working, state);
                return Ok(Decision::nothing(InboxOutcome::Stale, reason, resolved_id));
            }
            Normalized::Waiting { object, reason } => {
                give_back(batch.working, state);
                let key = object.key();
                // An id too long for the inbox cannot be waited for: recorded as ignored.
                if let Some(problem) = ledger_store::text_problem(&key, false) {
                    return Ok(Decision::nothing(
                        InboxOutcome::Ignored,
                        format!("{reason} (the object {problem}, so it cannot be waited for)"),
                        resolved_id,
                    ));
                }
                return Ok(Decision {
                    awaited_object: Some(key),
                    ..Decision::nothing(InboxOutcome::Waiting, reason, resolved_id)
                });
            }
        };
        let stream_id = match stream_id_of(&commands[0]) {
            Ok((stream_id, false)) => stream_id,
            _ => {
                give_back(batch.working, state);
                return Ok(Decision::nothing(
                    InboxOutcome::Failed,
                    "the mapping named no customer id".to_owned(),
                    resolved_id,
                ));
            }
        };
        if resolved_id != Some(stream_id) {
            give_back(batch.working, state);
            state = self.take_state(stream_id, batch).await?;
        }
        let original = state.clone();
        let mut decided = Decided::default();
        let causes = Causes {
            stream_id,
            inbox_id,
            correlation_id,
        };
        let failure = self
            .decide_all(commands, &causes, &mut state, &mut decided, batch)
            .await?;
        let customer_id = Some(stream_id);
        if let Some((outcome, reason)) = failure {
            batch.working.insert(stream_id, original);
            return Ok(Decision {
                changed_keys: decided.changed_keys,
                ..Decision::nothing(outcome, reason, customer_id)
            });
        }
        if !decided.changed_keys.is_empty() {
            batch.working.insert(stream_id, original);
            return Ok(Decision {
                reason: format!(
                    "idempotency keys {} were used for different commands (the mapping changed): \
                     nothing of the message was appended",
                    decided.changed_keys.join(", ")
                ),
                changed_keys: decided.changed_keys,
                ..Decision::nothing(InboxOutcome::Failed, String::new(), customer_id)
            });
        }
        batch.working.insert(stream_id, state);
        if decided.requests.is_empty() {
            return Ok(Decision::nothing(
                InboxOutcome::Duplicate,
                "every command of the message was appended before".to_owned(),
                customer_id,
            ));
        }
        for request in &decided.requests {
            batch.claims.record(stream_id, &request.unique_keys);
        }
        batch.claims.know(stream_id, decided.known);
        Ok(Decision {
            requests: decided.requests,
            payment_id: decided.payment_id,
            ..Decision::nothing(InboxOutcome::Appended, String::new(), customer_id)
        })
    }

    /// Decides `commands` in order against `state`, evolving it; returns the outcome and
    /// reason of the first rejection, if any.
    async fn decide_all(
        &self,
        commands: Vec<proto::Command>,
        causes: &Causes,
        state: &mut Stream,
        decided: &mut Decided,
        batch: &Batch<'_>,
    ) -> Result<Option<(InboxOutcome, String)>, WriterError> {
        let failed = |reason: String| Ok(Some((InboxOutcome::Failed, reason)));
        let Causes {
            stream_id,
            inbox_id,
            correlation_id,
        } = *causes;
        for mut command in commands {
            let Some(metadata) = command.metadata.as_mut() else {
                return failed("the mapping gave a command without metadata".to_owned());
            };
            metadata.causation_id = inbox_id.to_string();
            metadata.correlation_id = correlation_id.map(|id| id.to_string()).unwrap_or_default();
            if !matches!(stream_id_of(&command), Ok((id, false)) if id == stream_id) {
                return failed("the mapping gave commands for more than one customer".to_owned());
            }
            let key = command
                .metadata
                .as_ref()
                .map(|metadata| metadata.idempotency_key.clone())
                .unwrap_or_default();
            let fingerprint = request_fingerprint(&command);
            let known = decided
                .requests
                .iter()
                .find(|request| request.idempotency_key == key)
                .map(|request| Some(request.request_fingerprint == fingerprint))
                .or_else(|| batch.key_known(&key, &fingerprint));
            let same = match known {
                Some(same) => same,
                None => self
                    .store
                    .find_by_idempotency_key(&key)
                    .await?
                    .map(|stored| stored.is_same_request(&fingerprint)),
            };
            match same {
                Some(true) => continue,
                Some(false) => {
                    decided.changed_keys.push(key);
                    continue;
                }
                None => {}
            }
            let events = match state
                .decide(&command)
                .and_then(|events| self.seal(stream_id, events))
            {
                Ok(events) => events,
                Err(rejection @ Rejection::Stale { .. }) => {
                    return Ok(Some((InboxOutcome::Stale, rejection.to_string())));
                }
                Err(rejection) => return failed(rejection.to_string()),
            };
            let unique_keys = state.unique_key_changes(&events);
            for key in &unique_keys.claims {
                if let Some(owner) = self.owner(key, batch, &decided.owners).await?
                    && owner != stream_id
                {
                    return failed(format!(
                        "{} already belongs to customer {owner}",
                        key.storage_key()
                    ));
                }
            }
            record_owners(&mut decided.owners, stream_id, &unique_keys);
            let expected = ExpectedVersion::Exact(state.version());
            let request =
                match append_request(stream_id, &command, unique_keys, events.clone(), expected) {
                    Ok(request) => request,
                    Err(rejection) => return failed(rejection.to_string()),
                };
            let occurred_at = ledger_domain::occurred_at_unix_micros(&command);
            decided.known.extend(objects_made_known(&command, &events));
            if decided.payment_id.is_none() {
                decided.payment_id = events.iter().find_map(|event| match event {
                    ledger_domain::Event::PaymentSucceeded(succeeded) => {
                        Some(succeeded.payment_id.clone())
                    }
                    _ => None,
                });
            }
            let before = std::mem::take(state);
            *state = events
                .iter()
                .fold(before, |state, event| state.evolve(event, occurred_at));
            decided.requests.push(request);
        }
        Ok(None)
    }

    /// The customer a message is about: the holder of an object it names
    /// (`ledger_connectors::related_objects`), else the owner of its provider account, else
    /// of its email (`true`: the message's account, if it names one, is not to be linked: it
    /// is that customer's already, or another's).
    async fn resolve(
        &self,
        message: &ProviderMessage,
        batch: &Batch<'_>,
    ) -> Result<Option<(Uuid, bool)>, WriterError> {
        let none = HashMap::new();
        let account_owner = match &message.account_id {
            Some(account_id) => {
                let key = UniqueKey::ProviderAccount(message.provider, account_id.clone());
                self.owner(&key, batch, &none).await?
            }
            None => None,
        };
        // Whoever first held the subscription or payment the message names: an object never
        // moves to another customer, whatever the message's payer says (a PayPal payer's
        // account may belong to another customer, or to no one yet: then it is linked).
        let provider = message.provider;
        for related in ledger_connectors::related_objects(message) {
            if let Some(customer_id) = self.holder(provider, related, batch).await? {
                let link = message.account_id.is_some() && account_owner.is_none();
                return Ok(Some((customer_id, !link)));
            }
        }
        if let Some(owner) = account_owner {
            return Ok(Some((owner, true)));
        }
        if let Some(email) = message
            .email
            .as_deref()
            .filter(|email| !email.trim().is_empty())
            && let Some(owner) = self.owner(&UniqueKey::email(email), batch, &none).await?
        {
            return Ok(Some((owner, false)));
        }
        Ok(None)
    }

    /// The first holder of a provider object: as the store records it (looked up before the
    /// batch, or now), else as the batch being appended, else this one, made it known.
    async fn holder(
        &self,
        provider: Provider,
        related: RelatedObject<'_>,
        batch: &Batch<'_>,
    ) -> Result<Option<Uuid>, WriterError> {
        let key = related.key(provider);
        let stored = match batch.prefetched.holder(&key) {
            Some(holder) => holder,
            None => self.store.object_holder(&key).await?,
        };
        let snapshot = match related {
            RelatedObject::Subscription(id) => Some((provider, id.to_owned())),
            RelatedObject::Payment(_) => None,
        };
        Ok(stored.or_else(|| batch.object_customer(&key, snapshot.as_ref())))
    }

    /// Who holds `key`: as changed by this delivery (`own`), by the batch or the earlier one,
    /// else in the store (as looked up before the batch, or now).
    async fn owner(
        &self,
        key: &UniqueKey,
        batch: &Batch<'_>,
        own: &HashMap<String, Option<Uuid>>,
    ) -> Result<Option<Uuid>, WriterError> {
        let storage_key = key.storage_key();
        if let Some(owner) = own
            .get(&storage_key)
            .copied()
            .or_else(|| batch.owner_claimed(&storage_key))
        {
            return Ok(owner);
        }
        if let Some(owner) = batch.prefetched.owner(&storage_key) {
            return Ok(owner);
        }
        Ok(self.store.find_stream_by_unique_key(key).await?)
    }

    /// The refusal the store would give `request` for a unique key it claims that another
    /// stream holds, as the batch and the earlier one left the key, else the store.
    pub(crate) async fn unique_key_taken(
        &self,
        request: &AppendRequest,
        batch: &Batch<'_>,
    ) -> Result<Option<AppendRejection>, WriterError> {
        let none = HashMap::new();
        for key in &request.unique_keys.claims {
            if let Some(owner) = self.owner(key, batch, &none).await?
                && owner != request.stream_id
            {
                return Ok(Some(AppendRejection::UniqueKeyTaken {
                    unique_key: key.storage_key(),
                    owner,
                }));
            }
        }
        Ok(None)
    }

    /// Whether a command's idempotency key was used: by an earlier request of the batch or of
    /// the batch being appended, else in the store, as looked up with the batch's other
    /// look-ups when the batch holds deliveries. In a batch of commands only, a retried command
    /// is decided as new: a later command of the batch decided on what it did is refused by
    /// the store (a conflict its sender retries), and the next batch, decided on top of it, is
    /// decided again when the store answers it as a duplicate. A delivery's outcome is recorded
    /// for good, so it must not be decided on what a retry did; looking the keys up in every
    /// batch cost a fifth of the commands' throughput (`ledger bench writer`, 64 clients).
    pub(crate) fn key_used(key: &str, fingerprint: &RequestFingerprint, batch: &Batch<'_>) -> bool {
        batch
            .key_known(key, fingerprint)
            .is_some_and(|used| used.is_some())
    }

    /// The stream's working state, taken out of the batch's (or the earlier batch's), else the
    /// cache or the store.
    async fn take_state(
        &self,
        stream_id: Uuid,
        batch: &mut Batch<'_>,
    ) -> Result<Stream, WriterError> {
        match batch.take_working(stream_id) {
            Some(state) => Ok(state),
            None => self.load(stream_id).await,
        }
    }
}

/// The customer a delivery's commands are for, and the ids that name their cause.
#[derive(Clone, Copy)]
struct Causes {
    stream_id: Uuid,
    /// The inbox row: every command's `causation_id`.
    inbox_id: Uuid,
    correlation_id: Option<Uuid>,
}

/// One delivery's commands as decided so far.
#[derive(Default)]
struct Decided {
    requests: Vec<AppendRequest>,
    /// Unique keys' owners as this delivery's requests change them.
    owners: HashMap<String, Option<Uuid>>,
    changed_keys: Vec<String>,
    /// The keys of the objects its events make known.
    known: Vec<String>,
    /// The payment its events recorded as succeeded (the inbox's `payment_id`).
    payment_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery whose request the store refused is answered as its inbox row records it,
    /// `failed` with the store's reason, not `appended` as decided.
    #[test]
    fn a_delivery_the_store_refused_is_answered_failed() {
        let plan = DeliveryPlan {
            inbox_id: Uuid::nil(),
            outcome: InboxOutcome::Appended,
            reason: String::new(),
            customer_id: None,
            requests: vec![0],
            changed_keys: Vec::new(),
        };
        let rejection = AppendRejection::Conflict {
            stream_id: Uuid::nil(),
            expected: ledger_store::ExpectedVersion::Exact(3),
            actual: 0,
        };
        let reason = ledger_store::refused_delivery_reason(&rejection);
        let reply = plan.reply(&[Err(rejection)]);
        let Some(proto::delivery_reply::Result::Recorded(recorded)) = reply.result else {
            panic!("recorded: {reply:?}");
        };
        assert_eq!(recorded.outcome(), proto::DeliveryOutcome::Failed);
        assert_eq!(recorded.reason, reason);
        assert!(recorded.global_positions.is_empty());
    }
}
