//! Stripe events to the ledger's commands (the table is in docs/connectors.md).
//!
//! Every Stripe webhook carries a snapshot of one object. Normalization compares that snapshot
//! with what the ledger holds for the object and returns the commands that reach it, each
//! checked in turn with `ledger_domain::decide` and folded with `evolve` on a copy of the
//! customer's state, so the list decides cleanly in the writer, in order, on the same state:
//! - nothing to do: `Ignored` with reason `already applied`;
//! - a subscription snapshot dated before the subscription's latest change in the ledger:
//!   `Stale`;
//! - an object the snapshot depends on that the ledger has not seen yet (the subscription of an
//!   invoice, the invoice of a charge, the payment of a dispute, the customer of an event
//!   without email): `Waiting` for that object; the writer applies it once the object arrives;
//! - an update that arrives before its object's `created` event creates the object from the
//!   snapshot it carries (dated when Stripe created it, with the plan before the change read
//!   from `previous_attributes`).

use ledger_domain::proto::command::Kind;
use ledger_domain::{Customer, Provider, SubscriptionStatus, command_name, decide, evolve, proto};
use serde_json::Value;
use uuid::Uuid;

use super::objects::{self, Invoice, Subscription};
use crate::{Normalized, ObjectKind, ProviderMessage, View};

/// The reason of a delivery whose objects are all already where its snapshot puts them.
pub(crate) const ALREADY_APPLIED: &str = "already applied";

/// The subscription events mapped through their snapshot.
const SUBSCRIPTION_EVENTS: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
];

/// The invoice events mapped through their snapshot.
const INVOICE_EVENTS: &[&str] = &[
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
];

/// Maps a Stripe event to commands for the customer `view` resolved (docs/connectors.md has
/// the table). Pure and deterministic.
pub fn normalize(message: &ProviderMessage, view: &View<'_>) -> Normalized {
    let event_type = message.event_type.as_str();
    let object = message.body.pointer("/data/object").unwrap_or(&Value::Null);
    let mapped = match event_type {
        "customer.created" | "customer.updated" => customer(message, view, object),
        "invoice.voided" | "invoice.marked_uncollectible" => Err(Normalized::Ignored {
            reason: format!(
                "the ledger has no command for {event_type}: the invoice stays as issued \
                 (its amount stays due in the read models)"
            ),
        }),
        "charge.refunded" => refunds(message, view, object),
        "charge.dispute.created" | "charge.dispute.closed" => dispute(message, view, object),
        _ if SUBSCRIPTION_EVENTS.contains(&event_type) => subscription(message, view, object),
        _ if INVOICE_EVENTS.contains(&event_type) => invoice(message, view, object),
        other => Err(Normalized::Ignored {
            reason: format!("the ledger does not use Stripe's {other} events"),
        }),
    };
    mapped.unwrap_or_else(|normalized| normalized)
}

/// An object's own time (`created`, Unix seconds) in Unix microseconds, when it is before the
/// message's: a business time earlier than the event that reports it.
fn earlier_time(message: &ProviderMessage, unix_seconds: Option<i64>) -> Option<i64> {
    unix_seconds
        .and_then(|seconds| seconds.checked_mul(1_000_000))
        .filter(|micros| (1..message.created_at_unix_micros).contains(micros))
}

fn ignored(reason: impl Into<String>) -> Normalized {
    Normalized::Ignored {
        reason: reason.into(),
    }
}

fn waiting(kind: ObjectKind, id: &str, why: &str) -> Normalized {
    crate::waiting(Provider::Stripe, kind, id, why)
}

/// The commands of one delivery, each decided and folded on a copy of the customer's state as
/// it is appended.
#[derive(Clone)]
struct Plan<'a> {
    message: &'a ProviderMessage,
    customer_id: Uuid,
    state: Customer,
    /// Each command and its business time when it is not the event's (a subscription created
    /// from a later snapshot starts when Stripe created it).
    steps: Vec<(Kind, Option<i64>)>,
    refused: Vec<String>,
}

impl<'a> Plan<'a> {
    /// Starts from the customer `view` resolved: links the account when the customer was found
    /// by email, registers the customer when none was found and the message carries an email.
    fn new(message: &'a ProviderMessage, view: &View<'_>) -> Result<Plan<'a>, Normalized> {
        let provider_account = |account_id: &str| {
            Some(proto::ProviderAccount {
                provider: proto::PaymentProvider::Stripe as i32,
                account_id: account_id.to_owned(),
            })
        };
        match view.customer {
            Some(known) => {
                let mut plan = Plan {
                    message,
                    customer_id: known.customer_id,
                    state: known.state.clone(),
                    steps: Vec::new(),
                    refused: Vec::new(),
                };
                if !known.account_linked {
                    plan.push(
                        Kind::LinkProviderAccount(proto::ProviderAccountLinked {
                            provider_account: provider_account(account_id(message)?),
                        }),
                        None,
                    );
                }
                Ok(plan)
            }
            None => {
                let account_id = account_id(message)?;
                let Some(email) = message
                    .email
                    .as_deref()
                    .filter(|email| !email.trim().is_empty())
                else {
                    return Err(waiting(
                        ObjectKind::CustomerAccount,
                        account_id,
                        &format!(
                            "this {} carries no email to register it with; its \
                             customer.created or customer.updated with an email does",
                            message.event_type
                        ),
                    ));
                };
                let object = message.body.pointer("/data/object").unwrap_or(&Value::Null);
                let name = objects::text(object, "/name")
                    .or_else(|| objects::text(object, "/customer_name"))
                    .unwrap_or_default();
                let mut plan = Plan {
                    message,
                    customer_id: crate::customer_id_for_account(Provider::Stripe, account_id),
                    state: Customer::default(),
                    steps: Vec::new(),
                    refused: Vec::new(),
                };
                plan.push(
                    Kind::RegisterCustomer(proto::CustomerRegistered {
                        email: email.to_owned(),
                        name: name.to_owned(),
                        provider_account: provider_account(account_id),
                    }),
                    None,
                );
                if plan.state.is_registered() {
                    Ok(plan)
                } else {
                    Err(ignored(plan.refused.join("; ")))
                }
            }
        }
    }

    /// Decides `kind` at `occurred_at_unix_micros` (else the event's time) on the planned
    /// state; keeps it when accepted, else notes why. Returns whether it was accepted.
    fn push(&mut self, kind: Kind, occurred_at_unix_micros: Option<i64>) -> bool {
        let occurred_at = occurred_at_unix_micros.unwrap_or(self.message.created_at_unix_micros);
        let command = proto::Command {
            metadata: Some(proto::CommandMetadata {
                idempotency_key: crate::idempotency_key(self.message, self.steps.len(), 2),
                customer_id: self.customer_id.to_string(),
                occurred_at_unix_micros: occurred_at,
                issuer: proto::Issuer::PaymentProvider as i32,
                payment_provider: proto::PaymentProvider::Stripe as i32,
                account_id: self.message.account_id.clone().unwrap_or_default(),
                ..proto::CommandMetadata::default()
            }),
            kind: Some(kind),
        };
        let Some(kind) = command.kind.as_ref() else {
            return false;
        };
        match decide(&self.state, &command) {
            Ok(events) => {
                for event in &events {
                    self.state = evolve(std::mem::take(&mut self.state), event, occurred_at);
                }
                self.steps.push((kind.clone(), occurred_at_unix_micros));
                true
            }
            Err(rejection) => {
                self.refused
                    .push(format!("{} refused: {rejection}", command_name(kind)));
                false
            }
        }
    }

    fn subscription(&self, subscription_id: &str) -> Option<&ledger_domain::Subscription> {
        self.state.subscriptions.get(subscription_id)
    }

    fn finish(self) -> Normalized {
        if self.steps.is_empty() {
            return ignored(if self.refused.is_empty() {
                ALREADY_APPLIED.to_owned()
            } else {
                self.refused.join("; ")
            });
        }
        let times: Vec<Option<i64>> = self.steps.iter().map(|(_, at)| *at).collect();
        let kinds = self.steps.into_iter().map(|(kind, _)| kind).collect();
        match crate::commands_for(self.message, self.customer_id, kinds) {
            Normalized::Commands(mut commands) => {
                for (command, at) in commands.iter_mut().zip(times) {
                    if let (Some(metadata), Some(at)) = (command.metadata.as_mut(), at) {
                        metadata.occurred_at_unix_micros = at;
                    }
                }
                Normalized::Commands(commands)
            }
            other => other,
        }
    }
}

fn account_id(message: &ProviderMessage) -> Result<&str, Normalized> {
    message
        .account_id
        .as_deref()
        .ok_or_else(|| ignored(format!("{} names no Stripe customer", message.event_type)))
}

/// `customer.created` / `customer.updated`: registers the customer (with the account linked),
/// links the account to the customer who holds the email, or updates the profile.
fn customer(
    message: &ProviderMessage,
    view: &View<'_>,
    object: &Value,
) -> Result<Normalized, Normalized> {
    let email = objects::text(object, "/email").map(str::trim);
    let name = objects::text(object, "/name").map(str::trim);
    if view.customer.is_none() && email.is_none() {
        let account_id = account_id(message)?;
        return Err(ignored(format!(
            "Stripe customer {account_id} has no email: the ledger registers a customer with an \
             email; a later customer.updated with an email registers it"
        )));
    }
    let mut plan = Plan::new(message, view)?;
    if view.customer.is_some()
        && let Some(profile) = plan.state.profile.clone()
    {
        // Emails compare case-insensitively, as the ledger's uniqueness does.
        let email = email.filter(|email| email.to_lowercase() != profile.email.to_lowercase());
        let name = name.filter(|name| *name != profile.name);
        if email.is_some() || name.is_some() {
            plan.push(
                Kind::UpdateCustomerProfile(proto::CustomerProfileUpdated {
                    email: email.map(str::to_owned),
                    name: name.map(str::to_owned),
                }),
                None,
            );
        }
    }
    Ok(plan.finish())
}

/// `customer.subscription.*`: reaches the subscription snapshot.
fn subscription(
    message: &ProviderMessage,
    view: &View<'_>,
    object: &Value,
) -> Result<Normalized, Normalized> {
    let snapshot = Subscription::read(object).map_err(ignored)?;
    let held = view
        .customer
        .and_then(|known| known.state.subscriptions.get(&snapshot.id));
    if let Some(held) = held
        && message.created_at_unix_micros < held.changed_at_unix_micros
    {
        return Err(Normalized::Stale {
            reason: format!(
                "the snapshot of subscription {} is dated {} (Unix microseconds), before its \
                 latest change in the ledger at {}",
                snapshot.id, message.created_at_unix_micros, held.changed_at_unix_micros
            ),
        });
    }
    // Stripe never reopens a canceled subscription (`canceled` and `incomplete_expired` are
    // terminal: https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses),
    // so a snapshot showing one the ledger holds as canceled still open was taken before the
    // cancellation, even when its time is not earlier: events carry whole seconds, and a
    // subscription created and canceled within one second gives two events of the same time.
    if let Some(held) = held
        && held.status == SubscriptionStatus::Canceled
        && !matches!(snapshot.status.as_str(), "canceled" | "incomplete_expired")
    {
        return Err(Normalized::Stale {
            reason: format!(
                "subscription {} is canceled in the ledger, and Stripe never reopens a canceled \
                 subscription: this snapshot showing it {} was taken before the cancellation",
                snapshot.id, snapshot.status
            ),
        });
    }
    if held.is_none()
        && matches!(
            snapshot.status.as_str(),
            "incomplete" | "incomplete_expired"
        )
    {
        return Err(ignored(format!(
            "subscription {} is {}: it starts in the ledger once its first payment succeeds \
             (status active or trialing)",
            snapshot.id, snapshot.status
        )));
    }
    let mut plan = Plan::new(message, view)?;
    match held {
        None => start(&mut plan, message, object, &snapshot),
        Some(held) => {
            let steps = plan.steps.len();
            reach(&mut plan, &snapshot, None);
            if plan.steps.len() == steps
                && held.changed_at_unix_micros < message.created_at_unix_micros
            {
                replay(&mut plan, message, object, &snapshot);
            }
        }
    }
    Ok(plan.finish())
}

/// Starts a subscription the ledger does not hold yet.
///
/// When the event describes a change the ledger tracks (`previous_attributes` hold the old
/// plan, quantity, status, trial or `cancel_at_period_end`), the subscription starts as it was
/// before the change, dated when Stripe created it (or at the event's time when the object does
/// not say), and the change follows at the event's time: the history keeps the old plan until
/// the change, and every older snapshot is then stale. Otherwise (a `created` event, or a
/// change the ledger does not track such as metadata or a renewal) it starts as the snapshot
/// shows it, at the event's time: older snapshots are then stale, since this one holds
/// everything they could bring. (A trial that ended before that time is not recorded: the
/// ledger's trial end is that of a trial running at the start.)
fn start(plan: &mut Plan<'_>, message: &ProviderMessage, object: &Value, snapshot: &Subscription) {
    let before = message
        .body
        .pointer("/data/previous_attributes")
        .and_then(|previous| Subscription::previous(object, previous));
    if let Some(before) = before {
        let created_at = earlier_time(message, snapshot.created_unix_seconds);
        let mut from_before = plan.clone();
        started(&mut from_before, &before, created_at);
        reach(&mut from_before, &before, created_at);
        let steps = from_before.steps.len();
        reach(&mut from_before, snapshot, None);
        if from_before.steps.len() > steps {
            *plan = from_before;
            return;
        }
    }
    started(plan, snapshot, None);
    reach(plan, snapshot, None);
}

/// For a subscription the ledger already holds at the snapshot's values, from before this
/// event's time: when the event says those values changed (`previous_attributes`), the ledger
/// missed the change to the old values (its delivery is late). The old values, then the new
/// ones, are applied at the event's time, so that the late delivery is stale when it comes
/// (e.g. `cancel_at_period_end` set, then unset: the unset arriving first).
fn replay(plan: &mut Plan<'_>, message: &ProviderMessage, object: &Value, snapshot: &Subscription) {
    let Some(before) = message
        .body
        .pointer("/data/previous_attributes")
        .and_then(|previous| Subscription::previous(object, previous))
    else {
        return;
    };
    let mut from_before = plan.clone();
    reach(&mut from_before, &before, None);
    if from_before.steps.len() > plan.steps.len() {
        reach(&mut from_before, snapshot, None);
        *plan = from_before;
    }
}

fn started(plan: &mut Plan<'_>, snapshot: &Subscription, at: Option<i64>) {
    plan.push(
        Kind::StartSubscription(proto::SubscriptionStarted {
            subscription_id: snapshot.id.clone(),
            plan: Some(snapshot.plan.clone()),
            quantity: snapshot.quantity,
            trial_end_unix_seconds: snapshot.trial_end_unix_seconds,
            current_period_end_unix_seconds: snapshot.current_period_end_unix_seconds,
            discount: snapshot.discount.clone(),
        }),
        at,
    );
}

/// The commands that take the ledger's subscription to the snapshot's plan, trial, pause and
/// cancellation. Stripe's `past_due` / `unpaid` / `active` moves come from the invoices'
/// payments (`invoice.payment_failed`, `invoice.paid`), which the ledger records as money.
fn reach(plan: &mut Plan<'_>, snapshot: &Subscription, at: Option<i64>) {
    use SubscriptionStatus as S;
    let id = snapshot.id.clone();
    let canceled = matches!(snapshot.status.as_str(), "canceled" | "incomplete_expired");
    let Some(held) = plan.subscription(&id).cloned() else {
        return;
    };
    let converts = held.life_status == S::Trialing
        && matches!(
            snapshot.status.as_str(),
            "active" | "past_due" | "unpaid" | "paused"
        );
    let pauses = snapshot.paused && !canceled && held.status != S::Paused;
    let reopens = match held.status {
        S::Canceled => !canceled,
        S::CancelPending => !canceled && (!snapshot.cancel_at_period_end || converts || pauses),
        _ => false,
    };
    if reopens {
        plan.push(
            Kind::ReactivateSubscription(proto::SubscriptionReactivated {
                subscription_id: id.clone(),
            }),
            at,
        );
    }
    let discount = held
        .discount
        .as_ref()
        .map(|discount| discount.coupon_id.clone());
    let wanted_discount = snapshot
        .discount
        .as_ref()
        .map(|discount| discount.coupon_id.clone());
    let wanted_plan = snapshot
        .plan
        .unit_price
        .as_ref()
        .and_then(|money| ledger_domain::Money::try_from(money).ok());
    let plan_differs = held.plan.plan_id != snapshot.plan.plan_id
        || Some(held.plan.unit_price) != wanted_plan
        || held.quantity != snapshot.quantity
        || discount != wanted_discount;
    if plan_differs {
        plan.push(
            Kind::ChangePlan(proto::PlanChanged {
                subscription_id: id.clone(),
                plan: Some(snapshot.plan.clone()),
                quantity: snapshot.quantity,
                discount: snapshot.discount.clone(),
            }),
            at,
        );
    }
    if converts {
        plan.push(
            Kind::ConvertTrial(proto::TrialConverted {
                subscription_id: id.clone(),
            }),
            at,
        );
    }
    let status = plan.subscription(&id).map(|held| held.status);
    if pauses && status != Some(S::Paused) {
        let resumes_at = snapshot.resumes_at_unix_seconds.filter(|seconds| {
            i128::from(*seconds) * 1_000_000
                > i128::from(at.unwrap_or(plan.message.created_at_unix_micros))
        });
        plan.push(
            Kind::PauseSubscription(proto::SubscriptionPaused {
                subscription_id: id.clone(),
                resumes_at_unix_seconds: resumes_at,
            }),
            at,
        );
    } else if !snapshot.paused && !canceled && status == Some(S::Paused) {
        plan.push(
            Kind::ResumeSubscription(proto::SubscriptionResumed {
                subscription_id: id.clone(),
            }),
            at,
        );
    }
    let pending = plan
        .subscription(&id)
        .is_some_and(|held| held.pending_cancellation.is_some());
    if snapshot.cancel_at_period_end && !canceled && !pending {
        plan.push(
            Kind::RequestCancellation(proto::CancellationRequested {
                subscription_id: id.clone(),
                at_period_end: true,
                reason: "cancel_at_period_end set at Stripe".to_owned(),
            }),
            at,
        );
    }
    if canceled
        && plan
            .subscription(&id)
            .is_some_and(|held| held.status != S::Canceled)
    {
        let reason = if snapshot.cancellation_reason.is_empty() {
            format!("{} at Stripe", snapshot.status)
        } else {
            snapshot.cancellation_reason.clone()
        };
        plan.push(
            Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                subscription_id: id,
                reason,
            }),
            at,
        );
    }
}

/// `invoice.*`: issues the invoice if the ledger lacks it, finalizes it once Stripe did, and
/// records its payment (`paid`) or failed attempt (`invoice.payment_failed`). `invoice.paid`
/// and `invoice.payment_succeeded` of one payment record it once (the second finds the invoice
/// paid: already applied).
fn invoice(
    message: &ProviderMessage,
    view: &View<'_>,
    object: &Value,
) -> Result<Normalized, Normalized> {
    let invoice = Invoice::read(object).map_err(ignored)?;
    if let Some(subscription_id) = &invoice.subscription_id {
        let known = view
            .customer
            .is_some_and(|known| known.state.subscriptions.contains_key(subscription_id));
        if !known {
            return Err(waiting(
                ObjectKind::Subscription,
                subscription_id,
                &format!("the subscription of invoice {}", invoice.id),
            ));
        }
    }
    let mut plan = Plan::new(message, view)?;
    if !plan.state.invoices.contains_key(&invoice.id) {
        plan.push(
            Kind::IssueInvoice(proto::InvoiceIssued {
                invoice_id: invoice.id.clone(),
                subscription_id: invoice.subscription_id.clone().unwrap_or_default(),
                amount_due: Some(invoice.amount_due.clone()),
                period_start_unix_seconds: invoice.period_start_unix_seconds,
                period_end_unix_seconds: invoice.period_end_unix_seconds,
            }),
            None,
        );
    }
    let status = plan.state.invoices.get(&invoice.id).map(|held| held.status);
    if invoice.status != "draft" && status == Some(ledger_domain::InvoiceStatus::Open) {
        plan.push(
            Kind::FinalizeInvoice(proto::InvoiceFinalized {
                invoice_id: invoice.id.clone(),
            }),
            None,
        );
    }
    let paid = plan
        .state
        .invoices
        .get(&invoice.id)
        .is_some_and(|held| held.status == ledger_domain::InvoiceStatus::Paid);
    if message.event_type == "invoice.payment_failed" {
        let payment_id = invoice
            .payment_id
            .clone()
            .filter(|id| id.starts_with("ch_"))
            .unwrap_or_else(|| format!("{}:attempt:{}", invoice.id, invoice.attempt_count));
        if !plan.state.payments.contains_key(&payment_id) && invoice.amount_due.amount_minor > 0 {
            plan.push(
                Kind::RecordPaymentFailed(proto::PaymentFailed {
                    payment_id,
                    invoice_id: invoice.id.clone(),
                    subscription_id: String::new(),
                    amount: Some(invoice.amount_due.clone()),
                    failure_code: String::new(),
                    failure_message: "invoice.payment_failed at Stripe".to_owned(),
                    attempt_count: invoice.attempt_count,
                }),
                None,
            );
        }
    } else if invoice.status == "paid" && !paid && invoice.amount_paid.amount_minor > 0 {
        let payment_id = invoice
            .payment_id
            .clone()
            .unwrap_or_else(|| format!("{}:paid", invoice.id));
        plan.push(
            Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id,
                invoice_id: invoice.id.clone(),
                subscription_id: String::new(),
                amount: Some(invoice.amount_paid.clone()),
            }),
            None,
        );
    }
    Ok(plan.finish())
}

/// The ledger's payment for a Stripe charge: recorded under the charge id, or under its
/// payment intent when the invoice named only that.
fn payment_of<'a>(state: &Customer, charge: &'a Value) -> Option<String> {
    [
        objects::id(charge, "/id"),
        objects::id(charge, "/payment_intent"),
    ]
    .into_iter()
    .flatten()
    .find(|id: &&'a str| state.payments.contains_key(*id))
    .map(str::to_owned)
}

/// `charge.refunded`: records each refund of the charge the ledger lacks (from
/// `refunds.data`, or, when the API version leaves the list out, the difference between
/// `amount_refunded` and what the ledger already holds).
fn refunds(
    message: &ProviderMessage,
    view: &View<'_>,
    charge: &Value,
) -> Result<Normalized, Normalized> {
    let charge_id = objects::text(charge, "/id").ok_or_else(|| ignored("the charge has no id"))?;
    let currency = objects::text(charge, "/currency")
        .ok_or_else(|| ignored(format!("charge {charge_id} has no currency")))?;
    let money = |amount: i64| super::amounts::money(amount, currency).map_err(ignored);
    let mut plan = Plan::new(message, view)?;
    let payment_id = match payment_of(&plan.state, charge) {
        Some(payment_id) => payment_id,
        None => {
            if let Some(invoice_id) = objects::id(charge, "/invoice") {
                return Err(waiting(
                    ObjectKind::Invoice,
                    invoice_id,
                    &format!("the invoice charge {charge_id} pays"),
                ));
            }
            let amount = money(objects::integer(charge, "/amount").unwrap_or(0))?;
            plan.push(
                Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                    payment_id: charge_id.to_owned(),
                    invoice_id: String::new(),
                    subscription_id: String::new(),
                    amount: Some(amount),
                }),
                None,
            );
            charge_id.to_owned()
        }
    };
    match charge.pointer("/refunds/data").and_then(Value::as_array) {
        Some(list) => {
            for refund in list {
                let Some(refund_id) = objects::text(refund, "/id") else {
                    continue;
                };
                let settled = !matches!(
                    objects::text(refund, "/status"),
                    Some("failed" | "canceled")
                );
                if !settled || plan.state.refunds.contains_key(refund_id) {
                    continue;
                }
                let amount = money(objects::integer(refund, "/amount").unwrap_or(0))?;
                plan.push(
                    Kind::RefundPayment(proto::PaymentRefunded {
                        refund_id: refund_id.to_owned(),
                        payment_id: payment_id.clone(),
                        amount: Some(amount),
                        reason: objects::text(refund, "/reason")
                            .unwrap_or_default()
                            .to_owned(),
                        refund_request_id: String::new(),
                    }),
                    // When the refund was made: a dispute opened in between does not block it.
                    earlier_time(message, objects::integer(refund, "/created")),
                );
            }
        }
        None => {
            let refunded = money(objects::integer(charge, "/amount_refunded").unwrap_or(0))?;
            let held = plan
                .state
                .payments
                .get(&payment_id)
                .map_or(0, |payment| payment.refunded.amount_minor);
            if refunded.amount_minor > held {
                plan.push(
                    Kind::RefundPayment(proto::PaymentRefunded {
                        refund_id: format!("{charge_id}:refunded:{}", refunded.amount_minor),
                        payment_id,
                        amount: Some(proto::Money {
                            amount_minor: refunded.amount_minor - held,
                            currency: refunded.currency,
                        }),
                        reason: String::new(),
                        refund_request_id: String::new(),
                    }),
                    None,
                );
            }
        }
    }
    Ok(plan.finish())
}

/// `charge.dispute.created` / `charge.dispute.closed`: opens the dispute the ledger lacks and
/// closes it once Stripe decided it (`won` or an inquiry's `warning_closed`: won; `lost`: lost).
/// A dispute names no customer unless its charge is expanded: the writer passes the customer
/// holding the payment of its charge or payment intent ([`super::related_objects`]).
fn dispute(
    message: &ProviderMessage,
    view: &View<'_>,
    dispute: &Value,
) -> Result<Normalized, Normalized> {
    let dispute_id =
        objects::text(dispute, "/id").ok_or_else(|| ignored("the dispute has no id"))?;
    let charge_id = objects::id(dispute, "/charge")
        .ok_or_else(|| ignored(format!("dispute {dispute_id} names no charge")))?;
    let contested = || {
        waiting(
            ObjectKind::Payment,
            charge_id,
            &format!("the charge dispute {dispute_id} contests"),
        )
    };
    if view.customer.is_none() && message.account_id.is_none() {
        // The charge is not expanded: the writer found no customer holding its payment.
        return Err(contested());
    }
    let mut plan = Plan::new(message, view)?;
    if !plan.state.disputes.contains_key(dispute_id) {
        let by_charge = serde_json::json!({
            "id": charge_id,
            "payment_intent": objects::id(dispute, "/payment_intent"),
        });
        let Some(payment_id) = payment_of(&plan.state, &by_charge) else {
            return Err(contested());
        };
        let currency = objects::text(dispute, "/currency").unwrap_or_default();
        let amount =
            super::amounts::money(objects::integer(dispute, "/amount").unwrap_or(0), currency)
                .map_err(ignored)?;
        plan.push(
            Kind::OpenDispute(proto::DisputeOpened {
                dispute_id: dispute_id.to_owned(),
                payment_id,
                amount: Some(amount),
                reason: objects::text(dispute, "/reason")
                    .unwrap_or_default()
                    .to_owned(),
            }),
            None,
        );
    }
    let outcome = match objects::text(dispute, "/status") {
        Some("won" | "warning_closed") => Some(proto::DisputeOutcome::Won),
        Some("lost") => Some(proto::DisputeOutcome::Lost),
        _ => None,
    };
    let open = plan
        .state
        .disputes
        .get(dispute_id)
        .is_some_and(|held| held.status == ledger_domain::DisputeStatus::Open);
    if let Some(outcome) = outcome
        && open
    {
        plan.push(
            Kind::CloseDispute(proto::DisputeClosed {
                dispute_id: dispute_id.to_owned(),
                outcome: outcome as i32,
            }),
            None,
        );
    }
    Ok(plan.finish())
}
