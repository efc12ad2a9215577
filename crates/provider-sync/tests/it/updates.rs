//! Pause, resume and plan change requests (`subscription_update_requested`, decision 0032)
//! carried out at the providers. localstripe has no `pause_collection` and updates items by
//! `plan`, not `price`, without `proration_behavior`, so a local HTTP server plays Stripe as
//! its API reference documents it; another plays PayPal; Xendit has no such operations.

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto::{self, command::Kind, subscription_update_requested::Change};
use ledger_domain::{Event, Issuer};
use ledger_testkit::ledger::TestLedger;
use provider_sync::{ApiSecret, ProviderApis, StripeApi, XenditApi};
use serde_json::json;

use crate::{
    RunningSync, at, attempts, calls, customer_with_subscription, events_of_type, fast_config,
    monthly_plan, paypal_apis, status, too_many_requests, wait_for_event,
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

/// A change to `plan_id` at 99.00 USD a month, quantity 3.
fn plan_change(subscription_id: &str, plan_id: &str) -> Change {
    Change::PlanChange(proto::PlanChanged {
        subscription_id: subscription_id.to_owned(),
        plan: Some(monthly_plan(plan_id, 9_900)),
        quantity: 3,
        discount: None,
    })
}

/// Asks the ledger to pause `subscription_id`, then to resume it, then to move it to
/// `plan_id` ([`plan_change`]), each once the answer to the one before is recorded; checks
/// that each answer is recorded once, stated by the provider, caused by its request. Returns
/// the three request event ids.
async fn pause_resume_and_change_plan(
    ledger: &TestLedger,
    customer_id: &str,
    subscription_id: &str,
    plan_id: &str,
) -> [String; 3] {
    let steps = [
        (
            "pause",
            Change::Pause(proto::SubscriptionPaused::default()),
            "subscription_paused",
        ),
        (
            "resume",
            Change::Resume(proto::SubscriptionResumed::default()),
            "subscription_resumed",
        ),
        (
            "change",
            plan_change(subscription_id, plan_id),
            "plan_changed",
        ),
    ];
    let mut request_ids = Vec::new();
    for (name, change, answer) in steps {
        let request_id = request_update(
            ledger,
            customer_id,
            subscription_id,
            &format!("{name}:{subscription_id}"),
            change.clone(),
        )
        .await;
        wait_for_event(ledger, answer).await;
        let answers = events_of_type(ledger, answer).await;
        assert_eq!(answers.len(), 1, "{answer} once");
        let (recorded, event) = &answers[0];
        assert_eq!(recorded.event.issuer, Issuer::PaymentProvider, "{answer}");
        assert_eq!(
            recorded.event.causation_id.map(|id| id.to_string()),
            Some(request_id.clone()),
            "{answer}"
        );
        if let (Event::PlanChanged(changed), Change::PlanChange(asked)) = (event, change) {
            assert_eq!(
                (&changed.plan, changed.quantity),
                (&asked.plan, asked.quantity)
            );
        }
        request_ids.push(request_id);
    }
    request_ids.try_into().expect("three requests")
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

    let [pause_id, resume_id, _] =
        pause_resume_and_change_plan(&ledger, &customer_id, "sub_1", "price_pro").await;
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

/// The path of PayPal's `verb` (`suspend`, `activate`, `revise`) on `subscription_id`.
fn paypal_path(subscription_id: &str, verb: &str) -> String {
    format!("/v1/billing/subscriptions/{subscription_id}/{verb}")
}

/// PayPal's answer to a revision: the subscription, with an `approve` link when the change
/// waits for the subscriber's consent.
fn paypal_revised(plan_id: &str, approval: bool) -> ScriptedAnswer {
    let link = if approval {
        json!({"href": "https://www.sandbox.paypal.com/webapps/billing/subscriptions/update?ba_token=BA-1", "rel": "approve", "method": "GET"})
    } else {
        json!({"href": "https://api-m.sandbox.paypal.com/v1/billing/subscriptions/I-1", "rel": "edit", "method": "PATCH"})
    };
    ScriptedAnswer::json(
        200,
        json!({"plan_id": plan_id, "plan_overridden": false, "quantity": "3", "links": [link]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_suspends_activates_and_revises_and_a_revision_to_approve_waits_for_its_webhook() {
    let server = HttpReceiver::start().await;
    server.answer_path(&paypal_path("I-UPDATE1", "suspend"), status(204));
    server.answer_path(&paypal_path("I-UPDATE1", "activate"), status(204));
    server.answer_path(
        &paypal_path("I-UPDATE1", "revise"),
        paypal_revised("P-PRO", false),
    );
    server.answer_path(
        &paypal_path("I-APPROVE", "revise"),
        paypal_revised("P-PRO", true),
    );
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let paypal = proto::PaymentProvider::Paypal;
    let customer_id =
        customer_with_subscription(&ledger, paypal, "PAYER1", "I-UPDATE1", "P-BASIC").await;
    let approving =
        customer_with_subscription(&ledger, paypal, "PAYER2", "I-APPROVE", "P-BASIC").await;
    let dated = customer_with_subscription(&ledger, paypal, "PAYER3", "I-DATED", "P-BASIC").await;
    let sync = RunningSync::start(
        &ledger,
        paypal_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );

    let [pause_id, resume_id, change_id] =
        pause_resume_and_change_plan(&ledger, &customer_id, "I-UPDATE1", "P-PRO").await;
    let approval_id = request_update(
        &ledger,
        &approving,
        "I-APPROVE",
        "change:I-APPROVE",
        plan_change("I-APPROVE", "P-PRO"),
    )
    .await;
    // PayPal's suspend has no resume date: a pause until a date is not sent.
    let until = ledger_testkit::commands::NOW_MICROS / 1_000_000 + 10 * 86_400;
    request_update(
        &ledger,
        &dated,
        "I-DATED",
        "pause:I-DATED",
        Change::Pause(proto::SubscriptionPaused {
            subscription_id: "I-DATED".to_owned(),
            resumes_at_unix_seconds: Some(until),
        }),
    )
    .await;
    let waiting = ledger_testkit::ledger::eventually(crate::WAIT_MS, || async {
        // The five requests: pause, resume, change, the revision to approve, the dated pause.
        let calls = calls(&ledger).await;
        calls.len() == 5 && calls.iter().all(|(_, status, _)| status == "done")
    })
    .await;
    assert!(waiting, "every call done: {:?}", calls(&ledger).await);
    sync.stop().await;

    let acted: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/v1/billing/"))
        .collect();
    let shown: Vec<(&str, &str, serde_json::Value, Option<&str>)> = acted
        .iter()
        .map(|request| {
            (
                request.method.as_str(),
                request.path.as_str(),
                request.json(),
                request.header("paypal-request-id"),
            )
        })
        .collect();
    let revision = json!({"plan_id": "P-PRO", "quantity": "3"});
    assert_eq!(
        shown,
        vec![
            (
                "POST",
                paypal_path("I-UPDATE1", "suspend").as_str(),
                json!({"reason": "customer asked"}),
                Some(format!("ledger:{pause_id}:pause").as_str())
            ),
            (
                "POST",
                paypal_path("I-UPDATE1", "activate").as_str(),
                json!({"reason": "customer asked"}),
                Some(format!("ledger:{resume_id}:resume").as_str())
            ),
            (
                "POST",
                paypal_path("I-UPDATE1", "revise").as_str(),
                revision.clone(),
                Some(format!("ledger:{change_id}:change_plan").as_str())
            ),
            (
                "POST",
                paypal_path("I-APPROVE", "revise").as_str(),
                revision,
                Some(format!("ledger:{approval_id}:change_plan").as_str())
            ),
        ],
        "each request once, no look before a first attempt"
    );
    assert!(
        acted
            .iter()
            .all(|request| request.header("authorization") == Some("Bearer A21AAtoken"))
    );
    // The revision to approve stays processing: no second plan change, no failure of it.
    assert_eq!(events_of_type(&ledger, "plan_changed").await.len(), 1);
    let failures: Vec<(Issuer, Event)> = events_of_type(&ledger, "subscription_update_failed")
        .await
        .into_iter()
        .map(|(recorded, event)| (recorded.event.issuer, event))
        .collect();
    assert_eq!(failures.len(), 1, "the dated pause only: {failures:?}");
    let (issuer, Event::SubscriptionUpdateFailed(failure)) = &failures[0] else {
        panic!("{failures:?}")
    };
    assert_eq!(
        (
            *issuer,
            failure.subscription_id.as_str(),
            failure.failure_code.as_str()
        ),
        (Issuer::Internal, "I-DATED", "provider_sync_not_supported")
    );
    let approval_call = calls(&ledger)
        .await
        .into_iter()
        .find(|(subscription_id, _, _)| subscription_id.as_deref() == Some("I-APPROVE"))
        .expect("the revision's call");
    assert_eq!(
        approval_call.2.as_deref(),
        Some(
            "accepted by the provider, waiting for the subscriber's approval: its webhook \
             confirms the change"
        )
    );
    writer.stop().await.expect("writer stops");
}

/// One PayPal update whose action path answers in turn, and the event recording its outcome.
struct PaypalUpdate {
    subscription_id: &'static str,
    change: Change,
    verb: &'static str,
    action: &'static str,
    answers: Vec<ScriptedAnswer>,
    /// The attempts logged: outcome and status code (none when no answer came).
    attempts: Vec<(&'static str, Option<i32>)>,
    outcome: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_updates_retry_a_429_500s_and_a_timeout_and_a_refusal_fails_with_paypals_reason() {
    let mut slow = status(204);
    slow.delay = Duration::from_secs(2);
    let refusal = json!({
        "name": "UNPROCESSABLE_ENTITY",
        "message": "The requested action could not be performed, semantically incorrect, or failed business validation.",
        "details": [{"issue": "SUBSCRIPTION_STATUS_INVALID", "description": "Invalid subscription status for suspend action; subscription status should be active."}]
    });
    let pause = || Change::Pause(proto::SubscriptionPaused::default());
    let updates = [
        PaypalUpdate {
            subscription_id: "I-LIMITED",
            change: pause(),
            verb: "suspend",
            action: "pause",
            answers: vec![too_many_requests(1), status(204)],
            attempts: vec![("retry", Some(429)), ("succeeded", Some(204))],
            outcome: "subscription_paused",
        },
        PaypalUpdate {
            subscription_id: "I-FAILING",
            change: plan_change("I-FAILING", "P-PRO"),
            verb: "revise",
            action: "change_plan",
            answers: vec![status(500), status(500), paypal_revised("P-PRO", false)],
            attempts: vec![
                ("retry", Some(500)),
                ("retry", Some(500)),
                ("succeeded", Some(200)),
            ],
            outcome: "plan_changed",
        },
        PaypalUpdate {
            subscription_id: "I-SLOW",
            change: pause(),
            verb: "suspend",
            action: "pause",
            answers: vec![slow, status(204)],
            attempts: vec![("retry", None), ("succeeded", Some(204))],
            outcome: "subscription_paused",
        },
        PaypalUpdate {
            subscription_id: "I-REFUSED",
            change: pause(),
            verb: "suspend",
            action: "pause",
            answers: vec![ScriptedAnswer::json(422, refusal)],
            attempts: vec![("refused", Some(422))],
            outcome: "subscription_update_failed",
        },
    ];
    let server = HttpReceiver::start().await;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let mut request_ids = Vec::new();
    for update in &updates {
        let path = paypal_path(update.subscription_id, update.verb);
        server.answer_path_next_with(&path, update.answers.clone());
        let customer_id = customer_with_subscription(
            &ledger,
            proto::PaymentProvider::Paypal,
            &format!("PAYER-{}", update.subscription_id),
            update.subscription_id,
            "P-BASIC",
        )
        .await;
        let key = format!("{}:{}", update.action, update.subscription_id);
        request_ids.push(
            request_update(
                &ledger,
                &customer_id,
                update.subscription_id,
                &key,
                update.change.clone(),
            )
            .await,
        );
    }
    // A request waits 500 ms at the most: the slow answer times out.
    let sync = RunningSync::start(
        &ledger,
        paypal_apis(&server, Duration::from_millis(500)),
        fast_config(),
    );
    let done = ledger_testkit::ledger::eventually(crate::WAIT_MS, || async {
        let calls = calls(&ledger).await;
        calls.len() == updates.len() && calls.iter().all(|(_, status, _)| status == "done")
    })
    .await;
    assert!(done, "every call done: {:?}", calls(&ledger).await);
    sync.stop().await;

    let logged = attempts(&ledger).await;
    for (update, request_id) in updates.iter().zip(&request_ids) {
        let path = paypal_path(update.subscription_id, update.verb);
        let sent: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|request| {
                request.path.starts_with(&format!(
                    "/v1/billing/subscriptions/{}",
                    update.subscription_id
                ))
            })
            .collect();
        // Every answer asked for once, all to the action, no look in a round's retries.
        assert_eq!(
            sent.iter()
                .map(|request| (request.path.as_str(), request.status))
                .collect::<Vec<_>>(),
            update
                .answers
                .iter()
                .map(|answer| (path.as_str(), answer.status))
                .collect::<Vec<_>>(),
            "{}",
            update.subscription_id
        );
        let key = format!("ledger:{request_id}:{}", update.action);
        for request in &sent {
            assert_eq!(request.header("paypal-request-id"), Some(key.as_str()));
            assert_eq!(request.body, sent[0].body);
        }
        let outcomes: Vec<(&str, Option<i32>)> = logged
            .iter()
            .filter(|(request, _, _)| *request == format!("POST {path}"))
            .map(|(_, outcome, code)| (outcome.as_str(), *code))
            .collect();
        assert_eq!(outcomes, update.attempts, "{}", update.subscription_id);
        let answers: Vec<_> = events_of_type(&ledger, update.outcome)
            .await
            .into_iter()
            .filter(|(recorded, _)| {
                recorded
                    .event
                    .causation_id
                    .map(|id| id.to_string())
                    .as_ref()
                    == Some(request_id)
            })
            .collect();
        assert_eq!(answers.len(), 1, "{} answered once", update.subscription_id);
        assert_eq!(answers[0].0.event.issuer, Issuer::PaymentProvider);
    }
    let limited: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == paypal_path("I-LIMITED", "suspend"))
        .collect();
    assert!(
        limited[1].received_at - limited[0].received_at >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
    let (_, refused) = wait_for_event(&ledger, "subscription_update_failed").await;
    assert_eq!(
        refused,
        Event::SubscriptionUpdateFailed(proto::SubscriptionUpdateFailed {
            subscription_id: "I-REFUSED".to_owned(),
            failure_code: "SUBSCRIPTION_STATUS_INVALID".to_owned(),
            failure_message:
                "Invalid subscription status for suspend action; subscription status should be active."
                    .to_owned(),
        })
    );
    assert_eq!(
        events_of_type(&ledger, "subscription_paused").await.len(),
        2
    );
    writer.stop().await.expect("writer stops");
}
