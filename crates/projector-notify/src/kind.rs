//! The notification kinds (docs/notifications.md defines each).

use ledger_domain::proto;

/// What a notification is about. Its name (`payment_failed`) is the webhook's `type`, the
/// `kind` column of a delivery and the word used in the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotificationKind {
    PaymentFailed,
    PaymentRecovered,
    CancellationFailed,
    CustomerChurned,
    CustomerReactivated,
    RefundIssued,
    DisputeOpened,
    LargeContraction,
    TrialEndingSoon,
    RefundFailed,
    SubscriptionUpdateFailed,
}

impl NotificationKind {
    /// Every kind, in the order of `ledger.v1.NotificationKind`.
    pub const ALL: [NotificationKind; 11] = [
        NotificationKind::PaymentFailed,
        NotificationKind::PaymentRecovered,
        NotificationKind::CancellationFailed,
        NotificationKind::CustomerChurned,
        NotificationKind::CustomerReactivated,
        NotificationKind::RefundIssued,
        NotificationKind::DisputeOpened,
        NotificationKind::LargeContraction,
        NotificationKind::TrialEndingSoon,
        NotificationKind::RefundFailed,
        NotificationKind::SubscriptionUpdateFailed,
    ];

    /// The kind named `name` (`payment_failed`).
    pub fn from_name(name: &str) -> Option<NotificationKind> {
        NotificationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// The storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::PaymentFailed => "payment_failed",
            NotificationKind::PaymentRecovered => "payment_recovered",
            NotificationKind::CancellationFailed => "cancellation_failed",
            NotificationKind::CustomerChurned => "customer_churned",
            NotificationKind::CustomerReactivated => "customer_reactivated",
            NotificationKind::RefundIssued => "refund_issued",
            NotificationKind::DisputeOpened => "dispute_opened",
            NotificationKind::LargeContraction => "large_contraction",
            NotificationKind::TrialEndingSoon => "trial_ending_soon",
            NotificationKind::RefundFailed => "refund_failed",
            NotificationKind::SubscriptionUpdateFailed => "subscription_update_failed",
        }
    }

    /// The headline of a message.
    pub fn title(self) -> &'static str {
        match self {
            NotificationKind::PaymentFailed => "Payment failed",
            NotificationKind::PaymentRecovered => "Payment recovered",
            NotificationKind::CancellationFailed => "Cancellation failed",
            NotificationKind::CustomerChurned => "Customer churned",
            NotificationKind::CustomerReactivated => "Customer reactivated",
            NotificationKind::RefundIssued => "Refund issued",
            NotificationKind::DisputeOpened => "Dispute opened",
            NotificationKind::LargeContraction => "Large contraction",
            NotificationKind::TrialEndingSoon => "Trial ending soon",
            NotificationKind::RefundFailed => "Refund failed",
            NotificationKind::SubscriptionUpdateFailed => "Subscription update failed",
        }
    }

    /// The `ledger.v1.NotificationKind` value.
    pub fn to_proto(self) -> proto::NotificationKind {
        use proto::NotificationKind as P;
        match self {
            NotificationKind::PaymentFailed => P::PaymentFailed,
            NotificationKind::PaymentRecovered => P::PaymentRecovered,
            NotificationKind::CancellationFailed => P::CancellationFailed,
            NotificationKind::CustomerChurned => P::CustomerChurned,
            NotificationKind::CustomerReactivated => P::CustomerReactivated,
            NotificationKind::RefundIssued => P::RefundIssued,
            NotificationKind::DisputeOpened => P::DisputeOpened,
            NotificationKind::LargeContraction => P::LargeContraction,
            NotificationKind::TrialEndingSoon => P::TrialEndingSoon,
            NotificationKind::RefundFailed => P::RefundFailed,
            NotificationKind::SubscriptionUpdateFailed => P::SubscriptionUpdateFailed,
        }
    }

    /// The kind of a `ledger.v1.NotificationKind` value; `None` for unspecified or unknown.
    pub fn from_proto(value: i32) -> Option<NotificationKind> {
        NotificationKind::ALL
            .into_iter()
            .find(|kind| kind.to_proto() as i32 == value)
    }
}
