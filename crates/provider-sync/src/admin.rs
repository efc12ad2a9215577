//! What `ledger provider-sync attempts` shows: every request made to a provider, with its call.

use time::OffsetDateTime;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::SyncError;

/// Rows shown by `ledger provider-sync attempts`, at most.
pub const ATTEMPT_ROWS_MAX: i64 = 1_000;

/// One attempt with its call, as `ledger provider-sync attempts` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub started_at: OffsetDateTime,
    pub call_id: Uuid,
    pub provider: String,
    pub action: String,
    /// The subscription of a cancellation, the payment of a refund.
    pub subscription_id: String,
    /// `DELETE /v1/subscriptions/sub_1`, ...
    pub request: String,
    /// `in_flight`, `succeeded`, `retry` or `refused`.
    pub outcome: String,
    pub status_code: Option<i32>,
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
    /// The call's status (`pending`, `answered`, `done`, `settled`) and what the ledger made
    /// of its answer.
    pub call_status: String,
    pub call_result: Option<String>,
}

/// The newest attempts, at most `limit` (capped at [`ATTEMPT_ROWS_MAX`]); with `failed_only`,
/// those that failed (retry or refused) or are still in flight.
pub async fn attempts(
    client: &Client,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<AttemptRow>, SyncError> {
    let rows = client
        .query(
            "SELECT a.started_at, a.call_id, c.provider, c.action, \
               COALESCE(c.subscription_id, c.payment_id, ''), a.request, \
               a.outcome, a.status_code, a.latency_ms, a.error, c.status, c.result \
             FROM provider_sync_outbox.attempts a JOIN provider_sync_outbox.calls c USING (call_id) \
             WHERE NOT $1 OR a.outcome <> 'succeeded' \
             ORDER BY a.attempt_id DESC LIMIT $2",
            &[&failed_only, &limit.clamp(0, ATTEMPT_ROWS_MAX)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AttemptRow {
                started_at: row.try_get(0)?,
                call_id: row.try_get(1)?,
                provider: row.try_get(2)?,
                action: row.try_get(3)?,
                subscription_id: row.try_get(4)?,
                request: row.try_get(5)?,
                outcome: row.try_get(6)?,
                status_code: row.try_get(7)?,
                latency_ms: row.try_get(8)?,
                error: row.try_get(9)?,
                call_status: row.try_get(10)?,
                call_result: row.try_get(11)?,
            })
        })
        .collect()
}
