//! Commands the writer accepts: 201 for new events, 200 for a repeated idempotency key.

use actix_web::body;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::test::{self, TestRequest};
use ledger_bus::Encoding;
use ledger_domain::proto;
use ledger_testkit::commands::{register, start_subscription, with_expected_version};
use ledger_testkit::ledger::TestLedger;
use uuid::Uuid;

use crate::{call, ingest_app, post, post_json, post_protobuf};

#[actix_web::test]
async fn registers_a_customer_from_json_and_answers_a_repeat_as_a_duplicate() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let command = register("signup:ada", "ada@example.com");

    let first = call!(app, post_json("/v1/customers", &command));
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(
        first.encoding,
        Encoding::Json,
        "answered in the request's encoding"
    );
    let accepted = first.accepted().clone();
    assert!(!accepted.duplicate);
    assert_eq!(accepted.events.len(), 1);
    let event = &accepted.events[0];
    assert_eq!(
        (
            event.global_position,
            event.stream_version,
            event.event_type.as_str()
        ),
        (1, 1, "customer_registered")
    );
    let customer_id: Uuid = accepted
        .customer_id
        .parse()
        .expect("the ledger assigned a UUID");
    let stored = ledger
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event.event_id.to_string(), event.event_id);
    assert_eq!(stored[0].idempotency_key, "signup:ada");

    let again = call!(app, post_json("/v1/customers", &command));
    assert_eq!(again.status, StatusCode::OK);
    let repeated = again.accepted();
    assert!(repeated.duplicate);
    assert_eq!(repeated.customer_id, accepted.customer_id);
    assert_eq!(
        repeated.events, accepted.events,
        "the first events, same ids"
    );
    assert_eq!(
        ledger.last_position().await,
        1,
        "nothing appended by the repeat"
    );

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn sends_any_command_by_name_in_protobuf() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());

    let registered = call!(
        app,
        post_protobuf(
            "/v1/commands/register_customer",
            &register("signup:grace", "grace@example.com")
        )
    );
    assert_eq!(registered.status, StatusCode::CREATED);
    assert_eq!(registered.encoding, Encoding::Protobuf);
    let customer_id = registered.accepted().customer_id.clone();

    let started = call!(
        app,
        post_protobuf(
            "/v1/commands/start_subscription",
            &start_subscription("sub:grace:1", &customer_id, "sub_1", "USD")
        )
    );
    assert_eq!(started.status, StatusCode::CREATED);
    assert_eq!(
        started
            .headers
            .get(CONTENT_TYPE)
            .map(|value| value.as_bytes()),
        Some(ledger_bus::CONTENT_TYPE_PROTOBUF.as_bytes())
    );
    let event = &started.accepted().events[0];
    assert_eq!(
        (
            event.global_position,
            event.stream_version,
            event.event_type.as_str()
        ),
        (2, 2, "subscription_started")
    );
    let stored = ledger
        .store
        .read_stream(customer_id.parse().expect("uuid"), 1)
        .await
        .expect("read");
    let types: Vec<&str> = stored.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["customer_registered", "subscription_started"]);

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn a_matching_expected_version_is_accepted() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let registered = call!(
        app,
        post_json("/v1/customers", &register("signup:ada", "ada@example.com"))
    );
    let customer_id = registered.accepted().customer_id.clone();

    let command = with_expected_version(
        start_subscription("sub:ada:1", &customer_id, "sub_1", "USD"),
        1,
    );
    let started = call!(app, post_json("/v1/commands/start_subscription", &command));
    assert_eq!(started.status, StatusCode::CREATED);
    assert_eq!(started.accepted().events[0].stream_version, 2);

    writer.stop().await.expect("the writer stops cleanly");
}

/// The limit is on the body as sent: a JSON body of exactly 64 KiB (padded with whitespace)
/// passes, one byte more does not.
#[actix_web::test]
async fn a_body_of_exactly_the_limit_is_accepted() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let json = ledger_bus::encode_command(
        Encoding::Json,
        &register("signup:padded", "padded@example.com"),
    );
    let mut body = json.to_vec();
    body.resize(ledger_bus::COMMAND_BYTES_MAX, b' ');

    let answer = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, body.clone())
    );
    assert_eq!(answer.status, StatusCode::CREATED);

    body.push(b' ');
    let answer = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, body)
    );
    assert_eq!(
        answer.refusal(),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            proto::RejectionKind::TooLarge,
            "too_large"
        )
    );
    assert_eq!(ledger.last_position().await, 1);

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn healthz_answers_ok() {
    let app = ingest_app!(TestLedger::new().await.client());
    let response = test::call_service(&app, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body::to_bytes(response.into_body()).await.expect("body");
    assert_eq!(&body[..], b"ok");
}

/// Integrations are configured through the same endpoint; a customer command aimed at an
/// integration's stream is refused.
#[actix_web::test]
async fn registers_an_integration_and_refuses_customer_commands_on_its_stream() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let command = ledger_testkit::commands::register_webhook(
        "integration:ops",
        "https://ops.example.com/ledger",
        "whsec_0123456789abcdef",
    );
    let registered = call!(
        app,
        post_json("/v1/commands/register_integration", &command)
    );
    assert_eq!(registered.status, StatusCode::CREATED);
    let accepted = registered.accepted();
    assert_eq!(accepted.events[0].event_type, "integration_registered");
    let integration_id = accepted.customer_id.clone();

    let wrong = start_subscription("sub-on-integration", &integration_id, "sub_1", "USD");
    let refused = call!(app, post_json("/v1/commands/start_subscription", &wrong));
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.rejected().code, "wrong_stream");
    writer.stop().await.expect("writer");
}

/// Issue 16: without a header, the body's `metadata.correlation_id` is kept and answered in
/// `X-Correlation-Id`; a header's UUID wins over the body's; the events carry the one answered.
#[actix_web::test]
async fn the_correlation_id_is_the_headers_else_the_bodys() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let body_id = Uuid::now_v7();
    let header_id = Uuid::now_v7();
    let with_body_id = |key: &str, email: &str| {
        let mut command = register(key, email);
        if let Some(metadata) = command.metadata.as_mut() {
            metadata.correlation_id = body_id.to_string();
        }
        command
    };
    let answered_id = |answer: &crate::Answer| {
        answer
            .headers
            .get(ledger_ingest::CORRELATION_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };

    let kept = call!(
        app,
        post_json("/v1/customers", &with_body_id("corr:body", "b@example.com"))
    );
    assert_eq!(kept.status, StatusCode::CREATED);
    assert_eq!(answered_id(&kept), Some(body_id.to_string()));
    let replaced = call!(
        app,
        post_json(
            "/v1/customers",
            &with_body_id("corr:header", "h@example.com")
        )
        .insert_header(("X-Correlation-Id", header_id.to_string()))
    );
    assert_eq!(replaced.status, StatusCode::CREATED);
    assert_eq!(answered_id(&replaced), Some(header_id.to_string()));

    let stored: Vec<Option<Uuid>> = ledger
        .table_events()
        .await
        .iter()
        .map(|event| event.event.correlation_id)
        .collect();
    assert_eq!(stored, [Some(body_id), Some(header_id)]);
    writer.stop().await.expect("the writer stops cleanly");
}
