//! PayPal and Xendit played by a local HTTP server: 429 with `Retry-After`, 500s, a timeout, a
//! 4xx refusal, an operation the provider does not have, and retries running out.

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto;
use ledger_domain::{Event, Issuer};
use ledger_testkit::ledger::TestLedger;
use serde_json::json;

use crate::{
    RunningSync, attempts, customer_with_subscription, events_of_type, fast_config, only_call,
    paypal_apis, request_cancellation, status, too_many_requests, wait_for_event, xendit_apis,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_retries_a_429_after_its_retry_after_and_two_500s_then_confirms() {
    let server = HttpReceiver::start().await;
    server.answer_next_with([too_many_requests(1), status(500), status(500), status(204)]);
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Paypal,
        "PAYER1",
        "I-BW452GLLEP1G",
        "P-5ML4271244454362WXNWU5NQ",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        paypal_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_cancellation(&ledger, &customer_id, "I-BW452GLLEP1G", false).await;

    let (confirmed, _) = wait_for_event(&ledger, "subscription_cancelled").await;
    assert_eq!(confirmed.event.issuer, Issuer::PaymentProvider);
    assert_eq!(
        confirmed.event.payment_provider_type,
        ledger_domain::Provider::Paypal
    );
    let cancels: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/billing/subscriptions/I-BW452GLLEP1G/cancel")
        .collect();
    assert_eq!(
        cancels
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        vec![429, 500, 500, 204]
    );
    let request_id = cancels[0]
        .header("paypal-request-id")
        .expect("PayPal-Request-Id");
    for request in &cancels {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("paypal-request-id"), Some(request_id));
        assert_eq!(request.header("authorization"), Some("Bearer A21AAtoken"));
        assert_eq!(request.json()["reason"], "customer asked");
    }
    assert!(
        cancels[1].received_at - cancels[0].received_at >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
    let token = server
        .requests()
        .into_iter()
        .find(|request| request.path == "/v1/oauth2/token")
        .expect("a token request");
    assert_eq!(
        String::from_utf8_lossy(&token.body),
        "grant_type=client_credentials"
    );
    let logged: Vec<(String, Option<i32>)> = attempts(&ledger)
        .await
        .into_iter()
        .map(|(_, outcome, code)| (outcome, code))
        .collect();
    assert_eq!(
        logged,
        vec![
            ("retry".to_owned(), Some(429)),
            ("retry".to_owned(), Some(500)),
            ("retry".to_owned(), Some(500)),
            ("succeeded".to_owned(), Some(204)),
        ]
    );
    assert_eq!(only_call(&ledger).await.0, "done");
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_unanswered_in_every_round_ends_as_an_internal_failure() {
    let server = HttpReceiver::start().await;
    server.answer_next_with((0..20).map(|_| status(503)));
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Paypal,
        "PAYER2",
        "I-DOWN",
        "P-1",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        paypal_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_cancellation(&ledger, &customer_id, "I-DOWN", false).await;

    let (failed, event) = wait_for_event(&ledger, "cancellation_failed").await;
    let Event::CancellationFailed(failure) = event else {
        panic!("{event:?}")
    };
    assert_eq!(failed.event.issuer, Issuer::Internal);
    assert_eq!(failure.failure_code, "provider_sync_unreachable");
    assert!(failure.failure_message.contains("503"), "{failure:?}");
    // Two rounds of four requests; the second round first looks at the subscription.
    let requests: Vec<String> = attempts(&ledger)
        .await
        .into_iter()
        .map(|(request, _, _)| request)
        .collect();
    let cancel = "POST /v1/billing/subscriptions/I-DOWN/cancel".to_owned();
    let look = "GET /v1/billing/subscriptions/I-DOWN".to_owned();
    let mut expected = vec![cancel.clone(); 4];
    expected.push(look);
    expected.extend(vec![cancel; 4]);
    assert_eq!(requests, expected);
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xendit_deactivation_is_retried_after_a_timeout() {
    let server = HttpReceiver::start().await;
    let mut slow = ScriptedAnswer::json(200, json!({"id": "repl_1", "status": "INACTIVE"}));
    slow.delay = Duration::from_secs(2);
    server.answer_next_with([
        slow,
        ScriptedAnswer::json(200, json!({"id": "repl_1", "status": "INACTIVE"})),
    ]);
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-1",
        "repl_1",
        "plan-basic",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        xendit_apis(&server, Duration::from_millis(500)),
        fast_config(),
    );
    request_cancellation(&ledger, &customer_id, "repl_1", false).await;

    let (confirmed, _) = wait_for_event(&ledger, "subscription_cancelled").await;
    assert_eq!(confirmed.event.issuer, Issuer::PaymentProvider);
    let deactivations: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == "/recurring/plans/repl_1/deactivate")
        .collect();
    assert_eq!(deactivations.len(), 2);
    let key = deactivations[0]
        .header("idempotency-key")
        .expect("Idempotency-key");
    assert_eq!(deactivations[1].header("idempotency-key"), Some(key));
    // Basic auth: the secret key as the user, no password (base64 of "xnd_development_key:").
    assert_eq!(
        deactivations[0].header("authorization"),
        Some("Basic eG5kX2RldmVsb3BtZW50X2tleTo=")
    );
    let logged = attempts(&ledger).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!((logged[0].1.as_str(), logged[0].2), ("retry", None));
    assert_eq!(
        (logged[1].1.as_str(), logged[1].2),
        ("succeeded", Some(200))
    );
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xendit_refusal_is_not_retried_and_a_period_end_cancellation_is_not_supported() {
    let server = HttpReceiver::start().await;
    server.answer_next_with([ScriptedAnswer::json(
        404,
        json!({"error_code": "DATA_NOT_FOUND", "message": "Recurring plan repl_gone not found"}),
    )]);
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let gone = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-2",
        "repl_gone",
        "plan-basic",
    )
    .await;
    let later = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-3",
        "repl_later",
        "plan-basic",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        xendit_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_cancellation(&ledger, &gone, "repl_gone", false).await;
    request_cancellation(&ledger, &later, "repl_later", true).await;

    let found = ledger_testkit::ledger::eventually(crate::WAIT_MS, || async {
        events_of_type(&ledger, "cancellation_failed").await.len() == 2
    })
    .await;
    assert!(found, "two cancellation_failed");
    let mut failures: Vec<(String, Issuer, String, String)> =
        events_of_type(&ledger, "cancellation_failed")
            .await
            .into_iter()
            .map(|(recorded, event)| {
                let Event::CancellationFailed(failure) = event else {
                    panic!("{event:?}")
                };
                (
                    failure.subscription_id,
                    recorded.event.issuer,
                    failure.failure_code,
                    failure.failure_message,
                )
            })
            .collect();
    failures.sort();
    assert_eq!(
        failures[0],
        (
            "repl_gone".to_owned(),
            Issuer::PaymentProvider,
            "DATA_NOT_FOUND".to_owned(),
            "Recurring plan repl_gone not found".to_owned()
        )
    );
    assert_eq!(failures[1].0, "repl_later");
    assert_eq!(failures[1].1, Issuer::Internal);
    assert_eq!(failures[1].2, "provider_sync_not_supported");
    // One request in all (and the start-up check): the refusal is not retried, the
    // unsupported one never sent.
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|request| request.path != "/")
            .count(),
        1
    );
    assert_eq!(attempts(&ledger).await.len(), 1);
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

/// PostgreSQL text cannot hold NUL: a refusal whose code and message hold one is recorded
/// (attempt, answer, `cancellation_failed`) without it, instead of failing the worker on the
/// attempts log and asking the provider again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_holding_nul_is_recorded_without_it() {
    let server = HttpReceiver::start().await;
    server.answer_next_with([ScriptedAnswer::json(
        404,
        json!({"error_code": "DATA_\u{0}NOT_FOUND", "message": "Recurring plan \u{0}repl_nul not found"}),
    )]);
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-4",
        "repl_nul",
        "plan-basic",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        xendit_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_cancellation(&ledger, &customer, "repl_nul", false).await;
    let (_, event) = wait_for_event(&ledger, "cancellation_failed").await;
    let Event::CancellationFailed(failure) = event else {
        panic!("{event:?}")
    };
    assert_eq!(
        (failure.failure_code, failure.failure_message),
        (
            "DATA_NOT_FOUND".to_owned(),
            "Recurring plan repl_nul not found".to_owned()
        )
    );
    assert_eq!(attempts(&ledger).await.len(), 1, "asked once");
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_unanswered_internal_requests_for_provider_subscriptions_are_called() {
    let server = HttpReceiver::start().await;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    // Answered before provider-sync ran: Xendit's own callback cancelled it.
    let answered = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-4",
        "repl_answered",
        "plan-basic",
    )
    .await;
    request_cancellation(&ledger, &answered, "repl_answered", false).await;
    let mut confirmation = crate::at(
        "xendit:repl_answered:inactivated",
        &answered,
        proto::PaymentProvider::Xendit,
        "cust-4",
        3,
    );
    confirmation.issuer = proto::Issuer::PaymentProvider as i32;
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(confirmation),
            kind: Some(proto::command::Kind::ConfirmCancellation(
                proto::SubscriptionCancelled {
                    subscription_id: "repl_answered".to_owned(),
                    reason: "inactivated".to_owned(),
                },
            )),
        })
        .await
        .expect("confirmed by the provider");
    // The company's own billing: no provider to call.
    let own = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Internal,
        "acct-own",
        "own_1",
        "plan-basic",
    )
    .await;
    request_cancellation(&ledger, &own, "own_1", false).await;
    // A request the provider itself reported (issuer payment_provider): nothing to carry out.
    let reported = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Xendit,
        "cust-5",
        "repl_reported",
        "plan-basic",
    )
    .await;
    let mut report = crate::at(
        "xendit:repl_reported:request",
        &reported,
        proto::PaymentProvider::Xendit,
        "cust-5",
        2,
    );
    report.issuer = proto::Issuer::PaymentProvider as i32;
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(report),
            kind: Some(proto::command::Kind::RequestCancellation(
                proto::CancellationRequested {
                    subscription_id: "repl_reported".to_owned(),
                    at_period_end: true,
                    reason: String::new(),
                },
            )),
        })
        .await
        .expect("reported");

    let last = ledger.last_position().await;
    let sync = RunningSync::start(
        &ledger,
        xendit_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    let caught_up = ledger_testkit::ledger::eventually(crate::WAIT_MS, || async {
        ledger.projector_checkpoint("provider_sync").await == last
    })
    .await;
    assert!(caught_up, "the projector caught up");
    // Time for a wrong call to happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        only_call(&ledger).await,
        (
            "settled".to_owned(),
            Some(format!(
                "answered in the ledger before the call: subscription_cancelled at {}",
                last - 6
            ))
        )
    );
    assert!(
        server.requests().iter().all(|request| request.path == "/"),
        "no provider request: {:?}",
        server.requests()
    );
    assert!(attempts(&ledger).await.is_empty());
    assert_eq!(ledger.last_position().await, last, "nothing appended");
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}
