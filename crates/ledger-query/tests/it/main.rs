//! The query service against real PostgreSQL and NATS: the customers read model built by the
//! real writer and projector from commands, and the revenue read model from a fixture with
//! known rows (`revenue_fixture.sql`). Each test has its own database, subjects and stream
//! (`ledger_testkit::ledger::TestLedger`) and mounts the service with
//! `actix_web::test::init_service`; it connects as a login role that is only a member of
//! `ledger_query`, as deployments do.

mod customers;
mod exact;
mod freshness;
mod metrics;
mod provider_messages;
mod security;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::test::TestRequest;
use ledger_projector::ProjectorConfig;
use ledger_query::{QueryConfig, QueryService, RateLimit, Scope, Tokens};
use ledger_testkit::ledger::{RunningProjector, RunningWriter, TestLedger};
use projector_customers::CustomersProjector;
use projector_revenue::{RevenueProjector, RevenueSettings};

/// Every scope.
const TOKEN_ALL: &str = "all-scopes-token-0123456789";
/// `metrics:read` only.
const TOKEN_METRICS: &str = "metrics-only-token-0123456789";
/// `customers:read` only.
const TOKEN_CUSTOMERS: &str = "customers-only-token-0123456789";

/// The login role the tests' query services use: a member of `ledger_query`, nothing else.
const QUERY_LOGIN_ROLE: &str = "ledger_query_test";

/// A test's ledger and query service.
struct Query {
    ledger: TestLedger,
    service: QueryService,
    /// The query role's URL on the test database.
    query_url: String,
    /// The service's settings, for another instance.
    config: QueryConfig,
    _writer: Option<RunningWriter>,
    _projectors: Vec<RunningProjector>,
}

/// How a test's query service is set up.
#[derive(Clone, Copy)]
struct Setup {
    /// Start a writer and the customers projector.
    customers: bool,
    /// Load `revenue_fixture.sql`.
    revenue: bool,
    /// Start the real revenue projector (with `customers`, instead of the fixture).
    revenue_projector: bool,
    min_position_wait: Duration,
    /// Each token's budget; unlimited unless a test is about the limit.
    rate_limit: Option<RateLimit>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            customers: false,
            revenue: true,
            revenue_projector: false,
            min_position_wait: Duration::from_secs(5),
            rate_limit: None,
        }
    }
}

impl Query {
    async fn start(setup: Setup) -> Query {
        let ledger = TestLedger::new().await;
        let admin = ledger.database().client().await;
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {QUERY_LOGIN_ROLE} LOGIN IN ROLE ledger_query; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ))
            .await
            .expect("query login role");
        if setup.revenue {
            admin
                .batch_execute(include_str!("revenue_fixture.sql"))
                .await
                .expect("revenue fixture");
        }
        let mut projectors = Vec::new();
        let writer = if setup.customers {
            let writer = ledger.start_writer();
            projectors.push(
                ledger
                    .start_projector(
                        CustomersProjector::new(ledger.store.clone()),
                        ProjectorConfig::default(),
                        false,
                    )
                    .await,
            );
            if setup.revenue_projector {
                projectors.push(
                    ledger
                        .start_projector(
                            RevenueProjector::new(ledger.store.clone(), RevenueSettings::default()),
                            ProjectorConfig::default(),
                            false,
                        )
                        .await,
                );
            }
            Some(writer)
        } else {
            None
        };
        let query_url = with_user(ledger.database().url(), QUERY_LOGIN_ROLE);
        let mut tokens = Tokens::default();
        tokens.add(
            TOKEN_ALL,
            &[
                Scope::MetricsRead,
                Scope::CustomersRead,
                Scope::ConnectorsRead,
            ],
        );
        tokens.add(TOKEN_METRICS, &[Scope::MetricsRead]);
        tokens.add(TOKEN_CUSTOMERS, &[Scope::CustomersRead]);
        let mut config = QueryConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            query_url.clone(),
            tokens,
        );
        config.bus = ledger.bus.clone();
        config.min_position_wait = setup.min_position_wait;
        config.rate_limit = setup.rate_limit;
        // Only announcements invalidate the cache in these tests: polling would hide a bug.
        config.checkpoint_poll_interval = Duration::from_secs(3_600);
        let service = QueryService::start(config.clone(), ledger.nats.clone())
            .await
            .expect("query service");
        Query {
            ledger,
            service,
            query_url,
            config,
            _writer: writer,
            _projectors: projectors,
        }
    }

    /// Another instance of the service on the same read models and subjects, with its own
    /// cache and its own NATS connection, as a second process would have.
    async fn another_instance(&self) -> QueryService {
        let nats_url = std::env::var("NATS_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let nats = async_nats::connect(&nats_url).await.expect("NATS");
        QueryService::start(self.config.clone(), nats)
            .await
            .expect("another query service")
    }

    async fn customers_caught_up(&self) {
        assert!(self.ledger.projector_caught_up("customers").await);
    }

    async fn revenue_caught_up(&self) {
        assert!(self.ledger.projector_caught_up("revenue").await);
    }
}

/// `url` with its user replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host_part_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..host_part_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://{user}@{rest}")
}

/// An answer: status, headers and JSON body (and its text, for integers past `u64`).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: serde_json::Value,
    body: String,
}

impl Answer {
    fn position(&self) -> u64 {
        self.headers
            .get("X-Ledger-Position")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .expect("an X-Ledger-Position header")
    }

    fn cache(&self) -> &str {
        self.headers
            .get("X-Ledger-Cache")
            .and_then(|value| value.to_str().ok())
            .expect("an X-Ledger-Cache header")
    }

    /// The error's code and `details.parameter`, asserting the one error shape: a message, a
    /// details object, and the request id of the `X-Request-Id` header (a UUID).
    fn error(&self) -> (StatusCode, String, Option<String>) {
        let error = &self.json["error"];
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "an error message in {}",
            self.json
        );
        assert!(error["details"].is_object(), "details in {}", self.json);
        let request_id = error["request_id"].as_str().expect("a request id");
        assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
        assert_eq!(
            self.headers
                .get("X-Request-Id")
                .and_then(|value| value.to_str().ok()),
            Some(request_id)
        );
        (
            self.status,
            error["code"].as_str().expect("a code").to_owned(),
            error["details"]["parameter"].as_str().map(str::to_owned),
        )
    }
}

/// The service mounted with `test::init_service` (a macro: its type is not nameable here).
macro_rules! app {
    ($query:expr) => {
        actix_web::test::init_service(actix_web::App::new().configure($query.service.app_config()))
            .await
    };
}
pub(crate) use app;

/// `GET path` with `token` (none if `None`), as an [`Answer`].
macro_rules! get {
    ($app:expr, $path:expr, $token:expr) => {
        $crate::answer(
            actix_web::test::call_service(&$app, $crate::request($path, $token).to_request()).await,
        )
        .await
    };
    ($app:expr, $path:expr) => {
        get!($app, $path, Some($crate::TOKEN_ALL))
    };
}
pub(crate) use get;

fn request(path: &str, token: Option<&str>) -> TestRequest {
    let request = TestRequest::get().uri(path);
    match token {
        Some(token) => request.insert_header(("Authorization", format!("Bearer {token}"))),
        None => request,
    }
}

async fn answer<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = actix_web::test::read_body(response).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    Answer {
        status,
        headers,
        json,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[test]
fn with_user_replaces_or_adds_the_user() {
    assert_eq!(
        with_user("postgres://postgres@127.0.0.1:5432/db", "q"),
        "postgres://q@127.0.0.1:5432/db"
    );
    assert_eq!(
        with_user("postgres://127.0.0.1:5432/db", "q"),
        "postgres://q@127.0.0.1:5432/db"
    );
}
