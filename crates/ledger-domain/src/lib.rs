//! The pure core of the ledger: money, ids, the event catalogue's vocabulary, the customer
//! aggregate and the integration aggregate (monitoring receivers' configuration).
//!
//! A customer's history is a stream of [`Event`]s. [`decide`] checks a command against the
//! customer's current state and returns the events to append or a typed [`Rejection`];
//! [`evolve`] folds one event into the state ([`Customer::from_events`] folds a whole stream).
//! Integrations have their own streams ([`decide_integration`], [`evolve_integration`]);
//! [`Stream`] holds either aggregate and dispatches, for the writer.
//! [`unique_key_changes`] tells the store which emails and provider accounts a batch claims and
//! releases, and [`event_type`] / [`event_status`] give the envelope columns derived from an
//! event.
//!
//! This crate is plain functions and data. It knows nothing about PostgreSQL, NATS or HTTP,
//! does no I/O, has no async, never reads a clock and never draws random numbers: times and
//! ids arrive inside commands. It never panics on any input, and money arithmetic is checked
//! integer arithmetic in minor units (no floats anywhere).

mod address;
mod customer;
mod customer_id;
mod decide;
mod email;
mod integration;
pub mod limits;
mod money;
mod mrr;
mod names;
mod rejection;
mod stream;
mod unique;

#[cfg(test)]
mod decide_tests;

pub use address::AddressScope;
pub use customer::{
    BillingInterval, Customer, Discount, DiscountDuration, DiscountOff, Dispute, DisputeStatus,
    Invoice, InvoiceStatus, Payment, PaymentOutcome, PaymentStatus, PendingCancellation,
    PendingUpdate, Plan, Profile, ProviderAccount, Refund, RefundRequest, Subscription,
    SubscriptionStatus, evolve,
};
pub use customer_id::{CustomerId, CustomerIdError};
pub use decide::{COMMAND_NAMES, command_name, decide, id_problem};
pub use integration::{
    Integration, IntegrationConfig, IntegrationStatus, decide_integration, evolve_integration,
    is_integration_command, is_integration_event,
};
pub use ledger_proto::v1 as proto;
pub use money::{Currency, Money, MoneyError};
pub use mrr::{
    ChurnRecognition, DiscountsInMrr, MRR_UNITS_PER_MINOR, MonthlyRecurringRevenue, MrrRules,
    UnpaidSubscriptions, minor_of_units,
};
pub use names::{EnumValueError, EventStatus, Issuer, Provider};
pub use rejection::Rejection;
pub use stream::Stream;
pub use unique::{UniqueKey, UniqueKeyChanges, unique_key_changes};

/// One event: the `kind` of a stored `ledger.v1.Event` payload
/// (`proto::Event { kind: Some(event) }`).
pub type Event = proto::event::Kind;

/// Why a stored payload is not an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("not a ledger.v1.Event: {0}")]
    Protobuf(prost::DecodeError),
    #[error("the payload has no event")]
    Empty,
}

// Not `#[from]`: that would also report the inner error as the source, and a report of the
// chain would print its text twice.
impl From<prost::DecodeError> for PayloadError {
    fn from(error: prost::DecodeError) -> PayloadError {
        PayloadError::Protobuf(error)
    }
}

/// Decodes a stored payload (`ledger.v1.Event` protobuf bytes) into its event.
pub fn decode_event(payload: &[u8]) -> Result<Event, PayloadError> {
    use prost::Message;
    proto::Event::decode(payload)?
        .kind
        .ok_or(PayloadError::Empty)
}

/// A command's business time, `metadata.occurred_at_unix_micros` (Unix microseconds), which
/// the events [`decide`] returns for it are dated by when folded with [`evolve`]; 0 without
/// metadata (which `decide` refuses).
pub fn occurred_at_unix_micros(command: &proto::Command) -> i64 {
    command
        .metadata
        .as_ref()
        .map_or(0, |metadata| metadata.occurred_at_unix_micros)
}

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
    "integration_registered",
    "integration_updated",
    "integration_paused",
    "integration_resumed",
    "integration_removed",
    "refund_requested",
    "refund_failed",
    "subscription_update_requested",
    "subscription_update_failed",
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
        Event::IntegrationRegistered(_) => "integration_registered",
        Event::IntegrationUpdated(_) => "integration_updated",
        Event::IntegrationPaused(_) => "integration_paused",
        Event::IntegrationResumed(_) => "integration_resumed",
        Event::IntegrationRemoved(_) => "integration_removed",
        Event::RefundRequested(_) => "refund_requested",
        Event::RefundFailed(_) => "refund_failed",
        Event::SubscriptionUpdateRequested(_) => "subscription_update_requested",
        Event::SubscriptionUpdateFailed(_) => "subscription_update_failed",
    }
}

/// The event's `status` column: a cancellation, refund or subscription update request is
/// `Processing` until the provider answers; a failed cancellation, refund, update or payment is
/// `Failed`; everything else is `Complete`.
pub fn event_status(event: &Event) -> EventStatus {
    match event {
        Event::CancellationRequested(_)
        | Event::RefundRequested(_)
        | Event::SubscriptionUpdateRequested(_) => EventStatus::Processing,
        Event::CancellationFailed(_)
        | Event::RefundFailed(_)
        | Event::SubscriptionUpdateFailed(_)
        | Event::PaymentFailed(_) => EventStatus::Failed,
        _ => EventStatus::Complete,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn decodes_a_payload_and_refuses_garbage_and_empty_events() {
        let event = Event::TrialConverted(proto::TrialConverted {
            subscription_id: "sub_1".to_owned(),
        });
        let payload = proto::Event {
            kind: Some(event.clone()),
        }
        .encode_to_vec();
        assert_eq!(decode_event(&payload).ok(), Some(event));
        assert!(matches!(
            decode_event(&[0xff, 0xff, 0xff]),
            Err(PayloadError::Protobuf(_))
        ));
        assert!(matches!(decode_event(&[]), Err(PayloadError::Empty)));
    }
}
