//! Pause, resume and plan change requests (`subscription_update_requested`, decision 0032)
//! carried out at the providers. localstripe has no `pause_collection` and updates items by
//! `plan`, not `price`, without `proration_behavior`, so a local HTTP server plays Stripe as
//! its API reference documents it; another plays PayPal; Xendit has no such operations.

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto::{self, command::Kind, subscription_update_requested::Change};
use ledger_domain::{Event, Issuer};
use ledger_testkit::commands::money;
use ledger_testkit::ledger::TestLedger;
use provider_sync::{ApiSecret, ProviderApis, StripeApi, XenditApi};
use serde_json::json;

use crate::{
    RunningSync, at, customer_with_subscription, events_of_type, fast_config, wait_for_event,
};

/// Sends an internal `request_subscription_update` asking `change`; returns the request
/// event's id.
async fn request_update(
    ledger: &TestLedger,
    customer_id: &str,
    subscription_id: &str,
    key: &str,
    change: Change,
) -> String {
    let mut metadata = at(key, customer_id, proto::PaymentProvider::Internal, "", 2);
    metadata.issuer = proto::Issuer::Internal as i32;
    let accepted = ledger
        .client()
        .send(&proto::Command {
            metadata: Some(metadata),
            kind: Some(Kind::RequestSubscriptionUpdate(
                proto::SubscriptionUpdateRequested {
                    subscription_id: subscription_id.to_owned(),
                    change: Some(change),
                    reason: "customer asked".to_owned(),
                },
            )),
        })
        .await
        .expect("requested");
    assert_eq!(
        accepted.events[0].event_type,
        "subscription_update_requested"
    );
    accepted.events[0].event_id.clone()
}

fn stripe_apis(server: &HttpReceiver) -> ProviderApis {
    server.answer_path("/", ScriptedAnswer::json(404, json!({})));
    ProviderApis::new(
        Some(StripeApi {
            api_base: server.url.clone(),
            api_key: ApiSecret::new("sk_test_key".to_owned()),
        }),
        None,
        None,
        Duration::from_secs(5),
        2,
    )
    .expect("a configuration")
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_pauses_resumes_and_changes_the_plan_and_the_ledger_records_each_answer_once() {
    let server = HttpReceiver::start().await;
    let subscription = json!({
        "id": "sub_1", "object": "subscription", "status": "active", "pause_collection": null,
        "items": {"data": [{"id": "si_1", "price": {"id": "price_basic"}, "quantity": 1}]}
    });
    server.answer_next_with([
        // The pause, the resume, then the plan change's look and its update.
        ScriptedAnswer::json(200, json!({"id": "sub_1"})),
        ScriptedAnswer::json(200, json!({"id": "sub_1"})),
        ScriptedAnswer::json(200, subscription),
        ScriptedAnswer::json(200, json!({"id": "sub_1"})),
    ]);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Stripe,
        "cus_1",
        "sub_1",
        "price_basic",
    )
    .await;
    let sync = RunningSync::start(&ledger, stripe_apis(&server), fast_config());

    let pause_id = request_update(
        &ledger,
        &customer_id,
        "sub_1",
        "pause:sub_1",
        Change::Pause(proto::SubscriptionPaused::default()),
    )
    .await;
    let (paused, _) = wait_for_event(&ledger, "subscription_paused").await;
    assert_eq!(paused.event.issuer, Issuer::PaymentProvider);
    assert_eq!(
        paused.event.causation_id.map(|id| id.to_string()),
        Some(pause_id.clone())
    );
    let resume_id = request_update(
        &ledger,
        &customer_id,
        "sub_1",
        "resume:sub_1",
        Change::Resume(proto::SubscriptionResumed::default()),
    )
    .await;
    wait_for_event(&ledger, "subscription_resumed").await;
    let plan = proto::Plan {
        plan_id: "price_pro".to_owned(),
        unit_price: Some(money(9_900, "USD")),
        interval: proto::BillingInterval::Month as i32,
        interval_count: 1,
    };
    request_update(
        &ledger,
        &customer_id,
        "sub_1",
        "change:sub_1",
        Change::PlanChange(proto::PlanChanged {
            subscription_id: "sub_1".to_owned(),
            plan: Some(plan.clone()),
            quantity: 3,
            discount: None,
        }),
    )
    .await;
    let (_, changed) = wait_for_event(&ledger, "plan_changed").await;
    let Event::PlanChanged(changed) = changed else {
        panic!("not a plan change")
    };
    assert_eq!((changed.plan, changed.quantity), (Some(plan), 3));
    sync.stop().await;

    let requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/subscriptions/sub_1")
        .collect();
    let shown: Vec<(&str, Vec<(String, String)>)> = requests
        .iter()
        .map(|request| (request.method.as_str(), form(&request.body)))
        .collect();
    let pair = |key: &str, value: &str| (key.to_owned(), value.to_owned());
    assert_eq!(
        shown,
        vec![
            ("POST", vec![pair("pause_collection[behavior]", "void")]),
            ("POST", vec![pair("pause_collection", "")]),
            ("GET", vec![]),
            (
                "POST",
                vec![
                    pair("items[0][id]", "si_1"),
                    pair("items[0][price]", "price_pro"),
                    pair("items[0][quantity]", "3"),
                    pair("proration_behavior", "create_prorations"),
                ]
            ),
        ]
    );
    assert_eq!(
        requests[0].header("idempotency-key"),
        Some(format!("ledger:{pause_id}:pause").as_str())
    );
    assert_eq!(
        requests[1].header("idempotency-key"),
        Some(format!("ledger:{resume_id}:resume").as_str())
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk_test_key")
    );
    // Each answer once.
    for answer in [
        "subscription_paused",
        "subscription_resumed",
        "plan_changed",
    ] {
        assert_eq!(events_of_type(&ledger, answer).await.len(), 1, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_unsupported_update_fails_with_the_reason_and_changes_nothing() {
    // Stripe refuses the pause (a 400 with its code and message).
    let server = HttpReceiver::start().await;
    server.answer_next_with([ScriptedAnswer::json(
        400,
        json!({"error": {"code": "resource_missing", "message": "No such subscription: 'sub_2'", "type": "invalid_request_error"}}),
    )]);
    // Xendit has no pause: nothing is sent to it.
    let xendit = HttpReceiver::start().await;
    xendit.answer_path("/", ScriptedAnswer::json(404, json!({})));
    server.answer_path("/", ScriptedAnswer::json(404, json!({})));
    let apis = ProviderApis::new(
        Some(StripeApi {
            api_base: server.url.clone(),
            api_key: ApiSecret::new("sk_test_key".to_owned()),
        }),
        None,
        Some(XenditApi {
            api_base: xendit.url.clone(),
            api_key: ApiSecret::new("xnd_development_key".to_owned()),
        }),
        Duration::from_secs(5),
        2,
    )
    .expect("a configuration");
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let at_stripe = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Stripe,
        "cus_2",
        "sub_2",
        "price_basic",
    )
    .await;
    let at_xendit = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "xendit-customer",
        "repl-1",
        "repl-1",
    )
    .await;
    let sync = RunningSync::start(&ledger, apis, fast_config());
    for (customer_id, subscription_id) in [(&at_stripe, "sub_2"), (&at_xendit, "repl-1")] {
        request_update(
            &ledger,
            customer_id,
            subscription_id,
            &format!("pause:{subscription_id}"),
            Change::Pause(proto::SubscriptionPaused::default()),
        )
        .await;
    }
    let found = ledger_testkit::ledger::eventually(crate::WAIT_MS, || async {
        events_of_type(&ledger, "subscription_update_failed")
            .await
            .len()
            == 2
    })
    .await;
    assert!(found, "two failures");
    sync.stop().await;

    let mut failures: Vec<(Issuer, String, String)> =
        events_of_type(&ledger, "subscription_update_failed")
            .await
            .into_iter()
            .map(|(recorded, event)| {
                let Event::SubscriptionUpdateFailed(failed) = event else {
                    panic!("not a failure")
                };
                (
                    recorded.event.issuer,
                    failed.failure_code,
                    failed.subscription_id,
                )
            })
            .collect();
    failures.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        failures,
        vec![
            (
                Issuer::Internal,
                "provider_sync_not_supported".to_owned(),
                "repl-1".to_owned()
            ),
            (
                Issuer::PaymentProvider,
                "resource_missing".to_owned(),
                "sub_2".to_owned()
            ),
        ]
    );
    assert!(
        events_of_type(&ledger, "subscription_paused")
            .await
            .is_empty()
    );
    assert!(
        xendit.requests().iter().all(|request| request.path == "/"),
        "nothing asked of Xendit"
    );
}
