//! The notify projector and its delivery worker against real PostgreSQL, NATS, a local HTTP
//! receiver and a real SMTP server.

mod delivery;
mod egress;
mod exactly_once;
mod secrets;

use std::time::Duration;

use ledger_domain::proto::{self, command::Kind, integration_registered::Target};
use ledger_projector::ProjectorConfig;
use ledger_testkit::commands::{metadata, money, register};
use ledger_testkit::ledger::{RunningProjector, TestLedger};
use projector_notify::{
    DeliveryConfig, EgressPolicy, NotificationKind, NotifyError, NotifyProjector, Rules,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A signing secret for test webhooks.
const SECRET: &str = "whsec_test_0123456789abcdef";

/// How long a test waits for deliveries.
const WAIT_MS: u64 = 15_000;

/// A schedule that fits in a test: two retries after 200 ms and 400 ms, no jitter; `http://`
/// allowed and `127.0.0.1` (where the test receivers listen) on the allowlist, explicitly.
fn fast_delivery() -> DeliveryConfig {
    DeliveryConfig {
        retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
        jitter_percent: 0,
        send_timeout: Duration::from_secs(5),
        slack_interval: Duration::from_millis(300),
        claim_deliveries_max: 32,
        poll_interval: Duration::from_millis(20),
        egress: EgressPolicy {
            allow_http: true,
            allowlist: vec!["127.0.0.1".parse().expect("an allowlist entry")],
            ..EgressPolicy::default()
        },
        secrets: Some(ledger_testkit::ledger::secret_keys()),
    }
}

async fn start_projector(ledger: &TestLedger, replay: bool) -> RunningProjector {
    ledger
        .start_projector(
            NotifyProjector::new(ledger.store.clone(), Rules::default()),
            ProjectorConfig::default(),
            replay,
        )
        .await
}

/// A delivery worker spawned on this test's database.
struct Worker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NotifyError>>,
}

impl Worker {
    fn start(ledger: &TestLedger, config: DeliveryConfig) -> Worker {
        let (stop, stopped) = oneshot::channel::<()>();
        let url = ledger.database().url().to_owned();
        let task = tokio::spawn(async move {
            projector_notify::run_worker(&url, config, async move {
                let _ = stopped.await;
            })
            .await
        });
        Worker { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("worker task")
            .expect("the worker stops cleanly");
    }
}

fn integration_command(key: &str, target: Target) -> proto::Command {
    let mut metadata = metadata(key, "");
    metadata.payment_provider = proto::PaymentProvider::Internal as i32;
    proto::Command {
        metadata: Some(metadata),
        kind: Some(Kind::RegisterIntegration(proto::IntegrationRegistered {
            name: format!("{key} integration"),
            target: Some(target),
            kinds: NotificationKind::ALL
                .iter()
                .map(|kind| kind.to_proto() as i32)
                .collect(),
            filter: None,
        })),
    }
}

/// Registers an integration; returns its id.
async fn register_integration(ledger: &TestLedger, key: &str, target: Target) -> uuid::Uuid {
    ledger
        .client()
        .send(&integration_command(key, target))
        .await
        .expect("accepted")
        .customer_id
        .parse()
        .expect("a UUID")
}

fn webhook(url: &str) -> Target {
    Target::Webhook(proto::WebhookTarget {
        url: format!("{url}/hooks/ledger"),
        signing_secret: SECRET.to_owned(),
    })
}

fn command(key: &str, customer_id: &str, kind: Kind) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(key, customer_id)),
        kind: Some(kind),
    }
}

/// A customer (`prefix`@example.com) on a 49.00 USD monthly plan whose payment `py_1` fails:
/// one `payment_failed` notification. Returns the customer id.
async fn failed_payment(ledger: &TestLedger, prefix: &str) -> String {
    let client = ledger.client();
    let customer = client
        .send(&register(
            &format!("{prefix}-1"),
            &format!("{prefix}@example.com"),
        ))
        .await
        .expect("registered")
        .customer_id;
    client
        .send(&ledger_testkit::commands::start_subscription(
            &format!("{prefix}-2"),
            &customer,
            "sub_1",
            "USD",
        ))
        .await
        .expect("started");
    client
        .send(&command(
            &format!("{prefix}-3"),
            &customer,
            Kind::RecordPaymentFailed(proto::PaymentFailed {
                payment_id: "py_1".to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: Some(money(4_900, "USD")),
                failure_code: "card_declined".to_owned(),
                failure_message: "Your card was declined.".to_owned(),
                attempt_count: 1,
            }),
        ))
        .await
        .expect("failed payment recorded");
    customer
}

/// The payment `py_2` of `customer` succeeds: `payment_recovered` (the subscription was past
/// due).
async fn recovered_payment(ledger: &TestLedger, prefix: &str, customer: &str) {
    ledger
        .client()
        .send(&command(
            &format!("{prefix}-4"),
            customer,
            Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: "py_2".to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: Some(money(4_900, "USD")),
            }),
        ))
        .await
        .expect("payment recorded");
}

/// (status, attempts) of every delivery, oldest first.
async fn delivery_states(ledger: &TestLedger) -> Vec<(String, String, i32)> {
    ledger
        .database()
        .client()
        .await
        .query(
            "SELECT kind, status, attempts FROM notify_delivery.deliveries \
             ORDER BY global_position, kind",
            &[],
        )
        .await
        .expect("deliveries")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// The outcomes in the delivery log, oldest first.
async fn attempt_log(ledger: &TestLedger) -> Vec<(String, Option<i32>)> {
    ledger
        .database()
        .client()
        .await
        .query(
            "SELECT outcome, status_code FROM notify_delivery.attempts ORDER BY attempt_id",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}
