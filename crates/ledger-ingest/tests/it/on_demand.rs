//! `POST /v1/sync/{provider}/customers/{account_id}` against localstripe and a real writer:
//! the first call imports the customer's objects, a second appends nothing, a change made at
//! localstripe is imported once; the refusals are typed.

use std::time::Duration;

use actix_web::App;
use actix_web::test::{self, TestRequest};
use ledger_access::{Access, Scope, Tokens};
use ledger_testkit::ledger::TestLedger;
use ledger_testkit::localstripe::LocalStripe;
use serde_json::Value;

use crate::TOKEN_COMMANDS;

/// `integrations:admin` only: not enough for a sync.
const TOKEN_ADMIN_ONLY: &str = "ingest-admin-only-token-0123456789";

fn access() -> Access {
    let mut tokens = Tokens::default();
    tokens.add(TOKEN_COMMANDS, &[Scope::CommandsWrite]);
    tokens.add(TOKEN_ADMIN_ONLY, &[Scope::IntegrationsAdmin]);
    Access::new(tokens, None)
}

fn request(provider: &str, account_id: &str, token: Option<&str>) -> TestRequest {
    let request = TestRequest::post().uri(&format!("/v1/sync/{provider}/customers/{account_id}"));
    match token {
        Some(token) => request.insert_header(("Authorization", format!("Bearer {token}"))),
        None => request,
    }
}

/// objects, appended, duplicate, ignored, stale, failed, waiting, unreadable, positions.
fn counts(body: &Value) -> [u64; 9] {
    let count = |name: &str| body[name].as_u64().unwrap_or(u64::MAX);
    [
        count("objects"),
        count("appended"),
        count("duplicate"),
        count("ignored"),
        count("stale"),
        count("failed"),
        count("waiting"),
        count("unreadable"),
        body["global_positions"]
            .as_array()
            .map_or(u64::MAX, |positions| positions.len() as u64),
    ]
}

/// [`counts`] with duplicate and ignored added up: whether an unchanged object re-read within
/// the same second as the previous call is a duplicate or ignored depends on the clock.
fn unchanged(body: &Value) -> [u64; 8] {
    let [
        objects,
        appended,
        duplicate,
        ignored,
        stale,
        failed,
        waiting,
        unreadable,
        positions,
    ] = counts(body);
    [
        objects,
        appended,
        duplicate + ignored,
        stale,
        failed,
        waiting,
        unreadable,
        positions,
    ]
}

#[actix_web::test]
async fn an_on_demand_sync_imports_a_customers_changes_once() {
    let stripe = LocalStripe::start().await;
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    stripe.create_plan("basic", 1_500, "usd", "month").await;
    let customer = stripe
        .create_customer("on-demand@example.com", "On Demand")
        .await;
    stripe.use_card(&customer, "4242424242424242").await;
    let subscription = stripe
        .create_subscription(&customer, "basic", 1, None)
        .await;
    let reader = ledger_sync::StripeReader::new(
        ledger_sync::StripeApi {
            api_base: stripe.url.clone(),
            api_key: ledger_sync::ApiSecret::new("sk_test_on_demand".to_owned()),
        },
        Duration::from_secs(10),
    )
    .expect("a reader");
    let app = test::init_service(App::new().configure(ledger_ingest::sync_config(
        ledger.client(),
        access(),
        Some(reader),
    )))
    .await;
    let call = |provider: &'static str, account: String, token: Option<&'static str>| {
        let app = &app;
        async move {
            let response =
                test::call_service(app, request(provider, &account, token).to_request()).await;
            let status = response.status().as_u16();
            let body: Value =
                serde_json::from_slice(&test::read_body(response).await).unwrap_or(Value::Null);
            (status, body)
        }
    };

    let (status, first) = call("stripe", customer.clone(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(status, 200, "{first}");
    // The customer (registered), its subscription (started), its paid invoice (issued,
    // finalized, paid), and its charge (the payment the invoice recorded: already applied).
    assert_eq!(counts(&first), [4, 3, 0, 1, 0, 0, 0, 0, 5], "{first}");
    assert_eq!(first["complete"], true, "{first}");

    let (status, again) = call("stripe", customer.clone(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(status, 200, "{again}");
    // Each object again: already recorded (a duplicate, re-dated at the read: ignored, or a
    // duplicate of that within the same second).
    assert_eq!(unchanged(&again), [4, 0, 4, 0, 0, 0, 0, 0], "{again}");

    stripe
        .cancel(subscription["id"].as_str().expect("an id"))
        .await;
    let (status, changed) = call("stripe", customer.clone(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(unchanged(&changed), [4, 1, 3, 0, 0, 0, 0, 1], "{changed}");

    let database = ledger.database().client().await;
    let appended: i64 = database
        .query_one(
            "SELECT count(*) FROM provider_inbox WHERE source = 'sync' AND outcome = 'appended'",
            &[],
        )
        .await
        .expect("the inbox")
        .get(0);
    assert_eq!(appended, 4);

    let (status, _) = call("stripe", customer.clone(), None).await;
    assert_eq!(status, 401);
    let (status, _) = call("stripe", customer.clone(), Some(TOKEN_ADMIN_ONLY)).await;
    assert_eq!(status, 403);
    let (status, body) = call("braintree", customer.clone(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_provider"))
    );
    let (status, body) = call("stripe", "cus_unknown".to_owned(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_account")),
        "{body}"
    );
    let (status, body) = call("stripe", "cus%2F..%2Fx".to_owned(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_account")),
        "{body}"
    );
    let (status, body) = call("paypal", "PAYER1".to_owned(), Some(TOKEN_COMMANDS)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (501, Some("not_supported"))
    );
}

#[actix_web::test]
async fn without_a_stripe_key_the_route_names_the_variable() {
    let ledger = TestLedger::new().await;
    let app = test::init_service(App::new().configure(ledger_ingest::sync_config(
        ledger.client(),
        access(),
        None,
    )))
    .await;
    let response = test::call_service(
        &app,
        request("stripe", "cus_1", Some(TOKEN_COMMANDS)).to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 501);
    let body: Value = serde_json::from_slice(&test::read_body(response).await).expect("JSON");
    assert_eq!(body["error"], "not_configured");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("LEDGER_STRIPE_API_KEY"),
        "{body}"
    );
}
