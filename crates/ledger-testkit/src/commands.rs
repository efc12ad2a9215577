//! Command fixtures: valid commands with fixed time and fixed provider details, for tests to
//! send or to change one field of.

use ledger_domain::proto;

/// 2026-01-01T00:00:00Z in microseconds: every fixture command occurs at this time.
pub const NOW_MICROS: i64 = 1_767_225_600_000_000;

/// Metadata of an internal Stripe command at [`NOW_MICROS`], with no expected version.
pub fn metadata(idempotency_key: &str, customer_id: &str) -> proto::CommandMetadata {
    proto::CommandMetadata {
        idempotency_key: idempotency_key.to_owned(),
        customer_id: customer_id.to_owned(),
        expected_version: None,
        occurred_at_unix_micros: NOW_MICROS,
        issuer: proto::Issuer::Internal as i32,
        payment_provider: proto::PaymentProvider::Stripe as i32,
        account_id: "cus_test".to_owned(),
        correlation_id: String::new(),
        causation_id: String::new(),
    }
}

/// A command for `customer_id` with the fixture [`metadata`].
pub fn command(
    idempotency_key: &str,
    customer_id: &str,
    kind: proto::command::Kind,
) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, customer_id)),
        kind: Some(kind),
    }
}

/// `register_customer` with no customer id: the ledger assigns one.
pub fn register(idempotency_key: &str, email: &str) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, "")),
        kind: Some(proto::command::Kind::RegisterCustomer(
            proto::CustomerRegistered {
                email: email.to_owned(),
                name: "Ada Lovelace".to_owned(),
                provider_account: None,
            },
        )),
    }
}

/// `start_subscription` of one seat of the monthly plan `pro-monthly` at 4,900 minor units of
/// `currency`, no trial, no discount, the first period
/// ending 30 days after [`NOW_MICROS`].
pub fn start_subscription(
    idempotency_key: &str,
    customer_id: &str,
    subscription_id: &str,
    currency: &str,
) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, customer_id)),
        kind: Some(proto::command::Kind::StartSubscription(
            proto::SubscriptionStarted {
                subscription_id: subscription_id.to_owned(),
                plan: Some(proto::Plan {
                    plan_id: "pro-monthly".to_owned(),
                    unit_price: Some(money(4_900, currency)),
                    interval: proto::BillingInterval::Month as i32,
                    interval_count: 1,
                }),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 30 * 86_400,
                discount: None,
            },
        )),
    }
}

/// `record_payment_succeeded` of `amount_minor` USD for the subscription `sub_1` (started by
/// [`start_subscription`] in USD), without an invoice.
pub fn record_payment(
    idempotency_key: &str,
    customer_id: &str,
    payment_id: &str,
    amount_minor: i64,
) -> proto::Command {
    command(
        idempotency_key,
        customer_id,
        proto::command::Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
            payment_id: payment_id.to_owned(),
            invoice_id: String::new(),
            subscription_id: "sub_1".to_owned(),
            amount: Some(money(amount_minor, "USD")),
        }),
    )
}

pub fn money(amount_minor: i64, currency: &str) -> proto::Money {
    proto::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

/// `command` as `provider` sends it for the customer's account `account_id` (its envelope's
/// provider and account).
pub fn through(
    provider: proto::PaymentProvider,
    account_id: &str,
    mut command: proto::Command,
) -> proto::Command {
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.payment_provider = provider as i32;
        account_id.clone_into(&mut metadata.account_id);
    }
    command
}

/// `command` accepted only if its customer's stream is at `expected_version`.
pub fn with_expected_version(mut command: proto::Command, expected_version: u64) -> proto::Command {
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.expected_version = Some(expected_version);
    }
    command
}

/// `register_integration` of a webhook receiving failed payments, with no integration id:
/// the ledger assigns one.
pub fn register_webhook(idempotency_key: &str, url: &str, signing_secret: &str) -> proto::Command {
    let mut metadata = metadata(idempotency_key, "");
    metadata.payment_provider = proto::PaymentProvider::Internal as i32;
    metadata.account_id = String::new();
    proto::Command {
        metadata: Some(metadata),
        kind: Some(proto::command::Kind::RegisterIntegration(
            proto::IntegrationRegistered {
                name: "test webhook".to_owned(),
                target: Some(proto::integration_registered::Target::Webhook(
                    proto::WebhookTarget {
                        url: url.to_owned(),
                        signing_secret: signing_secret.to_owned(),
                    },
                )),
                kinds: vec![proto::NotificationKind::PaymentFailed as i32],
                filter: None,
            },
        )),
    }
}
