//! Requests that append nothing: the writer's rejections keep their kind and code and get the
//! status of their kind; requests ingest refuses itself never reach the writer. Every answer is
//! a `CommandReply` with a `rejected` result.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use ledger_bus::Encoding;
use ledger_domain::proto::{self, RejectionKind};
use ledger_testkit::commands::{
    metadata, money, record_payment, register, start_subscription, with_expected_version,
};
use ledger_testkit::ledger::TestLedger;

use crate::{call, ingest_app, post, post_json, post_protobuf};

/// A customer id nobody registered.
const UNREGISTERED_CUSTOMER_ID: &str = "0199a0f0-0000-7000-8000-000000000001";

#[actix_web::test]
async fn domain_rejections_keep_their_kind_and_code() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());

    let unregistered = call!(
        app,
        post_json(
            "/v1/commands/start_subscription",
            &start_subscription("sub:nobody", UNREGISTERED_CUSTOMER_ID, "sub_1", "USD")
        )
    );
    assert_eq!(
        unregistered.refusal(),
        (
            StatusCode::NOT_FOUND,
            RejectionKind::NotFound,
            "customer_not_registered"
        )
    );
    assert_eq!(ledger.last_position().await, 0);

    let registered = call!(
        app,
        post_json("/v1/customers", &register("signup:ada", "ada@example.com"))
    );
    let customer_id = registered.accepted().customer_id.clone();

    let lower_case_currency = call!(
        app,
        post_protobuf(
            "/v1/commands/start_subscription",
            &start_subscription("sub:ada:1", &customer_id, "sub_1", "usd")
        )
    );
    assert_eq!(
        lower_case_currency.refusal(),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::Invalid,
            "invalid_currency"
        )
    );
    assert_eq!(lower_case_currency.encoding, Encoding::Protobuf);

    let paid = call!(
        app,
        post_json(
            "/v1/commands/record_payment_succeeded",
            &proto::Command {
                metadata: Some(metadata("payment:py_1", &customer_id)),
                kind: Some(proto::command::Kind::RecordPaymentSucceeded(
                    proto::PaymentSucceeded {
                        payment_id: "py_1".to_owned(),
                        invoice_id: String::new(),
                        subscription_id: String::new(),
                        amount: Some(money(1_000, "USD")),
                    }
                )),
            }
        )
    );
    assert_eq!(paid.status, StatusCode::CREATED);
    let refund_too_large = call!(
        app,
        post_json(
            "/v1/commands/refund_payment",
            &proto::Command {
                metadata: Some(metadata("refund:re_1", &customer_id)),
                kind: Some(proto::command::Kind::RefundPayment(
                    proto::PaymentRefunded {
                        refund_id: "re_1".to_owned(),
                        payment_id: "py_1".to_owned(),
                        amount: Some(money(2_000, "USD")),
                        reason: "requested_by_customer".to_owned(),
                        refund_request_id: String::new(),
                    }
                )),
            }
        )
    );
    assert_eq!(
        refund_too_large.refusal(),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::Invalid,
            "refund_exceeds_payment"
        )
    );
    assert_eq!(
        ledger.last_position().await,
        2,
        "registration and payment only"
    );

    // Bad refund requests: each a typed 422, nothing recorded.
    let request_refund = |key: &str, request_id: &str, payment_id: &str, amount_minor: i64| {
        post_json(
            "/v1/commands/request_refund",
            &proto::Command {
                metadata: Some(metadata(key, &customer_id)),
                kind: Some(proto::command::Kind::RequestRefund(
                    proto::RefundRequested {
                        refund_request_id: request_id.to_owned(),
                        payment_id: payment_id.to_owned(),
                        amount: Some(money(amount_minor, "USD")),
                        reason: "requested_by_customer".to_owned(),
                    },
                )),
            },
        )
    };
    for (request, code) in [
        (
            request_refund("rr:1", "rr_1", "py_1", 1_001),
            "refund_exceeds_refundable",
        ),
        (request_refund("rr:2", "rr_1", "py_1", 0), "invalid_amount"),
        (
            request_refund("rr:3", "rr_1", "py_9", 100),
            "unknown_payment",
        ),
        (request_refund("rr:4", "", "py_1", 100), "missing_field"),
    ] {
        let refused = call!(app, request);
        assert_eq!(
            refused.refusal(),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                RejectionKind::Invalid,
                code
            )
        );
    }
    assert_eq!(ledger.last_position().await, 2, "no refund request");
    let requested = call!(app, request_refund("rr:5", "rr_1", "py_1", 1_000));
    assert_eq!(requested.status, StatusCode::CREATED);
    let again = call!(app, request_refund("rr:6", "rr_2", "py_1", 1));
    assert_eq!(
        again.refusal(),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::Invalid,
            "refund_exceeds_refundable"
        )
    );
    assert_eq!(ledger.last_position().await, 3, "one refund request");

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn a_stale_expected_version_is_a_conflict() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let registered = call!(
        app,
        post_json("/v1/customers", &register("signup:ada", "ada@example.com"))
    );
    let customer_id = registered.accepted().customer_id.clone();
    let first = with_expected_version(
        start_subscription("sub:ada:1", &customer_id, "sub_1", "USD"),
        1,
    );
    assert_eq!(
        call!(app, post_json("/v1/commands/start_subscription", &first)).status,
        StatusCode::CREATED
    );

    let stale = with_expected_version(
        start_subscription("sub:ada:2", &customer_id, "sub_2", "USD"),
        1,
    );
    let answer = call!(app, post_json("/v1/commands/start_subscription", &stale));
    assert_eq!(
        answer.refusal(),
        (
            StatusCode::CONFLICT,
            RejectionKind::Conflict,
            "version_conflict"
        )
    );
    assert_eq!(ledger.last_position().await, 2);

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn undecodable_bodies_are_malformed_and_append_nothing() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let malformed = (
        StatusCode::BAD_REQUEST,
        RejectionKind::Malformed,
        "malformed",
    );

    let truncated_json = call!(
        app,
        post(
            "/v1/customers",
            ledger_bus::CONTENT_TYPE_JSON,
            &br#"{"metadata": {"idempotency_key": "signup:ada""#[..]
        )
    );
    assert_eq!(truncated_json.refusal(), malformed);
    assert_eq!(truncated_json.encoding, Encoding::Json);

    let wrong_type = call!(
        app,
        post(
            "/v1/commands/register_customer",
            ledger_bus::CONTENT_TYPE_JSON,
            &br#"{"register_customer": {"email": 42}}"#[..]
        )
    );
    assert_eq!(wrong_type.refusal(), malformed);

    let garbage_protobuf = call!(
        app,
        post(
            "/v1/customers",
            ledger_bus::CONTENT_TYPE_PROTOBUF,
            &[0xff_u8, 0xff, 0xff, 0xff][..]
        )
    );
    assert_eq!(garbage_protobuf.refusal(), malformed);
    assert_eq!(garbage_protobuf.encoding, Encoding::Protobuf);

    let no_kind = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, &b"{}"[..])
    );
    assert_eq!(
        no_kind.refusal(),
        (
            StatusCode::BAD_REQUEST,
            RejectionKind::Malformed,
            "missing_command"
        )
    );

    let no_body = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_PROTOBUF, &b""[..])
    );
    assert_eq!(no_body.refusal().2, "missing_command");

    assert_eq!(ledger.last_position().await, 0);
    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn the_path_must_name_the_body_command() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let mismatch = (
        StatusCode::BAD_REQUEST,
        RejectionKind::Malformed,
        "command_mismatch",
    );
    let registration = register("signup:ada", "ada@example.com");
    let subscription = start_subscription("sub:ada:1", UNREGISTERED_CUSTOMER_ID, "sub_1", "USD");

    let other_command = call!(
        app,
        post_json("/v1/commands/start_subscription", &registration)
    );
    assert_eq!(other_command.refusal(), mismatch);
    let unknown_command = call!(
        app,
        post_json("/v1/commands/delete_customer", &registration)
    );
    assert_eq!(unknown_command.refusal(), mismatch);
    let not_a_registration = call!(app, post_json("/v1/customers", &subscription));
    assert_eq!(not_a_registration.refusal(), mismatch);

    assert_eq!(ledger.last_position().await, 0);
    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn other_content_types_are_unsupported() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let json =
        ledger_bus::encode_command(Encoding::Json, &register("signup:ada", "ada@example.com"));

    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let answer = call!(app, post("/v1/customers", content_type, json.clone()));
        assert_eq!(
            answer.refusal(),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                RejectionKind::Malformed,
                "unsupported_content_type"
            ),
            "{content_type}"
        );
        assert_eq!(answer.encoding, Encoding::Json, "answered in JSON");
    }
    // Parameters are allowed.
    let with_charset = call!(
        app,
        post("/v1/customers", "application/json; charset=utf-8", json)
    );
    assert_eq!(with_charset.status, StatusCode::CREATED);

    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn bodies_over_64_kib_are_too_large() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let body = vec![b' '; 65 * 1024];
    let too_large = (
        StatusCode::PAYLOAD_TOO_LARGE,
        RejectionKind::TooLarge,
        "too_large",
    );

    let json = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, body.clone())
    );
    assert_eq!(json.refusal(), too_large);
    assert_eq!(json.encoding, Encoding::Json);

    let protobuf = call!(
        app,
        post(
            "/v1/commands/register_customer",
            ledger_bus::CONTENT_TYPE_PROTOBUF,
            body
        )
    );
    assert_eq!(protobuf.refusal(), too_large);
    assert_eq!(protobuf.encoding, Encoding::Protobuf);

    assert_eq!(ledger.last_position().await, 0);
    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn no_writer_is_service_unavailable_with_retry_after() {
    let ledger = TestLedger::new().await;
    let app = ingest_app!(ledger.client());

    let answer = call!(
        app,
        post_json("/v1/customers", &register("signup:ada", "ada@example.com"))
    );
    assert_eq!(
        answer.refusal(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Unavailable,
            "writer_unavailable"
        )
    );
    assert_eq!(
        answer
            .headers
            .get(RETRY_AFTER)
            .map(|value| value.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(
        answer
            .headers
            .get(CONTENT_TYPE)
            .map(|value| value.as_bytes()),
        Some(ledger_bus::CONTENT_TYPE_JSON.as_bytes())
    );
    assert_eq!(ledger.last_position().await, 0);
}

/// Issue 11, item 2 over HTTP: customer B's payment with the key of customer A's payment is a
/// 422 `idempotency_key_reused` that does not name A, and records nothing; the same payment
/// again (here in protobuf after JSON) is a 200 duplicate with the original events.
#[actix_web::test]
async fn a_key_reused_for_another_customer_is_a_422_that_names_nobody() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let mut customers = Vec::new();
    for name in ["a", "b"] {
        let registered = call!(
            app,
            post_json(
                "/v1/customers",
                &register(&format!("signup:{name}"), &format!("{name}@example.com"))
            )
        );
        let customer_id = registered.accepted().customer_id.clone();
        let started = call!(
            app,
            post_json(
                "/v1/commands/start_subscription",
                &start_subscription(&format!("sub:{name}"), &customer_id, "sub_1", "USD")
            )
        );
        assert_eq!(started.status, StatusCode::CREATED);
        customers.push(customer_id);
    }
    let path = "/v1/commands/record_payment_succeeded";
    let payment_a = record_payment("stripe:evt_pay", &customers[0], "py_a", 4_900);
    let paid = call!(app, post_json(path, &payment_a));
    assert_eq!(paid.status, StatusCode::CREATED);

    let reused = call!(
        app,
        post_json(
            path,
            &record_payment("stripe:evt_pay", &customers[1], "py_b", 4_900)
        )
    );
    assert_eq!(
        reused.refusal(),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::Invalid,
            "idempotency_key_reused"
        )
    );
    let answer = format!("{:?}", reused.reply);
    assert!(!answer.contains(customers[0].as_str()), "{answer}");
    assert_eq!(
        ledger.last_position().await,
        5,
        "B's payment is not recorded"
    );

    let repeat = call!(app, post_protobuf(path, &payment_a));
    assert_eq!(repeat.status, StatusCode::OK);
    assert!(repeat.accepted().duplicate);
    assert_eq!(repeat.accepted().events, paid.accepted().events);
    assert_eq!(ledger.last_position().await, 5);
    writer.stop().await.expect("clean stop");
}
