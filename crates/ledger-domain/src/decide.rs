//! `decide`: checks a command against the customer's state and returns the events to record.

use uuid::Uuid;

use crate::customer::{
    BillingInterval, Customer, InvoiceStatus, Payment, PaymentStatus, Plan, ProviderAccount,
    RefundRequest, Subscription, SubscriptionStatus, discount_from_proto, discount_to_proto,
    interval_from_proto, provider_from_proto,
};
use crate::email::email;
use crate::limits::{
    AMOUNT_MINOR_MAX, FAILURE_CODE_BYTES_MAX, ID_BYTES_MAX, IDEMPOTENCY_KEY_BYTES_MAX,
    INTERVAL_DAYS_MAX, INTERVAL_MONTHS_MAX, INTERVAL_WEEKS_MAX, INTERVAL_YEARS_MAX, NAME_BYTES_MAX,
    PERCENT_OFF_BASIS_POINTS_MAX, QUANTITY_MAX, TEXT_BYTES_MAX, UNIX_SECONDS_MAX,
};
use crate::money::{Currency, Money};
use crate::names::{EnumValueError, EventStatus, truncated};
use crate::proto::command::Kind as Command;
use crate::rejection::Rejection;
use crate::{Event, proto};

const MICROS_PER_SECOND: i128 = 1_000_000;

/// Every command name, in the order of the `ledger.v1.Command` oneof (tags 10 to 37).
pub const COMMAND_NAMES: &[&str] = &[
    "register_customer",
    "update_customer_profile",
    "link_provider_account",
    "start_subscription",
    "convert_trial",
    "change_plan",
    "request_cancellation",
    "confirm_cancellation",
    "fail_cancellation",
    "pause_subscription",
    "resume_subscription",
    "reactivate_subscription",
    "issue_invoice",
    "finalize_invoice",
    "record_payment_succeeded",
    "record_payment_failed",
    "refund_payment",
    "open_dispute",
    "close_dispute",
    "register_integration",
    "update_integration",
    "pause_integration",
    "resume_integration",
    "remove_integration",
    "request_refund",
    "fail_refund",
    "request_subscription_update",
    "fail_subscription_update",
];

/// The command's name: its field name in `ledger.v1.Command` (the NATS subject is
/// `ledger.cmd.<name>`), e.g. `"register_customer"`.
pub fn command_name(command: &Command) -> &'static str {
    match command {
        Command::RegisterCustomer(_) => "register_customer",
        Command::UpdateCustomerProfile(_) => "update_customer_profile",
        Command::LinkProviderAccount(_) => "link_provider_account",
        Command::StartSubscription(_) => "start_subscription",
        Command::ConvertTrial(_) => "convert_trial",
        Command::ChangePlan(_) => "change_plan",
        Command::RequestCancellation(_) => "request_cancellation",
        Command::ConfirmCancellation(_) => "confirm_cancellation",
        Command::FailCancellation(_) => "fail_cancellation",
        Command::PauseSubscription(_) => "pause_subscription",
        Command::ResumeSubscription(_) => "resume_subscription",
        Command::ReactivateSubscription(_) => "reactivate_subscription",
        Command::IssueInvoice(_) => "issue_invoice",
        Command::FinalizeInvoice(_) => "finalize_invoice",
        Command::RecordPaymentSucceeded(_) => "record_payment_succeeded",
        Command::RecordPaymentFailed(_) => "record_payment_failed",
        Command::RefundPayment(_) => "refund_payment",
        Command::OpenDispute(_) => "open_dispute",
        Command::CloseDispute(_) => "close_dispute",
        Command::RegisterIntegration(_) => "register_integration",
        Command::UpdateIntegration(_) => "update_integration",
        Command::PauseIntegration(_) => "pause_integration",
        Command::ResumeIntegration(_) => "resume_integration",
        Command::RemoveIntegration(_) => "remove_integration",
        Command::RequestRefund(_) => "request_refund",
        Command::FailRefund(_) => "fail_refund",
        Command::RequestSubscriptionUpdate(_) => "request_subscription_update",
        Command::FailSubscriptionUpdate(_) => "fail_subscription_update",
    }
}

/// Checks `command` against `state` and returns the events to append (today always exactly
/// one, the command's body made canonical), or why nothing may be recorded.
///
/// Pure and deterministic: time comes from `metadata.occurred_at_unix_micros`, ids from the
/// command. Checks, in order: the command's kind and metadata, `expected_version`, that the
/// customer is registered (except for `register_customer`), then the body against the state.
///
/// Canonical forms: emails and names are trimmed; a `trial_end_unix_seconds` that is not after
/// `occurred_at` is dropped (no trial); a payment for a subscription's invoice names that
/// subscription.
pub fn decide(state: &Customer, command: &proto::Command) -> Result<Vec<Event>, Rejection> {
    let kind = command
        .kind
        .as_ref()
        .ok_or(Rejection::MissingField { field: "kind" })?;
    let is_registration = matches!(kind, Command::RegisterCustomer(_));
    let metadata = check_metadata(command.metadata.as_ref(), is_registration)?;
    if let Some(expected) = metadata.expected_version
        && expected != state.version
    {
        return Err(Rejection::VersionConflict {
            expected,
            actual: state.version,
        });
    }
    if !is_registration && !state.is_registered() {
        return Err(Rejection::CustomerNotRegistered);
    }
    let event = decide_kind(state, kind, &metadata)?;
    Ok(vec![event])
}

#[derive(Debug)]
pub(crate) struct Metadata {
    pub(crate) expected_version: Option<u64>,
    pub(crate) occurred_at_unix_micros: i64,
}

pub(crate) fn check_metadata(
    metadata: Option<&proto::CommandMetadata>,
    is_registration: bool,
) -> Result<Metadata, Rejection> {
    let metadata = metadata.ok_or(Rejection::MissingField { field: "metadata" })?;
    let key = &metadata.idempotency_key;
    if key.is_empty() {
        return Err(Rejection::MissingField {
            field: "metadata.idempotency_key",
        });
    }
    if key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field: "metadata.idempotency_key",
            reason: "longer than IDEMPOTENCY_KEY_BYTES_MAX (200 bytes)",
        });
    }
    if key.chars().any(char::is_control) {
        return Err(Rejection::InvalidField {
            field: "metadata.idempotency_key",
            reason: "contains NUL or another control character",
        });
    }
    if metadata.customer_id.is_empty() {
        if !is_registration {
            return Err(Rejection::MissingField {
                field: "metadata.customer_id",
            });
        }
    } else {
        uuid("metadata.customer_id", &metadata.customer_id)?;
    }
    match metadata.occurred_at_unix_micros {
        0 => {
            return Err(Rejection::MissingField {
                field: "metadata.occurred_at_unix_micros",
            });
        }
        micros if micros < 0 => {
            return Err(Rejection::InvalidField {
                field: "metadata.occurred_at_unix_micros",
                reason: "before 1970: expected positive Unix microseconds",
            });
        }
        micros if micros > OCCURRED_AT_UNIX_MICROS_MAX => {
            return Err(out_of_range(
                "metadata.occurred_at_unix_micros",
                micros,
                "Unix microseconds",
                OCCURRED_AT_UNIX_MICROS_MAX,
                TIME_REASON,
            ));
        }
        _ => {}
    }
    match proto::Issuer::try_from(metadata.issuer) {
        Ok(proto::Issuer::Unspecified) => {
            return Err(Rejection::MissingField {
                field: "metadata.issuer",
            });
        }
        Ok(_) => {}
        Err(_) => {
            return Err(Rejection::InvalidField {
                field: "metadata.issuer",
                reason: "unknown issuer value",
            });
        }
    }
    // Every event records the provider it came through (`internal` for the company's own).
    match provider_from_proto(metadata.payment_provider) {
        Ok(_) => {}
        Err(EnumValueError::Unspecified { .. }) => {
            return Err(Rejection::MissingField {
                field: "metadata.payment_provider",
            });
        }
        Err(EnumValueError::Unknown { .. }) => {
            return Err(Rejection::InvalidField {
                field: "metadata.payment_provider",
                reason: "unknown payment provider value",
            });
        }
    }
    optional_id("metadata.account_id", &metadata.account_id)?;
    if !metadata.correlation_id.is_empty() {
        uuid("metadata.correlation_id", &metadata.correlation_id)?;
    }
    if !metadata.causation_id.is_empty() {
        uuid("metadata.causation_id", &metadata.causation_id)?;
    }
    Ok(Metadata {
        expected_version: metadata.expected_version,
        occurred_at_unix_micros: metadata.occurred_at_unix_micros,
    })
}

fn decide_kind(state: &Customer, kind: &Command, metadata: &Metadata) -> Result<Event, Rejection> {
    use SubscriptionStatus as S;
    use proto::event::Kind as E;

    let name = command_name(kind);
    let event =
        match kind {
            Command::RegisterCustomer(body) => {
                if state.is_registered() {
                    return Err(Rejection::CustomerAlreadyRegistered);
                }
                let provider_account = body
                    .provider_account
                    .as_ref()
                    .map(|account| provider_account(account).map(|_| account.clone()))
                    .transpose()?;
                E::CustomerRegistered(proto::CustomerRegistered {
                    email: email("email", &body.email)?,
                    name: customer_name("name", &body.name)?,
                    provider_account,
                })
            }
            Command::UpdateCustomerProfile(body) => {
                if body.email.is_none() && body.name.is_none() {
                    return Err(Rejection::MissingField {
                        field: "email or name",
                    });
                }
                E::CustomerProfileUpdated(proto::CustomerProfileUpdated {
                    email: body
                        .email
                        .as_deref()
                        .map(|value| email("email", value))
                        .transpose()?,
                    name: body
                        .name
                        .as_deref()
                        .map(|value| customer_name("name", value))
                        .transpose()?,
                })
            }
            Command::LinkProviderAccount(body) => {
                let wire = body
                    .provider_account
                    .as_ref()
                    .ok_or(Rejection::MissingField {
                        field: "provider_account",
                    })?;
                let account = provider_account(wire)?;
                if state.provider_accounts.contains(&account) {
                    return Err(Rejection::ProviderAccountAlreadyLinked {
                        provider: account.provider,
                        account_id: account.account_id,
                    });
                }
                E::ProviderAccountLinked(body.clone())
            }
            Command::StartSubscription(body) => {
                id("subscription_id", &body.subscription_id)?;
                if state.subscriptions.contains_key(&body.subscription_id) {
                    return Err(Rejection::SubscriptionAlreadyExists {
                        subscription_id: body.subscription_id.clone(),
                    });
                }
                let plan = plan(body.plan.as_ref())?;
                quantity(&plan, body.quantity)?;
                discount(body.discount.as_ref(), plan.unit_price.currency)?;
                if body.current_period_end_unix_seconds <= 0 {
                    return Err(Rejection::MissingField {
                        field: "current_period_end_unix_seconds",
                    });
                }
                unix_seconds(
                    "current_period_end_unix_seconds",
                    body.current_period_end_unix_seconds,
                )?;
                if let Some(trial_end) = body.trial_end_unix_seconds {
                    unix_seconds("trial_end_unix_seconds", trial_end)?;
                }
                let trial_end_unix_seconds = body.trial_end_unix_seconds.filter(|trial_end| {
                    i128::from(*trial_end) * MICROS_PER_SECOND
                        > i128::from(metadata.occurred_at_unix_micros)
                });
                E::SubscriptionStarted(proto::SubscriptionStarted {
                    trial_end_unix_seconds,
                    ..body.clone()
                })
            }
            Command::ConvertTrial(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                if !subscription.in_trial() {
                    return Err(Rejection::InvalidTransition {
                        subscription_id: body.subscription_id.clone(),
                        from: subscription.status,
                        command: name,
                    });
                }
                E::TrialConverted(body.clone())
            }
            Command::ChangePlan(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                plan_change(subscription, body, name)?;
                E::PlanChanged(body.clone())
            }
            Command::RequestCancellation(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                allowed(&body.subscription_id, subscription, name, |s| {
                    s != S::Canceled
                })?;
                if subscription.pending_cancellation.is_some() {
                    return Err(Rejection::CancellationAlreadyPending {
                        subscription_id: body.subscription_id.clone(),
                    });
                }
                text("reason", &body.reason, TEXT_BYTES_MAX)?;
                E::CancellationRequested(body.clone())
            }
            Command::ConfirmCancellation(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                allowed(&body.subscription_id, subscription, name, |s| {
                    s != S::Canceled
                })?;
                text("reason", &body.reason, TEXT_BYTES_MAX)?;
                E::SubscriptionCancelled(body.clone())
            }
            Command::FailCancellation(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                if subscription.pending_cancellation.is_none() {
                    return Err(Rejection::NoPendingCancellation {
                        subscription_id: body.subscription_id.clone(),
                    });
                }
                text("failure_code", &body.failure_code, FAILURE_CODE_BYTES_MAX)?;
                text("failure_message", &body.failure_message, TEXT_BYTES_MAX)?;
                E::CancellationFailed(body.clone())
            }
            Command::PauseSubscription(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                pause(subscription, body, name, metadata)?;
                E::SubscriptionPaused(body.clone())
            }
            Command::ResumeSubscription(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                allowed(&body.subscription_id, subscription, name, |s| {
                    s == S::Paused
                })?;
                E::SubscriptionResumed(body.clone())
            }
            Command::RequestSubscriptionUpdate(body) => {
                E::SubscriptionUpdateRequested(update_request(state, body, name, metadata)?)
            }
            Command::FailSubscriptionUpdate(body) => {
                let subscription = subscription(state, &body.subscription_id)?;
                if subscription.pending_update.is_none() {
                    return Err(Rejection::NoPendingUpdate {
                        subscription_id: body.subscription_id.clone(),
                    });
                }
                text("failure_code", &body.failure_code, FAILURE_CODE_BYTES_MAX)?;
                text("failure_message", &body.failure_message, TEXT_BYTES_MAX)?;
                E::SubscriptionUpdateFailed(body.clone())
            }
            Command::ReactivateSubscription(body) => {
                let subscription = changed_subscription(state, &body.subscription_id, metadata)?;
                allowed(&body.subscription_id, subscription, name, |s| {
                    matches!(s, S::CancelPending | S::Canceled)
                })?;
                E::SubscriptionReactivated(body.clone())
            }
            Command::IssueInvoice(body) => {
                id("invoice_id", &body.invoice_id)?;
                if state.invoices.contains_key(&body.invoice_id) {
                    return Err(Rejection::DuplicateInvoice {
                        invoice_id: body.invoice_id.clone(),
                    });
                }
                let amount_due = money("amount_due", body.amount_due.as_ref())?;
                if amount_due.amount_minor < 0 {
                    return Err(Rejection::InvalidAmount {
                        field: "amount_due",
                        amount: amount_due.amount_minor,
                        reason: "an invoice is zero or more",
                    });
                }
                if let Some(subscription_id) =
                    optional_id("subscription_id", &body.subscription_id)?
                {
                    let subscription = subscription(state, subscription_id)?;
                    same_currency("amount_due", subscription.currency(), amount_due.currency)?;
                }
                if body.period_start_unix_seconds < 0 || body.period_end_unix_seconds < 0 {
                    return Err(Rejection::InvalidField {
                        field: "period_start_unix_seconds",
                        reason: "before 1970: expected Unix seconds, or 0 for none",
                    });
                }
                unix_seconds("period_start_unix_seconds", body.period_start_unix_seconds)?;
                unix_seconds("period_end_unix_seconds", body.period_end_unix_seconds)?;
                if body.period_end_unix_seconds < body.period_start_unix_seconds {
                    return Err(Rejection::InvalidField {
                        field: "period_end_unix_seconds",
                        reason: "before period_start_unix_seconds",
                    });
                }
                E::InvoiceIssued(body.clone())
            }
            Command::FinalizeInvoice(body) => {
                id("invoice_id", &body.invoice_id)?;
                let invoice = state.invoices.get(&body.invoice_id).ok_or_else(|| {
                    Rejection::UnknownInvoice {
                        invoice_id: body.invoice_id.clone(),
                    }
                })?;
                if invoice.status != InvoiceStatus::Open {
                    return Err(Rejection::InvoiceAlreadyFinalized {
                        invoice_id: body.invoice_id.clone(),
                        status: invoice.status,
                    });
                }
                E::InvoiceFinalized(body.clone())
            }
            Command::RecordPaymentSucceeded(body) => {
                let target = payment(
                    state,
                    PaymentStatus::Succeeded,
                    &body.payment_id,
                    body.amount.as_ref(),
                    &body.invoice_id,
                    &body.subscription_id,
                )?;
                E::PaymentSucceeded(proto::PaymentSucceeded {
                    subscription_id: target,
                    ..body.clone()
                })
            }
            Command::RecordPaymentFailed(body) => {
                let target = payment(
                    state,
                    PaymentStatus::Failed,
                    &body.payment_id,
                    body.amount.as_ref(),
                    &body.invoice_id,
                    &body.subscription_id,
                )?;
                text("failure_code", &body.failure_code, FAILURE_CODE_BYTES_MAX)?;
                text("failure_message", &body.failure_message, TEXT_BYTES_MAX)?;
                E::PaymentFailed(proto::PaymentFailed {
                    subscription_id: target,
                    ..body.clone()
                })
            }
            Command::RefundPayment(body) => {
                id("refund_id", &body.refund_id)?;
                let request_id = optional_id("refund_request_id", &body.refund_request_id)?;
                if request_id.is_none() && state.refunds.contains_key(&body.refund_id) {
                    return Err(Rejection::DuplicateRefund {
                        refund_id: body.refund_id.clone(),
                    });
                }
                let payment = succeeded_payment(state, &body.payment_id)?;
                let requested = positive_money("amount", body.amount.as_ref())?;
                same_currency("amount", payment.amount.currency, requested.currency)?;
                if let Some(request_id) = request_id {
                    let request = processing_refund_request(state, request_id)?;
                    if request.payment_id != body.payment_id || request.amount != requested {
                        return Err(Rejection::RefundRequestMismatch {
                            refund_request_id: request_id.to_owned(),
                            payment_id: request.payment_id.clone(),
                            requested: request.amount,
                        });
                    }
                    // The provider's webhook for this refund came first: the answer only
                    // completes the request.
                    let recorded = state.refunds.get(&body.refund_id);
                    if recorded.is_some_and(|refund| {
                        refund.payment_id == body.payment_id && refund.amount == requested
                    }) {
                        text("reason", &body.reason, TEXT_BYTES_MAX)?;
                        return Ok(E::PaymentRefunded(body.clone()));
                    }
                }
                if state.refunds.contains_key(&body.refund_id) {
                    return Err(Rejection::DuplicateRefund {
                        refund_id: body.refund_id.clone(),
                    });
                }
                refundable(
                    state,
                    &body.payment_id,
                    payment,
                    requested,
                    None,
                    metadata.occurred_at_unix_micros,
                )?;
                text("reason", &body.reason, TEXT_BYTES_MAX)?;
                E::PaymentRefunded(body.clone())
            }
            Command::RequestRefund(body) => {
                id("refund_request_id", &body.refund_request_id)?;
                if state.refund_requests.contains_key(&body.refund_request_id) {
                    return Err(Rejection::DuplicateRefundRequest {
                        refund_request_id: body.refund_request_id.clone(),
                    });
                }
                let payment = succeeded_payment(state, &body.payment_id)?;
                let requested = positive_money("amount", body.amount.as_ref())?;
                same_currency("amount", payment.amount.currency, requested.currency)?;
                let pending = state
                    .refund_requested(&body.payment_id, payment.amount.currency)
                    .ok_or(Rejection::InvalidAmount {
                        field: "amount",
                        amount: requested.amount_minor,
                        reason: "the refunds requested of this payment overflow",
                    })?;
                // A request is made now, whatever time it names: never before a dispute.
                refundable(
                    state,
                    &body.payment_id,
                    payment,
                    requested,
                    Some(pending),
                    i64::MAX,
                )?;
                text("reason", &body.reason, TEXT_BYTES_MAX)?;
                E::RefundRequested(body.clone())
            }
            Command::FailRefund(body) => {
                id("refund_request_id", &body.refund_request_id)?;
                processing_refund_request(state, &body.refund_request_id)?;
                text("failure_code", &body.failure_code, FAILURE_CODE_BYTES_MAX)?;
                text("failure_message", &body.failure_message, TEXT_BYTES_MAX)?;
                E::RefundFailed(body.clone())
            }
            Command::OpenDispute(body) => {
                id("dispute_id", &body.dispute_id)?;
                if state.disputes.contains_key(&body.dispute_id) {
                    return Err(Rejection::DuplicateDispute {
                        dispute_id: body.dispute_id.clone(),
                    });
                }
                let payment = succeeded_payment(state, &body.payment_id)?;
                if let Some(dispute_id) = &payment.dispute_id {
                    return Err(Rejection::PaymentAlreadyDisputed {
                        payment_id: body.payment_id.clone(),
                        dispute_id: dispute_id.clone(),
                    });
                }
                let requested = positive_money("amount", body.amount.as_ref())?;
                same_currency("amount", payment.amount.currency, requested.currency)?;
                if requested.amount_minor > payment.amount.amount_minor {
                    return Err(Rejection::DisputeExceedsPayment {
                        payment_id: body.payment_id.clone(),
                        paid: payment.amount,
                        requested,
                    });
                }
                text("reason", &body.reason, TEXT_BYTES_MAX)?;
                E::DisputeOpened(body.clone())
            }
            Command::CloseDispute(body) => {
                id("dispute_id", &body.dispute_id)?;
                match proto::DisputeOutcome::try_from(body.outcome) {
                    Ok(proto::DisputeOutcome::Unspecified) => {
                        return Err(Rejection::MissingField { field: "outcome" });
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(Rejection::InvalidField {
                            field: "outcome",
                            reason: "unknown dispute outcome value",
                        });
                    }
                }
                let dispute = state.disputes.get(&body.dispute_id).ok_or_else(|| {
                    Rejection::UnknownDispute {
                        dispute_id: body.dispute_id.clone(),
                    }
                })?;
                if dispute.status != crate::DisputeStatus::Open {
                    return Err(Rejection::DisputeAlreadyClosed {
                        dispute_id: body.dispute_id.clone(),
                    });
                }
                E::DisputeClosed(body.clone())
            }
            Command::RegisterIntegration(_)
            | Command::UpdateIntegration(_)
            | Command::PauseIntegration(_)
            | Command::ResumeIntegration(_)
            | Command::RemoveIntegration(_) => {
                return Err(Rejection::WrongStream {
                    stream: "customer",
                    command: name,
                });
            }
        };
    Ok(event)
}

/// Checks a pause of `subscription` (`pause_subscription`, or the pause a
/// `request_subscription_update` asks for): it is active, trialing or past due, and a resume
/// date is after the command's business time.
fn pause(
    subscription: &Subscription,
    body: &proto::SubscriptionPaused,
    command: &'static str,
    metadata: &Metadata,
) -> Result<(), Rejection> {
    use SubscriptionStatus as S;
    allowed(&body.subscription_id, subscription, command, |s| {
        matches!(s, S::Active | S::Trialing | S::PastDue)
    })?;
    if let Some(resumes_at) = body.resumes_at_unix_seconds {
        unix_seconds("resumes_at_unix_seconds", resumes_at)?;
        if i128::from(resumes_at) * MICROS_PER_SECOND
            <= i128::from(metadata.occurred_at_unix_micros)
        {
            return Err(Rejection::InvalidField {
                field: "resumes_at_unix_seconds",
                reason: "not after metadata.occurred_at_unix_micros",
            });
        }
    }
    Ok(())
}

/// Checks a plan change of `subscription` (`change_plan`, or the change a
/// `request_subscription_update` asks for): not cancelled, a valid plan in the subscription's
/// currency, quantity and discount.
fn plan_change(
    subscription: &Subscription,
    body: &proto::PlanChanged,
    command: &'static str,
) -> Result<(), Rejection> {
    allowed(&body.subscription_id, subscription, command, |s| {
        s != SubscriptionStatus::Canceled
    })?;
    let plan = plan(body.plan.as_ref())?;
    same_currency(
        "plan.unit_price",
        subscription.currency(),
        plan.unit_price.currency,
    )?;
    quantity(&plan, body.quantity)?;
    discount(body.discount.as_ref(), plan.unit_price.currency)
}

/// `request_subscription_update` made canonical: the change names the request's subscription,
/// and a plan change carries the subscription's current discount (a request cannot change it:
/// the providers keep a subscription's coupon through a plan change).
fn update_request(
    state: &Customer,
    body: &proto::SubscriptionUpdateRequested,
    command: &'static str,
    metadata: &Metadata,
) -> Result<proto::SubscriptionUpdateRequested, Rejection> {
    use proto::subscription_update_requested::Change;
    let subscription = subscription(state, &body.subscription_id)?;
    allowed(&body.subscription_id, subscription, command, |s| {
        s != SubscriptionStatus::Canceled
    })?;
    if subscription.pending_update.is_some() {
        return Err(Rejection::UpdateAlreadyPending {
            subscription_id: body.subscription_id.clone(),
        });
    }
    let change = body.change.as_ref().ok_or(Rejection::MissingField {
        field: "pause, resume or plan_change",
    })?;
    let named = |inner: &str| {
        if inner.is_empty() || inner == body.subscription_id {
            Ok(body.subscription_id.clone())
        } else {
            Err(Rejection::InvalidField {
                field: "subscription_id",
                reason: "the change names another subscription than the request",
            })
        }
    };
    let change = match change {
        Change::Pause(pause_body) => {
            let pause_body = proto::SubscriptionPaused {
                subscription_id: named(&pause_body.subscription_id)?,
                ..pause_body.clone()
            };
            pause(subscription, &pause_body, command, metadata)?;
            Change::Pause(pause_body)
        }
        Change::Resume(resume_body) => {
            let subscription_id = named(&resume_body.subscription_id)?;
            allowed(&subscription_id, subscription, command, |s| {
                s == SubscriptionStatus::Paused
            })?;
            Change::Resume(proto::SubscriptionResumed { subscription_id })
        }
        Change::PlanChange(change_body) => {
            let current = subscription.discount.as_ref().map(discount_to_proto);
            if change_body.discount.is_some() && change_body.discount != current {
                return Err(Rejection::InvalidField {
                    field: "plan_change.discount",
                    reason: "a requested plan change keeps the subscription's discount; leave it \
                             out",
                });
            }
            let change_body = proto::PlanChanged {
                subscription_id: named(&change_body.subscription_id)?,
                discount: current,
                ..change_body.clone()
            };
            plan_change(subscription, &change_body, command)?;
            Change::PlanChange(change_body)
        }
    };
    text("reason", &body.reason, TEXT_BYTES_MAX)?;
    Ok(proto::SubscriptionUpdateRequested {
        subscription_id: body.subscription_id.clone(),
        change: Some(change),
        reason: body.reason.clone(),
    })
}

/// The subscription a command names, or why it cannot be used.
fn subscription<'a>(
    state: &'a Customer,
    subscription_id: &str,
) -> Result<&'a Subscription, Rejection> {
    id("subscription_id", subscription_id)?;
    state
        .subscriptions
        .get(subscription_id)
        .ok_or_else(|| Rejection::UnknownSubscription {
            subscription_id: subscription_id.to_owned(),
        })
}

/// The subscription whose life a command changes, unless the command is stale: dated before
/// the subscription's latest change ([`Subscription::changed_at_unix_micros`]). Providers
/// deliver late and out of order; the newer fact stands (Stripe advises comparing object
/// timestamps and ignoring older snapshots), see `docs/decisions/0014-stale-changes.md`.
fn changed_subscription<'a>(
    state: &'a Customer,
    subscription_id: &str,
    metadata: &Metadata,
) -> Result<&'a Subscription, Rejection> {
    let subscription = subscription(state, subscription_id)?;
    if metadata.occurred_at_unix_micros < subscription.changed_at_unix_micros {
        return Err(Rejection::Stale {
            subscription_id: subscription_id.to_owned(),
            occurred_at_unix_micros: metadata.occurred_at_unix_micros,
            changed_at_unix_micros: subscription.changed_at_unix_micros,
        });
    }
    Ok(subscription)
}

fn allowed(
    subscription_id: &str,
    subscription: &Subscription,
    command: &'static str,
    rule: impl Fn(SubscriptionStatus) -> bool,
) -> Result<(), Rejection> {
    if rule(subscription.status) {
        Ok(())
    } else {
        Err(Rejection::InvalidTransition {
            subscription_id: subscription_id.to_owned(),
            from: subscription.status,
            command,
        })
    }
}

fn same_currency(
    field: &'static str,
    expected: Currency,
    actual: Currency,
) -> Result<(), Rejection> {
    if expected == actual {
        Ok(())
    } else {
        Err(Rejection::CurrencyMismatch {
            field,
            expected,
            actual,
        })
    }
}

/// The refund request `refund_request_id` while it is processing.
fn processing_refund_request<'a>(
    state: &'a Customer,
    refund_request_id: &str,
) -> Result<&'a RefundRequest, Rejection> {
    state
        .refund_requests
        .get(refund_request_id)
        .filter(|request| request.status == EventStatus::Processing)
        .ok_or_else(|| Rejection::NoPendingRefundRequest {
            refund_request_id: refund_request_id.to_owned(),
        })
}

/// Whether `requested` may be refunded of `payment`, a refund made at business time
/// `at_unix_micros` (`i64::MAX` for a request, which asks for one now): not once a dispute is
/// open or lost (a refund recorded as made before the dispute was opened is, whichever the
/// provider delivered first: Stripe does not promise webhooks in order), and its refunds, with
/// the requests still processing (`pending`, for `request_refund`), at most what was paid.
fn refundable(
    state: &Customer,
    payment_id: &str,
    payment: &Payment,
    requested: Money,
    pending: Option<Money>,
    at_unix_micros: i64,
) -> Result<(), Rejection> {
    if let Some(dispute_id) = &payment.dispute_id {
        let blocks = state.disputes.get(dispute_id).is_none_or(|dispute| {
            dispute.status != crate::DisputeStatus::Won
                && at_unix_micros >= dispute.opened_at_unix_micros
        });
        if blocks {
            return Err(Rejection::PaymentDisputed {
                payment_id: payment_id.to_owned(),
                dispute_id: dispute_id.clone(),
            });
        }
    }
    let refunded = match pending {
        Some(pending) => payment.refunded.checked_add(pending),
        None => Ok(payment.refunded),
    };
    let fits = refunded
        .clone()
        .and_then(|total| total.checked_add(requested))
        .is_ok_and(|total| total.amount_minor <= payment.amount.amount_minor);
    if fits {
        return Ok(());
    }
    Err(match (pending, refunded) {
        (Some(_), Ok(taken)) => Rejection::RefundExceedsRefundable {
            payment_id: payment_id.to_owned(),
            refundable: Money::new(
                payment
                    .amount
                    .amount_minor
                    .saturating_sub(taken.amount_minor)
                    .max(0),
                payment.amount.currency,
            ),
            requested,
        },
        _ => Rejection::RefundExceedsPayment {
            payment_id: payment_id.to_owned(),
            paid: payment.amount,
            already_refunded: payment.refunded,
            requested,
        },
    })
}

fn succeeded_payment<'a>(state: &'a Customer, payment_id: &str) -> Result<&'a Payment, Rejection> {
    id("payment_id", payment_id)?;
    let payment = state
        .payments
        .get(payment_id)
        .ok_or_else(|| Rejection::UnknownPayment {
            payment_id: payment_id.to_owned(),
        })?;
    if payment.status != PaymentStatus::Succeeded {
        return Err(Rejection::PaymentNotSucceeded {
            payment_id: payment_id.to_owned(),
        });
    }
    Ok(payment)
}

/// Checks a payment (succeeded or failed) and returns the subscription id it is for: the one
/// given, or else its invoice's, or empty. A success for a paid invoice is refused; a failed
/// attempt is recorded whatever its invoice became since (providers deliver out of order).
fn payment(
    state: &Customer,
    status: PaymentStatus,
    payment_id: &str,
    amount: Option<&proto::Money>,
    invoice_id: &str,
    subscription_id: &str,
) -> Result<String, Rejection> {
    id("payment_id", payment_id)?;
    if state.payments.contains_key(payment_id) {
        return Err(Rejection::DuplicatePayment {
            payment_id: payment_id.to_owned(),
        });
    }
    let amount = positive_money("amount", amount)?;
    let mut target = optional_id("subscription_id", subscription_id)?.map(str::to_owned);
    if let Some(invoice_id) = optional_id("invoice_id", invoice_id)? {
        let invoice = state
            .invoices
            .get(invoice_id)
            .ok_or_else(|| Rejection::UnknownInvoice {
                invoice_id: invoice_id.to_owned(),
            })?;
        if status == PaymentStatus::Succeeded && invoice.status == InvoiceStatus::Paid {
            return Err(Rejection::InvoiceAlreadyPaid {
                invoice_id: invoice_id.to_owned(),
            });
        }
        same_currency("amount", invoice.amount_due.currency, amount.currency)?;
        match (&target, &invoice.subscription_id) {
            (None, from_invoice) => target.clone_from(from_invoice),
            (Some(given), Some(from_invoice)) if given == from_invoice => {}
            (Some(given), _) => {
                return Err(Rejection::InvoiceSubscriptionMismatch {
                    invoice_id: invoice_id.to_owned(),
                    subscription_id: given.clone(),
                });
            }
        }
    }
    if let Some(subscription_id) = &target {
        let subscription = subscription(state, subscription_id)?;
        same_currency("amount", subscription.currency(), amount.currency)?;
    }
    Ok(target.unwrap_or_default())
}

pub(crate) fn money(field: &'static str, money: Option<&proto::Money>) -> Result<Money, Rejection> {
    let money = money.ok_or(Rejection::MissingField { field })?;
    let parsed = Money::try_from(money).map_err(|_| Rejection::InvalidCurrency {
        field,
        code: truncated(&money.currency, 32),
    })?;
    if parsed.amount_minor.unsigned_abs() > AMOUNT_MINOR_MAX.unsigned_abs() {
        return Err(Rejection::OutOfRange {
            field,
            value: parsed.amount_minor,
            unit: "minor units",
            min: -AMOUNT_MINOR_MAX,
            max: AMOUNT_MINOR_MAX,
            reason: AMOUNT_REASON,
        });
    }
    Ok(parsed)
}

/// Why amounts are bounded (see [`AMOUNT_MINOR_MAX`]).
pub(crate) const AMOUNT_REASON: &str = "every figure derived from an amount (ARR of a daily price, sums in \
    MRR units) must stay exact; the bound is ledger_domain::limits::AMOUNT_MINOR_MAX";
/// Why quantities are bounded (see [`QUANTITY_MAX`]).
pub(crate) const QUANTITY_REASON: &str =
    "the read models keep a quantity as a 32-bit integer (ledger_domain::limits::QUANTITY_MAX)";
/// Why a quantity is bounded by the price (see [`AMOUNT_MINOR_MAX`]).
pub(crate) const PERIOD_AMOUNT_REASON: &str = "at this price, price x quantity (what one \
    period bills) would pass ledger_domain::limits::AMOUNT_MINOR_MAX";
/// Why times are bounded (see [`UNIX_SECONDS_MAX`]).
pub(crate) const TIME_REASON: &str = "times are from 1970 to 9999-12-31T23:59:59Z, what PostgreSQL \
    timestamptz and ISO 8601 dates represent (ledger_domain::limits::UNIX_SECONDS_MAX)";
/// [`UNIX_SECONDS_MAX`] in microseconds, up to the last microsecond of that second.
const OCCURRED_AT_UNIX_MICROS_MAX: i64 = UNIX_SECONDS_MAX * 1_000_000 + 999_999;

fn out_of_range(
    field: &'static str,
    value: i64,
    unit: &'static str,
    max: i64,
    reason: &'static str,
) -> Rejection {
    Rejection::OutOfRange {
        field,
        value,
        unit,
        min: 0,
        max,
        reason,
    }
}

/// A time in Unix seconds within `0..=UNIX_SECONDS_MAX`.
fn unix_seconds(field: &'static str, seconds: i64) -> Result<(), Rejection> {
    if (0..=UNIX_SECONDS_MAX).contains(&seconds) {
        return Ok(());
    }
    Err(out_of_range(
        field,
        seconds,
        "Unix seconds",
        UNIX_SECONDS_MAX,
        TIME_REASON,
    ))
}

fn positive_money(field: &'static str, value: Option<&proto::Money>) -> Result<Money, Rejection> {
    let value = money(field, value)?;
    if value.amount_minor <= 0 {
        return Err(Rejection::InvalidAmount {
            field,
            amount: value.amount_minor,
            reason: "must be positive",
        });
    }
    Ok(value)
}

/// A subscription's quantity: at least 1, at most [`QUANTITY_MAX`], and with `plan`'s price
/// billing at most [`AMOUNT_MINOR_MAX`] a period (the range names the largest quantity at
/// that price).
fn quantity(plan: &Plan, quantity: u32) -> Result<(), Rejection> {
    if quantity == 0 {
        return Err(Rejection::InvalidAmount {
            field: "quantity",
            amount: 0,
            reason: "a subscription has at least one unit",
        });
    }
    // At this price, what one period bills (price x quantity) stays within the amount bound.
    let (max, reason) = match AMOUNT_MINOR_MAX.checked_div(plan.unit_price.amount_minor) {
        Some(at_price) if at_price < i64::from(QUANTITY_MAX) => (at_price, PERIOD_AMOUNT_REASON),
        _ => (i64::from(QUANTITY_MAX), QUANTITY_REASON),
    };
    if i64::from(quantity) > max {
        return Err(Rejection::OutOfRange {
            field: "quantity",
            value: quantity.into(),
            unit: "units",
            min: 1,
            max,
            reason,
        });
    }
    Ok(())
}

fn plan(plan: Option<&proto::Plan>) -> Result<Plan, Rejection> {
    let plan = plan.ok_or(Rejection::MissingField { field: "plan" })?;
    id("plan.plan_id", &plan.plan_id)?;
    let unit_price = money("plan.unit_price", plan.unit_price.as_ref())?;
    if unit_price.amount_minor < 0 {
        return Err(Rejection::InvalidAmount {
            field: "plan.unit_price",
            amount: unit_price.amount_minor,
            reason: "a price is zero (free) or more",
        });
    }
    let interval = match interval_from_proto(plan.interval) {
        Some(interval) => interval,
        None if plan.interval == 0 => {
            return Err(Rejection::MissingField {
                field: "plan.interval",
            });
        }
        None => {
            return Err(Rejection::InvalidField {
                field: "plan.interval",
                reason: "unknown billing interval value",
            });
        }
    };
    let interval_count_max = match interval {
        BillingInterval::Day => INTERVAL_DAYS_MAX,
        BillingInterval::Week => INTERVAL_WEEKS_MAX,
        BillingInterval::Month => INTERVAL_MONTHS_MAX,
        BillingInterval::Year => INTERVAL_YEARS_MAX,
    };
    if plan.interval_count == 0 || plan.interval_count > interval_count_max {
        return Err(Rejection::InvalidAmount {
            field: "plan.interval_count",
            amount: i64::from(plan.interval_count),
            reason: "at least 1 and at most three years (1095 days, 156 weeks, 36 months, 3 years)",
        });
    }
    Ok(Plan {
        plan_id: plan.plan_id.clone(),
        unit_price,
        interval,
        interval_count: plan.interval_count,
    })
}

fn discount(discount: Option<&proto::Discount>, currency: Currency) -> Result<(), Rejection> {
    let Some(discount) = discount else {
        return Ok(());
    };
    id("discount.coupon_id", &discount.coupon_id)?;
    match (
        discount.percent_off_basis_points,
        discount.amount_off.as_ref(),
    ) {
        (0, None) => {
            return Err(Rejection::InvalidDiscount {
                reason: "set percent_off_basis_points or amount_off",
            });
        }
        (1.., Some(_)) => {
            return Err(Rejection::InvalidDiscount {
                reason: "set percent_off_basis_points or amount_off, not both",
            });
        }
        (percent, None) if percent > PERCENT_OFF_BASIS_POINTS_MAX => {
            return Err(Rejection::InvalidDiscount {
                reason: "percent_off_basis_points above 10000 (100 %)",
            });
        }
        (_, None) => {}
        (0, Some(amount_off)) => {
            let amount_off = positive_money("discount.amount_off", Some(amount_off))?;
            same_currency("discount.amount_off", currency, amount_off.currency)?;
        }
    }
    match proto::DiscountDuration::try_from(discount.duration) {
        Ok(proto::DiscountDuration::Unspecified) => Err(Rejection::MissingField {
            field: "discount.duration",
        }),
        Ok(proto::DiscountDuration::Repeating) if discount.duration_in_months == 0 => {
            Err(Rejection::InvalidDiscount {
                reason: "a repeating discount needs duration_in_months of 1 or more",
            })
        }
        Ok(proto::DiscountDuration::Repeating) => Ok(()),
        Ok(_) if discount.duration_in_months != 0 => Err(Rejection::InvalidDiscount {
            reason: "duration_in_months is only for a repeating discount",
        }),
        Ok(_) => Ok(()),
        Err(_) => Err(Rejection::InvalidField {
            field: "discount.duration",
            reason: "unknown discount duration value",
        }),
    }
    .and_then(|()| match discount_from_proto(discount, currency) {
        Some(_) => Ok(()),
        None => Err(Rejection::InvalidDiscount {
            reason: "not a valid discount",
        }),
    })
}

fn provider_account(account: &proto::ProviderAccount) -> Result<ProviderAccount, Rejection> {
    let provider = provider_from_proto(account.provider).map_err(|error| match error {
        EnumValueError::Unspecified { .. } => Rejection::MissingField {
            field: "provider_account.provider",
        },
        EnumValueError::Unknown { .. } => Rejection::InvalidField {
            field: "provider_account.provider",
            reason: "unknown payment provider value",
        },
    })?;
    id("provider_account.account_id", &account.account_id)?;
    Ok(ProviderAccount {
        provider,
        account_id: account.account_id.clone(),
    })
}

/// A required id: non-empty, at most [`ID_BYTES_MAX`] bytes, no whitespace or control
/// characters.
pub(crate) fn id(field: &'static str, value: &str) -> Result<(), Rejection> {
    optional_id(field, value)?
        .map(|_| ())
        .ok_or(Rejection::MissingField { field })
}

/// An optional id: empty means none.
fn optional_id<'a>(field: &'static str, value: &'a str) -> Result<Option<&'a str>, Rejection> {
    if value.is_empty() {
        return Ok(None);
    }
    match id_problem(value) {
        Some(reason) => Err(Rejection::InvalidField { field, reason }),
        None => Ok(Some(value)),
    }
}

/// Why no command can record `value` as an id (of a customer's provider account, subscription,
/// invoice, payment, refund, dispute, ...), or `None` when it can: over [`ID_BYTES_MAX`] bytes,
/// or holding whitespace, NUL or another control character. Empty is not checked here (an
/// optional id may be empty).
pub fn id_problem(value: &str) -> Option<&'static str> {
    if value.len() > ID_BYTES_MAX {
        Some("longer than ID_BYTES_MAX (255 bytes)")
    } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("contains whitespace, NUL or another control character")
    } else {
        None
    }
}

fn uuid(field: &'static str, value: &str) -> Result<(), Rejection> {
    Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| Rejection::InvalidField {
            field,
            reason: "not a UUID",
        })
}

/// Free text: at most `bytes_max` bytes and no NUL (PostgreSQL rejects NUL in text).
pub(crate) fn text(field: &'static str, value: &str, bytes_max: usize) -> Result<(), Rejection> {
    if value.len() > bytes_max {
        return Err(Rejection::InvalidField {
            field,
            reason: "too long (see ledger_domain::limits)",
        });
    }
    if value.contains('\0') {
        return Err(Rejection::InvalidField {
            field,
            reason: "contains NUL",
        });
    }
    Ok(())
}

/// A customer name: trimmed, at most [`NAME_BYTES_MAX`] bytes, no control characters. May be
/// empty.
pub(crate) fn customer_name(field: &'static str, value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    if value.len() > NAME_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field,
            reason: "longer than NAME_BYTES_MAX (256 bytes)",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::InvalidField {
            field,
            reason: "contains NUL or another control character",
        });
    }
    Ok(value.to_owned())
}
