//! What the operator's commands show and do: the integrations (secrets masked), the
//! deliveries and their log, and a sample sent through an integration.

use std::time::Duration;

use ledger_domain::{Money, proto};
use prost::Message;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::integration::masked_target;
use crate::outbox::{self, Attempt, Claimed, Next};
use crate::projector::amount_json;
use crate::send::Sender;
use crate::worker::DeliveryConfig;
use crate::{NotificationKind, NotifyError};

/// Rows shown by `ledger notify deliveries`, at most.
pub const DELIVERY_ROWS_MAX: i64 = 1_000;

/// An integration as `ledger notify list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRow {
    pub integration_id: Uuid,
    pub name: String,
    pub channel: String,
    pub status: String,
    pub kinds: Vec<String>,
    /// The target with its secrets masked.
    pub target: String,
}

/// The integrations in the projection (none before the projector first ran).
pub async fn integrations(client: &Client) -> Result<Vec<IntegrationRow>, NotifyError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('notify.integrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT integration_id, name, channel, status, kinds, config \
             FROM notify.integrations ORDER BY name, integration_id",
            &[],
        )
        .await?;
    let mut integrations = Vec::with_capacity(rows.len());
    for row in rows {
        let config: &[u8] = row.try_get(5)?;
        let target = proto::IntegrationRegistered::decode(config)
            .ok()
            .and_then(|config| config.target)
            .map_or_else(|| "-".to_owned(), |target| masked_target(&target));
        integrations.push(IntegrationRow {
            integration_id: row.try_get(0)?,
            name: row.try_get(1)?,
            channel: row.try_get(2)?,
            status: row.try_get(3)?,
            kinds: row.try_get(4)?,
            target,
        });
    }
    Ok(integrations)
}

/// A delivery as `ledger notify deliveries` shows it, with its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub delivery_id: Uuid,
    pub integration_id: Uuid,
    pub kind: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_status_code: Option<i32>,
    pub last_latency_ms: Option<i32>,
    pub last_error: Option<String>,
}

/// The newest deliveries (at most `limit`, capped at [`DELIVERY_ROWS_MAX`]); with
/// `failed_only`, those that are dead or failed at least once and wait for a retry.
pub async fn deliveries(
    client: &Client,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<DeliveryRow>, NotifyError> {
    let rows = client
        .query(
            "SELECT d.delivery_id, d.integration_id, d.kind, d.status, d.attempts, d.created_at, \
               CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, \
               a.status_code, a.latency_ms, d.last_error \
             FROM notify_delivery.deliveries d \
             LEFT JOIN LATERAL (SELECT status_code, latency_ms FROM notify_delivery.attempts \
               WHERE delivery_id = d.delivery_id ORDER BY attempt_id DESC LIMIT 1) a ON true \
             WHERE NOT $1 OR d.status = 'dead' OR (d.status = 'pending' AND d.attempts > 0) \
             ORDER BY d.created_at DESC, d.global_position DESC, d.kind LIMIT $2",
            &[&failed_only, &limit.clamp(1, DELIVERY_ROWS_MAX)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryRow {
                delivery_id: row.try_get(0)?,
                integration_id: row.try_get(1)?,
                kind: row.try_get(2)?,
                status: row.try_get(3)?,
                attempts: row.try_get(4)?,
                created_at: row.try_get(5)?,
                next_attempt_at: row.try_get(6)?,
                last_status_code: row.try_get(7)?,
                last_latency_ms: row.try_get(8)?,
                last_error: row.try_get(9)?,
            })
        })
        .collect()
}

/// What `ledger notify test` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub delivery_id: Uuid,
    pub kind: NotificationKind,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// `None` when the receiver accepted it.
    pub error: Option<String>,
}

/// Sends a sample notification (of the integration's first kind, for a made-up customer)
/// through `integration_id` now, once, as a delivery of its own: it is in the outbox and the
/// log, delivered or dead.
pub async fn send_test(
    client: &mut Client,
    integration_id: Uuid,
    config: &DeliveryConfig,
) -> Result<TestOutcome, NotifyError> {
    outbox::ensure_outbox(client).await?;
    let rows = integrations(client).await?;
    let row = rows
        .iter()
        .find(|row| row.integration_id == integration_id)
        .ok_or(NotifyError::UnknownIntegration(integration_id))?;
    let kind = row
        .kinds
        .first()
        .and_then(|name| NotificationKind::from_name(name))
        .unwrap_or(NotificationKind::PaymentFailed);
    let target = outbox::target(client, integration_id)
        .await?
        .ok_or(NotifyError::UnknownIntegration(integration_id))?;
    let delivery_id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let data = sample_data(kind, now);
    let lease = config.send_timeout * 2;
    client
        .execute(
            "INSERT INTO notify_delivery.deliveries (delivery_id, integration_id, channel, kind, \
               customer_id, event_id, global_position, created_at, data, leased_until) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8::text::jsonb, $9)",
            &[
                &delivery_id,
                &integration_id,
                &row.channel,
                &kind.as_str(),
                &Uuid::nil(),
                &Uuid::nil(),
                &now,
                &data.to_string(),
                &(now + lease),
            ],
        )
        .await?;
    let claimed = Claimed {
        delivery_id,
        integration_id,
        kind: kind.as_str().to_owned(),
        created_at: now,
        data,
        attempts: 0,
        target: Some(target.clone()),
    };
    let sender = Sender::new(config, Duration::ZERO).map_err(NotifyError::Http)?;
    let attempt: Attempt = sender.send(&claimed, &target.0).await;
    // One attempt: a failed test is dead at once, so it never holds back the integration's
    // real deliveries.
    let next = if attempt.error.is_none() {
        Next::Delivered
    } else {
        Next::Dead
    };
    outbox::record(client, delivery_id, 1, &attempt, next).await?;
    tracing::info!(
        %delivery_id,
        %integration_id,
        status_code = attempt.status_code,
        error = attempt.error.as_deref().unwrap_or_default(),
        "test notification sent"
    );
    Ok(TestOutcome {
        delivery_id,
        kind,
        status_code: attempt.status_code,
        latency_ms: attempt.latency_ms,
        error: attempt.error,
    })
}

/// A made-up notification of `kind` (docs/notifications.md shows it per channel).
pub(crate) fn sample_data(kind: NotificationKind, now: OffsetDateTime) -> serde_json::Value {
    let amount = ledger_domain::Currency::parse("USD").map_or(serde_json::Value::Null, |usd| {
        amount_json(Money::new(4_900, usd))
    });
    json!({
        "kind": kind.as_str(),
        "title": kind.title(),
        "summary": format!("Test notification from the ledger: {} (sample data)", kind.title()),
        "customer_id": Uuid::nil().to_string(),
        "customer_email": "jane.doe@example.com",
        "customer_name": "Jane Doe",
        "subscription_id": "sub_sample",
        "amount": amount,
        "provider": "stripe",
        "event_id": Uuid::nil().to_string(),
        "event_type": "test",
        "global_position": 0,
        "occurred_at": now.format(&Rfc3339).unwrap_or_default(),
        "details": {"test": "true"},
    })
}
