//! Payment provider connectors, inbound: a provider's webhook delivery is verified on its raw
//! bytes as received (never re-serialized JSON), parsed into a [`ProviderMessage`], and
//! normalized into the ledger's commands against what the ledger already holds ([`View`]).
//!
//! Everything here is pure: no I/O, no clock (the time arrives as an argument), no randomness.
//! The flow around it (docs/connectors.md):
//!
//! ```text
//! ingest:  verify(headers, raw body, secrets, now) -> ProviderMessage   (401 / 400 on failure)
//!            -> the raw body, as received, to the writer
//! writer:  parse(provider, raw body) -> ProviderMessage
//!          resolve the customer: ProviderMessage::account_id, then ::email, then
//!            related_objects (the subscription or payment a PayPal sale or refund or a
//!            Stripe dispute names)
//!                                                            (authoritative state)
//!          normalize_after(message, view, latest snapshot seen of snapshot_object)
//!            -> Normalized -> decide each command -> append,
//!          with the inbox row, in one transaction
//! ```
//!
//! One module per provider; each has `verify`, and [`parse`] / [`normalize`] dispatch to it.

mod decimal_amount;
mod json_text;
pub use json_text::printable;
mod listed;
pub mod paypal;
pub mod reconcile;
pub mod stripe;
mod subscription_snapshot;
pub mod xendit;

use ledger_domain::proto;
use ledger_domain::{Customer, Provider};
use uuid::Uuid;

/// The largest webhook body accepted, in bytes. Stripe's events are far below it; a larger body
/// is refused with 413 before it is read further.
pub const WEBHOOK_BYTES_MAX: usize = 256 * 1024;

/// Case-insensitive access to a delivery's HTTP headers, so verification does not depend on an
/// HTTP framework.
pub trait Headers {
    /// The value of header `name` (any case), if present and valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
}

/// One verified delivery of a provider's event, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderMessage {
    pub provider: Provider,
    /// The provider's id of the event (`evt_...` at Stripe, `WH-...` at PayPal); the key of the
    /// inbox and, prefixed with the provider, of the idempotency keys of the commands it yields.
    pub event_id: String,
    /// The provider's event type (`invoice.paid`, `BILLING.SUBSCRIPTION.CREATED`, ...).
    pub event_type: String,
    /// When the provider says the event happened, in microseconds since the Unix epoch: the
    /// business time (`occurred_at`) of every command the message yields.
    pub created_at_unix_micros: i64,
    /// The customer's account at the provider (`cus_...`), when the message names one.
    pub account_id: Option<String>,
    /// The customer's email, when the message carries one: used to link an unknown account to
    /// the customer who already holds that email.
    pub email: Option<String>,
    /// The message body, parsed.
    pub body: serde_json::Value,
}

/// What the ledger holds about the customer a message is about, read from the writer's
/// authoritative state (never from a read model).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub customer: Option<KnownCustomer<'a>>,
}

/// A customer the message's account or email resolved to.
#[derive(Debug, Clone, Copy)]
pub struct KnownCustomer<'a> {
    pub customer_id: Uuid,
    pub state: &'a Customer,
    /// `true` when the message's provider account is already linked to this customer; `false`
    /// when it was found by email only (the account gets linked first).
    pub account_linked: bool,
}

/// What a message means for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// Commands for one customer, to be decided in order. Each carries the provider as issuer,
    /// `payment_provider`, `account_id`, the message's time as `occurred_at` (except that
    /// Stripe starts a subscription it missed, with the values it had before the event, at the
    /// subscription's earlier `created`), and an idempotency key from the provider's event id
    /// ([`idempotency_key`]).
    Commands(Vec<proto::Command>),
    /// An event type or object the ledger does not use; recorded, nothing appended.
    Ignored { reason: String },
    /// The message's snapshot is older than what the ledger already applied for its object.
    Stale { reason: String },
    /// The message is about an object the ledger has not seen yet and its snapshot cannot
    /// create (Stripe: the subscription of an invoice, the invoice a charge pays, the payment
    /// a dispute contests, the customer of a message without email; PayPal: the subscription
    /// a sale pays, the sale a refund returns, a subscription to start without a price;
    /// Xendit: the plan of a cycle, the customer of a plan without email). Recorded, nothing
    /// appended; the writer normalizes the message again in the batch that makes `object`
    /// known (docs/decisions/0022-waiting-deliveries.md).
    Waiting {
        object: AwaitedObject,
        reason: String,
    },
}

/// The kind of an object a message can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A customer's account at the provider (`cus_...`, a PayPal payer id): known once a
    /// customer is registered with it or it is linked to one.
    CustomerAccount,
    /// A subscription (`sub_...`, PayPal `I-...`, a Xendit recurring plan `repl_...`): known
    /// once started.
    Subscription,
    /// An invoice (`in_...`): known once issued.
    Invoice,
    /// A payment (a Stripe charge `ch_...`, a PayPal sale): known once recorded as succeeded.
    Payment,
}

impl ObjectKind {
    /// The stored name: `customer_account`, `subscription`, `invoice`, `payment`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::CustomerAccount => "customer_account",
            ObjectKind::Subscription => "subscription",
            ObjectKind::Invoice => "invoice",
            ObjectKind::Payment => "payment",
        }
    }
}

/// An object of a provider that a message waits for (see [`Normalized::Waiting`]), or that an
/// event makes known ([`made_known`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwaitedObject {
    pub provider: Provider,
    pub kind: ObjectKind,
    /// The provider's id of the object.
    pub id: String,
}

impl AwaitedObject {
    pub fn new(provider: Provider, kind: ObjectKind, id: impl Into<String>) -> AwaitedObject {
        AwaitedObject {
            provider,
            kind,
            id: id.into(),
        }
    }

    /// The stored form, `<provider>:<kind>:<id>` (`stripe:subscription:sub_1`): the
    /// `awaited_object` column of the inbox and the key the writer releases by.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.provider.as_str(),
            self.kind.as_str(),
            self.id
        )
    }
}

/// The object `event` makes known, when it makes one known: a customer registered with or
/// linked to a provider account (that account's provider), a subscription started or its plan
/// changed, an invoice issued, a payment that succeeded (of `provider`, the provider of the
/// command that led to the event). A plan change counts for a subscription started under
/// another provider (the company's own billing) that `provider` then reports: its snapshot
/// becomes a `plan_changed`, and a delivery waiting for the subscription can be applied.
pub fn made_known(provider: Provider, event: &ledger_domain::Event) -> Option<AwaitedObject> {
    use ledger_domain::Event as E;
    let account = |account: Option<&proto::ProviderAccount>| {
        let account = account?;
        let provider = Provider::try_from(account.provider()).ok()?;
        Some(AwaitedObject::new(
            provider,
            ObjectKind::CustomerAccount,
            account.account_id.clone(),
        ))
    };
    match event {
        E::CustomerRegistered(registered) => account(registered.provider_account.as_ref()),
        E::ProviderAccountLinked(linked) => account(linked.provider_account.as_ref()),
        E::SubscriptionStarted(ledger_domain::proto::SubscriptionStarted {
            subscription_id,
            ..
        })
        | E::PlanChanged(ledger_domain::proto::PlanChanged {
            subscription_id, ..
        }) => Some(AwaitedObject::new(
            provider,
            ObjectKind::Subscription,
            subscription_id.clone(),
        )),
        E::InvoiceIssued(issued) => Some(AwaitedObject::new(
            provider,
            ObjectKind::Invoice,
            issued.invoice_id.clone(),
        )),
        E::PaymentSucceeded(succeeded) => Some(AwaitedObject::new(
            provider,
            ObjectKind::Payment,
            succeeded.payment_id.clone(),
        )),
        _ => None,
    }
}

/// Whether some of `provider`'s messages find their customer only through its objects of
/// `kind` ([`related_objects`]): PayPal's subscriptions and payments (sales), Stripe's
/// payments (disputes). Stripe's subscription messages and every Xendit message name their
/// customer.
pub fn found_through(provider: Provider, kind: ObjectKind) -> bool {
    matches!(
        (provider, kind),
        (
            Provider::Paypal,
            ObjectKind::Subscription | ObjectKind::Payment
        ) | (Provider::Stripe, ObjectKind::Payment)
    )
}

/// The provider's subscription or payment that `event` shows the customer holds, when
/// messages find their customer through it ([`found_through`]): a subscription started or its
/// plan changed, a payment that succeeded ([`made_known`] of those kinds; never of the
/// company's own billing, `Internal`, whose ids need not be unique across customers). The
/// writer records them (`provider_objects`, the first holder keeps an object) to find the
/// customer of the messages that name only such an object ([`related_objects`]), whether a
/// delivery or a command recorded it.
pub fn held_object(provider: Provider, event: &ledger_domain::Event) -> Option<AwaitedObject> {
    made_known(provider, event).filter(|object| found_through(provider, object.kind))
}

/// `Normalized::Waiting` for `provider`'s object of `kind` with `id`, with a reason naming it
/// and `why` the message needs it; `Normalized::Ignored` when no command can record an object
/// with that id ([`ledger_domain::id_problem`], or empty), so it would wait for good.
pub(crate) fn waiting(provider: Provider, kind: ObjectKind, id: &str, why: &str) -> Normalized {
    let kind_name = kind.as_str().replace('_', " ");
    let problem = if id.is_empty() {
        Some("empty")
    } else {
        ledger_domain::id_problem(id)
    };
    if let Some(problem) = problem {
        return Normalized::Ignored {
            reason: format!(
                "names {} {kind_name} {id:?} ({why}), but no command can record that id \
                 ({problem}): nothing to wait for",
                provider.as_str()
            ),
        };
    }
    Normalized::Waiting {
        object: AwaitedObject::new(provider, kind, id),
        reason: format!(
            "waiting for {} {kind_name} {id} ({why}): the ledger has not seen it yet; applied in \
             the batch that makes it known",
            provider.as_str(),
        ),
    }
}

/// Why a delivery was not accepted as a verified message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature, a wrong one, or a timestamp outside the tolerance: answered 401.
    #[error("signature rejected: {0}")]
    Signature(String),
    /// The body is not a message of this provider (not JSON, no event id, ...): answered 400.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Parses a body already verified (by ingest) into a message. Pure; the writer and
/// `ledger connectors renormalize` call it on the stored raw bytes.
///
/// # Errors
/// [`VerifyError::Malformed`] when the body is not a message of `provider`, or when one of
/// its strings holds NUL (`\u0000`), which no provider sends and the ledger cannot store.
pub fn parse(provider: Provider, raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    match provider {
        Provider::Stripe => stripe::parse(raw),
        Provider::Paypal => paypal::parse(raw),
        Provider::Xendit => xendit::parse(raw),
        Provider::Internal => Err(VerifyError::Malformed(
            "the internal provider has no webhooks".to_owned(),
        )),
    }
}

/// A provider object through which the ledger finds a message's customer: PayPal's
/// `PAYMENT.SALE.*` events carry neither the payer's account nor email, only the subscription
/// (`billing_agreement_id`) a sale pays or the sale a refund returns; its subscription messages
/// carry a payer the ledger may not know for a subscription it holds (started by the company's
/// own `start_subscription`); Stripe's disputes name only the charge (and maybe its payment
/// intent) they contest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelatedObject<'a> {
    /// A subscription id (`I-...`): the customer is the one holding this subscription.
    Subscription(&'a str),
    /// A payment id (a PayPal sale id, a Stripe charge or payment intent): the customer is the
    /// one holding this payment.
    Payment(&'a str),
}

impl RelatedObject<'_> {
    /// The object's key as `provider` names it ([`AwaitedObject::key`]): what
    /// `provider_objects` records its holder under.
    pub fn key(self, provider: Provider) -> String {
        let (kind, id) = match self {
            RelatedObject::Subscription(id) => (ObjectKind::Subscription, id),
            RelatedObject::Payment(id) => (ObjectKind::Payment, id),
        };
        AwaitedObject::new(provider, kind, id).key()
    }
}

/// The objects through which the writer finds the customer of a message whose provider
/// account no customer holds, in the order to try them, before the message's email. The
/// writer looks up the customer holding that subscription or payment ([`held_object`]: an
/// object never moves to another customer, so the first record of which customer holds it
/// will do) and passes the first it finds in the [`View`], with `account_linked: true` when the
/// message names no account (else the account gets linked); when none holds one and the
/// message has no email either, the view has no customer and normalization answers
/// [`Normalized::Waiting`]. Empty for Stripe messages that name their customer, and for every
/// Xendit one.
pub fn related_objects(message: &ProviderMessage) -> Vec<RelatedObject<'_>> {
    match message.provider {
        Provider::Paypal => paypal::related_object(message).into_iter().collect(),
        Provider::Stripe => stripe::related_objects(message),
        Provider::Xendit | Provider::Internal => Vec::new(),
    }
}

/// Normalizes `message` against `view`. Pure and deterministic: the same message and view give
/// the same commands, so a redelivery or a re-normalization appends nothing new.
pub fn normalize(message: &ProviderMessage, view: &View<'_>) -> Normalized {
    normalize_after(message, view, None)
}

/// The provider object whose whole snapshot `message` carries (a PayPal subscription `I-...`,
/// a Xendit recurring plan `repl_...`), for [`normalize_after`]; `None` for messages that are
/// not snapshots of a subscription (payments, refunds, invoices) and for Stripe's.
pub fn snapshot_object(message: &ProviderMessage) -> Option<&str> {
    let pointer = match message.provider {
        Provider::Paypal => paypal::snapshot_pointer(&message.event_type),
        Provider::Xendit => xendit::snapshot_pointer(&message.event_type),
        Provider::Stripe | Provider::Internal => None,
    }?;
    message
        .body
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
}

/// [`normalize`], knowing `seen_unix_micros`: the latest `created_at_unix_micros` among the
/// messages about the same [`snapshot_object`] that the ledger already normalized with the
/// outcome commands appended, already applied, or stale (the writer reads it from its inbox).
///
/// Why: a snapshot that matched the ledger appends nothing, so the customer's state cannot
/// remember it; without this time, an older snapshot delivered after it would be applied
/// (active at t1, paused at t2, active again at t3, delivered t1, t3, t2, would end paused).
/// With it, a snapshot older than the latest one seen is [`Normalized::Stale`], and any
/// order of deliveries ends where the latest snapshot says. `None` behaves as [`normalize`]:
/// staleness is then judged on the subscription's latest change only.
pub fn normalize_after(
    message: &ProviderMessage,
    view: &View<'_>,
    seen_unix_micros: Option<i64>,
) -> Normalized {
    match message.provider {
        Provider::Stripe => stripe::normalize(message, view),
        Provider::Paypal => paypal::normalize(message, view, seen_unix_micros),
        Provider::Xendit => xendit::normalize(message, view, seen_unix_micros),
        Provider::Internal => Normalized::Ignored {
            reason: "the internal provider has no webhooks".to_owned(),
        },
    }
}

/// The idempotency key of command `index` of `count` that `message` yields:
/// `<provider>:<event id>` for a single command, `<provider>:<event id>:<index>` when the
/// message yields several.
pub fn idempotency_key(message: &ProviderMessage, index: usize, count: usize) -> String {
    if count == 1 {
        format!("{}:{}", message.provider.as_str(), message.event_id)
    } else {
        format!("{}:{}:{index}", message.provider.as_str(), message.event_id)
    }
}

/// The customer id (stream) the ledger gives a customer first seen through a provider account:
/// a UUID v5 of `<provider>:<account id>`, so every delivery and re-normalization agrees.
pub fn customer_id_for_account(provider: Provider, account_id: &str) -> Uuid {
    Uuid::new_v5(
        &CUSTOMER_NAMESPACE,
        format!("{}:{account_id}", provider.as_str()).as_bytes(),
    )
}

/// Namespace of [`customer_id_for_account`] (a fixed random UUID).
const CUSTOMER_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_2a6e_93f4_4b1e_8c0a_3f2e_7b19_d4c6);

/// Turns a list of command kinds for one customer into commands with the message's metadata.
pub fn commands_for(
    message: &ProviderMessage,
    customer_id: Uuid,
    kinds: Vec<proto::command::Kind>,
) -> Normalized {
    let count = kinds.len();
    Normalized::Commands(
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| proto::Command {
                metadata: Some(proto::CommandMetadata {
                    idempotency_key: idempotency_key(message, index, count),
                    customer_id: customer_id.to_string(),
                    expected_version: None,
                    occurred_at_unix_micros: message.created_at_unix_micros,
                    issuer: proto::Issuer::PaymentProvider as i32,
                    payment_provider: proto::PaymentProvider::from(message.provider) as i32,
                    account_id: message.account_id.clone().unwrap_or_default(),
                    correlation_id: String::new(),
                    causation_id: String::new(),
                }),
                kind: Some(kind),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_domain::Event;

    /// `provider_objects` holds only what messages find their customer through: a Stripe
    /// backfill's subscriptions write no row (12 to 17 µs each in `ledger bench sync`), the
    /// company's own billing nothing.
    /// A message naming an object by an id no command can record (PayPal's
    /// `billing_agreement_id` with a leading space, an id of 300 bytes) is ignored with the
    /// reason rather than left waiting for good (found by a try-it pass).
    #[test]
    fn an_object_no_command_can_record_is_not_waited_for() {
        let long = "I-".repeat(150);
        for id in [" I-X", "I-X\n", "", long.as_str()] {
            let normalized = waiting(Provider::Paypal, ObjectKind::Subscription, id, "a sale");
            assert!(
                matches!(&normalized, Normalized::Ignored { reason }
                    if reason.contains("no command can record that id")),
                "{id:?}: {normalized:?}"
            );
        }
        assert!(matches!(
            waiting(Provider::Paypal, ObjectKind::Subscription, "I-X", "a sale"),
            Normalized::Waiting { .. }
        ));
    }

    #[test]
    fn held_objects_are_the_kinds_messages_find_their_customer_through() {
        let started = Event::SubscriptionStarted(proto::SubscriptionStarted {
            subscription_id: "I-1".to_owned(),
            ..proto::SubscriptionStarted::default()
        });
        let paid = Event::PaymentSucceeded(proto::PaymentSucceeded {
            payment_id: "ch_1".to_owned(),
            ..proto::PaymentSucceeded::default()
        });
        let held =
            |provider, event: &Event| held_object(provider, event).map(|object| object.key());
        assert_eq!(
            held(Provider::Paypal, &started).as_deref(),
            Some("paypal:subscription:I-1")
        );
        assert_eq!(
            held(Provider::Paypal, &paid).as_deref(),
            Some("paypal:payment:ch_1")
        );
        assert_eq!(
            held(Provider::Stripe, &paid).as_deref(),
            Some("stripe:payment:ch_1")
        );
        assert_eq!(held(Provider::Stripe, &started), None);
        assert_eq!(held(Provider::Xendit, &started), None);
        assert_eq!(held(Provider::Internal, &paid), None);
    }
}
