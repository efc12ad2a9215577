//! Xendit: callback verification and the mapping of Xendit callbacks to the ledger's commands.
//!
//! Xendit authenticates invoice and recurring callbacks with a static per-account token in the
//! `x-callback-token` header ("Callback verification token", Settings > Callbacks;
//! <https://docs.xendit.co/api-integration/callback/setup>); there is no body signature and no
//! timestamp. The token is compared in constant time against each configured one (rotation).
//!
//! Two kinds of callbacks are read (the mapping table is in docs/connectors.md):
//! - invoice callbacks (the invoice itself, snake_case: `id`, `status` `PAID` / `SETTLED` /
//!   `EXPIRED`, `amount`, `paid_amount`, `currency`, `payer_email`, `paid_at`, `updated`).
//!   They carry no event id: the ledger's is `<invoice id>:<status>`, and the time is `paid_at`
//!   (`PAID`, `SETTLED`) or `updated` (`EXPIRED`);
//! - Subscriptions (recurring) webhooks `{"event": "recurring.plan.activated" | ...,
//!   "business_id", "created", "data": <plan or cycle>}`. They carry no event id either: the
//!   ledger's is `<object id>:<event>:<data.updated>`, and the time is `data.updated` (the
//!   object's change, not the delivery attempt in `created`).
//!
//! Amounts are in major units of the currency (`2000000` IDR is 200000000 minor units, IDR
//! having two decimals in ISO 4217), read exactly.

use ledger_domain::{Plan, Provider, proto};
use proto::command::Kind;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::decimal_amount::money_of_json;
use crate::json_text::{optional_text, read_whole, text};
use crate::subscription_snapshot::{
    Lifecycle, SubscriptionSnapshot, Target, interval_of, unix_micros_of,
};
use crate::{Headers, Normalized, ObjectKind, ProviderMessage, VerifyError, View};

/// The callback verification tokens of the Xendit account(s) pointing at the ledger.
#[derive(Clone)]
pub struct CallbackTokens(Vec<String>);

impl std::fmt::Debug for CallbackTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CallbackTokens({} tokens)", self.0.len())
    }
}

impl CallbackTokens {
    /// Tokens, any of which a genuine callback may carry.
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> CallbackTokens {
        CallbackTokens(
            tokens
                .iter()
                .map(|token| token.as_ref().to_owned())
                .collect(),
        )
    }
}

/// Checks a callback's `x-callback-token`, then parses it.
///
/// # Errors
/// [`VerifyError::Signature`] for a missing or unknown token; [`VerifyError::Malformed`] when
/// the body is not a Xendit callback.
pub fn verify(
    headers: &impl Headers,
    raw: &[u8],
    tokens: &CallbackTokens,
) -> Result<ProviderMessage, VerifyError> {
    let given = headers
        .header("x-callback-token")
        .ok_or_else(|| VerifyError::Signature("no x-callback-token header".to_owned()))?;
    // `fold`, not `any`: every configured token is compared, whichever matches.
    let known = tokens
        .0
        .iter()
        .fold(subtle::Choice::from(0), |known, token| {
            known | token.as_bytes().ct_eq(given.as_bytes())
        });
    if !bool::from(known) {
        return Err(VerifyError::Signature(
            "x-callback-token matches no configured token".to_owned(),
        ));
    }
    parse(raw)
}

/// Parses a Xendit callback body: an invoice callback or a Subscriptions webhook (see the
/// module documentation for the event id and time each gets). The account is Xendit's
/// customer id (`customer_id`) where present, else the payer's email (lower-cased); the email
/// is `payer_email` or the plan's `customer.email`.
///
/// # Errors
/// [`VerifyError::Malformed`] when the body is not JSON or is neither kind of callback, or a
/// mapped callback is unreadable (no id, an unknown status, an amount with more decimals than
/// its currency has, ...), or a string holds NUL.
pub fn parse(raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|error| VerifyError::Malformed(format!("not JSON: {error}")))?;
    let message = if let Some(event) = body.get("event").and_then(Value::as_str) {
        let data = body.get("data").unwrap_or(&Value::Null);
        let object_id = text(data, "/id").map_err(VerifyError::Malformed)?;
        let changed = optional_text(data, "/updated")
            .or_else(|| optional_text(&body, "/created"))
            .ok_or_else(|| VerifyError::Malformed("no data.updated or created time".to_owned()))?;
        let email = optional_text(data, "/customer/email");
        ProviderMessage {
            provider: Provider::Xendit,
            event_id: format!("{object_id}:{event}:{changed}"),
            event_type: event.to_owned(),
            created_at_unix_micros: unix_micros_of(&changed).map_err(VerifyError::Malformed)?,
            account_id: optional_text(data, "/customer_id"),
            email,
            body,
        }
    } else {
        let invoice_id = text(&body, "/id").map_err(VerifyError::Malformed)?;
        let status = text(&body, "/status").map_err(VerifyError::Malformed)?;
        let time_field = if status == "EXPIRED" {
            "/updated"
        } else {
            "/paid_at"
        };
        let time = optional_text(&body, time_field)
            .or_else(|| optional_text(&body, "/updated"))
            .ok_or_else(|| VerifyError::Malformed(format!("no {time_field} time")))?;
        let email = optional_text(&body, "/payer_email");
        ProviderMessage {
            provider: Provider::Xendit,
            event_id: format!("{invoice_id}:{status}"),
            event_type: format!("invoice.{status}"),
            created_at_unix_micros: unix_micros_of(&time).map_err(VerifyError::Malformed)?,
            account_id: optional_text(&body, "/customer_id").or_else(|| {
                email
                    .as_ref()
                    .map(|email| email.trim().to_ascii_lowercase())
            }),
            email,
            body,
        }
    };
    read_whole(message, read)
}

/// Where a webhook of `event_type` carries the id of the plan it is a snapshot of
/// (`recurring.plan.*`), for [`crate::snapshot_object`].
pub(crate) fn snapshot_pointer(event_type: &str) -> Option<&'static str> {
    event_type
        .starts_with("recurring.plan.")
        .then_some("/data/id")
}

/// Maps a Xendit callback to commands (the table is in docs/connectors.md), knowing the
/// latest snapshot seen of its plan ([`crate::normalize_after`]).
pub fn normalize(
    message: &ProviderMessage,
    view: &View<'_>,
    seen_unix_micros: Option<i64>,
) -> Normalized {
    let reading = match read(message) {
        Ok(reading) => reading,
        Err(error) => {
            return Normalized::Ignored {
                reason: format!("unreadable {}: {error}", message.event_type),
            };
        }
    };
    let name = match &reading {
        Reading::Plan(_) => optional_text(&message.body, "/data/customer/given_names"),
        _ => None,
    };
    let mut target = match reading {
        Reading::Unmapped(reason) => return Normalized::Ignored { reason },
        _ => match Target::resolve(message, view, name.as_deref().unwrap_or_default()) {
            Ok(target) => target,
            Err(why) => return why,
        },
    };
    let outcome = match reading {
        Reading::Unmapped(reason) => Err(Normalized::Ignored { reason }),
        Reading::Plan(snapshot) => target.reach(message, &snapshot, seen_unix_micros),
        Reading::Invoice { issued, payment } => invoice(&mut target, issued, payment),
        Reading::Cycle(payment) => cycle(&mut target, payment),
    };
    target.finish(message, outcome)
}

/// What a mapped Xendit callback says.
enum Reading {
    /// `recurring.plan.activated` / `inactivated`: a snapshot of the plan (the subscription).
    Plan(SubscriptionSnapshot),
    /// An invoice callback: the invoice, and its payment (succeeded) or its expiry (a failed
    /// payment), `None` for a zero amount.
    Invoice {
        issued: proto::InvoiceIssued,
        payment: Option<Kind>,
    },
    /// A cycle's payment, succeeded or failed.
    Cycle(Kind),
    /// A callback the ledger does not use, and why.
    Unmapped(String),
}

fn read(message: &ProviderMessage) -> Result<Reading, String> {
    let body = &message.body;
    let data = body.get("data").unwrap_or(&Value::Null);
    match message.event_type.as_str() {
        "recurring.plan.activated" | "recurring.plan.inactivated" => {
            Ok(Reading::Plan(plan_snapshot(message, data)?))
        }
        "recurring.cycle.succeeded" => Ok(Reading::Cycle(Kind::RecordPaymentSucceeded(
            proto::PaymentSucceeded {
                payment_id: text(data, "/id")?,
                invoice_id: String::new(),
                subscription_id: text(data, "/plan_id")?,
                amount: Some(amount(data)?.into()),
            },
        ))),
        "recurring.cycle.retrying"
        | "recurring.cycle.failed"
        | "recurring.cycle.force_attempt_failed" => Ok(Reading::Cycle(Kind::RecordPaymentFailed(
            proto::PaymentFailed {
                payment_id: message.event_id.clone(),
                invoice_id: String::new(),
                subscription_id: text(data, "/plan_id")?,
                amount: Some(amount(data)?.into()),
                failure_code: optional_text(data, "/failure_code").unwrap_or_default(),
                failure_message: String::new(),
                attempt_count: data
                    .get("attempt_count")
                    .and_then(Value::as_u64)
                    .and_then(|count| u32::try_from(count).ok())
                    .unwrap_or(1),
            },
        ))),
        "invoice.PAID" | "invoice.SETTLED" | "invoice.EXPIRED" => invoice_reading(message),
        other => Ok(Reading::Unmapped(format!(
            "the ledger does not use Xendit's {other} callbacks"
        ))),
    }
}

/// A recurring plan (`data`: `id`, `reference_id`, `customer_id`, `currency`, `amount`,
/// `schedule.interval` / `interval_count` / `anchor_date`): one unit of a plan priced at
/// `amount` every `interval_count` `interval`s, whose id is the merchant's `reference_id`
/// (else the plan's id). Active when activated, cancelled when inactivated.
fn plan_snapshot(message: &ProviderMessage, data: &Value) -> Result<SubscriptionSnapshot, String> {
    let subscription_id = text(data, "/id")?;
    let unit = text(data, "/schedule/interval")?;
    let interval_count = data
        .pointer("/schedule/interval_count")
        .and_then(Value::as_u64)
        .and_then(|count| u32::try_from(count).ok())
        .filter(|count| *count > 0)
        .ok_or("no positive schedule.interval_count")?;
    let plan = Plan {
        plan_id: optional_text(data, "/reference_id").unwrap_or(subscription_id.clone()),
        unit_price: amount(data)?,
        interval: interval_of(&unit).ok_or_else(|| format!("unknown interval {unit:?}"))?,
        interval_count,
    };
    let period_end = match optional_text(data, "/schedule/anchor_date") {
        Some(anchor) => unix_micros_of(&anchor)?,
        None => message.created_at_unix_micros,
    };
    Ok(SubscriptionSnapshot {
        subscription_id,
        plan: Some(plan),
        quantity: 1,
        lifecycle: if message.event_type == "recurring.plan.activated" {
            Lifecycle::Active
        } else {
            Lifecycle::Canceled
        },
        current_period_end_unix_seconds: period_end / 1_000_000,
    })
}

/// An invoice callback: the invoice (`id`, `amount` in `currency`), and for `PAID` / `SETTLED`
/// a succeeded payment of `paid_amount` (id: `payment_id` where present, else the invoice id);
/// for `EXPIRED` a failed payment `<invoice id>:expired` (code `expired`): the customer did not
/// pay before the invoice expired.
fn invoice_reading(message: &ProviderMessage) -> Result<Reading, String> {
    let body = &message.body;
    let invoice_id = text(body, "/id")?;
    let currency = text(body, "/currency")?;
    let amount_due = money_of_json(body.get("amount").unwrap_or(&Value::Null), &currency)?;
    let issued = proto::InvoiceIssued {
        invoice_id: invoice_id.clone(),
        subscription_id: String::new(),
        amount_due: Some(amount_due.into()),
        period_start_unix_seconds: 0,
        period_end_unix_seconds: 0,
    };
    let payment = if message.event_type == "invoice.EXPIRED" {
        (amount_due.amount_minor > 0).then(|| {
            Kind::RecordPaymentFailed(proto::PaymentFailed {
                payment_id: format!("{invoice_id}:expired"),
                invoice_id: invoice_id.clone(),
                subscription_id: String::new(),
                amount: Some(amount_due.into()),
                failure_code: "expired".to_owned(),
                failure_message: "the invoice expired unpaid".to_owned(),
                attempt_count: 1,
            })
        })
    } else {
        let paid = match body.get("paid_amount") {
            Some(paid) => money_of_json(paid, &currency)?,
            None => amount_due,
        };
        (paid.amount_minor > 0).then(|| {
            Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: optional_text(body, "/payment_id").unwrap_or(invoice_id.clone()),
                invoice_id: invoice_id.clone(),
                subscription_id: String::new(),
                amount: Some(paid.into()),
            })
        })
    };
    Ok(Reading::Invoice { issued, payment })
}

/// Issues the invoice when the ledger does not hold it, then records its payment or expiry
/// unless the invoice is already paid or the payment already recorded.
fn invoice(
    target: &mut Target<'_>,
    issued: proto::InvoiceIssued,
    payment: Option<Kind>,
) -> Result<(), Normalized> {
    let invoice_id = issued.invoice_id.clone();
    match target.state.invoices.get(&invoice_id) {
        Some(held) if held.status == ledger_domain::InvoiceStatus::Paid => {
            return Err(Normalized::Ignored {
                reason: format!("already applied: invoice {invoice_id} is paid"),
            });
        }
        Some(_) => {}
        None => target.push(Kind::IssueInvoice(issued)),
    }
    if let Some(payment) = payment
        && !target.state.payments.contains_key(payment_id(&payment))
    {
        target.push(payment);
    }
    Ok(())
}

/// Records a cycle's payment for a plan the ledger holds, unless already recorded.
fn cycle(target: &mut Target<'_>, payment: Kind) -> Result<(), Normalized> {
    let subscription_id = match &payment {
        Kind::RecordPaymentSucceeded(body) => &body.subscription_id,
        Kind::RecordPaymentFailed(body) => &body.subscription_id,
        _ => return Ok(()),
    };
    if !target.state.subscriptions.contains_key(subscription_id) {
        return Err(crate::waiting(
            Provider::Xendit,
            ObjectKind::Subscription,
            subscription_id,
            "the recurring plan of the cycle",
        ));
    }
    if !target.state.payments.contains_key(payment_id(&payment)) {
        target.push(payment);
    }
    Ok(())
}

fn payment_id(payment: &Kind) -> &str {
    match payment {
        Kind::RecordPaymentSucceeded(body) => &body.payment_id,
        Kind::RecordPaymentFailed(body) => &body.payment_id,
        _ => "",
    }
}

/// `amount` in `currency`, in major units.
fn amount(data: &Value) -> Result<ledger_domain::Money, String> {
    money_of_json(
        data.get("amount").unwrap_or(&Value::Null),
        &text(data, "/currency")?,
    )
}
