//! Turning a decided command into the store's append request: the envelope of each event
//! (ids, provider, status, issuer, business time) and the payload bytes.

use ledger_domain::{
    Event, Issuer, Provider, Rejection, UniqueKeyChanges, event_status, event_type, proto,
};
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent, RequestFingerprint};
use prost::Message;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The schema version every event is written with today.
pub const SCHEMA_VERSION: i16 = 1;

/// The tag that starts every fingerprint's input: a change of the encoding gets a new tag.
const REQUEST_FINGERPRINT_TAG: &[u8] = b"ledger.request_fingerprint.v1";

/// The fingerprint an idempotency key is stored with: SHA-256 over a canonical encoding of
/// what the command asks to record, each part prefixed with its length in bytes (u64,
/// big-endian): the tag, the command's kind and body (the `ledger.v1.Command` oneof as protobuf
/// bytes, so protobuf and JSON requests of the same command agree) and the metadata that says
/// what happened to whom: `customer_id` (the stream), `payment_provider`, `account_id`,
/// `issuer` and `occurred_at_unix_micros`.
///
/// Left out, as Stripe compares a request's parameters and not how it was sent
/// ("the same key with different parameters is an error"): the key itself,
/// `expected_version` (a precondition on the customer's state, not part of the fact: a retry
/// after re-reading the customer repeats the same request), and `correlation_id` /
/// `causation_id` (tracing ids a retry through another hop may renew).
pub fn request_fingerprint(command: &proto::Command) -> RequestFingerprint {
    let no_metadata = proto::CommandMetadata::default();
    let metadata = command.metadata.as_ref().unwrap_or(&no_metadata);
    let mut body = Vec::new();
    if let Some(kind) = &command.kind {
        kind.encode(&mut body);
    }
    let mut hasher = Sha256::new();
    for part in [
        REQUEST_FINGERPRINT_TAG,
        &body,
        metadata.customer_id.as_bytes(),
        &metadata.payment_provider.to_be_bytes(),
        metadata.account_id.as_bytes(),
        &metadata.issuer.to_be_bytes(),
        &metadata.occurred_at_unix_micros.to_be_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    RequestFingerprint(hasher.finalize().into())
}

/// The append request for `events`, which `decide` accepted from `command`, for stream
/// `stream_id` (a customer or an integration), claiming and releasing `unique_keys`
/// (`Stream::unique_key_changes` against the state the decision saw).
///
/// `decide` has validated the metadata, so a command it accepted does not fail here; the
/// conversions still answer with a typed rejection rather than a panic.
pub fn append_request(
    stream_id: Uuid,
    command: &proto::Command,
    unique_keys: UniqueKeyChanges,
    events: Vec<Event>,
    expected_version: ExpectedVersion,
) -> Result<AppendRequest, Rejection> {
    let missing = |field: &'static str| Rejection::MissingField { field };
    let invalid =
        |field: &'static str, reason: &'static str| Rejection::InvalidField { field, reason };
    let metadata = command.metadata.as_ref().ok_or(missing("metadata"))?;
    let occurred_at = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(metadata.occurred_at_unix_micros) * 1_000,
    )
    .map_err(|_| invalid("metadata.occurred_at_unix_micros", "out of range"))?;
    let payment_provider_type = Provider::try_from(metadata.payment_provider())
        .map_err(|_| missing("metadata.payment_provider"))?;
    let issuer = Issuer::try_from(metadata.issuer()).map_err(|_| missing("metadata.issuer"))?;
    let optional_uuid = |field: &'static str, text: &str| {
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse()
                .map(Some)
                .map_err(|_| invalid(field, "not a UUID"))
        }
    };
    let correlation_id = optional_uuid("metadata.correlation_id", &metadata.correlation_id)?;
    let causation_id = optional_uuid("metadata.causation_id", &metadata.causation_id)?;
    let provider_objects = held_objects(payment_provider_type, &events).collect();
    let new_events = events
        .into_iter()
        .map(|event| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type(&event).to_owned(),
            account_id: metadata.account_id.clone(),
            payment_provider_type,
            status: event_status(&event),
            issuer,
            occurred_at,
            correlation_id,
            causation_id,
            schema_version: SCHEMA_VERSION,
            payload: proto::Event { kind: Some(event) }.encode_to_vec().into(),
        })
        .collect();
    Ok(AppendRequest {
        stream_id,
        expected_version,
        idempotency_key: metadata.idempotency_key.clone(),
        request_fingerprint: request_fingerprint(command),
        events: new_events,
        unique_keys,
        provider_objects,
    })
}

/// The keys of the provider objects `events` of a command of `provider` show their customer
/// holds ([`ledger_connectors::held_object`]), for [`AppendRequest::provider_objects`]. An id
/// the store cannot hold (over 255 bytes, a NUL) is left out.
pub(crate) fn held_objects(
    provider: Provider,
    events: &[Event],
) -> impl Iterator<Item = String> + '_ {
    events
        .iter()
        .filter_map(move |event| ledger_connectors::held_object(provider, event))
        .filter(|object| ledger_store::text_problem(&object.id, false).is_none())
        .map(|object| object.key())
}
