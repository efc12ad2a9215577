//! The HTTP front door for writes.
//!
//! `ledger-ingest` turns HTTP requests into `ledger.v1.Command`s and sends them to the writer
//! through NATS with the typed [`ledger_bus::Client`], exactly as any other client does; the
//! writer's answer (a `ledger.v1.CommandReply`) goes back as the response body. Later it also
//! hosts the payment providers' webhooks, which become commands the same way.
//!
//! Endpoints (see each handler's documentation):
//! - `POST /v1/customers`: a `register_customer` command;
//! - `POST /v1/commands/{name}`: any command, `{name}` being its kind (`refund_payment`);
//! - `GET /v1/token`: the presented token's scopes (what a page may offer);
//! - `POST /v1/webhooks/{stripe|paypal|xendit}`: a payment provider's webhook, verified by its
//!   signature (no bearer token) and sent to the writer as a `ProviderDelivery`;
//! - `POST /v1/sync/{stripe|paypal|xendit}/customers/{account_id}`: re-reads one customer's
//!   objects at the provider now and imports them (scope `commands:write`; see [`on_demand`]);
//! - `GET /healthz`: liveness.
//!
//! Its Prometheus metrics (requests by route and status, webhook deliveries by provider and
//! outcome) go through the `metrics` facade to the process's own endpoint
//! (`ledger run ingest --metrics-bind`).
//!
//! Every answer carries `X-Correlation-Id`: the UUID the client sent in that header (or in
//! `X-Request-Id`), else the command's `metadata.correlation_id`, else a new one; the command
//! and its events carry the same id, and ingest's log lines for the request name it
//! (docs/observability.md).
//!
//! Every command endpoint needs `Authorization: Bearer <token>` ([`ledger_access`]): scope
//! `commands:write` for a customer's commands, `integrations:admin` for the integration
//! commands; each token has a rate limit. The issuer is the credential's, not the body's: a
//! token writes `internal` (a body claiming `payment_provider` is refused with 403
//! `issuer_not_allowed`; docs/decisions/0016).
//!
//! Bodies are protobuf (`application/x-protobuf`) or the proto3 JSON mapping
//! (`application/json`), chosen by `Content-Type`; the response uses the request's encoding.
//! Every answer to a command is a `CommandReply`, errors included (`rejected` with a kind and a
//! stable `code`), so clients parse one shape. Bodies are limited to
//! [`ledger_bus::COMMAND_BYTES_MAX`].
//!
//! This crate knows nothing about PostgreSQL or the event table, and does not decide
//! anything: validation, idempotency and ordering are the writer's. It only checks the
//! credential, that a body is a decodable command of the kind the path names, and sets its
//! issuer. Every check happens before the command is sent, so a refusal (401, 403, 429)
//! never drops a command the writer accepted.

mod cors;
mod handlers;
mod observe;
pub mod on_demand;
mod reply;
mod webhooks;

pub use cors::{AllowedOrigins, OriginError};
pub use observe::{
    CONNECTOR_DELIVERIES, CORRELATION_ID_HEADER, REQUEST_ID_HEADER, REQUEST_SECONDS, REQUESTS,
};
pub use webhooks::{BODY_READ_SECONDS_MAX, PAYPAL_VERIFICATIONS_MAX, PaypalConfig, WebhookConfig};

use std::future::Future;
use std::net::SocketAddr;

use std::num::NonZeroU32;

use actix_web::{App, HttpServer, web};
use ledger_access::{Access, RateLimit, Tokens};
use ledger_bus::Client;

/// Concurrent connections each worker accepts; more wait in the listen backlog.
const CONNECTIONS_PER_WORKER_MAX: usize = 1_024;
/// How long a stopping server lets in-flight requests finish. It covers the bus client's
/// longest send (4 attempts of 5 s plus back-off).
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// Each token's default budget: 100 commands per second, bursts of 200.
pub const RATE_LIMIT_DEFAULT: RateLimit = RateLimit {
    requests_per_second: NonZeroU32::new(100).unwrap(),
    burst: NonZeroU32::new(200).unwrap(),
};

/// Where the ingest server listens and whom it admits.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub bind: SocketAddr,
    /// The accepted bearer tokens, with ingest scopes (`commands:write`,
    /// `integrations:admin`).
    pub tokens: Tokens,
    /// Each token's budget (`None`: unlimited), e.g. [`RATE_LIMIT_DEFAULT`].
    pub rate_limit: Option<RateLimit>,
    /// The providers' webhook secrets (`POST /v1/webhooks/{provider}`).
    pub webhooks: WebhookConfig,
    /// The browser pages (the dashboard's origin) that may call the command endpoints and
    /// `GET /v1/token`; empty: none (no CORS headers).
    pub cors_origins: AllowedOrigins,
}

/// Mounts the ingest endpoints, admitting requests with `access` and forwarding commands
/// through `client`, answering cross-origin requests from `origins` only:
/// `App::new().configure(ledger_ingest::app_config(client, access, origins))`. Give every
/// worker a clone of one [`Access`], so they share the rate limits.
///
/// The body limit, the client and the access are attached to the ingest resources only, so
/// other services mounted on the same `App` keep their own settings.
pub fn app_config(
    client: Client,
    access: Access,
    origins: AllowedOrigins,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| handlers::configure(config, client, access, &origins)
}

/// Mounts the payment providers' webhook endpoints (`POST /v1/webhooks/{provider}`), which
/// need no bearer token (the provider's signature authenticates) and forward each verified
/// delivery through `client`: `App::new().configure(ledger_ingest::webhook_config(client,
/// webhooks))`. Make it once and clone it into each worker's `App`: the verifiers (PayPal's
/// token and its cap of [`PAYPAL_VERIFICATIONS_MAX`] verifications in flight) are then shared
/// by the workers, not one set per worker.
pub fn webhook_config(
    client: Client,
    webhooks: WebhookConfig,
) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let verifiers = webhooks::verifiers(webhooks);
    move |config| webhooks::configure(config, client.clone(), verifiers.clone())
}

/// Mounts the on-demand sync (`POST /v1/sync/{provider}/customers/{account_id}`, see
/// [`on_demand`]), admitting requests with `access`, reading Stripe with `stripe` (`None`: the
/// route answers 501 `not_configured`) and sending deliveries through `client`.
pub fn sync_config(
    client: Client,
    access: Access,
    stripe: Option<ledger_sync::StripeReader>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| on_demand::configure(config, client, access, stripe)
}

/// Runs the ingest HTTP server on `config.bind` until `shutdown` completes, then shuts down
/// gracefully: it stops accepting connections, lets in-flight requests finish (up to 30 s) and
/// returns. (actix's own signal handling would drop in-flight requests on SIGINT, so the caller
/// decides when to stop.)
pub async fn serve(
    config: IngestConfig,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(config.bind).map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!(
                "cannot listen on {} (--bind / LEDGER_INGEST_BIND): {error}",
                config.bind
            ),
        )
    })?;
    serve_on(listener, config, client, shutdown).await
}

/// [`serve`] on a listener bound beforehand (its address known before the server runs, as
/// `ledger demo` needs to tell the dashboard); `config.bind` is not used.
pub async fn serve_on(
    listener: std::net::TcpListener,
    config: IngestConfig,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let access = Access::new(config.tokens, config.rate_limit);
    observe::register_metrics(&["stripe", "paypal", "xendit"]);
    config.webhooks.log_unconfigured();
    let webhooks = config.webhooks;
    let origins = config.cors_origins;
    let stripe_api = webhooks.stripe_api.clone();
    let webhook_routes = webhook_config(client.clone(), webhooks);
    let server = HttpServer::new(move || {
        let stripe_api = stripe_api.clone();
        App::new()
            .configure(app_config(client.clone(), access.clone(), origins.clone()))
            .configure(webhook_routes.clone())
            .configure(sync_config(client.clone(), access.clone(), stripe_api))
    })
    .max_connections(CONNECTIONS_PER_WORKER_MAX)
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
    .shutdown_signal(shutdown)
    .listen(listener)?;
    for address in server.addrs() {
        tracing::info!(%address, "ingest listening");
    }
    server.run().await?;
    tracing::info!("ingest stopped");
    Ok(())
}
