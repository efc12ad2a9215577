use std::fmt;

use bytes::Bytes;
use ledger_domain::{EventStatus, Issuer, Provider, UniqueKeyChanges};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::hash::Hash;

/// An event as the writer hands it to the store: everything but what the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// UUID v7, chosen by the writer.
    pub event_id: Uuid,
    pub event_type: String,
    /// The provider's reference of the customer (e.g. Stripe `cus_...`).
    pub account_id: String,
    pub payment_provider_type: Provider,
    pub status: EventStatus,
    pub issuer: Issuer,
    /// Business time. Stored with microsecond precision.
    pub occurred_at: OffsetDateTime,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub schema_version: i16,
    /// Protobuf bytes of `ledger.v1.Event`.
    pub payload: Bytes,
}

impl NewEvent {
    /// `occurred_at` in Unix microseconds, the business time `ledger_domain::evolve` takes.
    pub fn occurred_at_unix_micros(&self) -> i64 {
        crate::hash::unix_micros(self.occurred_at)
    }
}

/// A stored event with the envelope the store assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub global_position: u64,
    pub stream_id: Uuid,
    pub stream_version: u64,
    /// Ledger time: when the batch was appended.
    pub recorded_at: OffsetDateTime,
    pub idempotency_key: String,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub event: NewEvent,
}

/// The stream version a request expects to append after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must be at exactly this version; 0 means it must not exist yet.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => formatter.write_str("any version"),
            ExpectedVersion::Exact(version) => write!(formatter, "version {version}"),
        }
    }
}

/// SHA-256 of a canonical encoding of the request an idempotency key was first used for
/// (computed by the writer from the command; the store only compares them). Stored with every
/// event of the request, so that a repeat of the key with another request is refused instead
/// of being answered with the first request's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFingerprint(pub [u8; 32]);

/// The events one command produced for one stream, appended atomically or not at all.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream_id: Uuid,
    pub expected_version: ExpectedVersion,
    /// A repeated key with the same [`request_fingerprint`](Self::request_fingerprint) returns
    /// the events first appended for it and appends nothing; with another fingerprint it is
    /// refused ([`AppendRejection::IdempotencyKeyReused`](crate::AppendRejection)).
    pub idempotency_key: String,
    /// What the request was; see [`RequestFingerprint`].
    pub request_fingerprint: RequestFingerprint,
    pub events: Vec<NewEvent>,
    /// Emails and provider accounts the events claim for (or release from) this stream.
    pub unique_keys: UniqueKeyChanges,
    /// The provider's subscriptions and payments the events show the stream holds
    /// (`<provider>:<kind>:<id>`, `ledger_connectors::held_object`; ids of at most 255 bytes),
    /// recorded in `provider_objects` when the request is appended, unless another stream
    /// holds them already (the first holder keeps an object): see [`Store::object_holder`].
    ///
    /// [`Store::object_holder`]: crate::Store::object_holder
    pub provider_objects: Vec<String>,
}

/// What the store holds for an idempotency key: the events first appended for it, and the
/// fingerprint of the request that appended them (`None` for events appended before
/// fingerprints were recorded, migration V3: any repeat of such a key counts as the same
/// request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub events: Vec<RecordedEvent>,
    pub request_fingerprint: Option<RequestFingerprint>,
}

impl StoredRequest {
    /// True unless the key was first used with a recorded fingerprint other than
    /// `fingerprint`.
    pub fn is_same_request(&self, fingerprint: &RequestFingerprint) -> bool {
        same_request(self.request_fingerprint, fingerprint)
    }
}

/// Whether a request with `fingerprint` repeats the one stored with `stored`: events stored
/// before fingerprints were recorded (`None`) match any request.
pub(crate) fn same_request(
    stored: Option<RequestFingerprint>,
    fingerprint: &RequestFingerprint,
) -> bool {
    stored.is_none_or(|stored| stored == *fingerprint)
}

/// Events a request appended, or, for a repeated idempotency key, the events appended the
/// first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub events: Vec<RecordedEvent>,
    pub duplicate: bool,
}
