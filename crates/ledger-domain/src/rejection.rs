//! Why `decide` refused a command.

use crate::customer::{InvoiceStatus, SubscriptionStatus};
use crate::money::{Currency, Money};
use crate::names::Provider;

/// Why [`decide`](crate::decide) refused a command. Nothing was recorded. Only
/// [`VersionConflict`](Rejection::VersionConflict) is worth retrying (after re-reading the
/// customer); every other rejection stands until the command or the customer's state changes.
/// The writer answers `VersionConflict` as a conflict (HTTP 409), `CustomerNotRegistered` and
/// `IntegrationNotRegistered` as not found (404), and all others as invalid (422), with [`Rejection::rejection_code`] naming
/// the rule.
///
/// `field` names are paths inside the command's body (`plan.unit_price`), or
/// `metadata.<name>` for the metadata, or `kind` for the command itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A required field is absent or empty.
    #[error("missing field `{field}`: set it and send the command again")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// A field is malformed: too long, contains NUL or other control characters, not a UUID,
    /// an unknown enum value, a malformed email, an impossible period.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The invalid field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An email holds a character that has no place in one: an invisible character (U+200B
    /// ZERO WIDTH SPACE, a joiner, a bidi control, U+00AD SOFT HYPHEN: Unicode's
    /// Default_Ignorable_Code_Point), whitespace, a control, private-use, surrogate or
    /// unassigned code point. Such emails would look like another customer's.
    #[error(
        "invalid email in `{field}`: it contains U+{code_point:04X}, an invisible, control, \
         private-use or unassigned character that has no place in an email",
        code_point = u32::from(*character)
    )]
    EmailCharacterNotAllowed {
        /// The email field.
        field: &'static str,
        /// The first refused character.
        character: char,
    },
    /// A money field's currency is not an active ISO 4217 code in upper case.
    #[error(
        "invalid currency {code:?} in `{field}`: expected an active ISO 4217 code such as \"USD\""
    )]
    InvalidCurrency {
        /// The money field.
        field: &'static str,
        /// The rejected code (cut to 32 bytes).
        code: String,
    },
    /// An amount is out of range: a non-positive payment, refund or dispute, a negative
    /// invoice or price, a non-positive quantity or interval count.
    #[error("invalid amount {amount} in `{field}`: {reason}")]
    InvalidAmount {
        /// The field holding the amount.
        field: &'static str,
        /// The rejected amount (minor units, or a count).
        amount: i64,
        /// The accepted range.
        reason: &'static str,
    },
    /// A number is outside the range every read model and every figure derived from it can
    /// represent exactly (see [`limits`](crate::limits): `AMOUNT_MINOR_MAX`, `QUANTITY_MAX`,
    /// `UNIX_SECONDS_MAX`): an amount above 10^15 minor units in absolute value, a quantity
    /// above `i32::MAX` or whose price x quantity would pass 10^15 (the range then names the
    /// largest quantity at that price), a time before 1970 or after 9999-12-31T23:59:59Z.
    #[error("`{field}` is {value} {unit}, outside {min}..={max}: {reason}")]
    OutOfRange {
        /// The field holding the number.
        field: &'static str,
        /// The rejected number.
        value: i64,
        /// Its unit: `minor units`, `units` (a quantity), `Unix seconds`, `Unix microseconds`.
        unit: &'static str,
        /// The smallest accepted number.
        min: i64,
        /// The largest accepted number.
        max: i64,
        /// Why the bound exists.
        reason: &'static str,
    },
    /// The discount is neither exactly one of a percentage (1..=10000 basis points) and a
    /// positive amount in the plan's currency, nor has a consistent duration.
    #[error("invalid discount: {reason}")]
    InvalidDiscount {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `metadata.expected_version` differs from the customer's stream version: someone else
    /// wrote first. Re-read and decide again.
    #[error("version conflict: expected version {expected}, the customer is at {actual}")]
    VersionConflict {
        /// The version the caller based its command on.
        expected: u64,
        /// The customer's current version.
        actual: u64,
    },
    /// The command needs a registered customer; register the customer first.
    #[error("customer not registered: send register_customer first")]
    CustomerNotRegistered,
    /// A customer command for an integration's stream, or an integration command for a
    /// customer's: `metadata.customer_id` names the wrong stream.
    #[error("stream is a {stream}'s: {command} does not apply to it")]
    WrongStream {
        /// What the stream is: "customer" or "integration".
        stream: &'static str,
        /// The command.
        command: &'static str,
    },
    /// The integration command needs a registered integration; register it first.
    #[error("integration not registered: send register_integration first")]
    IntegrationNotRegistered,
    /// `register_integration` for an integration that is already registered.
    #[error("integration already registered: use update_integration to change it")]
    IntegrationAlreadyRegistered,
    /// The integration's status does not allow the command (pause a paused one, change a
    /// removed one).
    #[error("integration is {status}: {command} does not apply")]
    IntegrationInvalidTransition {
        /// The integration's status.
        status: crate::IntegrationStatus,
        /// The refused command.
        command: &'static str,
    },
    /// `register_customer` for a customer that is already registered.
    #[error("customer already registered: use update_customer_profile to change the profile")]
    CustomerAlreadyRegistered,
    /// The provider account is already linked to this customer.
    #[error("provider account {provider}:{account_id} is already linked to this customer")]
    ProviderAccountAlreadyLinked {
        /// The provider.
        provider: Provider,
        /// The provider's customer id.
        account_id: String,
    },
    /// No subscription with this id.
    #[error("unknown subscription {subscription_id:?}")]
    UnknownSubscription {
        /// The id asked for.
        subscription_id: String,
    },
    /// `start_subscription` with an id already used by this customer.
    #[error("subscription {subscription_id:?} already exists")]
    SubscriptionAlreadyExists {
        /// The duplicate id.
        subscription_id: String,
    },
    /// The subscription's status does not allow the command (cancel a canceled subscription,
    /// change the plan of a canceled one, convert one that is not trialing, resume one that is
    /// not paused, ...).
    #[error("subscription {subscription_id:?} is {from}: {command} is not allowed")]
    InvalidTransition {
        /// The subscription.
        subscription_id: String,
        /// Its current status.
        from: SubscriptionStatus,
        /// The refused command, e.g. `"confirm_cancellation"`.
        command: &'static str,
    },
    /// A change of a subscription's life (`convert_trial` to `reactivate_subscription`) dated
    /// before the subscription's latest change: a late, older delivery. The newer fact stands
    /// and nothing is recorded; do not retry (see `docs/decisions/0014-stale-changes.md`).
    #[error(
        "stale: the command is dated {occurred_at_unix_micros} (Unix microseconds), before subscription {subscription_id:?} last changed at {changed_at_unix_micros}; the newer state stands"
    )]
    Stale {
        /// The subscription.
        subscription_id: String,
        /// The command's `metadata.occurred_at_unix_micros`.
        occurred_at_unix_micros: i64,
        /// The business time of the subscription's latest change.
        changed_at_unix_micros: i64,
    },
    /// `request_cancellation` while a cancellation is already pending.
    #[error("subscription {subscription_id:?} already has a pending cancellation")]
    CancellationAlreadyPending {
        /// The subscription.
        subscription_id: String,
    },
    /// `fail_cancellation` without a pending cancellation.
    #[error("subscription {subscription_id:?} has no pending cancellation")]
    NoPendingCancellation {
        /// The subscription.
        subscription_id: String,
    },
    /// `request_subscription_update` while another update of the subscription is processing.
    #[error(
        "subscription {subscription_id:?} already has an update processing; wait for its \
         answer (or `fail_subscription_update`) before requesting another"
    )]
    UpdateAlreadyPending {
        /// The subscription.
        subscription_id: String,
    },
    /// `fail_subscription_update` without an update processing.
    #[error("subscription {subscription_id:?} has no update processing")]
    NoPendingUpdate {
        /// The subscription.
        subscription_id: String,
    },
    /// An amount is in another currency than the subscription, invoice or payment it belongs
    /// to (a plan change, an invoice, a payment, a refund, a dispute).
    #[error("currency mismatch in `{field}`: expected {expected}, got {actual}")]
    CurrencyMismatch {
        /// The money field.
        field: &'static str,
        /// The currency of what it belongs to.
        expected: Currency,
        /// The currency given.
        actual: Currency,
    },
    /// No invoice with this id.
    #[error("unknown invoice {invoice_id:?}")]
    UnknownInvoice {
        /// The id asked for.
        invoice_id: String,
    },
    /// `issue_invoice` with an id already used by this customer.
    #[error("invoice {invoice_id:?} already exists")]
    DuplicateInvoice {
        /// The duplicate id.
        invoice_id: String,
    },
    /// `finalize_invoice` on an invoice that is already finalized or paid.
    #[error("invoice {invoice_id:?} is already {status}")]
    InvoiceAlreadyFinalized {
        /// The invoice.
        invoice_id: String,
        /// Its status (finalized or paid).
        status: InvoiceStatus,
    },
    /// A successful payment for an invoice that is already paid (a failed attempt is recorded).
    #[error("invoice {invoice_id:?} is already paid")]
    InvoiceAlreadyPaid {
        /// The invoice.
        invoice_id: String,
    },
    /// A payment names both an invoice and a subscription, and the invoice bills another
    /// subscription (or none).
    #[error("invoice {invoice_id:?} does not bill subscription {subscription_id:?}")]
    InvoiceSubscriptionMismatch {
        /// The invoice.
        invoice_id: String,
        /// The subscription the payment named.
        subscription_id: String,
    },
    /// No payment with this id.
    #[error("unknown payment {payment_id:?}")]
    UnknownPayment {
        /// The id asked for.
        payment_id: String,
    },
    /// A payment id already used by this customer (succeeded or failed).
    #[error("payment {payment_id:?} already exists")]
    DuplicatePayment {
        /// The duplicate id.
        payment_id: String,
    },
    /// A refund or dispute of a payment that did not succeed.
    #[error("payment {payment_id:?} did not succeed")]
    PaymentNotSucceeded {
        /// The payment.
        payment_id: String,
    },
    /// A refund id already used by this customer.
    #[error("refund {refund_id:?} already exists")]
    DuplicateRefund {
        /// The duplicate id.
        refund_id: String,
    },
    /// The refunds of a payment would exceed what was paid.
    #[error(
        "refund of {requested} exceeds payment {payment_id:?}: paid {paid}, already refunded {already_refunded}"
    )]
    RefundExceedsPayment {
        /// The payment.
        payment_id: String,
        /// Its amount.
        paid: Money,
        /// The sum of its earlier refunds.
        already_refunded: Money,
        /// The refund asked for.
        requested: Money,
    },
    /// A `request_refund` for more than is left to refund: what was paid minus what is
    /// refunded and what is requested and not yet answered.
    #[error(
        "refund request of {requested} exceeds what is left to refund of payment {payment_id:?}: {refundable} (paid, minus refunds and refund requests not yet answered)"
    )]
    RefundExceedsRefundable {
        /// The payment.
        payment_id: String,
        /// What is left to refund.
        refundable: Money,
        /// The refund asked for.
        requested: Money,
    },
    /// A refund request id already used by this customer.
    #[error("refund request {refund_request_id:?} already exists")]
    DuplicateRefundRequest {
        /// The duplicate id.
        refund_request_id: String,
    },
    /// `fail_refund`, or `refund_payment` naming a request, when no such request is
    /// processing (unknown, or already answered).
    #[error("refund request {refund_request_id:?} is not processing (unknown or already answered)")]
    NoPendingRefundRequest {
        /// The request.
        refund_request_id: String,
    },
    /// `refund_payment` naming a request of another payment or amount.
    #[error(
        "refund request {refund_request_id:?} asked for {requested} of payment {payment_id:?}: the refund must be that"
    )]
    RefundRequestMismatch {
        /// The request.
        refund_request_id: String,
        /// Its payment.
        payment_id: String,
        /// Its amount.
        requested: Money,
    },
    /// A refund of a payment with an open or lost dispute (the providers refuse it: the money
    /// is already held or returned by the dispute).
    #[error("payment {payment_id:?} is disputed ({dispute_id:?}) and cannot be refunded")]
    PaymentDisputed {
        /// The payment.
        payment_id: String,
        /// Its dispute.
        dispute_id: String,
    },
    /// No dispute with this id.
    #[error("unknown dispute {dispute_id:?}")]
    UnknownDispute {
        /// The id asked for.
        dispute_id: String,
    },
    /// A dispute id already used by this customer.
    #[error("dispute {dispute_id:?} already exists")]
    DuplicateDispute {
        /// The duplicate id.
        dispute_id: String,
    },
    /// A second dispute against one payment (a charge has at most one).
    #[error("payment {payment_id:?} already has dispute {dispute_id:?}")]
    PaymentAlreadyDisputed {
        /// The payment.
        payment_id: String,
        /// Its existing dispute.
        dispute_id: String,
    },
    /// A dispute for more than the payment's amount.
    #[error("dispute of {requested} exceeds payment {payment_id:?} of {paid}")]
    DisputeExceedsPayment {
        /// The payment.
        payment_id: String,
        /// Its amount.
        paid: Money,
        /// The disputed amount.
        requested: Money,
    },
    /// `close_dispute` on a dispute that is already won or lost.
    #[error("dispute {dispute_id:?} is already closed")]
    DisputeAlreadyClosed {
        /// The dispute.
        dispute_id: String,
    },
}

impl Rejection {
    /// A stable snake_case code for APIs and metrics, e.g. `"refund_exceeds_payment"`.
    pub fn rejection_code(&self) -> &'static str {
        match self {
            Rejection::MissingField { .. } => "missing_field",
            Rejection::InvalidField { .. } => "invalid_field",
            Rejection::EmailCharacterNotAllowed { .. } => "email_character_not_allowed",
            Rejection::InvalidCurrency { .. } => "invalid_currency",
            Rejection::InvalidAmount { .. } => "invalid_amount",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::InvalidDiscount { .. } => "invalid_discount",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::CustomerNotRegistered => "customer_not_registered",
            Rejection::CustomerAlreadyRegistered => "customer_already_registered",
            Rejection::WrongStream { .. } => "wrong_stream",
            Rejection::IntegrationNotRegistered => "integration_not_registered",
            Rejection::IntegrationAlreadyRegistered => "integration_already_registered",
            Rejection::IntegrationInvalidTransition { .. } => "integration_invalid_transition",
            Rejection::ProviderAccountAlreadyLinked { .. } => "provider_account_already_linked",
            Rejection::UnknownSubscription { .. } => "unknown_subscription",
            Rejection::SubscriptionAlreadyExists { .. } => "subscription_already_exists",
            Rejection::InvalidTransition { .. } => "invalid_transition",
            Rejection::Stale { .. } => "stale",
            Rejection::CancellationAlreadyPending { .. } => "cancellation_already_pending",
            Rejection::NoPendingCancellation { .. } => "no_pending_cancellation",
            Rejection::UpdateAlreadyPending { .. } => "update_already_pending",
            Rejection::NoPendingUpdate { .. } => "no_pending_update",
            Rejection::CurrencyMismatch { .. } => "currency_mismatch",
            Rejection::UnknownInvoice { .. } => "unknown_invoice",
            Rejection::DuplicateInvoice { .. } => "duplicate_invoice",
            Rejection::InvoiceAlreadyFinalized { .. } => "invoice_already_finalized",
            Rejection::InvoiceAlreadyPaid { .. } => "invoice_already_paid",
            Rejection::InvoiceSubscriptionMismatch { .. } => "invoice_subscription_mismatch",
            Rejection::UnknownPayment { .. } => "unknown_payment",
            Rejection::DuplicatePayment { .. } => "duplicate_payment",
            Rejection::PaymentNotSucceeded { .. } => "payment_not_succeeded",
            Rejection::DuplicateRefund { .. } => "duplicate_refund",
            Rejection::RefundExceedsPayment { .. } => "refund_exceeds_payment",
            Rejection::RefundExceedsRefundable { .. } => "refund_exceeds_refundable",
            Rejection::DuplicateRefundRequest { .. } => "duplicate_refund_request",
            Rejection::NoPendingRefundRequest { .. } => "no_pending_refund_request",
            Rejection::RefundRequestMismatch { .. } => "refund_request_mismatch",
            Rejection::PaymentDisputed { .. } => "payment_disputed",
            Rejection::UnknownDispute { .. } => "unknown_dispute",
            Rejection::DuplicateDispute { .. } => "duplicate_dispute",
            Rejection::PaymentAlreadyDisputed { .. } => "payment_already_disputed",
            Rejection::DisputeExceedsPayment { .. } => "dispute_exceeds_payment",
            Rejection::DisputeAlreadyClosed { .. } => "dispute_already_closed",
        }
    }
}
