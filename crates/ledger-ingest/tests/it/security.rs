//! Requests as an attacker would send them: without a token, with a wrong or weak one, with a
//! token for another scope, claiming to be a payment provider, or faster than the limit. None
//! of them reaches the writer; every answer is a `CommandReply` with a `rejected` result.

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use ledger_access::RateLimit;
use ledger_domain::proto::{self, RejectionKind};
use ledger_testkit::commands::{register, register_webhook};
use ledger_testkit::ledger::TestLedger;

use crate::{TOKEN_ADMIN, TOKEN_COMMANDS, call, ingest_app, post, post_json};

/// A `register_customer` claiming `issuer`, with an email of its own.
fn register_as(idempotency_key: &str, issuer: i32) -> proto::Command {
    let email = format!("{}@example.com", idempotency_key.replace(':', "-"));
    let mut command = register(idempotency_key, &email);
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.issuer = issuer;
    }
    command
}

#[actix_web::test]
async fn commands_without_a_known_bearer_token_are_401_and_append_nothing() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let customer = register("signup:mallory", "mallory@example.com");
    let integration = register_webhook("integration:mallory", "https://evil.example/", "whsec_x");
    let attempts = [
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some(format!("Basic {TOKEN_ADMIN}")),
        Some(TOKEN_ADMIN.to_owned()),
        Some("Bearer not-a-configured-token-at-all".to_owned()),
        Some(format!("Bearer {TOKEN_ADMIN}x")),
        Some(format!("Bearer {}", &TOKEN_ADMIN[..TOKEN_ADMIN.len() - 1])),
        Some(format!("Bearer {TOKEN_ADMIN}:commands:write")),
    ];
    for authorization in &attempts {
        for (path, command) in [
            ("/v1/customers", &customer),
            ("/v1/commands/register_customer", &customer),
            ("/v1/commands/register_integration", &integration),
        ] {
            let mut request = post_json(path, command);
            if let Some(value) = authorization {
                request = request.insert_header((AUTHORIZATION, value.as_str()));
            }
            let refused = call!(app, request, None);
            assert_eq!(
                refused.refusal(),
                (
                    StatusCode::UNAUTHORIZED,
                    RejectionKind::Unauthenticated,
                    "unauthorized"
                ),
                "{authorization:?} {path}"
            );
            assert_eq!(
                refused
                    .headers
                    .get(WWW_AUTHENTICATE)
                    .map(|value| value.as_bytes()),
                Some(&b"Bearer"[..])
            );
        }
    }
    // Authentication comes first: a bad body or content type without a token is still 401,
    // answered in JSON when the content type is unknown.
    let garbage = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, "{"),
        None
    );
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let text = call!(app, post("/v1/customers", "text/plain", "hello"), None);
    assert_eq!(text.status, StatusCode::UNAUTHORIZED);
    assert_eq!(text.encoding, ledger_bus::Encoding::Json);
    // A header that is not UTF-8 is no token either.
    let binary = call!(
        app,
        post_json("/v1/customers", &customer).insert_header((
            AUTHORIZATION,
            actix_web::http::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()
        )),
        None
    );
    assert_eq!(binary.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ledger.last_position().await, 0);
    writer.stop().await.expect("writer");
}

#[actix_web::test]
async fn integration_commands_need_the_integrations_admin_scope() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    let integration = register_webhook(
        "integration:ops",
        "https://ops.example.com/ledger",
        "whsec_0123456789abcdef",
    );
    let refused = call!(
        app,
        post_json("/v1/commands/register_integration", &integration),
        Some(TOKEN_COMMANDS)
    );
    assert_eq!(
        refused.refusal(),
        (StatusCode::FORBIDDEN, RejectionKind::Forbidden, "forbidden")
    );
    assert_eq!(
        refused.rejected().message,
        "the token lacks scope `integrations:admin`"
    );
    assert_eq!(ledger.last_position().await, 0);

    let customer = call!(
        app,
        post_json("/v1/customers", &register("signup:ada", "ada@example.com")),
        Some(TOKEN_COMMANDS)
    );
    assert_eq!(customer.status, StatusCode::CREATED);
    let integration = call!(
        app,
        post_json("/v1/commands/register_integration", &integration),
        Some(TOKEN_ADMIN)
    );
    assert_eq!(integration.status, StatusCode::CREATED);
    assert_eq!(ledger.last_position().await, 2);
    writer.stop().await.expect("writer");
}

#[actix_web::test]
async fn a_token_writes_the_internal_issuer_and_cannot_claim_a_payment_provider() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    // Protobuf carries any number; proto3 JSON only the enum's values (others are malformed).
    for claimed in [proto::Issuer::PaymentProvider as i32, 3, -1] {
        let command = register_as(&format!("signup:claim:{claimed}"), claimed);
        for path in ["/v1/customers", "/v1/commands/register_customer"] {
            let refused = call!(app, crate::post_protobuf(path, &command));
            assert_eq!(
                refused.refusal(),
                (
                    StatusCode::FORBIDDEN,
                    RejectionKind::Forbidden,
                    "issuer_not_allowed"
                ),
                "issuer {claimed}"
            );
        }
    }
    // The same claim in proto3 JSON, by name and by number.
    let json = serde_json::to_string(&register_as(
        "signup:claim:json",
        proto::Issuer::PaymentProvider as i32,
    ))
    .unwrap();
    assert!(json.contains("ISSUER_PAYMENT_PROVIDER"), "{json}");
    let refused = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, json.clone())
    );
    assert_eq!(refused.rejected().code, "issuer_not_allowed");
    let by_number = json.replace("\"ISSUER_PAYMENT_PROVIDER\"", "2");
    let refused = call!(
        app,
        post("/v1/customers", ledger_bus::CONTENT_TYPE_JSON, by_number)
    );
    assert_eq!(refused.rejected().code, "issuer_not_allowed");
    assert_eq!(ledger.last_position().await, 0);

    // Unset or internal: recorded as internal, with the provider and account the token's
    // service gives (a payment its own Stripe integration received).
    let unset = call!(
        app,
        post_json("/v1/customers", &register_as("signup:unset", 0))
    );
    assert_eq!(unset.status, StatusCode::CREATED);
    let internal = call!(
        app,
        post_json(
            "/v1/customers",
            &register_as("signup:internal", proto::Issuer::Internal as i32)
        )
    );
    assert_eq!(internal.status, StatusCode::CREATED);
    let events = ledger.table_events().await;
    let recorded: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|recorded| {
            (
                recorded.event.issuer.as_str(),
                recorded.event.payment_provider_type.as_str(),
                recorded.event.account_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        vec![
            ("internal", "stripe", "cus_test"),
            ("internal", "stripe", "cus_test")
        ]
    );
    writer.stop().await.expect("writer");
}

#[actix_web::test]
async fn a_token_over_its_rate_limit_is_429_and_its_command_is_not_sent() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let limit = RateLimit {
        requests_per_second: NonZeroU32::new(1).unwrap(),
        burst: NonZeroU32::new(2).unwrap(),
    };
    let app = ingest_app!(ledger.client(), Some(limit));
    for number in 1..=2 {
        let accepted = call!(
            app,
            post_json(
                "/v1/customers",
                &register(
                    &format!("signup:{number}"),
                    &format!("user{number}@example.com")
                )
            )
        );
        assert_eq!(accepted.status, StatusCode::CREATED);
    }
    let third = register("signup:3", "user3@example.com");
    let limited = call!(app, post_json("/v1/customers", &third));
    assert_eq!(
        limited.refusal(),
        (
            StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::RateLimited,
            "rate_limited"
        )
    );
    assert_eq!(
        limited
            .headers
            .get(RETRY_AFTER)
            .map(|value| value.as_bytes()),
        Some(&b"1"[..])
    );
    // Checked before sending: the writer never saw it.
    assert_eq!(ledger.last_position().await, 2);
    // Requests without a known token do not spend the token's budget, nor get 429.
    let anonymous = call!(app, post_json("/v1/customers", &third), None);
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Another token has its own budget.
    let other = call!(
        app,
        post_json(
            "/v1/customers",
            &register("signup:other", "bob@example.com")
        ),
        Some(TOKEN_COMMANDS)
    );
    assert_eq!(other.status, StatusCode::CREATED);
    // After the wait, the refused command goes through with its idempotency key.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let retried = call!(app, post_json("/v1/customers", &third));
    assert_eq!(retried.status, StatusCode::CREATED);
    assert!(!retried.accepted().duplicate);
    assert_eq!(ledger.last_position().await, 4);
    writer.stop().await.expect("writer");
}
