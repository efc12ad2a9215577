//! The outbox in PostgreSQL: creating it, claiming due deliveries (in order per integration,
//! leased so two workers never send the same one at once), and recording each attempt.

use std::time::Duration;

use ledger_domain::proto;
use prost::Message;
use time::OffsetDateTime;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::NotifyError;
use crate::integration::Target;

/// Creates `notify_delivery` if it is missing (the projector also creates it with its schema).
pub async fn ensure_outbox(client: &mut Client) -> Result<(), NotifyError> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(include_str!("delivery.sql"))
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// A delivery a worker leased, with what it needs to send it.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) delivery_id: Uuid,
    pub(crate) integration_id: Uuid,
    pub(crate) kind: String,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) data: serde_json::Value,
    /// Attempts made before this one.
    pub(crate) attempts: i32,
    /// The integration's target and status; `None` when the projection does not have the
    /// integration (a rebuild in progress).
    pub(crate) target: Option<(Target, String)>,
}

/// Leases up to `deliveries_max` due deliveries, at most one per integration (its oldest
/// pending one, so each integration's deliveries go out in order), until `now + lease`, with
/// their integrations' targets. One statement: one round trip.
pub(crate) async fn claim(
    client: &Client,
    now: OffsetDateTime,
    lease: Duration,
    deliveries_max: i64,
) -> Result<Vec<Claimed>, NotifyError> {
    let leased_until = now + lease;
    let rows = client
        .query(
            // `heads`: each integration's oldest pending delivery, one index probe per
            // integration (a loose index scan on `deliveries_pending`), so a long backlog
            // costs nothing per poll.
            "WITH RECURSIVE heads AS ( \
               (SELECT delivery_id, integration_id FROM notify_delivery.deliveries \
                WHERE status = 'pending' ORDER BY integration_id, global_position, kind \
                LIMIT 1) \
               UNION ALL \
               SELECT next.delivery_id, next.integration_id FROM heads h CROSS JOIN LATERAL ( \
                 SELECT delivery_id, integration_id FROM notify_delivery.deliveries \
                 WHERE status = 'pending' AND integration_id > h.integration_id \
                 ORDER BY integration_id, global_position, kind LIMIT 1) next), \
             due AS ( \
               SELECT d.delivery_id FROM notify_delivery.deliveries d \
               JOIN heads h USING (delivery_id) \
               WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                 AND (d.leased_until IS NULL OR d.leased_until < $1) \
               ORDER BY d.global_position, d.kind \
               LIMIT $2 \
               FOR UPDATE OF d SKIP LOCKED), \
             leased AS ( \
               UPDATE notify_delivery.deliveries d SET leased_until = $3 \
               FROM due WHERE d.delivery_id = due.delivery_id \
               RETURNING d.delivery_id, d.integration_id, d.kind, d.created_at, d.data, \
                 d.attempts) \
             SELECT l.delivery_id, l.integration_id, l.kind, l.created_at, l.data::text, \
               l.attempts, i.config, i.status \
             FROM leased l LEFT JOIN notify.integrations i USING (integration_id)",
            &[&now, &deliveries_max, &leased_until],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        // Schema `notify` is not there until the projector first ran: nothing to send yet.
        Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let data: &str = row.try_get(4)?;
        let config: Option<&[u8]> = row.try_get(6)?;
        let status: Option<String> = row.try_get(7)?;
        let target = config
            .and_then(|config| proto::IntegrationRegistered::decode(config).ok())
            .and_then(|config| config.target);
        claimed.push(Claimed {
            delivery_id: row.try_get(0)?,
            integration_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            created_at: row.try_get(3)?,
            data: serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
            attempts: row.try_get(5)?,
            target: target.zip(status),
        });
    }
    Ok(claimed)
}

/// The target and status of an integration in the projection.
pub(crate) async fn target(
    client: &Client,
    integration_id: Uuid,
) -> Result<Option<(Target, String)>, NotifyError> {
    let row = client
        .query_opt(
            "SELECT config, status FROM notify.integrations WHERE integration_id = $1",
            &[&integration_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let config: &[u8] = row.try_get(0)?;
    let target = proto::IntegrationRegistered::decode(config)
        .ok()
        .and_then(|config| config.target);
    Ok(target.zip(Some(row.try_get(1)?)))
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) started_at: OffsetDateTime,
    pub(crate) latency_ms: i32,
    pub(crate) status_code: Option<i32>,
    /// `None` when it was delivered.
    pub(crate) error: Option<String>,
}

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Delivered,
    RetryAt(OffsetDateTime),
    Dead,
}

impl Next {
    /// Every outcome, as [`Next::outcome`] names it.
    pub(crate) const OUTCOMES: [&'static str; 3] = ["delivered", "retry", "dead"];

    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Next::Delivered => "delivered",
            Next::RetryAt(_) => "retry",
            Next::Dead => "dead",
        }
    }
}

/// Records an attempt in the log and moves the delivery on, releasing its lease. One
/// statement: one round trip, atomic.
pub(crate) async fn record(
    client: &Client,
    delivery_id: Uuid,
    attempt_number: i32,
    attempt: &Attempt,
    next: Next,
) -> Result<(), NotifyError> {
    let (status, next_attempt_at) = match next {
        Next::Delivered => ("delivered", None),
        Next::RetryAt(at) => ("pending", Some(at)),
        Next::Dead => ("dead", None),
    };
    let finished_at =
        attempt.started_at + Duration::from_millis(attempt.latency_ms.unsigned_abs().into());
    client
        .execute(
            "WITH logged AS ( \
               INSERT INTO notify_delivery.attempts (delivery_id, attempt, started_at, \
                 latency_ms, status_code, error, outcome) \
               VALUES ($1, $3, $7, $8, $9, $5, $10)) \
             UPDATE notify_delivery.deliveries SET status = $2, attempts = $3, \
               next_attempt_at = coalesce($4, next_attempt_at), leased_until = NULL, \
               last_error = $5, \
               delivered_at = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_at END \
             WHERE delivery_id = $1",
            &[
                &delivery_id,
                &status,
                &attempt_number,
                &next_attempt_at,
                &attempt.error,
                &finished_at,
                &attempt.started_at,
                &attempt.latency_ms,
                &attempt.status_code,
                &next.outcome(),
            ],
        )
        .await?;
    Ok(())
}

/// Sets a delivery back to pending, due now, with a fresh retry schedule. Returns false when
/// there is no such delivery or it was already delivered.
pub async fn retry(client: &Client, delivery_id: Uuid) -> Result<bool, NotifyError> {
    let updated = client
        .execute(
            "UPDATE notify_delivery.deliveries SET status = 'pending', attempts = 0, \
               next_attempt_at = now(), leased_until = NULL \
             WHERE delivery_id = $1 AND status <> 'delivered'",
            &[&delivery_id],
        )
        .await?;
    Ok(updated == 1)
}
