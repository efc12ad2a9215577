//! What the dashboard needs from ingest: `GET /v1/token` tells a page whether its token may
//! send commands, and CORS lets the configured dashboard origin (only it) call ingest from the
//! browser. A read-only token is refused by ingest whatever the page shows.

use actix_web::http::header::{AUTHORIZATION, HeaderName, ORIGIN};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use ledger_domain::proto::{self, RejectionKind};
use ledger_ingest::AllowedOrigins;
use ledger_testkit::commands::{command, register};
use ledger_testkit::ledger::TestLedger;

use crate::{TOKEN_ADMIN, TOKEN_COMMANDS, answer, call, ingest_app, post_json, with_token};

/// A token the query service knows (read scopes) and ingest does not.
const TOKEN_READ_ONLY: &str = "dashboard-read-only-token-0123456789";
const DASHBOARD: &str = "http://dashboard.test:8090";
const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");

#[actix_web::test]
async fn get_token_answers_the_tokens_scopes_and_a_read_only_token_is_refused() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(ledger.client());
    for (token, scopes) in [
        (
            TOKEN_ADMIN,
            serde_json::json!(["commands:write", "integrations:admin"]),
        ),
        (TOKEN_COMMANDS, serde_json::json!(["commands:write"])),
    ] {
        let request = with_token(TestRequest::get().uri("/v1/token"), Some(token));
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body, serde_json::json!({ "scopes": scopes }));
    }
    for token in [Some(TOKEN_READ_ONLY), None] {
        let request = with_token(TestRequest::get().uri("/v1/token"), token);
        let refused = answer(test::call_service(&app, request.to_request()).await).await;
        assert_eq!(
            refused.refusal(),
            (
                StatusCode::UNAUTHORIZED,
                RejectionKind::Unauthenticated,
                "unauthorized"
            )
        );
    }

    // What a dashboard with a read-only token would send, were it to offer the action.
    let registered = call!(
        app,
        post_json(
            "/v1/customers",
            &register("signup:dashboard", "dash@example.com")
        )
    );
    let customer_id = registered.accepted().customer_id.clone();
    let before = ledger.last_position().await;
    let cancel = command(
        "dashboard:cancel",
        &customer_id,
        proto::command::Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id: "sub_1".to_owned(),
            at_period_end: false,
            reason: "requested by an operator from the dashboard".to_owned(),
        }),
    );
    let refused = call!(
        app,
        post_json("/v1/commands/request_cancellation", &cancel),
        Some(TOKEN_READ_ONLY)
    );
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ledger.last_position().await, before);
    writer.stop().await.expect("the writer stops cleanly");
}

#[actix_web::test]
async fn only_the_configured_dashboard_origin_may_call_from_a_browser() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let app = ingest_app!(
        ledger.client(),
        None,
        AllowedOrigins::parse(DASHBOARD).unwrap()
    );
    let preflight = |origin: &str, path: &str, method: &str| {
        TestRequest::default()
            .method(Method::OPTIONS)
            .uri(path)
            .insert_header((ORIGIN, origin))
            .insert_header(("Access-Control-Request-Method", method))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ))
            .to_request()
    };
    for (path, method) in [
        ("/v1/commands/request_cancellation", "POST"),
        ("/v1/customers", "POST"),
        ("/v1/token", "GET"),
    ] {
        let response = test::call_service(&app, preflight(DASHBOARD, path, method)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers.get(ALLOW_ORIGIN).unwrap(), DASHBOARD, "{path}");
        let methods = headers
            .get("access-control-allow-methods")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(methods.contains(method), "{methods}");
        let allowed_headers = headers
            .get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
            "{allowed_headers}"
        );

        let response = test::call_service(&app, preflight("http://evil.test", path, method)).await;
        assert!(response.status().is_client_error(), "{path}");
        assert!(response.headers().get(ALLOW_ORIGIN).is_none(), "{path}");
    }

    // The dashboard's own request gets its answer and the header that lets it read it.
    let request = post_json(
        "/v1/customers",
        &register("signup:cors", "cors@example.com"),
    )
    .insert_header((ORIGIN, DASHBOARD));
    let response =
        test::call_service(&app, with_token(request, Some(TOKEN_COMMANDS)).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers().get(ALLOW_ORIGIN).unwrap(), DASHBOARD);

    // Without a configured origin, no page of another origin is allowed to read answers.
    let plain = ingest_app!(ledger.client());
    let request = TestRequest::get()
        .uri("/v1/token")
        .insert_header((AUTHORIZATION, format!("Bearer {TOKEN_COMMANDS}")))
        .insert_header((ORIGIN, DASHBOARD));
    let response = test::call_service(&plain, request.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(ALLOW_ORIGIN).is_none());
    let response = test::call_service(
        &plain,
        preflight(DASHBOARD, "/v1/commands/request_cancellation", "POST"),
    )
    .await;
    assert!(response.headers().get(ALLOW_ORIGIN).is_none());
    writer.stop().await.expect("the writer stops cleanly");
}
