//! Provider-sync against real PostgreSQL and NATS, localstripe, and local HTTP servers playing
//! PayPal and Xendit.

mod fake_providers;
mod localstripe;
mod refunds;
mod updates;

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{Event, decode_event};
use ledger_projector::ProjectorConfig;
use ledger_store::RecordedEvent;
use ledger_testkit::commands::{NOW_MICROS, metadata, money};
use ledger_testkit::ledger::{TestLedger, eventually};
use provider_sync::{ApiSecret, PaypalApi, ProviderApis, SyncConfig, SyncError, XenditApi};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for provider-sync.
const WAIT_MS: u64 = 20_000;

/// Retries that fit in a test: four requests per round 50-200 ms apart, one more round after
/// 300 ms, then give up.
fn fast_config() -> SyncConfig {
    SyncConfig {
        round_attempts_max: 4,
        retry_delay_min: Duration::from_millis(50),
        retry_delay_max: Duration::from_millis(200),
        retry_after_in_round_max: Duration::from_secs(5),
        round_delays: vec![Duration::from_millis(300)],
        command_retry_delay: Duration::from_millis(200),
        claim_calls_max: 16,
        poll_interval: Duration::from_millis(20),
    }
}

/// Provider-sync (projector and worker) spawned on this test's ledger.
struct RunningSync {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SyncError>>,
}

impl RunningSync {
    fn start(ledger: &TestLedger, apis: ProviderApis, config: SyncConfig) -> RunningSync {
        let (stop, stopped) = oneshot::channel::<()>();
        let url = ledger.database().url().to_owned();
        let nats = ledger.nats.clone();
        let projector_config = ProjectorConfig {
            bus: ledger.bus.clone(),
            ..ProjectorConfig::default()
        };
        let task = tokio::spawn(async move {
            provider_sync::run(
                &url,
                nats,
                &projector_config,
                apis,
                config,
                false,
                async move {
                    let _ = stopped.await;
                },
                |_| {},
            )
            .await
        });
        RunningSync { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("provider-sync task")
            .expect("provider-sync stops cleanly");
    }
}

/// Answers provider-sync's start-up check (`GET /`) apart from the scripted answers.
fn answer_start_check(server: &HttpReceiver) {
    server.answer_path("/", status(404));
}

/// PayPal's API played by `server`: its token endpoint answers, the rest is scripted.
pub(crate) fn paypal_apis(server: &HttpReceiver, request_timeout: Duration) -> ProviderApis {
    answer_start_check(server);
    server.answer_path(
        "/v1/oauth2/token",
        ScriptedAnswer::json(
            200,
            json!({"access_token": "A21AAtoken", "token_type": "Bearer", "expires_in": 32_400}),
        ),
    );
    ProviderApis::new(
        None,
        Some(PaypalApi {
            api_base: server.url.clone(),
            client_id: "client-id".to_owned(),
            client_secret: ApiSecret::new("client-secret".to_owned()),
        }),
        None,
        request_timeout,
        2,
    )
    .expect("a configuration")
}

/// Xendit's API played by `server`.
pub(crate) fn xendit_apis(server: &HttpReceiver, request_timeout: Duration) -> ProviderApis {
    answer_start_check(server);
    ProviderApis::new(
        None,
        None,
        Some(XenditApi {
            api_base: server.url.clone(),
            api_key: ApiSecret::new("xnd_development_key".to_owned()),
        }),
        request_timeout,
        2,
    )
    .expect("a configuration")
}

/// An answer of `status` with no body.
pub(crate) fn status(status: u16) -> ScriptedAnswer {
    ScriptedAnswer {
        status,
        ..ScriptedAnswer::default()
    }
}

/// A 429 asking to wait `retry_after_seconds` (`Retry-After`).
pub(crate) fn too_many_requests(retry_after_seconds: u64) -> ScriptedAnswer {
    let mut answer = status(429);
    answer.headers = vec![("Retry-After".to_owned(), retry_after_seconds.to_string())];
    answer
}

/// Metadata of an internal command about `customer_id` at `provider`, `seconds` after the
/// fixtures' time.
fn at(
    key: &str,
    customer_id: &str,
    provider: proto::PaymentProvider,
    account_id: &str,
    seconds: i64,
) -> proto::CommandMetadata {
    let mut metadata = metadata(key, customer_id);
    metadata.payment_provider = provider as i32;
    metadata.account_id = account_id.to_owned();
    metadata.occurred_at_unix_micros = NOW_MICROS + seconds * 1_000_000;
    metadata
}

/// The plan `plan_id` at `amount_minor` US cents a month.
fn monthly_plan(plan_id: &str, amount_minor: i64) -> proto::Plan {
    proto::Plan {
        plan_id: plan_id.to_owned(),
        unit_price: Some(money(amount_minor, "USD")),
        interval: proto::BillingInterval::Month as i32,
        interval_count: 1,
    }
}

/// A registered customer linked to `account_id` at `provider`, with the monthly subscription
/// `subscription_id` of plan `plan_id` at 49.00 USD started there. Returns the customer id.
async fn customer_with_subscription(
    ledger: &TestLedger,
    provider: proto::PaymentProvider,
    account_id: &str,
    subscription_id: &str,
    plan_id: &str,
) -> String {
    let client = ledger.client();
    let registered = client
        .send(&proto::Command {
            metadata: Some(at(
                &format!("register:{subscription_id}"),
                "",
                provider,
                account_id,
                0,
            )),
            kind: Some(Kind::RegisterCustomer(proto::CustomerRegistered {
                email: format!("{subscription_id}@example.com"),
                name: "Ada Lovelace".to_owned(),
                provider_account: Some(proto::ProviderAccount {
                    provider: provider as i32,
                    account_id: account_id.to_owned(),
                }),
            })),
        })
        .await
        .expect("registered");
    let customer_id = registered.customer_id;
    client
        .send(&proto::Command {
            metadata: Some(at(
                &format!("start:{subscription_id}"),
                &customer_id,
                provider,
                account_id,
                1,
            )),
            kind: Some(Kind::StartSubscription(proto::SubscriptionStarted {
                subscription_id: subscription_id.to_owned(),
                plan: Some(monthly_plan(plan_id, 4_900)),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 30 * 86_400,
                discount: None,
            })),
        })
        .await
        .expect("started");
    customer_id
}

/// Sends an internal `request_cancellation` (now, or at the period end).
async fn request_cancellation(
    ledger: &TestLedger,
    customer_id: &str,
    subscription_id: &str,
    at_period_end: bool,
) {
    let mut metadata = at(
        &format!("cancel:{subscription_id}"),
        customer_id,
        proto::PaymentProvider::Internal,
        "",
        2,
    );
    metadata.issuer = proto::Issuer::Internal as i32;
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(metadata),
            kind: Some(Kind::RequestCancellation(proto::CancellationRequested {
                subscription_id: subscription_id.to_owned(),
                at_period_end,
                reason: "customer asked".to_owned(),
            })),
        })
        .await
        .expect("requested");
}

/// The events of type `event_type` in the table, with their payloads.
async fn events_of_type(ledger: &TestLedger, event_type: &str) -> Vec<(RecordedEvent, Event)> {
    ledger
        .table_events()
        .await
        .into_iter()
        .filter(|recorded| recorded.event.event_type == event_type)
        .map(|recorded| {
            let event = decode_event(&recorded.event.payload).expect("a payload");
            (recorded, event)
        })
        .collect()
}

/// Waits until the table holds an event of `event_type`; returns the first.
async fn wait_for_event(ledger: &TestLedger, event_type: &str) -> (RecordedEvent, Event) {
    let found = eventually(WAIT_MS, || async {
        !events_of_type(ledger, event_type).await.is_empty()
    })
    .await;
    assert!(found, "no {event_type} within {WAIT_MS} ms");
    events_of_type(ledger, event_type)
        .await
        .into_iter()
        .next()
        .expect("found")
}

/// The attempts logged for every call: (request, outcome, status code).
async fn attempts(ledger: &TestLedger) -> Vec<(String, String, Option<i32>)> {
    let client = ledger.database().client().await;
    let mut rows = provider_sync::attempts(&client, false, 1_000)
        .await
        .expect("attempts");
    rows.reverse();
    rows.into_iter()
        .map(|row| (row.request, row.outcome, row.status_code))
        .collect()
}

/// The status and result of every call in the outbox, by subscription id, in request order.
async fn calls(ledger: &TestLedger) -> Vec<(Option<String>, String, Option<String>)> {
    let client = ledger.database().client().await;
    client
        .query(
            "SELECT subscription_id, status, result FROM provider_sync_outbox.calls \
             ORDER BY request_position",
            &[],
        )
        .await
        .expect("calls")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// The status and result of the only call in the outbox.
async fn only_call(ledger: &TestLedger) -> (String, Option<String>) {
    let mut calls = calls(ledger).await;
    assert_eq!(calls.len(), 1, "one call");
    let (_, status, result) = calls.remove(0);
    (status, result)
}
