//! End to end against localstripe (a stateful fake Stripe that signs and delivers webhooks):
//! what is done through its API arrives at a local HTTP server as signed deliveries; each goes
//! through `stripe::verify`, `normalize` and `decide` + `evolve` in memory, and the customer
//! ends as it is at localstripe, except for what localstripe does not emit (see
//! `ledger_testkit::localstripe`: no `customer.subscription.updated`, no `charge.refunded`, and
//! trials stay `incomplete`).

use std::time::{Duration, Instant};

use ledger_connectors::stripe::{WebhookSecrets, verify};
use ledger_connectors::{Headers, VerifyError};
use ledger_devenv::receivers::{HttpReceiver, ReceivedRequest};
use ledger_domain::{InvoiceStatus, PaymentStatus, SubscriptionStatus};
use ledger_testkit::localstripe::LocalStripe;
use serde_json::Value;

use crate::support::Ledger;

const SECRET: &str = "whsec_localstripe_ledger";

struct Delivery<'a>(&'a ReceivedRequest);

impl Headers for Delivery<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.header(name)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Waits until a `customer.subscription.deleted` delivery arrived and nothing more came for two
/// seconds (localstripe sends each event one second after it happened).
async fn settled(receiver: &HttpReceiver) -> Vec<ReceivedRequest> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    let mut quiet_since = Instant::now();
    loop {
        let requests = receiver.requests();
        let deleted = requests
            .iter()
            .any(|request| request.json()["type"] == "customer.subscription.deleted");
        if requests.len() != seen {
            seen = requests.len();
            quiet_since = Instant::now();
        } else if deleted && quiet_since.elapsed() > Duration::from_secs(2) {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "localstripe's deliveries did not settle in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstripe_deliveries_verify_normalize_and_apply() {
    let stripe = LocalStripe::start().await;
    let receiver = HttpReceiver::start().await;
    let endpoint = format!("{}/v1/webhooks/stripe", receiver.url);
    stripe.register_webhook("ledger", &endpoint, SECRET).await;

    stripe.create_plan("plan_basic", 900, "eur", "month").await;
    stripe.create_plan("plan_pro", 2900, "eur", "month").await;
    let ada = stripe
        .create_customer("ada@example.com", "Ada Lovelace")
        .await;
    stripe.use_card(&ada, "4242424242424242").await;
    // Paid at once: invoice.created, invoice.payment_succeeded, customer.subscription.created.
    let subscription = stripe
        .create_subscription(&ada, "plan_basic", 1, None)
        .await;
    let subscription_id = text(&subscription, "/id").to_owned();
    // A trial: localstripe keeps it `incomplete` (real Stripe: `trialing`).
    let trial = stripe
        .create_subscription(&ada, "plan_basic", 1, Some(now() + 14 * 86_400))
        .await;
    // No webhook: localstripe sends no customer.subscription.updated.
    stripe.change_plan(&subscription, "plan_pro", 2).await;
    // A card that needs authentication, which fails: invoice.payment_failed.
    stripe.use_card(&ada, "4000002760003184").await;
    let failed = stripe.invoice_and_pay(&ada, &subscription_id).await;
    assert_eq!(text(&failed, "/status"), "open");
    let invoice_id = text(&failed, "/id").to_owned();
    stripe.fail_authentication(&failed).await;
    stripe.use_card(&ada, "4242424242424242").await;
    let paid = stripe.pay(&invoice_id).await;
    assert_eq!(text(&paid, "/status"), "paid");
    let paid_charge = text(&paid, "/charge/id").to_owned();
    let amount_due = paid["amount_due"].as_i64().expect("amount_due");
    // No webhook: localstripe sends no charge.refunded.
    stripe.refund(&paid_charge, 500).await;
    stripe.cancel(&subscription_id).await;

    let deliveries = settled(&receiver).await;
    let secrets = WebhookSecrets::new(&[SECRET], 300);
    let wrong = WebhookSecrets::new(&["whsec_someone_else"], 300);
    let mut ledger = Ledger::default();
    for delivery in &deliveries {
        assert_eq!(delivery.path, "/v1/webhooks/stripe");
        assert!(matches!(
            verify(&Delivery(delivery), &delivery.body, &wrong, now()),
            Err(VerifyError::Signature(_))
        ));
        let message = verify(&Delivery(delivery), &delivery.body, &secrets, now())
            .unwrap_or_else(|error| panic!("{}: {error}", String::from_utf8_lossy(&delivery.body)));
        ledger.deliver(&message);
    }
    // Deliveries that came before their object (localstripe sends invoices before their
    // subscription) were applied when it came, as the writer does.
    assert!(!ledger.has_waiting(), "deliveries still wait");

    let customer = ledger
        .customer(&ada)
        .expect("Ada is registered with her Stripe account");
    let profile = customer.profile.as_ref().expect("profile");
    assert_eq!(
        (profile.email.as_str(), profile.name.as_str()),
        ("ada@example.com", "Ada Lovelace")
    );
    // The trial never became a ledger subscription (localstripe leaves it incomplete).
    assert!(!customer.subscriptions.contains_key(text(&trial, "/id")));
    assert_eq!(customer.subscriptions.len(), 1);
    let held = &customer.subscriptions[&subscription_id];
    assert_eq!(held.status, SubscriptionStatus::Canceled);
    // The plan change reached the ledger through the deletion's snapshot.
    assert_eq!((held.plan.plan_id.as_str(), held.quantity), ("plan_pro", 2));
    assert_eq!(held.plan.unit_price.amount_minor, 2900);
    assert_eq!(held.plan.unit_price.currency.code(), "EUR");
    assert!(held.ever_paid);
    assert_eq!(customer.invoices.len(), 2);
    assert!(
        customer
            .invoices
            .values()
            .all(|invoice| invoice.status == InvoiceStatus::Paid)
    );
    assert_eq!(
        customer.invoices[&invoice_id].amount_due.amount_minor,
        amount_due
    );
    let failures: Vec<_> = customer
        .payments
        .values()
        .filter(|payment| payment.status == PaymentStatus::Failed)
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].invoice_id.as_deref(), Some(invoice_id.as_str()));
    assert_eq!(
        customer.payments[&paid_charge].status,
        PaymentStatus::Succeeded
    );
    assert_eq!(
        customer.payments[&paid_charge].amount.amount_minor,
        amount_due
    );
    assert_eq!(customer.payments.len(), 3);
    // The refund happened at localstripe but is not emitted.
    assert!(customer.refunds.is_empty());
}
