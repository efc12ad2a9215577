//! PayPal: webhook verification and the mapping of PayPal events to the ledger's commands.
//!
//! Verification through PayPal's postback API ("Verify webhook signature",
//! `POST /v1/notifications/verify-webhook-signature`,
//! <https://developer.paypal.com/docs/api/webhooks/v1/#verify-webhook-signature_post>): ingest
//! sends [`postback_request`]'s body for each configured webhook id and accepts the delivery
//! when [`postback_verdict`] says `SUCCESS`. The HTTP call itself (and its OAuth token) is
//! ingest's; this module only builds and reads the bodies. Offline verification (CRC32 and
//! PayPal's certificate) is in [`verify_offline`].
//!
//! Messages: both shapes PayPal sends are read. The legacy Billing Agreements / Payments v1
//! shape (`resource_type` `Agreement` / `sale`, the plan inline in `payment_definitions`, the
//! payer in `payer.payer_info`) and the Subscriptions v1 shape (`resource_type`
//! `subscription`, `resource_version` `2.0`, the payer in `subscriber`, the price only in an
//! inline `plan` when the subscription carries one). The mapping table is in
//! docs/connectors.md.

mod listed;
mod offline;

pub use listed::{
    listed_subscription, listed_transaction, subscription_event_type, subscriptions_paid,
};

pub use offline::{
    CERTIFICATE_NAME, CertificateTrust, certificate_url_allowed, plausible_transmission,
    signed_string, verify_offline,
};

use ledger_domain::{Plan, Provider, proto};
use proto::command::Kind;
use serde_json::Value;

use crate::decimal_amount::money_of_decimal;
use crate::json_text::{optional_text, read_whole, text};
use crate::subscription_snapshot::{
    Lifecycle, SubscriptionSnapshot, Target, interval_of, unix_micros_of,
};
use crate::{Headers, Normalized, ObjectKind, ProviderMessage, RelatedObject, VerifyError, View};

/// The transmission headers PayPal signs a delivery with, in the postback request's field names.
const TRANSMISSION_HEADERS: [(&str, &str); 5] = [
    ("auth_algo", "paypal-auth-algo"),
    ("cert_url", "paypal-cert-url"),
    ("transmission_id", "paypal-transmission-id"),
    ("transmission_sig", "paypal-transmission-sig"),
    ("transmission_time", "paypal-transmission-time"),
];

/// The JSON body of a postback verification of `raw` for the webhook `webhook_id`. The event is
/// embedded as the raw bytes received, not re-serialized, so PayPal checks what it sent.
///
/// # Errors
/// [`VerifyError::Signature`] when a transmission header is missing;
/// [`VerifyError::Malformed`] when the body is not a JSON object.
pub fn postback_request(
    headers: &impl Headers,
    raw: &[u8],
    webhook_id: &str,
) -> Result<Vec<u8>, VerifyError> {
    let event: &serde_json::value::RawValue = serde_json::from_slice(raw)
        .map_err(|error| VerifyError::Malformed(format!("not JSON: {error}")))?;
    let mut fields = serde_json::Map::new();
    for (field, header) in TRANSMISSION_HEADERS {
        let value = headers
            .header(header)
            .ok_or_else(|| VerifyError::Signature(format!("no {header} header")))?;
        fields.insert(field.to_owned(), serde_json::Value::from(value));
    }
    fields.insert("webhook_id".to_owned(), serde_json::Value::from(webhook_id));
    let mut body =
        serde_json::to_vec(&fields).map_err(|error| VerifyError::Malformed(error.to_string()))?;
    // `{..fields..}` -> `{..fields..,"webhook_event":<raw>}`
    body.pop();
    body.extend_from_slice(b",\"webhook_event\":");
    body.extend_from_slice(event.get().as_bytes());
    body.push(b'}');
    Ok(body)
}

/// Reads PayPal's answer to a postback verification.
///
/// # Errors
/// [`VerifyError::Signature`] unless the answer is `{"verification_status": "SUCCESS"}`.
pub fn postback_verdict(response: &[u8]) -> Result<(), VerifyError> {
    let answer: serde_json::Value = serde_json::from_slice(response).map_err(|error| {
        VerifyError::Signature(format!("PayPal's verification answer is not JSON: {error}"))
    })?;
    match answer
        .get("verification_status")
        .and_then(serde_json::Value::as_str)
    {
        Some("SUCCESS") => Ok(()),
        other => Err(VerifyError::Signature(format!(
            "PayPal's verification status is {}",
            other.unwrap_or("missing")
        ))),
    }
}

/// Parses a PayPal webhook body (`{"id": "WH-...", "event_type": ..., "create_time": ...,
/// "resource": ...}`): the event id, type and time (`create_time`, RFC 3339), and the payer's
/// id and email when the resource names them (`subscriber.payer_id` / `email_address`, or
/// `payer.payer_info.payer_id` / `email`). The resource of every event the ledger maps is read
/// here too, so a malformed one is refused before it is stored.
///
/// # Errors
/// [`VerifyError::Malformed`] when the body is not JSON, lacks the id, type or a valid
/// `create_time`, or a mapped event's resource is unreadable (a missing id, an unknown status,
/// an amount with more decimals than its currency has, ...), or a string holds NUL.
pub fn parse(raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|error| VerifyError::Malformed(format!("not JSON: {error}")))?;
    let event_id = text(&body, "/id").map_err(VerifyError::Malformed)?;
    let event_type = text(&body, "/event_type").map_err(VerifyError::Malformed)?;
    let created_at_unix_micros = text(&body, "/create_time")
        .and_then(|time| unix_micros_of(&time))
        .map_err(VerifyError::Malformed)?;
    let resource = body.get("resource").unwrap_or(&Value::Null);
    let payer = resource
        .get("subscriber")
        .or_else(|| resource.pointer("/payer/payer_info"));
    let payer_text = |field: &str| {
        payer
            .and_then(|payer| payer.get(field))
            .and_then(Value::as_str)
            .filter(|value| !value.trim().is_empty())
            .map(str::to_owned)
    };
    let account_id = payer_text("payer_id");
    let email = payer_text("email_address").or_else(|| payer_text("email"));
    let message = ProviderMessage {
        provider: Provider::Paypal,
        event_id,
        event_type,
        created_at_unix_micros,
        account_id,
        email,
        body,
    };
    read_whole(message, read)
}

/// The subscription a message is about: the one a sale pays (`billing_agreement_id`), the one
/// a `BILLING.SUBSCRIPTION.*` message is a snapshot of (`resource.id`); or the sale a refund
/// returns (`sale_id`). See [`crate::related_objects`].
pub fn related_object(message: &ProviderMessage) -> Option<RelatedObject<'_>> {
    let resource = message.body.get("resource")?;
    let field = |name: &str| resource.get(name).and_then(Value::as_str);
    match message.event_type.as_str() {
        "PAYMENT.SALE.COMPLETED" => field("billing_agreement_id").map(RelatedObject::Subscription),
        "PAYMENT.SALE.REFUNDED" => field("sale_id").map(RelatedObject::Payment),
        event_type if snapshot_pointer(event_type).is_some() => {
            field("id").map(RelatedObject::Subscription)
        }
        _ => None,
    }
}

/// Where a message of `event_type` carries the id of the subscription it is a snapshot of
/// (`BILLING.SUBSCRIPTION.*`), for [`crate::snapshot_object`].
pub(crate) fn snapshot_pointer(event_type: &str) -> Option<&'static str> {
    (SUBSCRIPTION_EVENTS.contains(&event_type)
        || event_type == "BILLING.SUBSCRIPTION.PAYMENT.FAILED")
        .then_some("/resource/id")
}

/// Maps a PayPal message to commands (the table is in docs/connectors.md), knowing the latest
/// snapshot seen of its subscription ([`crate::normalize_after`]).
pub fn normalize(
    message: &ProviderMessage,
    view: &View<'_>,
    seen_unix_micros: Option<i64>,
) -> Normalized {
    match read(message) {
        Err(error) => Normalized::Ignored {
            reason: format!("unreadable {}: {error}", message.event_type),
        },
        Ok(Reading::Unmapped(reason)) => Normalized::Ignored { reason },
        Ok(Reading::Subscription { snapshot, name }) => {
            match Target::resolve(message, view, &name) {
                Ok(mut target) => {
                    let reached = target.reach(message, &snapshot, seen_unix_micros);
                    target.finish(message, reached)
                }
                Err(why) => why,
            }
        }
        Ok(Reading::PaymentFailed {
            snapshot,
            name,
            failure,
        }) => payment_failed(message, view, &snapshot, &name, failure, seen_unix_micros),
        Ok(Reading::Sale(sale)) => sale_completed(message, view, sale),
        Ok(Reading::Refund(refund)) => sale_refunded(message, view, refund),
    }
}

/// What a mapped PayPal event says.
enum Reading {
    /// `BILLING.SUBSCRIPTION.*` other than `PAYMENT.FAILED`.
    Subscription {
        snapshot: SubscriptionSnapshot,
        name: String,
    },
    /// `BILLING.SUBSCRIPTION.PAYMENT.FAILED`: the subscription and its last failed payment.
    PaymentFailed {
        snapshot: SubscriptionSnapshot,
        name: String,
        failure: Option<proto::PaymentFailed>,
    },
    /// `PAYMENT.SALE.COMPLETED` of a subscription.
    Sale(proto::PaymentSucceeded),
    /// `PAYMENT.SALE.REFUNDED`.
    Refund(proto::PaymentRefunded),
    /// An event the ledger does not use, and why.
    Unmapped(String),
}

/// The subscription events the ledger maps to a snapshot of the subscription.
const SUBSCRIPTION_EVENTS: [&str; 7] = [
    "BILLING.SUBSCRIPTION.CREATED",
    "BILLING.SUBSCRIPTION.ACTIVATED",
    "BILLING.SUBSCRIPTION.UPDATED",
    "BILLING.SUBSCRIPTION.SUSPENDED",
    "BILLING.SUBSCRIPTION.CANCELLED",
    "BILLING.SUBSCRIPTION.RE-ACTIVATED",
    "BILLING.SUBSCRIPTION.EXPIRED",
];

fn read(message: &ProviderMessage) -> Result<Reading, String> {
    let resource = message.body.get("resource").unwrap_or(&Value::Null);
    let event_type = message.event_type.as_str();
    if SUBSCRIPTION_EVENTS.contains(&event_type) {
        return Ok(Reading::Subscription {
            snapshot: subscription_snapshot(resource, message.created_at_unix_micros)?,
            name: payer_name(resource),
        });
    }
    match event_type {
        "BILLING.SUBSCRIPTION.PAYMENT.FAILED" => {
            let snapshot = subscription_snapshot(resource, message.created_at_unix_micros)?;
            let failure = last_failed_payment(resource, &snapshot.subscription_id, message)?;
            Ok(Reading::PaymentFailed {
                snapshot,
                name: payer_name(resource),
                failure,
            })
        }
        "PAYMENT.SALE.COMPLETED" => {
            let sale_id = text(resource, "/id")?;
            let state = text(resource, "/state")?;
            if !state.eq_ignore_ascii_case("completed") {
                return Ok(Reading::Unmapped(format!(
                    "sale {sale_id} is {state}, not completed"
                )));
            }
            let Some(subscription_id) = optional_text(resource, "/billing_agreement_id") else {
                return Ok(Reading::Unmapped(format!(
                    "sale {sale_id} pays no subscription (no billing_agreement_id): a one-off \
                     PayPal payment names no payer the ledger can book it to"
                )));
            };
            Ok(Reading::Sale(proto::PaymentSucceeded {
                payment_id: sale_id,
                invoice_id: String::new(),
                subscription_id,
                amount: Some(amount(resource, "/amount/total", "/amount/currency")?),
            }))
        }
        "PAYMENT.SALE.REFUNDED" => Ok(Reading::Refund(proto::PaymentRefunded {
            refund_id: text(resource, "/id")?,
            payment_id: text(resource, "/sale_id")?,
            amount: Some(amount(resource, "/amount/total", "/amount/currency")?),
            reason: optional_text(resource, "/refund_reason_code")
                .or_else(|| optional_text(resource, "/reason"))
                .unwrap_or_default(),
            refund_request_id: String::new(),
        })),
        other => Ok(Reading::Unmapped(format!(
            "the ledger does not use PayPal's {other} events"
        ))),
    }
}

/// Reads a subscription resource of either shape into a snapshot.
fn subscription_snapshot(resource: &Value, at_micros: i64) -> Result<SubscriptionSnapshot, String> {
    let subscription_id = text(resource, "/id")?;
    let at_seconds = at_micros / 1_000_000;
    let seconds_at = |pointer: &str| -> Result<Option<i64>, String> {
        optional_text(resource, pointer)
            .map(|time| unix_micros_of(&time).map(|micros| micros / 1_000_000))
            .transpose()
    };
    if let Some(state) = optional_text(resource, "/state") {
        // Legacy billing agreement: the plan is inline, without an id; one agreement, one plan.
        let lifecycle = match state.to_ascii_lowercase().as_str() {
            "pending" => Lifecycle::Pending,
            "active" => Lifecycle::Active,
            "suspended" => Lifecycle::Paused,
            "cancelled" | "canceled" | "expired" => Lifecycle::Canceled,
            _ => return Err(format!("unknown agreement state {state:?}")),
        };
        let period_end = seconds_at("/agreement_details/next_billing_date")?
            .or(seconds_at("/start_date")?)
            .unwrap_or(at_seconds);
        return Ok(SubscriptionSnapshot {
            plan: Some(legacy_plan(resource, &subscription_id)?),
            subscription_id,
            quantity: 1,
            lifecycle,
            current_period_end_unix_seconds: period_end,
        });
    }
    let status = text(resource, "/status")?;
    let next_billing = seconds_at("/billing_info/next_billing_time")?;
    let plan = resource
        .get("plan")
        .map(|plan| {
            let plan_id = optional_text(resource, "/plan_id").unwrap_or(subscription_id.clone());
            subscription_plan(plan, plan_id)
        })
        .transpose()?;
    let lifecycle = match status.as_str() {
        "APPROVAL_PENDING" | "APPROVED" => Lifecycle::Pending,
        "ACTIVE" => match next_billing {
            Some(trial_end_unix_seconds) if in_free_trial(resource) => Lifecycle::Trialing {
                trial_end_unix_seconds,
            },
            _ => Lifecycle::Active,
        },
        "SUSPENDED" => Lifecycle::Paused,
        "CANCELLED" | "EXPIRED" => Lifecycle::Canceled,
        _ => return Err(format!("unknown subscription status {status:?}")),
    };
    let quantity = match optional_text(resource, "/quantity") {
        None => 1,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|quantity| *quantity > 0)
            .ok_or_else(|| format!("quantity {text:?} is not a positive whole number"))?,
    };
    Ok(SubscriptionSnapshot {
        subscription_id,
        plan,
        quantity,
        lifecycle,
        current_period_end_unix_seconds: next_billing
            .or(seconds_at("/start_time")?)
            .unwrap_or(at_seconds),
    })
}

/// The REGULAR payment definition of a legacy agreement's inline plan (`plan.curr_code`,
/// `payment_definitions[type=REGULAR]`: `amount.value`, `frequency`, `frequency_interval`).
fn legacy_plan(resource: &Value, agreement_id: &str) -> Result<Plan, String> {
    let currency = text(resource, "/plan/curr_code")?;
    let regular = resource
        .pointer("/plan/payment_definitions")
        .and_then(Value::as_array)
        .and_then(|definitions| {
            definitions.iter().find(|definition| {
                definition
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("REGULAR"))
            })
        })
        .ok_or("the agreement's plan has no REGULAR payment definition")?;
    Ok(Plan {
        plan_id: agreement_id.to_owned(),
        unit_price: money_of_decimal(&text(regular, "/amount/value")?, &currency)?,
        interval: interval(regular, "/frequency")?,
        interval_count: count(regular, "/frequency_interval")?,
    })
}

/// The REGULAR billing cycle of a Subscriptions v1 inline plan (`billing_cycles[tenure_type=
/// REGULAR]`: `pricing_scheme.fixed_price`, `frequency.interval_unit` / `interval_count`).
fn subscription_plan(plan: &Value, plan_id: String) -> Result<Plan, String> {
    let regular = billing_cycle(plan, "REGULAR").ok_or("the plan has no REGULAR billing cycle")?;
    Ok(Plan {
        plan_id,
        unit_price: amount_of(
            regular,
            "/pricing_scheme/fixed_price/value",
            "/pricing_scheme/fixed_price/currency_code",
        )?,
        interval: interval(regular, "/frequency/interval_unit")?,
        interval_count: count(regular, "/frequency/interval_count")?,
    })
}

fn billing_cycle<'a>(plan: &'a Value, tenure: &str) -> Option<&'a Value> {
    plan.get("billing_cycles")?
        .as_array()?
        .iter()
        .find(|cycle| cycle.get("tenure_type").and_then(Value::as_str) == Some(tenure))
}

/// True when the subscription is in a TRIAL cycle with cycles remaining
/// (`billing_info.cycle_executions`) and that trial is free (the inline plan's TRIAL cycle has
/// no price or a zero one; without an inline plan the trial is taken as free). A paid trial is
/// an active subscription for the ledger.
fn in_free_trial(resource: &Value) -> bool {
    let trial_running = resource
        .pointer("/billing_info/cycle_executions")
        .and_then(Value::as_array)
        .is_some_and(|executions| {
            executions.iter().any(|execution| {
                execution.get("tenure_type").and_then(Value::as_str) == Some("TRIAL")
                    && execution
                        .get("cycles_remaining")
                        .and_then(Value::as_u64)
                        .is_some_and(|remaining| remaining > 0)
            })
        });
    let free = resource
        .get("plan")
        .and_then(|plan| billing_cycle(plan, "TRIAL"))
        .and_then(|trial| trial.pointer("/pricing_scheme/fixed_price/value"))
        .and_then(Value::as_str)
        .is_none_or(|price| price.bytes().all(|byte| matches!(byte, b'0' | b'.')));
    trial_running && free
}

/// The failed payment of a `BILLING.SUBSCRIPTION.PAYMENT.FAILED` resource
/// (`billing_info.last_failed_payment`: `amount`, `time`, `reason_code`; or else the
/// `outstanding_balance`), `None` when it names no positive amount. Its payment id is
/// `<subscription id>:failed:<time of the failure>` (or the event id without a time), so a
/// second event about the same failure records nothing new.
fn last_failed_payment(
    resource: &Value,
    subscription_id: &str,
    message: &ProviderMessage,
) -> Result<Option<proto::PaymentFailed>, String> {
    let failed = resource.pointer("/billing_info/last_failed_payment");
    let amount = match failed.and_then(|failed| failed.get("amount")) {
        Some(amount) => Some(amount_of(amount, "/value", "/currency_code")?),
        None => resource
            .pointer("/billing_info/outstanding_balance")
            .map(|balance| amount_of(balance, "/value", "/currency_code"))
            .transpose()?,
    };
    let Some(amount) = amount.filter(|amount| amount.amount_minor > 0) else {
        return Ok(None);
    };
    let field = |name: &str| failed.and_then(|failed| optional_text(failed, name));
    let payment_id = match field("/time") {
        Some(time) => format!("{subscription_id}:failed:{time}"),
        None => message.event_id.clone(),
    };
    let attempt_count = resource
        .pointer("/billing_info/failed_payments_count")
        .and_then(Value::as_u64)
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or(1);
    Ok(Some(proto::PaymentFailed {
        payment_id,
        invoice_id: String::new(),
        subscription_id: subscription_id.to_owned(),
        amount: Some(amount.into()),
        failure_code: field("/reason_code").unwrap_or_default(),
        failure_message: String::new(),
        attempt_count,
    }))
}

/// `BILLING.SUBSCRIPTION.PAYMENT.FAILED`: the subscription is started from the snapshot when
/// the ledger does not know it yet (its status is otherwise left to the other events and to
/// the payment itself, which moves it to `past_due`), then the failed payment is recorded.
fn payment_failed(
    message: &ProviderMessage,
    view: &View<'_>,
    snapshot: &SubscriptionSnapshot,
    name: &str,
    failure: Option<proto::PaymentFailed>,
    seen_unix_micros: Option<i64>,
) -> Normalized {
    let mut target = match Target::resolve(message, view, name) {
        Ok(target) => target,
        Err(why) => return why,
    };
    if !target
        .state
        .subscriptions
        .contains_key(&snapshot.subscription_id)
        && let Err(why) = target.reach(message, snapshot, seen_unix_micros)
    {
        return target.finish(message, Err(why));
    }
    let outcome = match failure {
        None => Err(Normalized::Ignored {
            reason: "the message names no failed amount".to_owned(),
        }),
        Some(failure) if target.state.payments.contains_key(&failure.payment_id) => Ok(()),
        Some(failure) => {
            target.push(Kind::RecordPaymentFailed(failure));
            Ok(())
        }
    };
    target.finish(message, outcome)
}

/// `PAYMENT.SALE.COMPLETED` of a subscription: a succeeded payment for it.
fn sale_completed(
    message: &ProviderMessage,
    view: &View<'_>,
    sale: proto::PaymentSucceeded,
) -> Normalized {
    let Some(known) = view.customer else {
        return crate::waiting(
            Provider::Paypal,
            ObjectKind::Subscription,
            &sale.subscription_id,
            &format!("the subscription sale {} pays", sale.payment_id),
        );
    };
    if !known
        .state
        .subscriptions
        .contains_key(&sale.subscription_id)
    {
        return Normalized::Ignored {
            reason: format!(
                "sale {} pays subscription {}, which customer {} does not hold",
                sale.payment_id, sale.subscription_id, known.customer_id
            ),
        };
    }
    let recorded = known.state.payments.contains_key(&sale.payment_id);
    once(message, known, recorded, Kind::RecordPaymentSucceeded(sale))
}

/// `PAYMENT.SALE.REFUNDED`: a refund of the sale, a payment the ledger holds.
fn sale_refunded(
    message: &ProviderMessage,
    view: &View<'_>,
    refund: proto::PaymentRefunded,
) -> Normalized {
    let known = view
        .customer
        .filter(|known| known.state.payments.contains_key(&refund.payment_id));
    let Some(known) = known else {
        return crate::waiting(
            Provider::Paypal,
            ObjectKind::Payment,
            &refund.payment_id,
            &format!("the sale refund {} returns", refund.refund_id),
        );
    };
    let recorded = known.state.refunds.contains_key(&refund.refund_id);
    once(message, known, recorded, Kind::RefundPayment(refund))
}

/// The one command for `known`, unless what it records is already `recorded`.
fn once(
    message: &ProviderMessage,
    known: crate::KnownCustomer<'_>,
    recorded: bool,
    kind: Kind,
) -> Normalized {
    if recorded {
        Normalized::Ignored {
            reason: "already applied".to_owned(),
        }
    } else {
        crate::commands_for(message, known.customer_id, vec![kind])
    }
}

/// The payer's name: `subscriber.name.given_name` + `surname`, or `payer.payer_info.first_name`
/// + `last_name`; empty when absent.
fn payer_name(resource: &Value) -> String {
    let part = |pointer: &str| optional_text(resource, pointer).unwrap_or_default();
    let (given, family) = if resource.get("subscriber").is_some() {
        (
            part("/subscriber/name/given_name"),
            part("/subscriber/name/surname"),
        )
    } else {
        (
            part("/payer/payer_info/first_name"),
            part("/payer/payer_info/last_name"),
        )
    };
    format!("{given} {family}").trim().to_owned()
}

/// A decimal amount (`"4.99"`) and its currency code, read exactly.
fn amount_of(
    value: &Value,
    amount_pointer: &str,
    currency_pointer: &str,
) -> Result<ledger_domain::Money, String> {
    money_of_decimal(
        &text(value, amount_pointer)?,
        &text(value, currency_pointer)?,
    )
}

fn amount(
    value: &Value,
    amount_pointer: &str,
    currency_pointer: &str,
) -> Result<proto::Money, String> {
    amount_of(value, amount_pointer, currency_pointer).map(Into::into)
}

fn interval(value: &Value, pointer: &str) -> Result<ledger_domain::BillingInterval, String> {
    let unit = text(value, pointer)?;
    interval_of(&unit).ok_or_else(|| format!("unknown billing interval {unit:?}"))
}

/// A positive count written as a number (`1`) or as text (`"1"`).
fn count(value: &Value, pointer: &str) -> Result<u32, String> {
    let found = value.pointer(pointer);
    found
        .and_then(|count| match count {
            Value::String(text) => text.parse::<u32>().ok(),
            other => other.as_u64().and_then(|count| u32::try_from(count).ok()),
        })
        .filter(|count| *count > 0)
        .ok_or_else(|| format!("no positive count at {pointer}"))
}
