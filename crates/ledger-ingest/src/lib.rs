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
//! - `GET /healthz`: liveness.
//!
//! Bodies are protobuf (`application/x-protobuf`) or the proto3 JSON mapping
//! (`application/json`), chosen by `Content-Type`; the response uses the request's encoding.
//! Every answer to a command is a `CommandReply`, errors included (`rejected` with a kind and a
//! stable `code`), so clients parse one shape. Bodies are limited to
//! [`ledger_bus::COMMAND_BYTES_MAX`].
//!
//! This crate knows nothing about PostgreSQL or the event table, and does not decide
//! anything: validation, idempotency and ordering are the writer's. It only checks that a body
//! is a decodable command of the kind the path names.

mod handlers;
mod reply;

use std::future::Future;
use std::net::SocketAddr;

use actix_web::{App, HttpServer, web};
use ledger_bus::Client;

/// Concurrent connections each worker accepts; more wait in the listen backlog.
const CONNECTIONS_PER_WORKER_MAX: usize = 1_024;
/// How long a stopping server lets in-flight requests finish. It covers the bus client's
/// longest send (4 attempts of 5 s plus back-off).
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// Where the ingest server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub bind: SocketAddr,
}

/// Mounts the ingest endpoints, forwarding commands through `client`:
/// `App::new().configure(ledger_ingest::app_config(client))`.
///
/// The body limit and the client are attached to the ingest resources only, so other services
/// mounted on the same `App` keep their own settings.
pub fn app_config(client: Client) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| handlers::configure(config, client)
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
    let server = HttpServer::new(move || App::new().configure(app_config(client.clone())))
        .max_connections(CONNECTIONS_PER_WORKER_MAX)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
        .shutdown_signal(shutdown)
        .bind(config.bind)?;
    for address in server.addrs() {
        tracing::info!(%address, "ingest listening");
    }
    server.run().await?;
    tracing::info!("ingest stopped");
    Ok(())
}
