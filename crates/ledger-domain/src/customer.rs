//! The customer aggregate: its state and [`evolve`], which folds one event into it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::money::{Currency, Money};
use crate::names::{EnumValueError, EventStatus, Provider, storage_enum};
use crate::{Event, proto};

storage_enum! {
    /// Where a subscription is in its life, as the providers name it (Stripe `status` plus
    /// `cancel_at_period_end`).
    SubscriptionStatus, "subscription status" {
        /// In a free trial until `trial_end_unix_seconds`.
        Trialing => "trialing",
        /// Paid and running.
        Active => "active",
        /// A payment failed; the provider is retrying (dunning).
        PastDue => "past_due",
        /// Collection is paused until resumed.
        Paused => "paused",
        /// Runs until the current period ends, then cancels (`cancel_at_period_end`).
        CancelPending => "cancel_pending",
        /// Ended. Only a reactivation brings it back.
        Canceled => "canceled",
    }
}

storage_enum! {
    /// Where an invoice is in its life. `Open` is an issued invoice that can still change
    /// (Stripe's `draft`); `Finalized` can no longer change and awaits payment (Stripe's `open`).
    InvoiceStatus, "invoice status" {
        /// Issued, still editable.
        Open => "open",
        /// Final, awaiting payment.
        Finalized => "finalized",
        /// Paid by a successful payment.
        Paid => "paid",
    }
}

storage_enum! {
    /// The outcome of a payment attempt.
    PaymentStatus, "payment status" {
        /// The money was collected; it can be refunded and disputed.
        Succeeded => "succeeded",
        /// The attempt failed; nothing was collected.
        Failed => "failed",
    }
}

storage_enum! {
    /// Where a dispute (chargeback) is in its life.
    DisputeStatus, "dispute status" {
        /// Opened by the cardholder's bank, not yet decided.
        Open => "open",
        /// Decided for the merchant.
        Won => "won",
        /// Decided for the cardholder; the disputed amount is lost.
        Lost => "lost",
    }
}

storage_enum! {
    /// The unit of a plan's billing interval.
    BillingInterval, "billing interval" {
        /// Days.
        Day => "day",
        /// Weeks.
        Week => "week",
        /// Months.
        Month => "month",
        /// Years.
        Year => "year",
    }
}

/// The customer's profile, set by registration and profile updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The email as given (trimmed); uniqueness uses its lower-cased form.
    pub email: String,
    /// The display name, possibly empty.
    pub name: String,
}

/// A customer's account at one payment provider (Stripe `cus_...`, a PayPal payer id, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderAccount {
    /// The provider.
    pub provider: Provider,
    /// The provider's id of the customer.
    pub account_id: String,
}

/// A recurring price: `unit_price` every `interval_count` `interval`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The provider's or catalogue's plan (price) id.
    pub plan_id: String,
    /// The price of one unit per interval.
    pub unit_price: Money,
    /// The unit of the interval.
    pub interval: BillingInterval,
    /// How many `interval`s one period lasts (3 x month is quarterly).
    pub interval_count: u32,
}

/// What a discount takes off each invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountOff {
    /// A percentage in basis points (10000 = 100 %).
    PercentBasisPoints(u32),
    /// A fixed amount in the subscription's currency.
    Amount(Money),
}

/// How long a discount applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountDuration {
    /// One invoice only.
    Once,
    /// The given number of months.
    Repeating {
        /// At least 1.
        months: u32,
    },
    /// For as long as the subscription lives.
    Forever,
}

/// A coupon applied to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    /// The coupon's id.
    pub coupon_id: String,
    /// What it takes off.
    pub off: DiscountOff,
    /// How long it applies.
    pub duration: DiscountDuration,
}

/// A cancellation that was asked for and not yet confirmed or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCancellation {
    /// True: the subscription cancels when its period ends (status `CancelPending` meanwhile).
    pub at_period_end: bool,
    /// The status a failed cancellation or a reactivation returns to when the status is
    /// `CancelPending`: [`Subscription::underlying_status`], which payments move like the
    /// status itself (`Active` <-> `PastDue`).
    pub status_before: SubscriptionStatus,
    /// The reason given with the request.
    pub reason: String,
}

/// What a `subscription_update_requested` still processing asks for. It is answered by the
/// change it asks for (`subscription_paused`, `subscription_resumed`, `plan_changed`, whoever
/// records it: provider-sync or the provider's webhook), by `subscription_update_failed`, or
/// ends with the subscription's cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingUpdate {
    Pause,
    Resume,
    PlanChange,
}

impl PendingUpdate {
    /// The update a request asks for; `None` when it names none.
    pub fn of(request: &proto::SubscriptionUpdateRequested) -> Option<PendingUpdate> {
        use proto::subscription_update_requested::Change;
        Some(match request.change.as_ref()? {
            Change::Pause(_) => PendingUpdate::Pause,
            Change::Resume(_) => PendingUpdate::Resume,
            Change::PlanChange(_) => PendingUpdate::PlanChange,
        })
    }
}

/// The outcome of a subscription's payment with the latest business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentOutcome {
    /// Succeeded or failed.
    pub status: PaymentStatus,
    /// The payment's business time (`occurred_at`, Unix microseconds).
    pub occurred_at_unix_micros: i64,
}

/// One subscription of the customer.
///
/// Its status combines two facts, each the same whatever the order they were recorded in
/// (`docs/decisions/0023-status-by-business-time.md`): where its life is
/// ([`Subscription::life_status`]: trialing, active, paused, canceled) and how its latest
/// payment by business time went ([`Subscription::latest_payment`]). A trialing or active
/// subscription whose latest payment failed is past due, one whose latest payment succeeded is
/// active (a charge ends a trial as far as the status goes, as at the providers, where the
/// first charge comes when the trial ends); a paused or canceled one stays so whatever its
/// payments. A pending cancellation at period end is on top (`CancelPending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The current plan.
    pub plan: Plan,
    /// How many units of the plan (seats).
    pub quantity: u32,
    /// Where the subscription is in its life, derived from `life_status`, `latest_payment` and
    /// `pending_cancellation` (see [`Subscription`]).
    pub status: SubscriptionStatus,
    /// The end of the trial it started with, if any.
    pub trial_end_unix_seconds: Option<i64>,
    /// The end of the current billing period; advanced by invoices for later periods.
    pub current_period_end_unix_seconds: i64,
    /// A cancellation asked for and not yet settled.
    pub pending_cancellation: Option<PendingCancellation>,
    /// The coupon applied, if any.
    pub discount: Option<Discount>,
    /// When a paused subscription resumes by itself, if known.
    pub resumes_at_unix_seconds: Option<i64>,
    /// An update asked of the provider (`subscription_update_requested`) and not yet answered.
    pub pending_update: Option<PendingUpdate>,
    /// The business time (`occurred_at`, Unix microseconds) of the latest event that changed
    /// the subscription's plan, quantity, discount, life or pending cancellation: its start or
    /// a change of its life (`trial_converted` ... `subscription_reactivated`). Payments do not
    /// count. A change dated before it is stale (see `docs/events.md`).
    pub changed_at_unix_micros: i64,
    /// The status its latest change of life set: `Trialing` or `Active` (start, trial
    /// conversion, resume, reactivation), `Paused` or `Canceled`. Payments do not set it.
    pub life_status: SubscriptionStatus,
    /// Its payment (succeeded or failed) with the latest business time, whatever the order
    /// payments were recorded in; at the same instant a success counts as the later one.
    pub latest_payment: Option<PaymentOutcome>,
    /// True once a payment for it succeeded (`payment_succeeded`, whatever its date).
    pub ever_paid: bool,
}

impl Subscription {
    /// The change `update` took effect: a request for it is answered.
    fn answered(&mut self, update: PendingUpdate) {
        if self.pending_update == Some(update) {
            self.pending_update = None;
        }
    }

    /// The subscription's currency: its plan's. Invoices and payments for it use it too.
    pub fn currency(&self) -> crate::Currency {
        self.plan.unit_price.currency
    }

    /// True when the subscription cancels at the end of the current period (Stripe's
    /// `cancel_at_period_end`).
    pub fn cancel_at_period_end(&self) -> bool {
        self.pending_cancellation
            .as_ref()
            .is_some_and(|pending| pending.at_period_end)
    }

    /// Records a payment's outcome when it is the latest by business time (at the same instant
    /// a success wins, so the order of recording never matters), then derives the status.
    fn record_payment(&mut self, status: PaymentStatus, occurred_at_unix_micros: i64) {
        let latest = self.latest_payment.is_none_or(|latest| {
            (occurred_at_unix_micros, status == PaymentStatus::Succeeded)
                > (
                    latest.occurred_at_unix_micros,
                    latest.status == PaymentStatus::Succeeded,
                )
        });
        if latest {
            self.latest_payment = Some(PaymentOutcome {
                status,
                occurred_at_unix_micros,
            });
        }
        self.derive_status();
    }

    /// Sets the status a change of its life decided, then derives the status.
    fn set_life_status(&mut self, life_status: SubscriptionStatus) {
        self.life_status = life_status;
        self.derive_status();
    }

    /// `status` (and a pending cancellation's `status_before`) from the life status and the
    /// latest payment (see [`Subscription`]).
    fn derive_status(&mut self) {
        use SubscriptionStatus as S;
        let underlying = match (self.life_status, self.latest_payment) {
            (S::Trialing | S::Active, Some(payment)) => match payment.status {
                PaymentStatus::Failed => S::PastDue,
                PaymentStatus::Succeeded => S::Active,
            },
            (life_status, _) => life_status,
        };
        self.status = match self.pending_cancellation.as_mut() {
            Some(pending) if pending.at_period_end && underlying != S::Canceled => {
                pending.status_before = underlying;
                S::CancelPending
            }
            _ => underlying,
        };
    }

    /// True while its trial runs as far as its life goes: started trialing and not converted,
    /// paused or canceled since, and no cancellation pending at period end (a payment failed
    /// during the trial shows it past due meanwhile). `convert_trial` needs it.
    pub fn in_trial(&self) -> bool {
        self.life_status == SubscriptionStatus::Trialing
            && self.status != SubscriptionStatus::CancelPending
    }

    /// The status the subscription has apart from a pending cancellation at period end: its
    /// status, or the one a cancel-pending subscription returns to.
    pub fn underlying_status(&self) -> SubscriptionStatus {
        match (self.status, self.pending_cancellation.as_ref()) {
            (SubscriptionStatus::CancelPending, Some(pending)) => pending.status_before,
            (status, _) => status,
        }
    }
}

/// An invoice of the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The subscription it bills; `None` for a one-off invoice.
    pub subscription_id: Option<String>,
    /// The amount to pay, zero or more.
    pub amount_due: Money,
    /// Open, finalized or paid.
    pub status: InvoiceStatus,
    /// The start of the billed period (0 when not given).
    pub period_start_unix_seconds: i64,
    /// The end of the billed period (0 when not given).
    pub period_end_unix_seconds: i64,
}

/// A payment attempt of the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The invoice it pays, if any.
    pub invoice_id: Option<String>,
    /// The subscription it pays for: the one given, or else the invoice's.
    pub subscription_id: Option<String>,
    /// The amount collected (or attempted, when failed); always positive.
    pub amount: Money,
    /// The sum of its refunds, in the same currency; never more than `amount`.
    pub refunded: Money,
    /// Succeeded or failed.
    pub status: PaymentStatus,
    /// The dispute opened against it, if any (at most one, as at the card networks).
    pub dispute_id: Option<String>,
}

/// A refund of part or all of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The refunded payment.
    pub payment_id: String,
    /// The amount returned, in the payment's currency.
    pub amount: Money,
}

/// A refund the ledger's owner asked a provider for (`refund_requested`), and how it was
/// answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The payment to refund.
    pub payment_id: String,
    /// The amount asked for, in the payment's currency; always positive.
    pub amount: Money,
    /// `Processing` until the provider answers: `Complete` (a `payment_refunded` naming the
    /// request) or `Failed` (`refund_failed`).
    pub status: EventStatus,
}

/// A dispute (chargeback) against a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    /// The disputed payment.
    pub payment_id: String,
    /// The disputed amount, in the payment's currency.
    pub amount: Money,
    /// Open, won or lost.
    pub status: DisputeStatus,
    /// When it was opened (business time, Unix microseconds): a refund made before it is not
    /// blocked by it, whichever the provider delivered first.
    pub opened_at_unix_micros: i64,
}

/// The state of one customer, folded from its events by [`evolve`].
///
/// `evolve` keeps these invariants for any sequence of events, valid or not:
/// - `version` is the number of events folded in;
/// - every invoice and payment that names a subscription names an existing one with the same
///   currency, and every refund and dispute names an existing payment with its currency;
/// - per payment, `0 <= refunded <= amount`, and only succeeded payments have refunds;
/// - a `Canceled` subscription leaves that status only through `SubscriptionReactivated`;
/// - the status is `CancelPending` exactly when a pending cancellation is `at_period_end`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    /// The stream version: the number of events applied.
    pub version: u64,
    /// `None` until the customer registers.
    pub profile: Option<Profile>,
    /// The provider accounts linked to this customer.
    pub provider_accounts: BTreeSet<ProviderAccount>,
    /// Subscriptions by subscription id.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Invoices by invoice id.
    pub invoices: BTreeMap<String, Invoice>,
    /// Payments (succeeded and failed) by payment id.
    pub payments: BTreeMap<String, Payment>,
    /// Refunds by refund id.
    pub refunds: BTreeMap<String, Refund>,
    /// Refund requests by refund request id (`refund_requested`).
    pub refund_requests: BTreeMap<String, RefundRequest>,
    /// Disputes by dispute id.
    pub disputes: BTreeMap<String, Dispute>,
}

/// What [`Customer::approximate_bytes`] counts for the heap text of one entry's ids (its key
/// and the optional ids it names): provider ids are 10 to 40 bytes, and an allocation's
/// rounding and bookkeeping add about 16 each.
const ENTRY_HEAP_BYTES: usize = 96;

/// Entries a node of std's B-tree holds at most (`2 * B - 1`, B = 6); a node is allocated
/// whole, so a map of one entry takes a node of 11.
const TREE_NODE_CAPACITY: usize = 11;
/// Entries a node other than the root holds at least (`B - 1`): entries inserted in order, as
/// a customer's history mostly is, leave nodes about half full.
const TREE_NODE_ENTRIES_MIN: usize = 5;
/// A node's bytes besides its entries: parent pointer, lengths and, for the internal nodes
/// (about one in six), twelve child pointers, on average.
const TREE_NODE_HEADER_BYTES: usize = 32;

/// An upper estimate of the heap a B-tree map or set of `len` entries of `entry_bytes` each
/// allocates for its nodes.
fn tree_bytes(len: usize, entry_bytes: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let nodes = 1 + len / TREE_NODE_ENTRIES_MIN;
    nodes * (TREE_NODE_CAPACITY * entry_bytes + TREE_NODE_HEADER_BYTES)
}

impl Customer {
    /// An estimate of the memory the state holds, in bytes, meant not to fall below it: the
    /// struct, its profile's text, and each map's B-tree nodes (allocated whole: a map of one
    /// entry takes room for eleven) plus [`ENTRY_HEAP_BYTES`] of heap text per entry. Constant
    /// time (the maps' lengths only), for caches bounded by size: a customer's state grows with
    /// its history (every payment is kept for its refunds and disputes), so a bound on the
    /// number of customers alone does not bound memory. A test measures the heap of generated
    /// states against it (`tests/memory.rs`).
    pub fn approximate_bytes(&self) -> usize {
        fn entries<K, V>(map: &BTreeMap<K, V>) -> usize {
            tree_bytes(map.len(), size_of::<K>() + size_of::<V>()) + map.len() * ENTRY_HEAP_BYTES
        }
        size_of::<Customer>()
            + self.profile.as_ref().map_or(0, |profile| {
                profile.email.capacity() + profile.name.capacity()
            })
            + tree_bytes(self.provider_accounts.len(), size_of::<ProviderAccount>())
            + self.provider_accounts.len() * ENTRY_HEAP_BYTES
            + entries(&self.subscriptions)
            + entries(&self.invoices)
            + entries(&self.payments)
            + entries(&self.refunds)
            + entries(&self.refund_requests)
            + entries(&self.disputes)
    }

    /// The sum of the refunds of `payment_id` still `Processing`, in `currency`; `None` on an
    /// overflow (which `decide` makes impossible).
    pub fn refund_requested(&self, payment_id: &str, currency: Currency) -> Option<Money> {
        self.refund_requests
            .values()
            .filter(|request| {
                request.payment_id == payment_id && request.status == EventStatus::Processing
            })
            .try_fold(Money::new(0, currency), |sum, request| {
                sum.checked_add(request.amount).ok()
            })
    }

    /// Folds `events`, each with its business time (`occurred_at` in Unix microseconds), into
    /// a fresh customer with [`evolve`], in the order given (the ledger's).
    pub fn from_events<'a>(events: impl IntoIterator<Item = (i64, &'a Event)>) -> Customer {
        events.into_iter().fold(
            Customer::default(),
            |state, (occurred_at_unix_micros, event)| evolve(state, event, occurred_at_unix_micros),
        )
    }

    /// True once a `customer_registered` event was applied.
    pub fn is_registered(&self) -> bool {
        self.profile.is_some()
    }
}

/// Applies one event, which happened at `occurred_at_unix_micros` (its envelope's
/// `occurred_at`, or its command's `metadata.occurred_at_unix_micros`, in Unix microseconds),
/// to the customer and increments `version`.
///
/// Never panics. An event that `decide` would not have produced is counted in `version` but
/// changes nothing when applying it would break an invariant listed on [`Customer`] (an
/// unknown subscription, an unparseable currency, a transition from the wrong status, a
/// duplicate id, a refund beyond the payment) or when it is a stale change of a subscription
/// (dated before the subscription's [`Subscription::changed_at_unix_micros`]). A payment is
/// always recorded; it sets the subscription's status only when it is its latest status fact
/// by business time (see [`Subscription`]). Limits on text (lengths,
/// characters) are not checked again: a stored event is a fact even if today's limits would
/// reject it.
pub fn evolve(mut state: Customer, event: &Event, occurred_at_unix_micros: i64) -> Customer {
    // An ignored event still takes its place in the stream.
    if let Err(Ignored(_reason)) = apply(&mut state, event, occurred_at_unix_micros) {}
    state.version = state.version.saturating_add(1);
    state
}

/// Why [`apply`] left the state unchanged (used by tests to prove that `decide` and `evolve`
/// agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ignored(pub(crate) &'static str);

fn required<T>(value: Option<T>, reason: &'static str) -> Result<T, Ignored> {
    value.ok_or(Ignored(reason))
}

fn ensure(condition: bool, reason: &'static str) -> Result<(), Ignored> {
    if condition {
        Ok(())
    } else {
        Err(Ignored(reason))
    }
}

fn non_empty(id: &str) -> Option<String> {
    if id.is_empty() {
        None
    } else {
        Some(id.to_owned())
    }
}

pub(crate) fn money_from_proto(money: Option<&proto::Money>) -> Option<Money> {
    money.and_then(|money| Money::try_from(money).ok())
}

pub(crate) fn provider_from_proto(value: i32) -> Result<Provider, EnumValueError> {
    let wire = proto::PaymentProvider::try_from(value).map_err(|_| EnumValueError::Unknown {
        type_name: "payment provider",
        value: value.to_string(),
        expected: "1 (stripe), 2 (paypal), 3 (xendit), 4 (internal)",
    })?;
    Provider::try_from(wire)
}

pub(crate) fn provider_account_from_proto(
    account: &proto::ProviderAccount,
) -> Option<ProviderAccount> {
    let provider = provider_from_proto(account.provider).ok()?;
    Some(ProviderAccount {
        provider,
        account_id: non_empty(&account.account_id)?,
    })
}

pub(crate) fn interval_from_proto(value: i32) -> Option<BillingInterval> {
    match proto::BillingInterval::try_from(value).ok()? {
        proto::BillingInterval::Unspecified => None,
        proto::BillingInterval::Day => Some(BillingInterval::Day),
        proto::BillingInterval::Week => Some(BillingInterval::Week),
        proto::BillingInterval::Month => Some(BillingInterval::Month),
        proto::BillingInterval::Year => Some(BillingInterval::Year),
    }
}

pub(crate) fn plan_from_proto(plan: &proto::Plan) -> Option<Plan> {
    Some(Plan {
        plan_id: plan.plan_id.clone(),
        unit_price: money_from_proto(plan.unit_price.as_ref())?,
        interval: interval_from_proto(plan.interval)?,
        interval_count: plan.interval_count,
    })
}

/// The discount a payload describes, or `None` when it describes none or an impossible one
/// (both or neither of percent and amount, an unknown duration, another currency).
pub(crate) fn discount_from_proto(
    discount: &proto::Discount,
    currency: crate::Currency,
) -> Option<Discount> {
    let off = match (
        discount.percent_off_basis_points,
        discount.amount_off.as_ref(),
    ) {
        (0, Some(amount)) => {
            let amount = Money::try_from(amount).ok()?;
            if amount.currency != currency {
                return None;
            }
            DiscountOff::Amount(amount)
        }
        (percent, None) if percent > 0 => DiscountOff::PercentBasisPoints(percent),
        _ => return None,
    };
    let duration = match proto::DiscountDuration::try_from(discount.duration).ok()? {
        proto::DiscountDuration::Unspecified => return None,
        proto::DiscountDuration::Once => DiscountDuration::Once,
        proto::DiscountDuration::Repeating => DiscountDuration::Repeating {
            months: discount.duration_in_months,
        },
        proto::DiscountDuration::Forever => DiscountDuration::Forever,
    };
    Some(Discount {
        coupon_id: discount.coupon_id.clone(),
        off,
        duration,
    })
}

/// The wire form of `discount`: [`discount_from_proto`]'s inverse.
pub(crate) fn discount_to_proto(discount: &Discount) -> proto::Discount {
    let (percent_off_basis_points, amount_off) = match discount.off {
        DiscountOff::PercentBasisPoints(percent) => (percent, None),
        DiscountOff::Amount(amount) => (0, Some(amount.into())),
    };
    let (duration, duration_in_months) = match discount.duration {
        DiscountDuration::Once => (proto::DiscountDuration::Once, 0),
        DiscountDuration::Repeating { months } => (proto::DiscountDuration::Repeating, months),
        DiscountDuration::Forever => (proto::DiscountDuration::Forever, 0),
    };
    proto::Discount {
        coupon_id: discount.coupon_id.clone(),
        percent_off_basis_points,
        amount_off,
        duration: duration as i32,
        duration_in_months,
    }
}

fn subscription_mut<'a>(
    state: &'a mut Customer,
    subscription_id: &str,
) -> Result<&'a mut Subscription, Ignored> {
    required(
        state.subscriptions.get_mut(subscription_id),
        "unknown subscription",
    )
}

/// The subscription whose life the event changes, for the events that change nothing else:
/// `trial_converted` to `subscription_reactivated`. Such a change is refused by `decide`
/// (stale) and ignored by `evolve` when dated before the subscription's latest change.
pub(crate) fn life_change_of(event: &Event) -> Option<&str> {
    use proto::event::Kind;
    match event {
        Kind::TrialConverted(body) => Some(&body.subscription_id),
        Kind::PlanChanged(body) => Some(&body.subscription_id),
        Kind::CancellationRequested(body) => Some(&body.subscription_id),
        Kind::SubscriptionCancelled(body) => Some(&body.subscription_id),
        Kind::CancellationFailed(body) => Some(&body.subscription_id),
        Kind::SubscriptionPaused(body) => Some(&body.subscription_id),
        Kind::SubscriptionResumed(body) => Some(&body.subscription_id),
        Kind::SubscriptionReactivated(body) => Some(&body.subscription_id),
        _ => None,
    }
}

/// Checks that `subscription_id` (if any) names a subscription in `currency`.
fn check_subscription_currency(
    state: &Customer,
    subscription_id: Option<&String>,
    currency: crate::Currency,
) -> Result<(), Ignored> {
    if let Some(subscription_id) = subscription_id {
        let subscription = required(
            state.subscriptions.get(subscription_id),
            "unknown subscription",
        )?;
        ensure(
            subscription.currency() == currency,
            "currency differs from the subscription's",
        )?;
    }
    Ok(())
}

/// The payment's target: its invoice (if any) and its subscription (given, or the invoice's).
fn payment_target(
    state: &Customer,
    status: PaymentStatus,
    invoice_id: &str,
    subscription_id: &str,
    amount: Money,
) -> Result<(Option<String>, Option<String>), Ignored> {
    let invoice_id = non_empty(invoice_id);
    let mut subscription_id = non_empty(subscription_id);
    if let Some(invoice_id) = &invoice_id {
        let invoice = required(state.invoices.get(invoice_id), "unknown invoice")?;
        ensure(
            status == PaymentStatus::Failed || invoice.status != InvoiceStatus::Paid,
            "invoice already paid",
        )?;
        ensure(
            invoice.amount_due.currency == amount.currency,
            "currency differs from the invoice's",
        )?;
        match (&subscription_id, &invoice.subscription_id) {
            (None, from_invoice) => subscription_id.clone_from(from_invoice),
            (Some(given), Some(from_invoice)) => {
                ensure(given == from_invoice, "invoice of another subscription")?;
            }
            (Some(_), None) => return Err(Ignored("invoice of no subscription")),
        }
    }
    check_subscription_currency(state, subscription_id.as_ref(), amount.currency)?;
    Ok((invoice_id, subscription_id))
}

/// Applies `event`, dated `occurred_at_unix_micros`, or leaves `state` unchanged and says why.
/// Does not touch `version`.
pub(crate) fn apply(
    state: &mut Customer,
    event: &Event,
    occurred_at_unix_micros: i64,
) -> Result<(), Ignored> {
    let life_change = life_change_of(event);
    if let Some(subscription_id) = life_change {
        let subscription = required(
            state.subscriptions.get(subscription_id),
            "unknown subscription",
        )?;
        ensure(
            occurred_at_unix_micros >= subscription.changed_at_unix_micros,
            "stale: dated before the subscription's latest change",
        )?;
    }
    apply_body(state, event, occurred_at_unix_micros)?;
    if let Some(subscription) = life_change.and_then(|id| state.subscriptions.get_mut(id)) {
        subscription.changed_at_unix_micros = occurred_at_unix_micros;
    }
    Ok(())
}

/// [`apply`] without the staleness of changes of a subscription's life.
fn apply_body(
    state: &mut Customer,
    event: &Event,
    occurred_at_unix_micros: i64,
) -> Result<(), Ignored> {
    use SubscriptionStatus as S;
    use proto::event::Kind;

    match event {
        Kind::CustomerRegistered(registered) => {
            ensure(state.profile.is_none(), "already registered")?;
            state.profile = Some(Profile {
                email: registered.email.clone(),
                name: registered.name.clone(),
            });
            if let Some(account) = registered
                .provider_account
                .as_ref()
                .and_then(provider_account_from_proto)
            {
                state.provider_accounts.insert(account);
            }
        }
        Kind::CustomerProfileUpdated(updated) => {
            let profile = required(state.profile.as_mut(), "not registered")?;
            if let Some(email) = &updated.email {
                profile.email.clone_from(email);
            }
            if let Some(name) = &updated.name {
                profile.name.clone_from(name);
            }
        }
        Kind::ProviderAccountLinked(linked) => {
            ensure(state.profile.is_some(), "not registered")?;
            let account = required(
                linked
                    .provider_account
                    .as_ref()
                    .and_then(provider_account_from_proto),
                "invalid provider account",
            )?;
            ensure(
                !state.provider_accounts.contains(&account),
                "provider account already linked",
            )?;
            state.provider_accounts.insert(account);
        }
        Kind::SubscriptionStarted(started) => {
            ensure(state.profile.is_some(), "not registered")?;
            ensure(
                !started.subscription_id.is_empty()
                    && !state.subscriptions.contains_key(&started.subscription_id),
                "missing or duplicate subscription id",
            )?;
            let plan = required(
                started.plan.as_ref().and_then(plan_from_proto),
                "invalid plan",
            )?;
            let discount = started
                .discount
                .as_ref()
                .and_then(|discount| discount_from_proto(discount, plan.unit_price.currency));
            let status = if started.trial_end_unix_seconds.is_some() {
                S::Trialing
            } else {
                S::Active
            };
            state.subscriptions.insert(
                started.subscription_id.clone(),
                Subscription {
                    plan,
                    quantity: started.quantity,
                    status,
                    trial_end_unix_seconds: started.trial_end_unix_seconds,
                    current_period_end_unix_seconds: started.current_period_end_unix_seconds,
                    pending_cancellation: None,
                    discount,
                    resumes_at_unix_seconds: None,
                    pending_update: None,
                    changed_at_unix_micros: occurred_at_unix_micros,
                    life_status: status,
                    latest_payment: None,
                    ever_paid: false,
                },
            );
        }
        Kind::TrialConverted(converted) => {
            let subscription = subscription_mut(state, &converted.subscription_id)?;
            ensure(subscription.in_trial(), "not trialing")?;
            subscription.set_life_status(S::Active);
        }
        Kind::PlanChanged(changed) => {
            let subscription = subscription_mut(state, &changed.subscription_id)?;
            ensure(subscription.status != S::Canceled, "canceled")?;
            let plan = required(
                changed.plan.as_ref().and_then(plan_from_proto),
                "invalid plan",
            )?;
            ensure(
                plan.unit_price.currency == subscription.currency(),
                "plan in another currency",
            )?;
            subscription.discount = changed
                .discount
                .as_ref()
                .and_then(|discount| discount_from_proto(discount, plan.unit_price.currency));
            subscription.plan = plan;
            subscription.quantity = changed.quantity;
            subscription.answered(PendingUpdate::PlanChange);
        }
        Kind::CancellationRequested(requested) => {
            let subscription = subscription_mut(state, &requested.subscription_id)?;
            ensure(subscription.status != S::Canceled, "canceled")?;
            ensure(
                subscription.pending_cancellation.is_none(),
                "cancellation already pending",
            )?;
            subscription.pending_cancellation = Some(PendingCancellation {
                at_period_end: requested.at_period_end,
                status_before: subscription.status,
                reason: requested.reason.clone(),
            });
            subscription.derive_status();
        }
        Kind::SubscriptionCancelled(cancelled) => {
            let subscription = subscription_mut(state, &cancelled.subscription_id)?;
            ensure(subscription.status != S::Canceled, "already canceled")?;
            subscription.pending_cancellation = None;
            subscription.pending_update = None;
            subscription.resumes_at_unix_seconds = None;
            subscription.set_life_status(S::Canceled);
        }
        Kind::CancellationFailed(failed) => {
            let subscription = subscription_mut(state, &failed.subscription_id)?;
            required(
                subscription.pending_cancellation.take(),
                "no pending cancellation",
            )?;
            subscription.derive_status();
        }
        Kind::SubscriptionPaused(paused) => {
            let subscription = subscription_mut(state, &paused.subscription_id)?;
            ensure(
                matches!(subscription.status, S::Active | S::Trialing | S::PastDue),
                "not pausable",
            )?;
            subscription.resumes_at_unix_seconds = paused.resumes_at_unix_seconds;
            subscription.set_life_status(S::Paused);
            subscription.answered(PendingUpdate::Pause);
        }
        Kind::SubscriptionResumed(resumed) => {
            let subscription = subscription_mut(state, &resumed.subscription_id)?;
            ensure(subscription.status == S::Paused, "not paused")?;
            subscription.resumes_at_unix_seconds = None;
            subscription.set_life_status(S::Active);
            subscription.answered(PendingUpdate::Resume);
        }
        Kind::SubscriptionReactivated(reactivated) => {
            let subscription = subscription_mut(state, &reactivated.subscription_id)?;
            match subscription.status {
                S::CancelPending => {
                    subscription.pending_cancellation = None;
                    subscription.derive_status();
                }
                S::Canceled => subscription.set_life_status(S::Active),
                _ => return Err(Ignored("not cancel-pending or canceled")),
            }
        }
        Kind::InvoiceIssued(issued) => {
            ensure(state.profile.is_some(), "not registered")?;
            ensure(
                !issued.invoice_id.is_empty() && !state.invoices.contains_key(&issued.invoice_id),
                "missing or duplicate invoice id",
            )?;
            let amount_due = required(
                money_from_proto(issued.amount_due.as_ref()),
                "invalid amount",
            )?;
            let subscription_id = non_empty(&issued.subscription_id);
            check_subscription_currency(state, subscription_id.as_ref(), amount_due.currency)?;
            if let Some(subscription) = subscription_id
                .as_ref()
                .and_then(|id| state.subscriptions.get_mut(id))
            {
                subscription.current_period_end_unix_seconds = subscription
                    .current_period_end_unix_seconds
                    .max(issued.period_end_unix_seconds);
            }
            state.invoices.insert(
                issued.invoice_id.clone(),
                Invoice {
                    subscription_id,
                    amount_due,
                    status: InvoiceStatus::Open,
                    period_start_unix_seconds: issued.period_start_unix_seconds,
                    period_end_unix_seconds: issued.period_end_unix_seconds,
                },
            );
        }
        Kind::InvoiceFinalized(finalized) => {
            let invoice = required(
                state.invoices.get_mut(&finalized.invoice_id),
                "unknown invoice",
            )?;
            ensure(invoice.status == InvoiceStatus::Open, "not open")?;
            invoice.status = InvoiceStatus::Finalized;
        }
        Kind::PaymentSucceeded(succeeded) => record_payment(
            state,
            PaymentStatus::Succeeded,
            &succeeded.payment_id,
            succeeded.amount.as_ref(),
            (&succeeded.invoice_id, &succeeded.subscription_id),
            occurred_at_unix_micros,
        )?,
        Kind::PaymentFailed(failed) => record_payment(
            state,
            PaymentStatus::Failed,
            &failed.payment_id,
            failed.amount.as_ref(),
            (&failed.invoice_id, &failed.subscription_id),
            occurred_at_unix_micros,
        )?,
        Kind::PaymentRefunded(refunded) => {
            let amount = required(money_from_proto(refunded.amount.as_ref()), "invalid amount")?;
            let request = if refunded.refund_request_id.is_empty() {
                None
            } else {
                let request = required(
                    state.refund_requests.get(&refunded.refund_request_id),
                    "unknown refund request",
                )?;
                ensure(
                    request.status == EventStatus::Processing
                        && request.payment_id == refunded.payment_id
                        && request.amount == amount,
                    "refund request answered, or of another payment or amount",
                )?;
                Some(refunded.refund_request_id.clone())
            };
            let complete = |state: &mut Customer| {
                if let Some(request) = request.and_then(|id| state.refund_requests.get_mut(&id)) {
                    request.status = EventStatus::Complete;
                }
            };
            let same_refund = Refund {
                payment_id: refunded.payment_id.clone(),
                amount,
            };
            // The provider's webhook for the requested refund was recorded first: the answer
            // completes the request and the refund is counted once.
            if state.refunds.get(&refunded.refund_id) == Some(&same_refund) {
                ensure(
                    !refunded.refund_request_id.is_empty(),
                    "missing or duplicate refund id",
                )?;
                complete(state);
                return Ok(());
            }
            ensure(
                !refunded.refund_id.is_empty() && !state.refunds.contains_key(&refunded.refund_id),
                "missing or duplicate refund id",
            )?;
            ensure(amount.amount_minor > 0, "non-positive refund")?;
            let payment = required(
                state.payments.get_mut(&refunded.payment_id),
                "unknown payment",
            )?;
            ensure(
                payment.status == PaymentStatus::Succeeded,
                "payment did not succeed",
            )?;
            let total = payment
                .refunded
                .checked_add(amount)
                .map_err(|_| Ignored("currency mismatch or overflow"))?;
            ensure(
                total.amount_minor <= payment.amount.amount_minor,
                "refund exceeds payment",
            )?;
            payment.refunded = total;
            state
                .refunds
                .insert(refunded.refund_id.clone(), same_refund);
            complete(state);
        }
        Kind::RefundRequested(requested) => {
            ensure(
                !requested.refund_request_id.is_empty()
                    && !state
                        .refund_requests
                        .contains_key(&requested.refund_request_id),
                "missing or duplicate refund request id",
            )?;
            let amount = required(
                money_from_proto(requested.amount.as_ref()),
                "invalid amount",
            )?;
            ensure(amount.amount_minor > 0, "non-positive refund")?;
            let payment = required(state.payments.get(&requested.payment_id), "unknown payment")?;
            ensure(
                payment.status == PaymentStatus::Succeeded
                    && payment.amount.currency == amount.currency,
                "payment did not succeed, or in another currency",
            )?;
            state.refund_requests.insert(
                requested.refund_request_id.clone(),
                RefundRequest {
                    payment_id: requested.payment_id.clone(),
                    amount,
                    status: EventStatus::Processing,
                },
            );
        }
        Kind::RefundFailed(failed) => {
            let request = required(
                state.refund_requests.get_mut(&failed.refund_request_id),
                "unknown refund request",
            )?;
            ensure(
                request.status == EventStatus::Processing,
                "refund request already answered",
            )?;
            request.status = EventStatus::Failed;
        }
        Kind::SubscriptionUpdateRequested(requested) => {
            let update = required(PendingUpdate::of(requested), "no change")?;
            let subscription = subscription_mut(state, &requested.subscription_id)?;
            ensure(subscription.status != S::Canceled, "canceled")?;
            ensure(
                subscription.pending_update.is_none(),
                "update already pending",
            )?;
            subscription.pending_update = Some(update);
        }
        Kind::SubscriptionUpdateFailed(failed) => {
            let subscription = subscription_mut(state, &failed.subscription_id)?;
            required(subscription.pending_update.take(), "no pending update")?;
        }
        Kind::DisputeOpened(opened) => {
            ensure(
                !opened.dispute_id.is_empty() && !state.disputes.contains_key(&opened.dispute_id),
                "missing or duplicate dispute id",
            )?;
            let amount = required(money_from_proto(opened.amount.as_ref()), "invalid amount")?;
            let payment = required(
                state.payments.get_mut(&opened.payment_id),
                "unknown payment",
            )?;
            ensure(
                payment.status == PaymentStatus::Succeeded && payment.dispute_id.is_none(),
                "payment not disputable",
            )?;
            ensure(
                amount.currency == payment.amount.currency,
                "currency differs from the payment's",
            )?;
            payment.dispute_id = Some(opened.dispute_id.clone());
            state.disputes.insert(
                opened.dispute_id.clone(),
                Dispute {
                    payment_id: opened.payment_id.clone(),
                    amount,
                    status: DisputeStatus::Open,
                    opened_at_unix_micros: occurred_at_unix_micros,
                },
            );
        }
        Kind::DisputeClosed(closed) => {
            let outcome = match proto::DisputeOutcome::try_from(closed.outcome) {
                Ok(proto::DisputeOutcome::Won) => DisputeStatus::Won,
                Ok(proto::DisputeOutcome::Lost) => DisputeStatus::Lost,
                _ => return Err(Ignored("unknown outcome")),
            };
            let dispute = required(
                state.disputes.get_mut(&closed.dispute_id),
                "unknown dispute",
            )?;
            ensure(dispute.status == DisputeStatus::Open, "dispute not open")?;
            dispute.status = outcome;
        }
        Kind::IntegrationRegistered(_)
        | Kind::IntegrationUpdated(_)
        | Kind::IntegrationPaused(_)
        | Kind::IntegrationResumed(_)
        | Kind::IntegrationRemoved(_) => return Err(Ignored("an integration's event")),
    }
    Ok(())
}

/// Records a succeeded or failed payment: a new id, a positive amount, a valid target (an
/// invoice and / or a subscription in its currency; a success for a paid invoice is refused, a
/// failed attempt is a fact whatever the invoice became). A success marks its invoice paid and
/// its subscription paid; either outcome counts for the subscription's status by its business
/// time ([`Subscription::latest_payment`]).
fn record_payment(
    state: &mut Customer,
    status: PaymentStatus,
    payment_id: &str,
    amount: Option<&proto::Money>,
    (invoice_id, subscription_id): (&str, &str),
    occurred_at_unix_micros: i64,
) -> Result<(), Ignored> {
    ensure(state.profile.is_some(), "not registered")?;
    ensure(
        !payment_id.is_empty() && !state.payments.contains_key(payment_id),
        "missing or duplicate payment id",
    )?;
    let amount = required(money_from_proto(amount), "invalid amount")?;
    ensure(amount.amount_minor > 0, "non-positive amount")?;
    let (invoice_id, subscription_id) =
        payment_target(state, status, invoice_id, subscription_id, amount)?;
    if status == PaymentStatus::Succeeded
        && let Some(invoice) = invoice_id
            .as_ref()
            .and_then(|id| state.invoices.get_mut(id))
    {
        invoice.status = InvoiceStatus::Paid;
    }
    if let Some(subscription) = subscription_id
        .as_ref()
        .and_then(|id| state.subscriptions.get_mut(id))
    {
        subscription.ever_paid |= status == PaymentStatus::Succeeded;
        subscription.record_payment(status, occurred_at_unix_micros);
    }
    state.payments.insert(
        payment_id.to_owned(),
        Payment {
            invoice_id,
            subscription_id,
            amount,
            refunded: Money::zero(amount.currency),
            status,
            dispute_id: None,
        },
    );
    Ok(())
}

impl fmt::Display for ProviderAccount {
    /// `stripe:cus_123`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.account_id)
    }
}
