//! Turning a decided command into the store's append request: the envelope of each event
//! (ids, provider, status, issuer, business time) and the payload bytes.

use anyhow::Context;
use ledger_domain::{Customer, Event, Issuer, Provider, event_status, event_type, proto};
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent};
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

/// The schema version every event is written with today.
pub(crate) const SCHEMA_VERSION: i16 = 1;

/// The append request for `events`, decided from `command` against `before` (the customer's
/// state the decision saw) for stream `customer_id`.
pub(crate) fn append_request(
    customer_id: Uuid,
    command: &proto::Command,
    before: &Customer,
    events: Vec<Event>,
) -> anyhow::Result<AppendRequest> {
    let metadata = command
        .metadata
        .as_ref()
        .context("command without metadata")?;
    let occurred_at = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(metadata.occurred_at_unix_micros) * 1_000,
    )
    .context("occurred_at is out of range")?;
    let payment_provider_type = Provider::try_from(metadata.payment_provider())?;
    let issuer = Issuer::try_from(metadata.issuer())?;
    let optional_uuid = |text: &str| -> anyhow::Result<Option<Uuid>> {
        Ok(if text.is_empty() {
            None
        } else {
            Some(
                text.parse()
                    .context("correlation/causation id is not a UUID")?,
            )
        })
    };
    let correlation_id = optional_uuid(&metadata.correlation_id)?;
    let causation_id = optional_uuid(&metadata.causation_id)?;
    let unique_keys = ledger_domain::unique_key_changes(before, &events);
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
        stream_id: customer_id,
        expected_version: metadata
            .expected_version
            .map_or(ExpectedVersion::Any, ExpectedVersion::Exact),
        idempotency_key: metadata.idempotency_key.clone(),
        events: new_events,
        unique_keys,
    })
}
