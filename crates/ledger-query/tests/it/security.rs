//! Tokens and scopes, rate limits, parameters an attacker would try, database errors that
//! must not leak, the database role, and the operational endpoints.

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::http::StatusCode;
use ledger_query::{QueryService, RateLimit};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::{Query, Setup, TOKEN_ALL, TOKEN_CUSTOMERS, TOKEN_METRICS, app, get};

#[actix_web::test]
async fn no_token_is_401_a_token_without_the_scope_is_403() {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let app = app!(query);
    for path in [
        "/v1/customers",
        "/v1/customers/0190a0a0-0000-7000-8000-000000000000",
        "/v1/metrics/summary?currency=USD",
        "/v1/metrics/mrr?currency=USD",
    ] {
        let none = get!(app, path, None);
        assert_eq!(
            none.error(),
            (StatusCode::UNAUTHORIZED, "unauthorized".into(), None),
            "{path}"
        );
        assert_eq!(
            none.headers
                .get("WWW-Authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        let unknown = get!(app, path, Some("not-a-configured-token-at-all"));
        assert_eq!(unknown.error().1, "unauthorized", "{path}");
    }
    // Auth comes before parameters: a bad parameter without a token is still 401.
    let bad_unauthenticated = get!(app, "/v1/customers?limit=0", None);
    assert_eq!(bad_unauthenticated.status, StatusCode::UNAUTHORIZED);

    let metrics_only = get!(app, "/v1/customers", Some(TOKEN_METRICS));
    assert_eq!(
        metrics_only.error(),
        (StatusCode::FORBIDDEN, "forbidden".into(), None)
    );
    assert_eq!(
        metrics_only.json["error"]["details"]["scope"],
        "customers:read"
    );
    let customers_only = get!(
        app,
        "/v1/metrics/summary?currency=USD",
        Some(TOKEN_CUSTOMERS)
    );
    assert_eq!(customers_only.error().0, StatusCode::FORBIDDEN);
    assert_eq!(
        customers_only.json["error"]["details"]["scope"],
        "metrics:read"
    );

    let allowed = get!(app, "/v1/metrics/summary?currency=USD", Some(TOKEN_METRICS));
    assert_eq!(allowed.status, StatusCode::OK);
    let allowed = get!(app, "/v1/customers", Some(TOKEN_CUSTOMERS));
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.json);
}

#[actix_web::test]
async fn the_query_role_reads_read_models_but_not_the_event_table() {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let (client, connection) = tokio_postgres::connect(&query.query_url, NoTls)
        .await
        .expect("the query role logs in");
    tokio::spawn(connection);
    for table in ["customer_payment_events", "public.customer_payment_events"] {
        let error = client
            .query(&format!("SELECT * FROM {table} LIMIT 1"), &[])
            .await
            .expect_err("the event table is not readable");
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{error:?}"
        );
    }
    let insert = client
        .execute(
            "INSERT INTO customers.customers (customer_id) VALUES (gen_random_uuid())",
            &[],
        )
        .await
        .expect_err("read models are read-only to the query role");
    assert_eq!(insert.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let customers: i64 = client
        .query_one("SELECT count(*) FROM customers.customers", &[])
        .await
        .expect("customers readable")
        .get(0);
    assert_eq!(customers, 3);
    let days: i64 = client
        .query_one("SELECT count(*) FROM revenue.daily_mrr", &[])
        .await
        .expect("revenue readable")
        .get(0);
    assert_eq!(days, 74);
}

#[actix_web::test]
async fn operational_endpoints_answer_without_a_token() {
    // The metrics go to the process's recorder (`--metrics-bind`), here this thread's.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let app = app!(query);
    let health = get!(app, "/healthz", None);
    assert_eq!(health.status, StatusCode::OK);

    // The revenue fixture claims position 42, beyond the 8 events: lag 0 for both.
    let ready = get!(app, "/readyz", None);
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    assert_eq!(ready.json["stream_last_position"], 8);
    assert_eq!(ready.json["projections"][0]["position"], 8);
    assert_eq!(ready.json["projections"][0]["lag_events"], 0);

    get!(app, "/v1/metrics/summary?currency=USD");
    get!(app, "/v1/metrics/summary?currency=USD");
    // Not on the API port: one metrics endpoint, the process's own.
    assert_eq!(get!(app, "/metrics", None).status, StatusCode::NOT_FOUND);
    let text = scrape.render();
    for line in [
        "ledger_query_requests_total{route=\"/v1/metrics/summary\",status=\"200\"} 2",
        "ledger_query_requests_total{route=\"/healthz\",status=\"200\"} 1",
        "ledger_query_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "ledger_query_requests_total{route=\"/v1/customers\",status=\"200\"} 0",
        "ledger_query_cache_hits_total{projection=\"revenue\"} 1",
        "ledger_query_cache_misses_total{projection=\"revenue\"} 1",
        "ledger_query_cache_hits_total{projection=\"customers\"} 0",
        "ledger_query_cache_entries{projection=\"revenue\"} 1",
        "ledger_query_projection_position{projection=\"customers\"} 8",
        "ledger_query_projection_position{projection=\"revenue\"} 42",
        "ledger_query_request_seconds_count{route=\"/v1/metrics/summary\"} 2",
    ] {
        assert!(
            text.lines().any(|candidate| candidate == line),
            "{line} in\n{text}"
        );
    }

    let openapi = get!(app, "/v1/openapi.json", None);
    assert_eq!(openapi.json["openapi"], "3.1.0");
    for path in [
        "/v1/customers",
        "/v1/customers/{id}",
        "/v1/customers/{id}/timeline",
        "/v1/metrics/summary",
        "/v1/metrics/mrr",
        "/v1/metrics/churn",
        "/v1/metrics/cohorts",
        "/readyz",
    ] {
        assert!(
            openapi.json["paths"][path]["get"].is_object(),
            "{path} documented"
        );
    }
    assert!(openapi.json["components"]["schemas"]["Summary"].is_object());

    let page = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get().uri("/").to_request(),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = actix_web::test::read_body(page).await;
    assert!(String::from_utf8_lossy(&body).contains("<title>"));

    let missing = get!(app, "/v2/nothing", None);
    assert_eq!(missing.error().1, "not_found");
    let post = crate::answer(
        actix_web::test::call_service(
            &app,
            actix_web::test::TestRequest::post()
                .uri("/v1/metrics/summary")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        post.error(),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed".into(),
            None
        )
    );
}

#[actix_web::test]
async fn readyz_fails_when_a_projection_lags_too_far() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let app = app!(query);
    let ready = get!(app, "/readyz", None);
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.json
    );
    assert_eq!(ready.json["projections"][1]["name"], "revenue");
    assert_eq!(
        ready.json["projections"][1]["position"],
        serde_json::Value::Null
    );
    assert_eq!(ready.json["projections"][0]["ready"], true);
}

#[actix_web::test]
async fn nul_control_and_broken_utf8_parameters_are_400_naming_them_before_any_sql() {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let app = app!(query);
    let overlong = format!("/v1/customers?q={}", "a".repeat(257));
    let cases = [
        ("/v1/customers?q=%00", "q"),
        ("/v1/customers?q=ada%00", "q"),
        ("/v1/customers?plan=%00", "plan"),
        ("/v1/customers?plan=pro-monthly%00x", "plan"),
        ("/v1/customers?q=a%0Ab", "q"),
        ("/v1/customers?q=%0D%0Aevil", "q"),
        ("/v1/customers?q=%09", "q"),
        ("/v1/customers?q=%1B%5B2J", "q"),
        ("/v1/customers?plan=%7F", "plan"),
        ("/v1/customers?q=%C2%85", "q"),
        ("/v1/customers?q=%FF", "q"),
        ("/v1/customers?plan=%C0%80", "plan"),
        ("/v1/customers?q=%ED%A0%80", "q"),
        ("/v1/customers?status=%00", "status"),
        ("/v1/customers?provider=%FF", "provider"),
        ("/v1/customers?cursor=%00", "cursor"),
        ("/v1/customers?limit=%00", "limit"),
        ("/v1/customers?min_position=%00", "min_position"),
        (
            "/v1/customers/0190a0a0-0000-7000-8000-000000000000/timeline?cursor=%00",
            "cursor",
        ),
        ("/v1/metrics/mrr?currency=US%00", "currency"),
        ("/v1/metrics/summary?currency=USD&at=2026-01-01%00", "at"),
        ("/v1/metrics/churn?currency=USD&from=%FF", "from"),
        (overlong.as_str(), "q"),
    ];
    for (path, parameter) in cases {
        let refused = get!(app, path);
        assert_eq!(
            refused.error(),
            (
                StatusCode::BAD_REQUEST,
                "bad_parameter".into(),
                Some(parameter.into())
            ),
            "{path}"
        );
        let body = refused.json.to_string();
        for leak in ["UTF8", "byte sequence", "0x00", "SQLSTATE", "db error"] {
            assert!(!body.contains(leak), "{path}: {body}");
        }
    }
    // The same search without the NUL is answered.
    let search = get!(app, "/v1/customers?q=ada");
    assert_eq!(search.status, StatusCode::OK, "{}", search.json);
}

#[actix_web::test]
async fn a_failing_query_that_is_no_outage_is_500_internal_without_sql_text() {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    // A read model of another shape than the service expects (a programming error): 42703.
    query
        .ledger
        .database()
        .client()
        .await
        .batch_execute("ALTER TABLE customers.customers RENAME COLUMN email TO email_address")
        .await
        .expect("rename");
    let app = app!(query);
    let failed = get!(app, "/v1/customers");
    assert_eq!(
        failed.error(),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal".into(), None)
    );
    assert_eq!(
        failed.json["error"]["message"],
        "internal error: report the request id to the operators"
    );
    let body = failed.json.to_string();
    for leak in ["email", "column", "42703", "db error"] {
        assert!(!body.contains(leak), "{body}");
    }
}

#[actix_web::test]
async fn an_unreachable_database_is_503_database_unavailable_without_its_error() {
    let query = Query::start(Setup::default()).await;
    let mut config = query.config.clone();
    // Nothing listens on port 1.
    config.database_url = "postgres://ledger_query_test@127.0.0.1:1/nowhere".to_owned();
    let service = QueryService::start(config, query.ledger.nats.clone())
        .await
        .expect("the service starts and reports the database on /readyz");
    let app =
        actix_web::test::init_service(actix_web::App::new().configure(service.app_config())).await;
    let failed = get!(app, "/v1/metrics/summary?currency=USD");
    assert_eq!(
        failed.error(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable".into(),
            None
        )
    );
    assert_eq!(
        failed.json["error"]["message"],
        "the read-model database is unavailable: retry later"
    );
    assert!(
        !failed.json.to_string().contains("refused"),
        "{}",
        failed.json
    );
}

#[actix_web::test]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after_and_other_tokens_do_not() {
    let query = Query::start(Setup {
        rate_limit: Some(RateLimit {
            requests_per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(2).unwrap(),
        }),
        ..Setup::default()
    })
    .await;
    let app = app!(query);
    let path = "/v1/metrics/summary?currency=USD";
    for _ in 0..2 {
        assert_eq!(get!(app, path, Some(TOKEN_METRICS)).status, StatusCode::OK);
    }
    let limited = get!(app, path, Some(TOKEN_METRICS));
    assert_eq!(
        limited.error(),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into(), None)
    );
    assert_eq!(
        limited
            .headers
            .get("Retry-After")
            .and_then(|value| value.to_str().ok()),
        Some("1")
    );
    assert_eq!(limited.json["error"]["details"]["retry_after_seconds"], 1);
    // Another token has its own budget; no token is 401, not 429.
    assert_eq!(get!(app, path, Some(TOKEN_ALL)).status, StatusCode::OK);
    assert_eq!(get!(app, path, None).status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(get!(app, path, Some(TOKEN_METRICS)).status, StatusCode::OK);
}

/// The dashboard learns ingest's address from the page, and its Content-Security-Policy lets
/// it connect there and nowhere else; without the setting the page has no address to send to.
#[actix_web::test]
async fn the_dashboard_page_names_the_configured_ingest_and_may_connect_only_there() {
    let query = Query::start(Setup::default()).await;
    let page = |service: &QueryService| {
        let config = service.app_config();
        async move {
            let app = actix_web::test::init_service(actix_web::App::new().configure(config)).await;
            let response = actix_web::test::call_service(
                &app,
                actix_web::test::TestRequest::get().uri("/").to_request(),
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK);
            let policy = response
                .headers()
                .get("Content-Security-Policy")
                .expect("a policy")
                .to_str()
                .expect("text")
                .to_owned();
            let body = actix_web::test::read_body(response).await;
            (policy, String::from_utf8(body.to_vec()).expect("UTF-8"))
        }
    };
    let (policy, html) = page(&query.service).await;
    assert!(policy.contains("connect-src 'self';"), "{policy}");
    assert!(html.contains(r#"<meta name="ledger-ingest-url" content="">"#));

    let mut config = query.config.clone();
    config.ingest_url = Some("https://ingest.example.com/".to_owned());
    let service = QueryService::start(config, query.ledger.nats.clone())
        .await
        .expect("query service");
    let (policy, html) = page(&service).await;
    assert!(
        policy.contains("connect-src 'self' https://ingest.example.com;"),
        "{policy}"
    );
    assert!(
        html.contains(r#"<meta name="ledger-ingest-url" content="https://ingest.example.com">"#)
    );

    let mut config = query.config.clone();
    config.ingest_url = Some("ingest.example.com".to_owned());
    let error = QueryService::start(config, query.ledger.nats.clone())
        .await
        .expect_err("not a URL");
    assert!(
        error.to_string().contains("LEDGER_QUERY_INGEST_URL"),
        "{error}"
    );
}
