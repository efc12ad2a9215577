//! Turning a decided command into the store's append request: the envelope of each event
//! (ids, provider, status, issuer, business time) and the payload bytes.

use ledger_domain::{
    Event, Issuer, Provider, Rejection, UniqueKeyChanges, event_status, event_type, proto,
};
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent};
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

/// The schema version every event is written with today.
pub const SCHEMA_VERSION: i16 = 1;

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
        events: new_events,
        unique_keys,
    })
}
