//! The delivery worker: claims due deliveries, sends them, records every attempt, and
//! schedules retries with exponential backoff and jitter until the dead letter.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::NotifyError;
use crate::egress::EgressPolicy;
use crate::outbox::{self, Attempt, Claimed, Next};
use crate::send::Sender;
use ledger_secrets::SecretKeys;

/// How the worker sends and retries.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The pause after each failed attempt; after the last one the delivery is dead. The
    /// default, 1 min, 5 min, 30 min, 2 h, 12 h, makes 6 attempts over about 15 hours.
    pub retry_delays: Vec<Duration>,
    /// Each pause is stretched by up to this share (percent), so that receivers coming back
    /// are not hit by every retry at once. Derived from the delivery id: reproducible.
    pub jitter_percent: u32,
    /// The longest a send may take (HTTP request or SMTP session).
    pub send_timeout: Duration,
    /// The least time between two messages to one Slack webhook.
    pub slack_interval: Duration,
    /// Deliveries claimed (and sent concurrently) at once, at most one per integration.
    pub claim_deliveries_max: i64,
    /// How often the worker looks for due deliveries when it found none.
    pub poll_interval: Duration,
    /// Where it may connect (default: https only, no internal address).
    pub egress: EgressPolicy,
    /// Opens the integrations' sealed secrets; `None`: only integrations recorded before
    /// sealing existed (clear text) can be sent to.
    pub secrets: Option<Arc<SecretKeys>>,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        let minutes = |n: u64| Duration::from_secs(n * 60);
        DeliveryConfig {
            retry_delays: vec![
                minutes(1),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(720),
            ],
            jitter_percent: 10,
            send_timeout: Duration::from_secs(10),
            slack_interval: Duration::from_secs(1),
            claim_deliveries_max: 32,
            poll_interval: Duration::from_millis(500),
            egress: EgressPolicy::default(),
            secrets: None,
        }
    }
}

impl DeliveryConfig {
    /// The pause after failed attempt number `attempt` (1-based) of `delivery_id`, or `None`
    /// when it was the last attempt: the delivery is dead.
    pub fn retry_delay(&self, attempt: u32, delivery_id: Uuid) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let base = *self.retry_delays.get(index)?;
        // A fraction in [0, 1) from the id and the attempt, the same on every worker.
        let seed = (delivery_id.as_u128() ^ u128::from(attempt))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            >> 64;
        let permille = u64::try_from(seed % 1_000).unwrap_or(0);
        let jitter_ms = u64::try_from(base.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.jitter_percent))
            .saturating_mul(permille)
            / 100_000;
        Some(base + Duration::from_millis(jitter_ms))
    }

    /// Attempts before the dead letter.
    pub fn attempts_max(&self) -> usize {
        self.retry_delays.len() + 1
    }

    /// How long a claimed delivery stays leased to its worker: enough for Slack pacing of a
    /// full claim and the send itself; after that another worker may take it.
    fn lease(&self) -> Duration {
        self.send_timeout * 3
            + self.slack_interval * u32::try_from(self.claim_deliveries_max).unwrap_or(u32::MAX)
    }
}

/// Prometheus counter of delivery attempts by `outcome` (`delivered`, `retry`, `dead`); see
/// docs/observability.md.
pub const DELIVERIES: &str = "ledger_notify_deliveries_total";

/// Sends due deliveries until `shutdown` completes; in-flight sends finish first.
pub async fn run_worker(
    database_url: &str,
    config: DeliveryConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NotifyError> {
    let mut client = connect(database_url).await?;
    outbox::ensure_outbox(&mut client).await?;
    let sender = std::sync::Arc::new(
        Sender::new(&config, config.slack_interval).map_err(NotifyError::Http)?,
    );
    metrics::describe_counter!(
        DELIVERIES,
        metrics::Unit::Count,
        "Notification delivery attempts, by outcome: delivered, retry (failed, tried again \
         later), dead (failed for good)."
    );
    for outcome in Next::OUTCOMES {
        metrics::counter!(DELIVERIES, "outcome" => outcome).increment(0);
    }
    tracing::info!(
        attempts_max = config.attempts_max(),
        "delivery worker started"
    );
    let mut shutdown = std::pin::pin!(shutdown);
    // Logged once per change between working and failing, not once per round.
    let mut failing = false;
    loop {
        // One failed round (a rebuild replacing schema `notify` under the claim, a lost
        // connection) does not stop the worker: it waits a poll interval, reconnects if need
        // be, and tries again; what it leased is released by the lease's end.
        let pause = match deliver_due(&client, &sender, &config, OffsetDateTime::now_utc()).await {
            Ok(delivered) => {
                if failing {
                    failing = false;
                    tracing::info!("delivery rounds work again");
                }
                if delivered == 0 {
                    config.poll_interval
                } else {
                    Duration::ZERO
                }
            }
            Err(error) => {
                if failing {
                    tracing::debug!(%error, "delivery round failed again");
                } else {
                    failing = true;
                    tracing::warn!(%error, "delivery round failed; trying again every poll interval");
                }
                if client.is_closed() {
                    match connect(database_url).await {
                        Ok(reconnected) => client = reconnected,
                        Err(error) => tracing::debug!(%error, "cannot reconnect yet"),
                    }
                }
                config.poll_interval
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("delivery worker stopped");
    Ok(())
}

/// Claims the deliveries due at `now`, sends them concurrently and records the attempts.
/// Returns how many it tried.
async fn deliver_due(
    client: &Client,
    sender: &std::sync::Arc<Sender>,
    config: &DeliveryConfig,
    now: OffsetDateTime,
) -> Result<usize, NotifyError> {
    let claimed = outbox::claim(client, now, config.lease(), config.claim_deliveries_max).await?;
    let count = claimed.len();
    let mut sends = JoinSet::new();
    for delivery in claimed {
        let sender = sender.clone();
        sends.spawn(async move {
            let attempt = match &delivery.target {
                None => None,
                Some((_, status)) if status == "removed" => Some(Attempt {
                    started_at: OffsetDateTime::now_utc(),
                    latency_ms: 0,
                    status_code: None,
                    error: Some("the integration was removed".to_owned()),
                }),
                Some((target, _)) => Some(sender.send(&delivery, target).await),
            };
            (delivery, attempt)
        });
    }
    while let Some(joined) = sends.join_next().await {
        let (delivery, attempt) =
            joined.map_err(|error| NotifyError::SendTask(error.to_string()))?;
        let Some(attempt) = attempt else {
            // The projection is being rebuilt: the lease runs out and it is tried again.
            tracing::debug!(delivery_id = %delivery.delivery_id, "integration not projected yet");
            continue;
        };
        record_attempt(client, config, &delivery, &attempt).await?;
    }
    Ok(count)
}

/// Logs the attempt and decides what comes next.
async fn record_attempt(
    client: &Client,
    config: &DeliveryConfig,
    delivery: &Claimed,
    attempt: &Attempt,
) -> Result<Next, NotifyError> {
    let number = delivery.attempts.saturating_add(1);
    let removed = matches!(&delivery.target, Some((_, status)) if status == "removed");
    let next = match &attempt.error {
        None => Next::Delivered,
        Some(_) if removed => Next::Dead,
        Some(_) => match config.retry_delay(number.unsigned_abs(), delivery.delivery_id) {
            Some(delay) => Next::RetryAt(attempt.started_at + delay),
            None => Next::Dead,
        },
    };
    match (&next, &attempt.error) {
        (Next::Delivered, _) => tracing::debug!(
            delivery_id = %delivery.delivery_id,
            integration_id = %delivery.integration_id,
            kind = delivery.kind,
            attempt = number,
            latency_ms = attempt.latency_ms,
            "delivered"
        ),
        (_, error) => tracing::warn!(
            delivery_id = %delivery.delivery_id,
            integration_id = %delivery.integration_id,
            kind = delivery.kind,
            attempt = number,
            status_code = attempt.status_code,
            error = error.as_deref().unwrap_or_default(),
            dead = next == Next::Dead,
            "delivery failed"
        ),
    }
    outbox::record(client, delivery.delivery_id, number, attempt, next).await?;
    metrics::counter!(DELIVERIES, "outcome" => next.outcome()).increment(1);
    Ok(next)
}

pub(crate) async fn connect(database_url: &str) -> Result<Client, NotifyError> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "notify database connection ended");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_backs_off_with_bounded_jitter_then_gives_up() {
        let config = DeliveryConfig::default();
        let id = Uuid::from_u128(42);
        let expected_minutes = [1u64, 5, 30, 120, 720];
        for (index, minutes) in expected_minutes.iter().enumerate() {
            let attempt = u32::try_from(index + 1).unwrap();
            let delay = config.retry_delay(attempt, id).expect("a retry");
            let base = Duration::from_secs(minutes * 60);
            assert!(delay >= base && delay < base + base / 10, "{delay:?}");
            assert_eq!(
                delay,
                config.retry_delay(attempt, id).unwrap(),
                "reproducible"
            );
        }
        assert_eq!(
            config.retry_delay(6, id),
            None,
            "the sixth failure is the last"
        );
        assert_eq!(config.attempts_max(), 6);
        let no_jitter = DeliveryConfig {
            jitter_percent: 0,
            ..DeliveryConfig::default()
        };
        assert_eq!(no_jitter.retry_delay(2, id), Some(Duration::from_secs(300)));
    }
}
