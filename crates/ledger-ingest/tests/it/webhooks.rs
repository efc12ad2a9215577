//! The webhook path end to end: signed provider deliveries through the ingest endpoints, the
//! real writer (normalization against the customer's state, the inbox in the batch's
//! transaction), PostgreSQL and NATS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, HttpServer, web};
use ledger_connectors::{stripe, xendit};
use ledger_domain::proto;
use ledger_ingest::{PaypalConfig, WebhookConfig};
use ledger_testkit::commands::register;
use ledger_testkit::ledger::TestLedger;
use uuid::Uuid;

const STRIPE_SECRET: &str = "whsec_test_0123456789abcdef";
const OLD_STRIPE_SECRET: &str = "whsec_old_secret_being_rotated";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits")
}

fn stripe_only() -> WebhookConfig {
    WebhookConfig {
        stripe: Some(stripe::WebhookSecrets::new(
            &[OLD_STRIPE_SECRET, STRIPE_SECRET],
            stripe::TOLERANCE_SECONDS_DEFAULT,
        )),
        ..WebhookConfig::default()
    }
}

macro_rules! webhook_app {
    ($client:expr, $webhooks:expr) => {
        test::init_service(App::new().configure(ledger_ingest::webhook_config($client, $webhooks)))
            .await
    };
}

/// `Stripe-Signature` for `body` signed with `secret` at `timestamp`.
fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

fn customer_event(event_id: &str, event_type: &str, account_id: &str, email: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": 1_764_000_000,
        "data": {"object": {
            "id": account_id, "object": "customer", "email": email, "name": "Ada Lovelace"
        }}
    }))
    .expect("JSON")
}

fn signed(body: &[u8]) -> TestRequest {
    TestRequest::post()
        .uri("/v1/webhooks/stripe")
        .insert_header(("content-type", "application/json"))
        .insert_header((
            "Stripe-Signature",
            stripe_signature(STRIPE_SECRET, now(), body),
        ))
        .set_payload(body.to_vec())
}

/// Status, headers and JSON body of a webhook answer.
macro_rules! call {
    ($app:expr, $request:expr) => {{
        let response = test::call_service(&$app, $request.to_request()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = test::read_body(response).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!(
                "{status}: not JSON ({error}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, headers, json)
    }};
}

async fn inbox_count(ledger: &TestLedger) -> i64 {
    ledger
        .database()
        .client()
        .await
        .query_one("SELECT count(*) FROM provider_inbox", &[])
        .await
        .expect("count")
        .get(0)
}

#[actix_web::test]
async fn a_signed_customer_created_registers_the_customer_once_with_the_inbox_row_as_cause() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = customer_event(
        "evt_created_1",
        "customer.created",
        "cus_ada",
        "ada@example.com",
    );

    let (status, _, answer) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "appended");
    assert_eq!(answer["global_positions"], serde_json::json!([1]));
    let inbox_id: Uuid = answer["inbox_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("UUID");

    let customer_id =
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, "cus_ada");
    let events = ledger
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.event_type, "customer_registered");
    assert_eq!(events[0].event.causation_id, Some(inbox_id));
    assert_eq!(
        events[0].event.issuer,
        ledger_domain::Issuer::PaymentProvider
    );
    assert_eq!(events[0].idempotency_key, "stripe:evt_created_1");

    let row = ledger
        .store
        .inbox_row(inbox_id)
        .await
        .expect("read")
        .expect("the inbox row");
    assert_eq!(row.row.outcome, ledger_store::InboxOutcome::Appended);
    assert_eq!(row.global_positions, vec![1]);
    assert_eq!(&row.row.body[..], &body[..], "the body verbatim");
    assert_eq!(row.row.provider_event_id, "evt_created_1");
    assert_eq!(row.row.customer_id, Some(customer_id));

    // Stripe retries the same event: recorded as a duplicate, nothing appended.
    let (status, _, again) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(again["global_positions"], serde_json::json!([]));
    assert_ne!(
        again["inbox_id"], answer["inbox_id"],
        "every delivery is recorded"
    );
    assert_eq!(ledger.last_position().await, 1);
    assert_eq!(inbox_count(&ledger).await, 2);

    // Re-normalizing the stored message appends nothing new.
    let renormalized = ledger
        .client()
        .deliver(&proto::ProviderDelivery {
            provider: proto::PaymentProvider::Stripe as i32,
            renormalizes_inbox_id: inbox_id.to_string(),
            received_at_unix_micros: 1,
            ..proto::ProviderDelivery::default()
        })
        .await
        .expect("re-normalized");
    assert!(renormalized.global_positions.is_empty());
    assert!(renormalized.changed_idempotency_keys.is_empty());
    assert_ne!(renormalized.outcome(), proto::DeliveryOutcome::Failed);
    assert_eq!(ledger.last_position().await, 1);
    let rerun: Uuid = renormalized.inbox_id.parse().expect("UUID");
    let rerun = ledger
        .store
        .inbox_row(rerun)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(rerun.row.renormalizes_inbox_id, Some(inbox_id));

    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn refused_deliveries_append_and_store_nothing() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = customer_event("evt_refused", "customer.created", "cus_x", "x@example.com");
    let post = |signature: Option<String>, body: Vec<u8>| {
        let request = TestRequest::post()
            .uri("/v1/webhooks/stripe")
            .set_payload(body);
        match signature {
            Some(signature) => request.insert_header(("Stripe-Signature", signature)),
            None => request,
        }
    };

    let cases = [
        (
            "wrong secret",
            post(
                Some(stripe_signature("whsec_wrong", now(), &body)),
                body.clone(),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no signature",
            post(None, body.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            post(
                Some(stripe_signature(STRIPE_SECRET, now() - 3_600, &body)),
                body.clone(),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "not JSON",
            post(
                Some(stripe_signature(STRIPE_SECRET, now(), b"not json")),
                b"not json".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized",
            post(
                Some(stripe_signature(STRIPE_SECRET, now(), &body)),
                vec![b' '; ledger_connectors::WEBHOOK_BYTES_MAX + 1],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (case, request, expected) in cases {
        let (status, _, answer) = call!(app, request);
        assert_eq!(status, expected, "{case}: {answer}");
    }
    let unconfigured = TestRequest::post()
        .uri("/v1/webhooks/xendit")
        .insert_header(("x-callback-token", "anything"))
        .set_payload(body.clone());
    let (status, _, _) = call!(app, unconfigured);
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "xendit has no token configured"
    );

    assert_eq!(ledger.last_position().await, 0);
    assert_eq!(inbox_count(&ledger).await, 0);

    // Counted by provider and outcome, on the process's metrics endpoint (not the API port).
    let metrics = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND);
    let text = scrape.render();
    for line in [
        "ledger_connectors_deliveries_total{provider=\"stripe\",outcome=\"signature_rejected\"} 3",
        "ledger_connectors_deliveries_total{provider=\"stripe\",outcome=\"malformed\"} 1",
        "ledger_connectors_deliveries_total{provider=\"stripe\",outcome=\"too_large\"} 1",
        "ledger_connectors_deliveries_total{provider=\"xendit\",outcome=\"not_configured\"} 1",
    ] {
        assert!(
            text.lines().any(|candidate| candidate == line),
            "{line} in\n{text}"
        );
    }
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn an_unknown_event_type_is_recorded_as_ignored() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = serde_json::to_vec(&serde_json::json!({
        "id": "evt_unknown", "type": "radar.early_fraud_warning.created", "created": 1_764_000_000,
        "data": {"object": {"object": "radar.early_fraud_warning", "id": "issfr_1"}}
    }))
    .expect("JSON");
    let (status, _, answer) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "ignored");
    assert!(!answer["reason"].as_str().expect("reason").is_empty());
    assert_eq!(ledger.last_position().await, 0);
    let rows = ledger
        .store
        .inbox_rows(&ledger_store::InboxFilter {
            outcome: Some(ledger_store::InboxOutcome::Ignored),
            limit: 10,
            ..ledger_store::InboxFilter::default()
        })
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row.event_type, "radar.early_fraud_warning.created");
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn without_a_writer_the_answer_is_503_and_the_retry_is_recorded_once() {
    let ledger = TestLedger::new().await;
    let client = ledger
        .client()
        .with_request_timeout(Duration::from_millis(200));
    let app = webhook_app!(client, stripe_only());
    let body = customer_event(
        "evt_retry",
        "customer.created",
        "cus_retry",
        "r@example.com",
    );

    let (status, headers, _) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(RETRY_AFTER));
    assert_eq!(inbox_count(&ledger).await, 0);

    let writer = ledger.start_writer();
    let (status, _, answer) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "appended");
    let (_, _, again) = call!(app, signed(&body));
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(ledger.last_position().await, 1, "nothing lost or doubled");
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn concurrent_deliveries_for_one_new_account_make_one_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let created = customer_event("evt_c1", "customer.created", "cus_twice", "t@example.com");
    let updated = customer_event("evt_c2", "customer.updated", "cus_twice", "t@example.com");
    let (first, second) = tokio::join!(
        test::call_service(&app, signed(&created).to_request()),
        test::call_service(&app, signed(&updated).to_request()),
    );
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let registered = ledger
        .table_events()
        .await
        .into_iter()
        .filter(|event| event.event.event_type == "customer_registered")
        .count();
    assert_eq!(registered, 1, "one customer for the account");
    assert_eq!(ledger.last_position().await, 1);
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn an_existing_customer_with_the_email_gets_the_account_linked() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let accepted = ledger
        .client()
        .send(&register("signup:ada", "Ada@Example.com"))
        .await
        .expect("registered");
    let customer_id: Uuid = accepted.customer_id.parse().expect("UUID");
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = customer_event(
        "evt_link",
        "customer.created",
        "cus_linked",
        "  ada@EXAMPLE.com ",
    );

    let (status, _, answer) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "appended");
    let events = ledger
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("read");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event.event_type, "provider_account_linked");
    assert_eq!(ledger.last_position().await, 2, "no second customer");
    let owner = ledger
        .store
        .find_stream_by_unique_key(&ledger_domain::UniqueKey::ProviderAccount(
            ledger_domain::Provider::Stripe,
            "cus_linked".to_owned(),
        ))
        .await
        .expect("look-up");
    assert_eq!(owner, Some(customer_id));
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn the_inbox_refuses_update_and_delete() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = customer_event("evt_kept", "customer.created", "cus_kept", "k@example.com");
    let (status, _, _) = call!(app, signed(&body));
    assert_eq!(status, StatusCode::OK);
    let database = ledger.database().client().await;
    for statement in [
        "UPDATE provider_inbox SET outcome = 'ignored'",
        "DELETE FROM provider_inbox",
        "TRUNCATE provider_inbox",
    ] {
        let error = database
            .batch_execute(statement)
            .await
            .expect_err("append-only");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::RESTRICT_VIOLATION),
            "{statement}: {error}"
        );
    }
    assert_eq!(inbox_count(&ledger).await, 1);
    writer.stop().await.expect("the writer stops");
}

#[actix_web::test]
async fn xendit_callbacks_need_a_configured_token() {
    let ledger = TestLedger::new().await;
    let app = webhook_app!(
        ledger.client(),
        WebhookConfig {
            xendit: Some(xendit::CallbackTokens::new(&["xnd-token-1"])),
            ..WebhookConfig::default()
        }
    );
    let request = |token: &str| {
        TestRequest::post()
            .uri("/v1/webhooks/xendit")
            .insert_header(("x-callback-token", token.to_owned()))
            .set_payload(r#"{"id": "inv_1"}"#)
    };
    let (status, _, _) = call!(app, request("wrong"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call!(
        app,
        TestRequest::post()
            .uri("/v1/webhooks/stripe")
            .set_payload("{}")
    );
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "stripe is not configured here"
    );
    assert_eq!(inbox_count(&ledger).await, 0);
}

/// PayPal's API as the test scripts it: a token endpoint and a verification endpoint that
/// answers `verdict`, recording what it was sent.
struct FakePaypal {
    url: String,
    verdict: Arc<Mutex<&'static str>>,
    /// How long the verification endpoint waits before answering.
    delay_ms: Arc<Mutex<u64>>,
    verified: Arc<Mutex<Vec<serde_json::Value>>>,
    tokens_issued: Arc<Mutex<u32>>,
}

async fn fake_paypal() -> FakePaypal {
    let verdict = Arc::new(Mutex::new("SUCCESS"));
    let verified = Arc::new(Mutex::new(Vec::new()));
    let tokens_issued = Arc::new(Mutex::new(0));
    let delay_ms = Arc::new(Mutex::new(0));
    let (v, r, t, d) = (
        verdict.clone(),
        verified.clone(),
        tokens_issued.clone(),
        delay_ms.clone(),
    );
    let server = HttpServer::new(move || {
        let (v, r, t, d) = (v.clone(), r.clone(), t.clone(), d.clone());
        App::new()
            .route(
                "/v1/oauth2/token",
                web::post().to(move |request: actix_web::HttpRequest| {
                    let t = t.clone();
                    async move {
                        if request.headers().get("authorization").is_none() {
                            return HttpResponse::Unauthorized().finish();
                        }
                        *t.lock().expect("lock") += 1;
                        HttpResponse::Ok().json(serde_json::json!({
                            "access_token": "A21AA-test", "token_type": "Bearer", "expires_in": 32_400
                        }))
                    }
                }),
            )
            .route(
                "/v1/notifications/verify-webhook-signature",
                web::post().to(move |body: web::Bytes| {
                    let (v, r, d) = (v.clone(), r.clone(), d.clone());
                    async move {
                        r.lock()
                            .expect("lock")
                            .push(serde_json::from_slice(&body).expect("JSON request"));
                        let delay_ms = *d.lock().expect("lock");
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        let verdict = *v.lock().expect("lock");
                        HttpResponse::Ok().json(serde_json::json!({"verification_status": verdict}))
                    }
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("a local port");
    let url = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    FakePaypal {
        url,
        verdict,
        delay_ms,
        verified,
        tokens_issued,
    }
}

#[actix_web::test]
async fn paypal_deliveries_are_verified_by_paypals_postback_api() {
    let ledger = TestLedger::new().await;
    let paypal = fake_paypal().await;
    let app = webhook_app!(
        ledger.client(),
        WebhookConfig {
            paypal: Some(PaypalConfig {
                webhook_ids: vec!["WH-OLD".to_owned(), "WH-1".to_owned()],
                api_base: paypal.url.clone(),
                client_id: "client".to_owned(),
                client_secret: "secret".to_owned(),
            }),
            ..WebhookConfig::default()
        }
    );
    let writer = ledger.start_writer();
    let body = r#"{"id":"WH-EVT-1","event_type":"CUSTOMER.DISPUTE.CREATED","create_time":"2026-11-30T12:00:00Z","resource":{}}"#;
    let request = || paypal_request(body, "SHA256withRSA", PAYPAL_CERT_URL);

    // Without PayPal's transmission headers: 401 before any call to PayPal.
    let unsigned = TestRequest::post()
        .uri("/v1/webhooks/paypal")
        .set_payload(body);
    let (status, _, _) = call!(app, unsigned);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        *paypal.tokens_issued.lock().expect("lock"),
        0,
        "PayPal not asked"
    );

    // PayPal says FAILURE for every webhook id: 401, nothing recorded.
    *paypal.verdict.lock().expect("lock") = "FAILURE";
    let (status, _, answer) = call!(app, request());
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    {
        let verified = paypal.verified.lock().expect("lock");
        assert_eq!(verified.len(), 2, "asked for each webhook id");
        assert_eq!(verified[1]["webhook_id"], "WH-1");
        assert_eq!(verified[1]["transmission_id"], "tx-1");
        assert_eq!(
            verified[1]["webhook_event"],
            serde_json::from_str::<serde_json::Value>(body).expect("JSON"),
            "the event as received"
        );
    }

    // SUCCESS: the delivery is recorded (an event type the ledger does not use: ignored).
    *paypal.verdict.lock().expect("lock") = "SUCCESS";
    let (status, _, answer) = call!(app, request());
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "ignored");
    assert_eq!(
        *paypal.tokens_issued.lock().expect("lock"),
        1,
        "the token is cached until it expires"
    );
    writer.stop().await.expect("the writer stops");
}

const PAYPAL_CERT_URL: &str = "https://api.paypal.com/v1/notifications/certs/CERT-1";

/// A PayPal delivery of `body` with transmission headers naming `algorithm` and
/// `certificate_url`.
fn paypal_request(body: &'static str, algorithm: &str, certificate_url: &str) -> TestRequest {
    TestRequest::post()
        .uri("/v1/webhooks/paypal")
        .insert_header(("content-type", "application/json"))
        .insert_header(("paypal-auth-algo", algorithm.to_owned()))
        .insert_header(("paypal-cert-url", certificate_url.to_owned()))
        .insert_header(("paypal-transmission-id", "tx-1"))
        .insert_header(("paypal-transmission-sig", "c2lnbmF0dXJl"))
        .insert_header(("paypal-transmission-time", "2026-11-30T12:00:00Z"))
        .set_payload(body)
}

fn paypal_config(api_base: &str) -> WebhookConfig {
    WebhookConfig {
        paypal: Some(PaypalConfig {
            webhook_ids: vec!["WH-1".to_owned()],
            api_base: api_base.to_owned(),
            client_id: "client".to_owned(),
            client_secret: "secret".to_owned(),
        }),
        ..WebhookConfig::default()
    }
}

/// Forged PayPal deliveries cost no call to PayPal's API: a body that is not a PayPal event
/// (400), or transmission headers PayPal never sends (another algorithm, a certificate URL
/// off PayPal's hosts, no signature: 401), are refused first.
#[actix_web::test]
async fn implausible_paypal_deliveries_are_refused_without_calling_paypal() {
    let ledger = TestLedger::new().await;
    let paypal = fake_paypal().await;
    let app = webhook_app!(ledger.client(), paypal_config(&paypal.url));
    let event = r#"{"id":"WH-EVT-2","event_type":"CUSTOMER.DISPUTE.CREATED","create_time":"2026-11-30T12:00:00Z","resource":{}}"#;
    let cases = [
        (
            "not an event",
            paypal_request(r#"{"hello": "world"}"#, "SHA256withRSA", PAYPAL_CERT_URL),
            StatusCode::BAD_REQUEST,
        ),
        (
            "another algorithm",
            paypal_request(event, "SHA1withRSA", PAYPAL_CERT_URL),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a certificate off PayPal's hosts",
            paypal_request(
                event,
                "SHA256withRSA",
                "https://attacker.example/v1/notifications/certs/CERT-1",
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no signature",
            TestRequest::post()
                .uri("/v1/webhooks/paypal")
                .insert_header(("paypal-auth-algo", "SHA256withRSA"))
                .insert_header(("paypal-cert-url", PAYPAL_CERT_URL))
                .insert_header(("paypal-transmission-id", "tx-1"))
                .insert_header(("paypal-transmission-time", "2026-11-30T12:00:00Z"))
                .set_payload(event),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (case, request, expected) in cases {
        let (status, _, answer) = call!(app, request);
        assert_eq!(status, expected, "{case}: {answer}");
    }
    assert_eq!(*paypal.tokens_issued.lock().expect("lock"), 0);
    assert!(paypal.verified.lock().expect("lock").is_empty());
    assert_eq!(inbox_count(&ledger).await, 0);
}

/// At most `PAYPAL_VERIFICATIONS_MAX` verifications are in flight: with PayPal slow to answer,
/// the deliveries past the cap get 503 with `Retry-After` at once, without a call.
#[actix_web::test]
async fn paypal_verifications_in_flight_are_capped() {
    let ledger = TestLedger::new().await;
    let paypal = fake_paypal().await;
    *paypal.delay_ms.lock().expect("lock") = 1_000;
    // Two apps from one configuration, as ingest's workers are: the cap is the process's,
    // not each worker's (the try-it pass found 8 per worker, and a token fetched by each).
    let routes = ledger_ingest::webhook_config(ledger.client(), paypal_config(&paypal.url));
    let workers = [
        test::init_service(App::new().configure(routes.clone())).await,
        test::init_service(App::new().configure(routes)).await,
    ];
    // FAILURE: the ones verified are refused (401) and nothing reaches the writer.
    *paypal.verdict.lock().expect("lock") = "FAILURE";
    let body = r#"{"id":"WH-EVT-3","event_type":"CUSTOMER.DISPUTE.CREATED","create_time":"2026-11-30T12:00:00Z","resource":{}}"#;
    let deliveries = ledger_ingest::PAYPAL_VERIFICATIONS_MAX + 4;
    let answers = futures_util::future::join_all((0..deliveries).map(|n| {
        test::call_service(
            &workers[n % 2],
            paypal_request(body, "SHA256withRSA", PAYPAL_CERT_URL).to_request(),
        )
    }))
    .await;
    let mut statuses = std::collections::BTreeMap::new();
    for answer in &answers {
        *statuses.entry(answer.status().as_u16()).or_insert(0) += 1;
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(answer.headers().contains_key(RETRY_AFTER));
        }
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([
            (401, ledger_ingest::PAYPAL_VERIFICATIONS_MAX),
            (503, 4)
        ])
    );
    assert_eq!(
        paypal.verified.lock().expect("lock").len(),
        ledger_ingest::PAYPAL_VERIFICATIONS_MAX
    );
    assert_eq!(inbox_count(&ledger).await, 0);
}

/// Hostile or sloppy Stripe deliveries under the size limit: each gets its status before
/// anything reaches the writer, and nothing is stored.
#[actix_web::test]
async fn hostile_stripe_deliveries_are_refused_and_store_nothing() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = webhook_app!(ledger.client(), stripe_only());
    let body = customer_event("evt_hostile", "customer.created", "cus_h", "h@example.com");

    // A genuine signature on a form instead of JSON.
    let form = signed(&body).insert_header(("content-type", "application/x-www-form-urlencoded"));
    // JSON nested 100,000 deep (200 KB, under the size limit), genuinely signed.
    let depth = 100_000;
    let mut bomb =
        br#"{"id":"evt_bomb","type":"customer.created","created":1764000000,"data":{"object":"#
            .to_vec();
    bomb.extend(std::iter::repeat_n(b'[', depth));
    bomb.extend(std::iter::repeat_n(b']', depth));
    bomb.extend_from_slice(b"}}");
    assert!(bomb.len() < ledger_connectors::WEBHOOK_BYTES_MAX);
    // Thousands of forged v1 values around the genuine one.
    let genuine = stripe_signature(STRIPE_SECRET, now(), &body);
    let forged = format!(",v1={}", "ab".repeat(32)).repeat(5_000);
    let many = TestRequest::post()
        .uri("/v1/webhooks/stripe")
        .insert_header(("content-type", "application/json"))
        .insert_header(("Stripe-Signature", format!("{genuine}{forged}")))
        .set_payload(body.clone());
    let cases = [
        ("a form", form, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("a nesting bomb", signed(&bomb), StatusCode::BAD_REQUEST),
        ("5,000 v1 values", many, StatusCode::UNAUTHORIZED),
    ];
    for (case, request, expected) in cases {
        let (status, _, answer) = call!(app, request);
        assert_eq!(status, expected, "{case}: {answer}");
    }
    // `application/json` with parameters, in any case, is JSON.
    let (status, _, answer) = call!(
        app,
        signed(&body).insert_header(("content-type", "Application/JSON; charset=utf-8"))
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(ledger.last_position().await, 1);
    assert_eq!(inbox_count(&ledger).await, 1, "only the genuine delivery");
    writer.stop().await.expect("the writer stops");
}

/// Over a real connection: a body trickled slower than `BODY_READ_SECONDS_MAX` is cut off
/// with 408, and a head of 200 KB of headers is refused by the HTTP parser (431); nothing is
/// stored.
#[actix_web::test]
async fn slow_bodies_and_huge_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ledger = TestLedger::new().await;
    let client = ledger.client();
    let server = HttpServer::new(move || {
        App::new().configure(ledger_ingest::webhook_config(client.clone(), stripe_only()))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("a local port");
    let address = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    let status_of = |response: &[u8]| {
        String::from_utf8_lossy(response)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };

    let mut slow = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    slow.write_all(
        b"POST /v1/webhooks/stripe HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\n\
          Stripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .expect("write");
    let started = std::time::Instant::now();
    let mut response = vec![0u8; 1_024];
    let read = tokio::time::timeout(
        Duration::from_secs(ledger_ingest::BODY_READ_SECONDS_MAX + 5),
        slow.read(&mut response),
    )
    .await
    .expect("an answer before the body is complete")
    .expect("read");
    assert_eq!(status_of(&response[..read]), "408");
    assert!(started.elapsed() >= Duration::from_secs(ledger_ingest::BODY_READ_SECONDS_MAX - 1));

    let mut huge = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut head = b"POST /v1/webhooks/stripe HTTP/1.1\r\nHost: ledger\r\n".to_vec();
    for n in 0..50 {
        head.extend_from_slice(format!("X-Padding-{n}: {}\r\n", "a".repeat(4_000)).as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
    // The server may close before reading all of it.
    let _ = huge.write_all(&head).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), huge.read_to_end(&mut response)).await;
    assert_eq!(status_of(&response), "431");
    assert_eq!(inbox_count(&ledger).await, 0);
}
