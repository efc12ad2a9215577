//! The worker: leases due calls, carries them out at the provider (retrying transient
//! failures), records the answer, then sends the command that states it to the writer.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::future::join_all;
use ledger_bus::SendError;
use ledger_domain::proto;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::SyncError;
use crate::apis::{
    Act, Exchange, ProviderApis, ProviderRequest, Verdict, already_done, plan, success, verdict,
};
use crate::outbox::{self, Action, Answer, AttemptOutcome, Call};
use ledger_projector::ProjectorError;

/// The advisory lock held by the one worker that calls (`ledger_store`'s projector locks).
const WORKER_LOCK: &str = "provider_sync_worker";

/// How the worker calls and retries.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Requests per round: a transient failure (no answer, timeout, 408, 409, 425, 429, 5xx)
    /// is retried within the round after an exponential pause with jitter.
    pub round_attempts_max: u32,
    /// The first and the longest pause between two requests of a round (doubled each time,
    /// plus up to 100 % jitter); a `Retry-After` longer than the pause replaces it.
    pub retry_delay_min: Duration,
    pub retry_delay_max: Duration,
    /// A `Retry-After` longer than this ends the round; the next round starts after it.
    pub retry_after_in_round_max: Duration,
    /// The pause after each round that ended in transient failures; after the last one the
    /// call is given up (`fail_cancellation` with code `provider_sync_unreachable`). The
    /// default, 1 min, 5 min, 30 min, 2 h, 12 h, keeps trying for about 15 hours.
    pub round_delays: Vec<Duration>,
    /// The pause before sending a command again when the writer did not answer.
    pub command_retry_delay: Duration,
    /// Calls leased (and carried out concurrently) at once.
    pub claim_calls_max: i64,
    /// How often the worker looks for due calls when it found none.
    pub poll_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        let minutes = |n: u64| Duration::from_secs(n * 60);
        SyncConfig {
            round_attempts_max: 4,
            retry_delay_min: Duration::from_millis(500),
            retry_delay_max: Duration::from_secs(8),
            retry_after_in_round_max: Duration::from_secs(60),
            round_delays: vec![
                minutes(1),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(720),
            ],
            command_retry_delay: Duration::from_secs(5),
            claim_calls_max: 16,
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl SyncConfig {
    /// How long a leased call stays the worker's: a whole round of the longest pauses (a
    /// request's own timeout is the HTTP client's), with room to spare; after that another
    /// worker may take it.
    fn lease(&self, request_timeout: Duration) -> Duration {
        let requests = self.round_attempts_max.saturating_add(1);
        (request_timeout + self.retry_delay_max * 2 + self.retry_after_in_round_max)
            .saturating_mul(requests)
            + Duration::from_secs(60)
    }
}

/// Calls the providers until `shutdown` completes, once the `provider_sync` projector has
/// reached `start_after` (the table's end when the process started); in-flight calls finish
/// first.
///
/// # Errors
/// [`SyncError::Config`] when a configured base URL does not answer at start; a lost database
/// is waited for, not an error.
pub async fn run_worker(
    database_url: &str,
    apis: ProviderApis,
    commands: ledger_bus::Client,
    config: SyncConfig,
    start_after: u64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SyncError> {
    apis.check_reachable().await?;
    // Served at zero from the start, by a standby too: an alert on the counter sees it.
    register_metrics(&apis);
    let store = ledger_store::Store::connect(database_url).map_err(ProjectorError::from)?;
    let mut shutdown = std::pin::pin!(shutdown);
    // One worker calls at a time: a second process waits here as a standby. The lock's holder
    // is the only worker, so leases left by one that died (killed mid-call) are released.
    let lock = tokio::select! {
        lock = store.lock_projector(WORKER_LOCK) => lock.map_err(ProjectorError::from)?,
        () = &mut shutdown => return Ok(()),
    };
    let mut client = connect(database_url).await?;
    outbox::release_leases(&client).await?;
    let mut caught_up = false;
    let mut retry = ledger_bus::retry::Retry::new("provider-sync worker");
    tracing::info!(providers = ?apis.providers(), "provider-sync worker started");
    loop {
        let round = async {
            if !caught_up {
                caught_up = checkpoint(&client).await? >= start_after;
                if !caught_up {
                    return Ok(0);
                }
                tracing::info!("provider-sync worker calling");
            }
            call_due(&client, &apis, &commands, &config).await
        };
        // A failed round (a lost connection) waits with the components' backoff and logs
        // once per outage; what it leased is released by the lease's end.
        let pause = match round.await {
            Ok(count) => {
                retry.succeeded();
                if count == 0 {
                    config.poll_interval
                } else {
                    Duration::ZERO
                }
            }
            Err(error) => {
                let delay = retry.failed(&error);
                if client.is_closed() {
                    match connect(database_url).await {
                        Ok(reconnected) => client = reconnected,
                        Err(error) => tracing::debug!(%error, "cannot reconnect yet"),
                    }
                }
                delay
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = lock.lost() => return Err(SyncError::LockLost),
            () = tokio::time::sleep(pause) => {}
        }
    }
    // Freed now, not when PostgreSQL notices the connection gone: a worker started next
    // calls at once instead of waiting as a standby behind this one.
    lock.release().await;
    tracing::info!("provider-sync worker stopped");
    Ok(())
}

/// The projector's checkpoint; 0 before it created its schema.
async fn checkpoint(client: &Client) -> Result<u64, SyncError> {
    match client
        .query_one(
            "SELECT global_position FROM provider_sync.projector_checkpoint",
            &[],
        )
        .await
    {
        Ok(row) => Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0)),
        Err(error)
            if matches!(
                error.code(),
                Some(&SqlState::UNDEFINED_TABLE | &SqlState::INVALID_SCHEMA_NAME)
            ) =>
        {
            Ok(0)
        }
        Err(error) => Err(error.into()),
    }
}

/// Leases the due calls and carries them out concurrently (on this task: the work is
/// waiting on providers). Returns how many it leased.
async fn call_due(
    client: &Client,
    apis: &ProviderApis,
    commands: &ledger_bus::Client,
    config: &SyncConfig,
) -> Result<usize, SyncError> {
    let lease = config.lease(apis.request_timeout());
    let claimed = outbox::claim(
        client,
        OffsetDateTime::now_utc(),
        lease,
        config.claim_calls_max,
    )
    .await?;
    let count = claimed.len();
    let carried = join_all(
        claimed
            .into_iter()
            .map(|call| carry(client, apis, commands, config, call)),
    )
    .await;
    for outcome in carried {
        outcome?;
    }
    Ok(count)
}

/// Carries one call on: the provider's answer first (unless recorded), then the command.
async fn carry(
    client: &Client,
    apis: &ProviderApis,
    commands: &ledger_bus::Client,
    config: &SyncConfig,
    call: Call,
) -> Result<(), SyncError> {
    let (answer, answered_at) = match call.answer.clone() {
        Some(answered) => answered,
        None => match round(client, apis, config, &call).await? {
            RoundEnd::Answered(answer) => {
                let answered_at = OffsetDateTime::now_utc();
                if !outbox::record_answer(client, call.call_id, &answer, answered_at).await? {
                    tracing::info!(call_id = %call.call_id, "call settled in the ledger meanwhile");
                    return Ok(());
                }
                (answer, answered_at)
            }
            RoundEnd::Again { retry_after, error } => {
                let rounds = call.rounds.saturating_add(1);
                let now = OffsetDateTime::now_utc();
                match config
                    .round_delays
                    .get(usize::try_from(call.rounds).unwrap_or(usize::MAX))
                {
                    Some(delay) => {
                        let delay = (*delay).max(retry_after.unwrap_or_default());
                        tracing::warn!(call_id = %call.call_id, provider = %call.provider, rounds, %error, delay_ms = delay.as_millis(), "provider call failed; trying again later");
                        outbox::reschedule(client, call.call_id, rounds, now + delay).await?;
                        return Ok(());
                    }
                    None => {
                        tracing::warn!(call_id = %call.call_id, provider = %call.provider, rounds, %error, "provider call failed in every round; giving up");
                        let answer = Answer::Unreachable {
                            message: format!(
                                "{} did not answer after {rounds} rounds of attempts: {error}",
                                call.provider
                            ),
                        };
                        if !outbox::record_answer(client, call.call_id, &answer, now).await? {
                            return Ok(());
                        }
                        (answer, now)
                    }
                }
            }
        },
    };
    let Some(command) = command(&call, &answer, answered_at) else {
        let result = match call.action {
            Action::ChangePlan => {
                "accepted by the provider, waiting for the subscriber's approval: its webhook \
                 confirms the change"
            }
            _ => {
                "scheduled at the provider: its webhook confirms the cancellation at the period \
                 end"
            }
        };
        return outbox::record_done(client, call.call_id, result).await;
    };
    match commands.send(&command).await {
        Ok(accepted) => {
            let positions: Vec<String> = accepted
                .events
                .iter()
                .map(|event| format!("{} at {}", event.event_type, event.global_position))
                .collect();
            let result = format!(
                "{}{}",
                positions.join(", "),
                if accepted.duplicate {
                    " (sent before)"
                } else {
                    ""
                }
            );
            tracing::info!(call_id = %call.call_id, provider = %call.provider, %result, "provider answer recorded in the ledger");
            outbox::record_done(client, call.call_id, &result).await
        }
        Err(SendError::Rejected(rejected))
            if !matches!(
                rejected.kind(),
                proto::RejectionKind::Busy | proto::RejectionKind::Unavailable
            ) =>
        {
            // The ledger's state answered first (the provider's webhook cancelled it, ...).
            let result = format!(
                "the ledger refused: {}: {}",
                rejected.code, rejected.message
            );
            tracing::info!(call_id = %call.call_id, %result, "provider answer not recorded");
            outbox::record_done(client, call.call_id, &result).await
        }
        Err(error) => {
            tracing::warn!(call_id = %call.call_id, %error, "the writer did not take the answer; sending again later");
            let at = OffsetDateTime::now_utc() + config.command_retry_delay;
            outbox::reschedule(client, call.call_id, call.rounds, at).await
        }
    }
}

/// How a round of requests ended.
enum RoundEnd {
    Answered(Answer),
    Again {
        retry_after: Option<Duration>,
        error: String,
    },
}

/// One round: a look at the object when an earlier request may have acted, then the action,
/// retried on transient failures with exponential backoff and jitter, honouring `Retry-After`.
async fn round(
    client: &Client,
    apis: &ProviderApis,
    config: &SyncConfig,
    call: &Call,
) -> Result<RoundEnd, SyncError> {
    let plan = match plan(call) {
        Ok(plan) => plan,
        Err(answer) => return Ok(RoundEnd::Answered(answer)),
    };
    // A plan that looks before every attempt needs no look for a crash.
    if call.attempted
        && let (Some(check), Act::Request(_)) = (&plan.check, &plan.act)
    {
        let (exchange, _) = logged(client, apis, call, check).await?;
        if let Exchange::Answered {
            status: 200..=299,
            body,
            ..
        } = &exchange
            && let Some(answer) = already_done(call, body)
        {
            tracing::info!(call_id = %call.call_id, "the provider had acted on an earlier request");
            return Ok(RoundEnd::Answered(answer));
        }
    }
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(config.retry_delay_min)
        .with_max_delay(config.retry_delay_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempt = 1;
    loop {
        match act(client, apis, call, &plan.act).await? {
            Ok(answer) => return Ok(RoundEnd::Answered(answer)),
            Err((retry_after, error)) => {
                let too_long =
                    retry_after.is_some_and(|wait| wait > config.retry_after_in_round_max);
                if attempt >= config.round_attempts_max || too_long {
                    return Ok(RoundEnd::Again { retry_after, error });
                }
                let pause = delays
                    .next()
                    .unwrap_or(config.retry_delay_max)
                    .max(retry_after.unwrap_or_default());
                tracing::debug!(call_id = %call.call_id, attempt, %error, pause_ms = pause.as_millis(), "transient failure; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

/// One attempt at `act`: the provider's answer, or a transient failure (its `Retry-After`
/// and what happened).
async fn act(
    client: &Client,
    apis: &ProviderApis,
    call: &Call,
    act: &Act,
) -> Result<Result<Answer, (Option<Duration>, String)>, SyncError> {
    let built;
    let request = match act {
        Act::Request(request) => request,
        Act::AfterLook { look, build } => {
            let (exchange, verdict) = logged(client, apis, call, look).await?;
            match verdict {
                Verdict::Succeeded => {
                    if let Some(answer) = already_done(call, exchange.body()) {
                        return Ok(Ok(answer));
                    }
                    match build(call, exchange.body()) {
                        Ok(request) => built = request,
                        Err(answer) => return Ok(Ok(answer)),
                    }
                    &built
                }
                Verdict::Refused { code, message } => {
                    return Ok(Ok(Answer::Refused { code, message }));
                }
                Verdict::Transient { retry_after, error } => return Ok(Err((retry_after, error))),
            }
        }
    };
    let (exchange, verdict) = logged(client, apis, call, request).await?;
    Ok(match verdict {
        Verdict::Succeeded => Ok(success(call, exchange.body())),
        Verdict::Refused { code, message } => Ok(Answer::Refused { code, message }),
        Verdict::Transient { retry_after, error } => Err((retry_after, error)),
    })
}

/// Prometheus counter of requests made to the providers, by `provider` (`stripe`, `paypal`,
/// `xendit`) and `outcome` (`succeeded`, `retry`: failed for now, `refused`: the provider said
/// no); see docs/observability.md.
pub const ATTEMPTS: &str = "ledger_provider_sync_attempts_total";

/// Registers [`ATTEMPTS`] at zero for every configured provider and outcome.
fn register_metrics(apis: &ProviderApis) {
    metrics::describe_counter!(
        ATTEMPTS,
        metrics::Unit::Count,
        "Requests made to the payment providers, by provider and outcome."
    );
    for provider in apis.providers() {
        for outcome in AttemptOutcome::ALL {
            metrics::counter!(
                ATTEMPTS,
                "provider" => provider.as_str(),
                "outcome" => outcome.as_str()
            )
            .increment(0);
        }
    }
}

/// One request, logged in the attempts table before it is sent and when it ends.
async fn logged(
    client: &Client,
    apis: &ProviderApis,
    call: &Call,
    request: &ProviderRequest,
) -> Result<(Exchange, Verdict), SyncError> {
    let started_at = OffsetDateTime::now_utc();
    let attempt_id =
        outbox::attempt_started(client, call.call_id, &request.describe(), started_at).await?;
    let started = Instant::now();
    let exchange = apis.exchange(call.provider, request).await;
    let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let verdict = verdict(call.provider, &exchange);
    let status_code = match &exchange {
        Exchange::Answered { status, .. } => Some(i32::from(*status)),
        Exchange::Failed(_) => None,
    };
    let (outcome, error) = match &verdict {
        Verdict::Succeeded => (AttemptOutcome::Succeeded, None),
        Verdict::Refused { code, message } => {
            (AttemptOutcome::Refused, Some(format!("{code}: {message}")))
        }
        Verdict::Transient { error, .. } => (AttemptOutcome::Retry, Some(error.clone())),
    };
    outbox::attempt_finished(
        client,
        attempt_id,
        latency_ms,
        status_code,
        error.as_deref(),
        outcome,
    )
    .await?;
    metrics::counter!(
        ATTEMPTS,
        "provider" => call.provider.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    Ok((exchange, verdict))
}

/// The command stating `answer`, or `None` when there is nothing to state yet (a cancellation
/// scheduled at the period end: the provider's webhook confirms it then).
///
/// A refund is stated as `refund_payment` naming the provider's refund id and the request, so
/// the provider's own webhook for that refund finds it recorded and appends nothing.
///
/// Its idempotency key is `provider-sync:<call id>` (so a repeat after a crash appends
/// nothing), its business time when the answer was received (never before the request), its
/// issuer `payment_provider` for what the provider said and `internal` for what
/// provider-sync concluded (not supported, unreachable). The provider's own webhook for the
/// same change finds the subscription already cancelled and appends nothing (`already
/// applied`), or is stale.
fn command(call: &Call, answer: &Answer, answered_at: OffsetDateTime) -> Option<proto::Command> {
    let occurred_at = answered_at.max(call.request_occurred_at);
    let occurred_at_unix_micros =
        i64::try_from(occurred_at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    let (kind, issuer) = match answer {
        Answer::Scheduled => return None,
        Answer::Confirmed => (confirmed(call)?, proto::Issuer::PaymentProvider),
        Answer::Refunded { refund_id } => {
            let refund = call.refund.as_ref()?;
            (
                proto::command::Kind::RefundPayment(proto::PaymentRefunded {
                    refund_id: refund_id.clone(),
                    payment_id: refund.payment_id.clone(),
                    amount: Some(refund.amount.into()),
                    reason: call.reason.clone(),
                    refund_request_id: refund.refund_request_id.clone(),
                }),
                proto::Issuer::PaymentProvider,
            )
        }
        Answer::Refused { code, message } => {
            (fail(call, code, message), proto::Issuer::PaymentProvider)
        }
        Answer::NotSupported { message } => (
            fail(call, outbox::CODE_NOT_SUPPORTED, message),
            proto::Issuer::Internal,
        ),
        Answer::Unreachable { message } => (
            fail(call, outbox::CODE_UNREACHABLE, message),
            proto::Issuer::Internal,
        ),
    };
    Some(proto::Command {
        metadata: Some(proto::CommandMetadata {
            idempotency_key: format!("provider-sync:{}", call.call_id),
            customer_id: call.customer_id.to_string(),
            expected_version: None,
            occurred_at_unix_micros,
            issuer: issuer as i32,
            payment_provider: proto::PaymentProvider::from(call.provider) as i32,
            account_id: call.account_id.clone(),
            correlation_id: call
                .correlation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            causation_id: call.request_event_id.to_string(),
        }),
        kind: Some(kind),
    })
}

/// The command stating that the provider did what `call` asked: `confirm_cancellation`, or the
/// requested change itself (`pause_subscription`, `resume_subscription`, `change_plan`, which
/// answers the `subscription_update_requested`).
fn confirmed(call: &Call) -> Option<proto::command::Kind> {
    use proto::subscription_update_requested::Change;
    Some(
        match call
            .update
            .as_ref()
            .and_then(|update| update.change.clone())
        {
            None => proto::command::Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                subscription_id: call.subscription_id.clone(),
                reason: call.reason.clone(),
            }),
            Some(Change::Pause(pause)) => proto::command::Kind::PauseSubscription(pause),
            Some(Change::Resume(resume)) => proto::command::Kind::ResumeSubscription(resume),
            Some(Change::PlanChange(change)) => proto::command::Kind::ChangePlan(change),
        },
    )
}

/// `fail_cancellation` (`fail_refund` for a refund, `fail_subscription_update` for an update)
/// with `code` and `message`, cut to the ledger's limits (100 and 1,000 bytes,
/// `ledger_domain::limits`).
fn fail(call: &Call, code: &str, message: &str) -> proto::command::Kind {
    let failure_code = cut(code, FAILURE_CODE_BYTES_MAX);
    let failure_message = cut(message, FAILURE_MESSAGE_BYTES_MAX);
    match (&call.refund, &call.update) {
        (Some(refund), _) => proto::command::Kind::FailRefund(proto::RefundFailed {
            refund_request_id: refund.refund_request_id.clone(),
            failure_code,
            failure_message,
        }),
        (None, Some(_)) => {
            proto::command::Kind::FailSubscriptionUpdate(proto::SubscriptionUpdateFailed {
                subscription_id: call.subscription_id.clone(),
                failure_code,
                failure_message,
            })
        }
        (None, None) => proto::command::Kind::FailCancellation(proto::CancellationFailed {
            subscription_id: call.subscription_id.clone(),
            failure_code,
            failure_message,
        }),
    }
}

/// `ledger_domain::limits`' bounds of a failure code and message.
const FAILURE_CODE_BYTES_MAX: usize = 100;
const FAILURE_MESSAGE_BYTES_MAX: usize = 1_000;

/// `text` without control characters, at most `bytes_max` bytes, cut at a character boundary.
fn cut(text: &str, bytes_max: usize) -> String {
    let mut cut = String::with_capacity(text.len().min(bytes_max));
    for character in text.chars().filter(|character| !character.is_control()) {
        if cut.len() + character.len_utf8() > bytes_max {
            break;
        }
        cut.push(character);
    }
    cut
}

async fn connect(database_url: &str) -> Result<Client, SyncError> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "provider-sync database connection ended");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts_are_cut_to_the_ledgers_limits_at_a_character_boundary() {
        assert_eq!(cut("résumé", 3), "ré");
        assert_eq!(cut("a\nb", 10), "ab");
        assert_eq!(
            cut(&"x".repeat(2_000), FAILURE_MESSAGE_BYTES_MAX).len(),
            1_000
        );
    }

    #[test]
    fn a_round_lease_outlasts_its_requests_and_pauses() {
        let config = SyncConfig::default();
        let timeout = Duration::from_secs(10);
        let worst = (timeout + config.retry_after_in_round_max) * (config.round_attempts_max + 1);
        assert!(config.lease(timeout) > worst);
    }
}
