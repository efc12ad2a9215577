//! The pure core of the ledger: money, ids, the event catalogue's vocabulary and the customer
//! aggregate.
//!
//! A customer's history is a stream of [`Event`]s. [`decide`] checks a command against the
//! customer's current state and returns the events to append or a typed [`Rejection`];
//! [`evolve`] folds one event into the state ([`Customer::from_events`] folds a whole stream).
//! [`unique_key_changes`] tells the store which emails and provider accounts a batch claims and
//! releases, and [`event_type`] / [`event_status`] give the envelope columns derived from an
//! event.
//!
//! This crate is plain functions and data. It knows nothing about PostgreSQL, NATS or HTTP,
//! does no I/O, has no async, never reads a clock and never draws random numbers: times and
//! ids arrive inside commands. It never panics on any input, and money arithmetic is checked
//! integer arithmetic in minor units (no floats anywhere).

mod customer;
mod customer_id;
mod decide;
pub mod limits;
mod money;
mod mrr;
mod names;
mod rejection;
mod unique;

#[cfg(test)]
mod decide_tests;

pub use customer::{
    BillingInterval, Customer, Discount, DiscountDuration, DiscountOff, Dispute, DisputeStatus,
    Invoice, InvoiceStatus, Payment, PaymentStatus, PendingCancellation, Plan, Profile,
    ProviderAccount, Refund, Subscription, SubscriptionStatus, evolve,
};
pub use customer_id::{CustomerId, CustomerIdError};
pub use decide::{command_name, decide};
pub use ledger_proto::v1 as proto;
pub use money::{Currency, Money, MoneyError};
pub use mrr::{
    ChurnRecognition, DiscountsInMrr, MRR_UNITS_PER_MINOR, MonthlyRecurringRevenue, MrrRules,
};
pub use names::{EnumValueError, EventStatus, Issuer, Provider};
pub use rejection::Rejection;
pub use unique::{UniqueKey, UniqueKeyChanges, unique_key_changes};

/// One event: the `kind` of a stored `ledger.v1.Event` payload
/// (`proto::Event { kind: Some(event) }`).
pub type Event = proto::event::Kind;

/// Every event type, in the order of the `ledger.v1.Event` oneof.
pub const EVENT_TYPES: &[&str] = &[
    "customer_registered",
    "customer_profile_updated",
    "provider_account_linked",
    "subscription_started",
    "trial_converted",
    "plan_changed",
    "cancellation_requested",
    "subscription_cancelled",
    "cancellation_failed",
    "subscription_paused",
    "subscription_resumed",
    "subscription_reactivated",
    "invoice_issued",
    "invoice_finalized",
    "payment_succeeded",
    "payment_failed",
    "payment_refunded",
    "dispute_opened",
    "dispute_closed",
];

/// The event's type: its field name in the `ledger.v1.Event` oneof (the `event_type` column),
/// e.g. `"customer_registered"`.
pub fn event_type(event: &Event) -> &'static str {
    match event {
        Event::CustomerRegistered(_) => "customer_registered",
        Event::CustomerProfileUpdated(_) => "customer_profile_updated",
        Event::ProviderAccountLinked(_) => "provider_account_linked",
        Event::SubscriptionStarted(_) => "subscription_started",
        Event::TrialConverted(_) => "trial_converted",
        Event::PlanChanged(_) => "plan_changed",
        Event::CancellationRequested(_) => "cancellation_requested",
        Event::SubscriptionCancelled(_) => "subscription_cancelled",
        Event::CancellationFailed(_) => "cancellation_failed",
        Event::SubscriptionPaused(_) => "subscription_paused",
        Event::SubscriptionResumed(_) => "subscription_resumed",
        Event::SubscriptionReactivated(_) => "subscription_reactivated",
        Event::InvoiceIssued(_) => "invoice_issued",
        Event::InvoiceFinalized(_) => "invoice_finalized",
        Event::PaymentSucceeded(_) => "payment_succeeded",
        Event::PaymentFailed(_) => "payment_failed",
        Event::PaymentRefunded(_) => "payment_refunded",
        Event::DisputeOpened(_) => "dispute_opened",
        Event::DisputeClosed(_) => "dispute_closed",
    }
}

/// The event's `status` column: a cancellation request is `Processing` until the provider
/// answers; a failed cancellation or payment is `Failed`; everything else is `Complete`.
pub fn event_status(event: &Event) -> EventStatus {
    match event {
        Event::CancellationRequested(_) => EventStatus::Processing,
        Event::CancellationFailed(_) | Event::PaymentFailed(_) => EventStatus::Failed,
        _ => EventStatus::Complete,
    }
}
