//! The outbox in PostgreSQL (`provider_sync_outbox`, migrations V8, V11, V12): leasing due calls,
//! logging attempts, recording answers and results.

use std::time::Duration;

use ledger_domain::{Currency, Money, Provider, proto};
use prost::Message;
use time::OffsetDateTime;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::SyncError;

/// Namespace of call ids (UUID v5 of the request event's id).
const CALL_NAMESPACE: Uuid = Uuid::from_u128(0x7a3e_51c2_94d8_4f0b_8c6e_1d2f_3b4a_5c6d);

/// The call of the request event `request_event_id`: the same on every rebuild.
pub(crate) fn call_id(request_event_id: Uuid) -> Uuid {
    Uuid::new_v5(&CALL_NAMESPACE, request_event_id.as_bytes())
}

/// What the provider is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Cancel the subscription now.
    CancelNow,
    /// Cancel it when the current period ends.
    CancelAtPeriodEnd,
    /// Refund (part of) a payment.
    Refund,
    /// Pause the subscription's collection (`subscription_update_requested` asking a pause).
    Pause,
    /// Resume a paused subscription.
    Resume,
    /// Move the subscription to another plan or quantity.
    ChangePlan,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::CancelNow => "cancel_now",
            Action::CancelAtPeriodEnd => "cancel_at_period_end",
            Action::Refund => "refund",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::ChangePlan => "change_plan",
        }
    }

    /// The action carrying out an update request.
    pub(crate) fn of_update(request: &proto::SubscriptionUpdateRequested) -> Option<Action> {
        use proto::subscription_update_requested::Change;
        Some(match request.change.as_ref()? {
            Change::Pause(_) => Action::Pause,
            Change::Resume(_) => Action::Resume,
            Change::PlanChange(_) => Action::ChangePlan,
        })
    }

    fn parse(text: &str) -> Option<Action> {
        match text {
            "cancel_now" => Some(Action::CancelNow),
            "cancel_at_period_end" => Some(Action::CancelAtPeriodEnd),
            "refund" => Some(Action::Refund),
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "change_plan" => Some(Action::ChangePlan),
            _ => None,
        }
    }
}

/// The provider's answer to a call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Done: cancelled now, paused, resumed, plan changed.
    Confirmed,
    /// Accepted for later: a cancellation at the period end, a PayPal revision awaiting the
    /// subscriber's approval; the provider's webhook confirms it then.
    Scheduled,
    /// Refunded: the provider's refund id.
    Refunded { refund_id: String },
    /// A permanent refusal (a 4xx): the provider's code and message.
    Refused { code: String, message: String },
    /// The provider has no such operation (PayPal and Xendit cancel only now).
    NotSupported { message: String },
    /// Transient failures until the retries ran out.
    Unreachable { message: String },
}

impl Answer {
    fn outcome(&self) -> &'static str {
        match self {
            Answer::Confirmed => "confirmed",
            Answer::Scheduled => "scheduled",
            Answer::Refunded { .. } => "refunded",
            Answer::Refused { .. } => "refused",
            Answer::NotSupported { .. } => "not_supported",
            Answer::Unreachable { .. } => "unreachable",
        }
    }
}

/// The refund a `refund` call asks for (`refund_requested`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefundOrder {
    pub(crate) refund_request_id: String,
    pub(crate) payment_id: String,
    /// The invoice the payment paid, if any (Xendit refunds an invoice).
    pub(crate) invoice_id: Option<String>,
    pub(crate) amount: Money,
}

/// A call a worker leased.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) call_id: Uuid,
    pub(crate) provider: Provider,
    pub(crate) action: Action,
    pub(crate) customer_id: Uuid,
    /// The subscription of a cancellation; empty for a refund.
    pub(crate) subscription_id: String,
    /// The refund of a `refund` call.
    pub(crate) refund: Option<RefundOrder>,
    /// The request of a `pause`, `resume` or `change_plan` call: the change to state as the
    /// answer.
    pub(crate) update: Option<proto::SubscriptionUpdateRequested>,
    pub(crate) account_id: String,
    pub(crate) reason: String,
    pub(crate) request_event_id: Uuid,
    pub(crate) request_occurred_at: OffsetDateTime,
    pub(crate) correlation_id: Option<Uuid>,
    /// Rounds of attempts made before this one.
    pub(crate) rounds: i32,
    /// Whether an earlier request may have reached the provider (any attempt logged): the
    /// worker then asks the provider for the object's state before acting again.
    pub(crate) attempted: bool,
    /// The recorded answer, when the call is `answered` (the command is still to send).
    pub(crate) answer: Option<(Answer, OffsetDateTime)>,
}

/// Releases every lease: called by the worker that holds the worker lock, so no other worker
/// runs, and a lease is what a worker that died left.
pub(crate) async fn release_leases(client: &Client) -> Result<(), SyncError> {
    client
        .execute(
            "UPDATE provider_sync_outbox.calls SET leased_until = NULL \
             WHERE leased_until IS NOT NULL",
            &[],
        )
        .await?;
    Ok(())
}

/// Leases up to `calls_max` due calls (pending or answered) until `now + lease`.
pub(crate) async fn claim(
    client: &Client,
    now: OffsetDateTime,
    lease: Duration,
    calls_max: i64,
) -> Result<Vec<Call>, SyncError> {
    let leased_until = now + lease;
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT call_id FROM provider_sync_outbox.calls \
               WHERE status IN ('pending', 'answered') AND next_attempt_at <= $1 \
                 AND (leased_until IS NULL OR leased_until < $1) \
               ORDER BY request_position LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE provider_sync_outbox.calls c SET leased_until = $3 FROM due \
             WHERE c.call_id = due.call_id \
             RETURNING c.call_id, c.provider, c.action, c.customer_id, \
               COALESCE(c.subscription_id, ''), \
               c.account_id, c.reason, c.request_event_id, c.request_occurred_at, \
               c.correlation_id, c.rounds, \
               EXISTS (SELECT 1 FROM provider_sync_outbox.attempts a \
                       WHERE a.call_id = c.call_id), \
               c.status, c.outcome, c.failure_code, c.failure_message, c.answered_at, \
               c.refund_request_id, c.payment_id, c.invoice_id, c.amount_minor, c.currency, \
               c.refund_id, c.update_request",
            &[&now, &calls_max, &leased_until],
        )
        .await?;
    let mut calls = Vec::with_capacity(rows.len());
    for row in rows {
        let provider: &str = row.try_get(1)?;
        let action: &str = row.try_get(2)?;
        let (Ok(provider), Some(action)) = (provider.parse::<Provider>(), Action::parse(action))
        else {
            // The table's CHECK constraints make this unreachable; skip rather than stop.
            continue;
        };
        let status: &str = row.try_get(12)?;
        let answer = if status == "answered" {
            let outcome: Option<&str> = row.try_get(13)?;
            let code: Option<String> = row.try_get(14)?;
            let message: Option<String> = row.try_get(15)?;
            let answered_at: Option<OffsetDateTime> = row.try_get(16)?;
            let answer = match outcome {
                Some("confirmed") => Some(Answer::Confirmed),
                Some("scheduled") => Some(Answer::Scheduled),
                Some("refunded") => Some(Answer::Refunded {
                    refund_id: row.try_get::<_, Option<String>>(22)?.unwrap_or_default(),
                }),
                Some("refused") => Some(Answer::Refused {
                    code: code.unwrap_or_default(),
                    message: message.unwrap_or_default(),
                }),
                Some("not_supported") => Some(Answer::NotSupported {
                    message: message.unwrap_or_default(),
                }),
                Some("unreachable") => Some(Answer::Unreachable {
                    message: message.unwrap_or_default(),
                }),
                _ => None,
            };
            answer.zip(answered_at)
        } else {
            None
        };
        let refund_request_id: Option<String> = row.try_get(17)?;
        let payment_id: Option<String> = row.try_get(18)?;
        let amount_minor: Option<i64> = row.try_get(20)?;
        let currency: Option<&str> = row.try_get(21)?;
        let currency = currency.and_then(|code| Currency::parse(code).ok());
        let refund = match (refund_request_id, payment_id, amount_minor, currency) {
            (Some(refund_request_id), Some(payment_id), Some(amount_minor), Some(currency)) => {
                Some(RefundOrder {
                    refund_request_id,
                    payment_id,
                    invoice_id: row.try_get(19)?,
                    amount: Money::new(amount_minor, currency),
                })
            }
            _ => None,
        };
        let update_request: Option<&[u8]> = row.try_get(23)?;
        let update =
            update_request.and_then(|bytes| proto::SubscriptionUpdateRequested::decode(bytes).ok());
        let updates = matches!(action, Action::Pause | Action::Resume | Action::ChangePlan);
        if (action == Action::Refund && refund.is_none()) || (updates && update.is_none()) {
            // The table's CHECK constraints make this unreachable; skip rather than stop.
            continue;
        }
        calls.push(Call {
            call_id: row.try_get(0)?,
            provider,
            action,
            customer_id: row.try_get(3)?,
            subscription_id: row.try_get(4)?,
            refund,
            update,
            account_id: row.try_get(5)?,
            reason: row.try_get(6)?,
            request_event_id: row.try_get(7)?,
            request_occurred_at: row.try_get(8)?,
            correlation_id: row.try_get(9)?,
            rounds: row.try_get(10)?,
            attempted: row.try_get(11)?,
            answer,
        });
    }
    Ok(calls)
}

/// The failure codes provider-sync itself gives (`fail_cancellation`, `fail_refund` or
/// `fail_subscription_update` issued `internal`): the provider has no such operation, or could not be reached until the retries
/// ran out.
pub(crate) const CODE_NOT_SUPPORTED: &str = "provider_sync_not_supported";
pub(crate) const CODE_UNREACHABLE: &str = "provider_sync_unreachable";

/// Logs an attempt as in flight, before the request is sent; returns its id.
pub(crate) async fn attempt_started(
    client: &Client,
    call_id: Uuid,
    request: &str,
    started_at: OffsetDateTime,
) -> Result<i64, SyncError> {
    let row = client
        .query_one(
            "INSERT INTO provider_sync_outbox.attempts (call_id, request, started_at, outcome) \
             VALUES ($1, $2, $3, 'in_flight') RETURNING attempt_id",
            &[&call_id, &request, &started_at],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    Succeeded,
    Retry,
    Refused,
}

impl AttemptOutcome {
    /// Every outcome, in the order of [`AttemptOutcome::as_str`]'s names.
    pub(crate) const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Retry,
        AttemptOutcome::Refused,
    ];

    /// The stored name: `succeeded`, `retry`, `refused`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Refused => "refused",
        }
    }
}

/// Records how the attempt `attempt_id` ended.
pub(crate) async fn attempt_finished(
    client: &Client,
    attempt_id: i64,
    latency_ms: i32,
    status_code: Option<i32>,
    error: Option<&str>,
    outcome: AttemptOutcome,
) -> Result<(), SyncError> {
    let outcome = outcome.as_str();
    client
        .execute(
            "UPDATE provider_sync_outbox.attempts SET latency_ms = $2, status_code = $3, \
               error = $4, outcome = $5 WHERE attempt_id = $1",
            &[&attempt_id, &latency_ms, &status_code, &error, &outcome],
        )
        .await?;
    Ok(())
}

/// Records the provider's answer (`answered`), unless the call was settled meanwhile; returns
/// whether it was recorded.
pub(crate) async fn record_answer(
    client: &Client,
    call_id: Uuid,
    answer: &Answer,
    answered_at: OffsetDateTime,
) -> Result<bool, SyncError> {
    let (code, message) = match answer {
        Answer::Refused { code, message } => (Some(code.as_str()), Some(message.as_str())),
        Answer::NotSupported { message } => (Some(CODE_NOT_SUPPORTED), Some(message.as_str())),
        Answer::Unreachable { message } => (Some(CODE_UNREACHABLE), Some(message.as_str())),
        Answer::Confirmed | Answer::Scheduled | Answer::Refunded { .. } => (None, None),
    };
    let refund_id = match answer {
        Answer::Refunded { refund_id } => Some(refund_id.as_str()),
        _ => None,
    };
    let updated = client
        .execute(
            "UPDATE provider_sync_outbox.calls SET status = 'answered', outcome = $2, \
               failure_code = $3, failure_message = $4, answered_at = $5, \
               next_attempt_at = $5, refund_id = $6 \
             WHERE call_id = $1 AND status = 'pending'",
            &[
                &call_id,
                &answer.outcome(),
                &code,
                &message,
                &answered_at,
                &refund_id,
            ],
        )
        .await?;
    Ok(updated == 1)
}

/// Another round later: transient failures ran out for now.
pub(crate) async fn reschedule(
    client: &Client,
    call_id: Uuid,
    rounds: i32,
    next_attempt_at: OffsetDateTime,
) -> Result<(), SyncError> {
    client
        .execute(
            "UPDATE provider_sync_outbox.calls SET rounds = $2, next_attempt_at = $3, \
               leased_until = NULL WHERE call_id = $1",
            &[&call_id, &rounds, &next_attempt_at],
        )
        .await?;
    Ok(())
}

/// The command stating the answer was answered by the writer: `result` says how.
pub(crate) async fn record_done(
    client: &Client,
    call_id: Uuid,
    result: &str,
) -> Result<(), SyncError> {
    client
        .execute(
            "UPDATE provider_sync_outbox.calls SET status = 'done', result = $2, \
               done_at = now(), leased_until = NULL WHERE call_id = $1",
            &[&call_id, &result],
        )
        .await?;
    Ok(())
}
