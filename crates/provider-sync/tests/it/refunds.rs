//! Refund requests carried out at the providers: localstripe (`POST /v1/refunds`), and PayPal
//! and Xendit played by a local HTTP server (429 with `Retry-After`, 500s, a refusal). A crash
//! between the refund and its record: `ledger-cli`'s `provider_sync.rs` kills the process.

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{Event, Issuer};
use ledger_testkit::commands::money;
use ledger_testkit::ledger::TestLedger;
use ledger_testkit::localstripe::LocalStripe;
use provider_sync::{ApiSecret, ProviderApis, StripeApi};
use serde_json::json;

use crate::{
    RunningSync, at, attempts, customer_with_subscription, events_of_type, fast_config, only_call,
    paypal_apis, status, too_many_requests, wait_for_event, xendit_apis,
};

/// Records the succeeded payment `payment_id` of 49.00 USD, collected at `provider` (the
/// envelope's provider, as the inbound connectors record it), paying `invoice_id` if any.
async fn paid(
    ledger: &TestLedger,
    customer_id: &str,
    provider: proto::PaymentProvider,
    account_id: &str,
    payment_id: &str,
) {
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(at(
                &format!("paid:{payment_id}"),
                customer_id,
                provider,
                account_id,
                2,
            )),
            kind: Some(Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: payment_id.to_owned(),
                invoice_id: String::new(),
                subscription_id: String::new(),
                amount: Some(money(4_900, "USD")),
            })),
        })
        .await
        .expect("paid");
}

/// Sends an internal `request_refund` of `amount_minor` USD cents of `payment_id`.
async fn request_refund(
    ledger: &TestLedger,
    customer_id: &str,
    refund_request_id: &str,
    payment_id: &str,
    amount_minor: i64,
) {
    let mut metadata = at(
        &format!("refund:{refund_request_id}"),
        customer_id,
        proto::PaymentProvider::Internal,
        "",
        3,
    );
    metadata.issuer = proto::Issuer::Internal as i32;
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(metadata),
            kind: Some(Kind::RequestRefund(proto::RefundRequested {
                refund_request_id: refund_request_id.to_owned(),
                payment_id: payment_id.to_owned(),
                amount: Some(money(amount_minor, "USD")),
                reason: "customer asked".to_owned(),
            })),
        })
        .await
        .expect("requested");
}

/// The only `payment_refunded` of the table, as (refund id, request id, amount, issuer).
async fn only_refund(ledger: &TestLedger) -> (String, String, i64, Issuer) {
    let refunds = events_of_type(ledger, "payment_refunded").await;
    assert_eq!(refunds.len(), 1, "one payment_refunded: {refunds:?}");
    let (recorded, event) = &refunds[0];
    let Event::PaymentRefunded(refund) = event else {
        panic!("{event:?}")
    };
    (
        refund.refund_id.clone(),
        refund.refund_request_id.clone(),
        refund
            .amount
            .as_ref()
            .map_or(0, |amount| amount.amount_minor),
        recorded.event.issuer,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refund_is_carried_out_at_stripe_and_recorded_once() {
    let stripe = LocalStripe::start().await;
    let account = stripe.create_customer("ada@example.com", "Ada").await;
    stripe.create_plan("pro", 4_900, "usd", "month").await;
    stripe.use_card(&account, "4242424242424242").await;
    let subscription = stripe.create_subscription(&account, "pro", 1, None).await;
    let subscription_id = subscription["id"].as_str().expect("an id").to_owned();
    let charges = stripe.get(&format!("/v1/charges?customer={account}")).await;
    let charge_id = charges["data"][0]["id"]
        .as_str()
        .expect("the first invoice's charge")
        .to_owned();

    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Stripe,
        &account,
        &subscription_id,
        "pro",
    )
    .await;
    paid(
        &ledger,
        &customer_id,
        proto::PaymentProvider::Stripe,
        &account,
        &charge_id,
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        ProviderApis::new(
            Some(StripeApi {
                api_base: stripe.url.clone(),
                api_key: ApiSecret::new("sk_test_ledger".to_owned()),
            }),
            None,
            None,
            Duration::from_secs(5),
            2,
        )
        .expect("a configuration"),
        fast_config(),
    );
    request_refund(&ledger, &customer_id, "rr_1", &charge_id, 1_500).await;

    let (refunded, _) = wait_for_event(&ledger, "payment_refunded").await;
    let (refund_id, request_id, amount, issuer) = only_refund(&ledger).await;
    assert!(refund_id.starts_with("re_"), "{refund_id}");
    assert_eq!(
        (request_id.as_str(), amount, issuer),
        ("rr_1", 1_500, Issuer::PaymentProvider)
    );
    let request = &events_of_type(&ledger, "refund_requested").await[0].0;
    assert_eq!(refunded.event.causation_id, Some(request.event.event_id));
    let at_stripe = stripe.get(&format!("/v1/refunds?charge={charge_id}")).await;
    let listed = at_stripe["data"].as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{at_stripe}");
    assert_eq!(listed[0]["id"], refund_id.as_str());
    assert_eq!(listed[0]["amount"], 1_500);
    assert_eq!(listed[0]["metadata"]["ledger_refund_request_id"], "rr_1");
    assert_eq!(
        attempts(&ledger).await,
        vec![(
            "POST /v1/refunds".to_owned(),
            "succeeded".to_owned(),
            Some(200)
        )]
    );
    assert_eq!(only_call(&ledger).await.0, "done");
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_refunds_the_sale_after_a_429_and_two_500s() {
    let server = HttpReceiver::start().await;
    server.answer_next_with([
        too_many_requests(1),
        status(500),
        status(500),
        ScriptedAnswer::json(
            201,
            json!({"id": "1JU08902781691411", "state": "completed", "sale_id": "8TT12345"}),
        ),
    ]);
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
    paid(
        &ledger,
        &customer_id,
        proto::PaymentProvider::Paypal,
        "PAYER1",
        "8TT12345",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        paypal_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_refund(&ledger, &customer_id, "rr_1", "8TT12345", 4_900).await;

    wait_for_event(&ledger, "payment_refunded").await;
    assert_eq!(
        only_refund(&ledger).await,
        (
            "1JU08902781691411".to_owned(),
            "rr_1".to_owned(),
            4_900,
            Issuer::PaymentProvider
        )
    );
    let refunds: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/payments/sale/8TT12345/refund")
        .collect();
    assert_eq!(
        refunds
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        vec![429, 500, 500, 201]
    );
    let request_id = refunds[0]
        .header("paypal-request-id")
        .expect("PayPal-Request-Id");
    for request in &refunds {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("paypal-request-id"), Some(request_id));
        assert_eq!(
            request.json(),
            json!({"amount": {"total": "49.00", "currency": "USD"}})
        );
    }
    assert!(
        refunds[1].received_at - refunds[0].received_at >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_xendit_refuses_fails_with_its_code_and_frees_the_amount() {
    let server = HttpReceiver::start().await;
    server.answer_next_with([ScriptedAnswer::json(
        400,
        json!({"error_code": "REFUND_NOT_SUPPORTED", "message": "Refund is not supported for this payment channel"}),
    )]);
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
    paid(
        &ledger,
        &customer_id,
        proto::PaymentProvider::Xendit,
        "cust-1",
        "inv_1",
    )
    .await;
    let sync = RunningSync::start(
        &ledger,
        xendit_apis(&server, Duration::from_secs(5)),
        fast_config(),
    );
    request_refund(&ledger, &customer_id, "rr_1", "inv_1", 4_900).await;

    let (failed, event) = wait_for_event(&ledger, "refund_failed").await;
    assert_eq!(
        event,
        Event::RefundFailed(proto::RefundFailed {
            refund_request_id: "rr_1".to_owned(),
            failure_code: "REFUND_NOT_SUPPORTED".to_owned(),
            failure_message: "Refund is not supported for this payment channel".to_owned(),
        })
    );
    assert_eq!(failed.event.issuer, Issuer::PaymentProvider);
    assert_eq!(failed.event.status, ledger_domain::EventStatus::Failed);
    let refused: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.path == "/refunds")
        .collect();
    assert_eq!(refused.len(), 1, "a 4xx is not retried");
    assert_eq!(
        refused[0].json(),
        json!({
            "amount": 49.00,
            "invoice_id": "inv_1",
            "reference_id": "rr_1",
            "currency": "USD",
            "reason": "REQUESTED_BY_CUSTOMER"
        })
    );
    assert!(
        String::from_utf8_lossy(&refused[0].body).starts_with(r#"{"amount":49.00,"#),
        "the amount is written from its digits"
    );
    assert!(events_of_type(&ledger, "payment_refunded").await.is_empty());
    // The refused amount may be requested again.
    request_refund(&ledger, &customer_id, "rr_2", "inv_1", 4_900).await;
    assert_eq!(events_of_type(&ledger, "refund_requested").await.len(), 2);
    sync.stop().await;
    writer.stop().await.expect("writer stops");
}
