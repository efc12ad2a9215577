//! The query service: the read models over HTTP, and the dashboard.
//!
//! `ledger-query` reads only read models (design invariant 6): it connects with a role that is
//! a member of `ledger_query`, which has SELECT on the projectors' schemas and nothing on the
//! event table; the one exception is the provider inbox (`provider_inbox`), whose rows
//! `/v1/provider-messages/{id}` serves to `connectors:read` tokens. It never writes, never sends commands, and knows nothing about the event
//! table, the writer or the projectors' code: their schemas are its only contract.
//!
//! - Endpoints under `/v1` (JSON; see [`openapi`] and `docs/api.md`): customers (list,
//!   single, timeline) from schema `customers`; metrics (summary, MRR series, churn, cohorts)
//!   from schema `revenue`. `/v1/openapi.json` describes them; `/` serves the dashboard.
//! - Every answer carries `X-Ledger-Position`: the position of the read model it was computed
//!   from (its checkpoint, read in the same statement or snapshot as the figures).
//!   `?min_position=N` waits (bounded) until that read model reaches N: read-your-writes.
//! - Answers are cached in process ([`cache`]) and invalidated when the projector announces a
//!   new position on `<prefix>.projections.<name>`, so instances stay coherent without a
//!   shared cache; a TTL bounds staleness.
//! - Bearer tokens with scopes (`metrics:read`, `customers:read`) and a per-token rate limit
//!   ([`ledger_access`]); errors have one shape (`{"error": {"code", "message", "details",
//!   "request_id"}}`) and never carry database error text.
//! - `/healthz` and `/readyz` for operations, without a token; Prometheus metrics through the
//!   `metrics` facade, served by the process's own endpoint (`ledger run query --metrics-bind`).

mod cache;
mod customers;
mod dashboard;
mod error;
mod handlers;
mod messages;
pub mod metrics;
pub mod openapi;
pub mod params;
mod positions;
mod revenue;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use futures_util::StreamExt;
use ledger_access::Access;
use ledger_bus::BusConfig;

pub use dashboard::IngestUrlError;
pub use error::{ApiError, ErrorBody};
pub use ledger_access::{RateLimit, Scope, Tokens, TokensError};
pub use positions::Projection;

use crate::cache::AnswerCache;
use crate::positions::Positions;

/// Concurrent connections each worker accepts; more wait in the listen backlog.
const CONNECTIONS_PER_WORKER_MAX: usize = 4_096;
/// How long a stopping server lets in-flight requests finish (covers the longest
/// `min_position` wait).
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 15;
/// How long a database connection attempt or a pool checkout may take.
const DATABASE_TIMEOUT_MS: u64 = 5_000;
/// Each token's default budget: 50 requests per second, bursts of 100 (a dashboard load is
/// about 10 requests).
pub const RATE_LIMIT_DEFAULT: RateLimit = RateLimit {
    requests_per_second: NonZeroU32::new(50).unwrap(),
    burst: NonZeroU32::new(100).unwrap(),
};

/// Settings of the query service.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// The address to bind, e.g. `127.0.0.1:8090` (port 0 picks a free port).
    pub bind: SocketAddr,
    /// The read models' database, as a role that is a member of `ledger_query`.
    pub database_url: String,
    /// Pooled database connections at most.
    pub database_connections_max: usize,
    /// The accepted bearer tokens and their scopes.
    pub tokens: Tokens,
    /// Each token's request budget (`None`: unlimited); over it, 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
    /// Subjects (progress announcements) and stream (readiness lag).
    pub bus: BusConfig,
    /// Bytes of cached answers per read model at most.
    pub cache_bytes_max: u64,
    /// How long a cached answer may be served if no announcement invalidates it.
    pub cache_ttl: Duration,
    /// How long `?min_position=` may wait before answering 503.
    pub min_position_wait: Duration,
    /// `/readyz` fails when a projection is more than this many events behind the stream.
    pub ready_lag_events_max: u64,
    /// The read models `/readyz` requires.
    pub ready_projections: Vec<Projection>,
    /// How often the checkpoints are read, in case an announcement was missed.
    pub checkpoint_poll_interval: Duration,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Ingest's base URL as the operators' browsers reach it (`LEDGER_QUERY_INGEST_URL`), e.g.
    /// `https://ingest.example.com`: the dashboard sends an operator's actions there with the
    /// operator's token. `None`: the dashboard offers no actions.
    pub ingest_url: Option<String>,
}

impl QueryConfig {
    /// Defaults for everything but where to listen, the database and the tokens (each token
    /// may send [`RATE_LIMIT_DEFAULT`]).
    pub fn new(bind: SocketAddr, database_url: String, tokens: Tokens) -> QueryConfig {
        QueryConfig {
            bind,
            database_url,
            database_connections_max: 16,
            tokens,
            rate_limit: Some(RATE_LIMIT_DEFAULT),
            bus: BusConfig::default(),
            cache_bytes_max: 64 * 1024 * 1024,
            cache_ttl: Duration::from_secs(60),
            min_position_wait: Duration::from_secs(5),
            ready_lag_events_max: 10_000,
            ready_projections: Projection::ALL.to_vec(),
            checkpoint_poll_interval: Duration::from_secs(2),
            workers: 0,
            ingest_url: None,
        }
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("LEDGER_QUERY_DATABASE_URL `{url}` is not a PostgreSQL URL: {reason}")]
    DatabaseUrl { url: String, reason: String },
    #[error(transparent)]
    IngestUrl(#[from] IngestUrlError),
    #[error("cannot build the database pool: {0}")]
    Pool(String),
    #[error("cannot subscribe to projection announcements on NATS: {0}")]
    Nats(String),
    #[error("cannot listen on {bind}: {error}")]
    Bind {
        bind: SocketAddr,
        error: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

// Not `#[from]`: that would also report the inner error as the source, and a report of the
// chain would print its text twice.
impl From<std::io::Error> for QueryError {
    fn from(error: std::io::Error) -> QueryError {
        QueryError::Server(error)
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) pool: deadpool_postgres::Pool,
    pub(crate) access: Access,
    pub(crate) positions: Positions,
    pub(crate) cache: AnswerCache,
    pub(crate) nats: async_nats::Client,
    pub(crate) page: dashboard::Page,
    pub(crate) config: QueryConfig,
}

impl State {
    /// Records a projection's position; a move forward empties its cache.
    pub(crate) fn advance(&self, projection: Projection, position: u64) {
        if self.positions.advance(projection, position) {
            self.cache.invalidate(projection);
        }
    }

    /// Reads every projection's checkpoint (absent schemas are skipped).
    pub(crate) async fn poll_checkpoints(
        &self,
    ) -> Result<Vec<(Projection, Option<u64>)>, ApiError> {
        let client = self.client().await?;
        let mut positions = Vec::new();
        for projection in Projection::ALL {
            let sql = format!(
                "SELECT global_position FROM {}.projector_checkpoint",
                projection.name()
            );
            match client.query_opt(&sql, &[]).await {
                Ok(row) => {
                    let position = row
                        .map(|row| row.try_get::<_, i64>(0))
                        .transpose()
                        .map_err(|error| ApiError::database(&error, projection.name()))?
                        .map_or(0, |position| u64::try_from(position).unwrap_or(0));
                    self.advance(projection, position);
                    positions.push((projection, Some(position)));
                }
                Err(error)
                    if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                {
                    positions.push((projection, None));
                }
                Err(error) => return Err(ApiError::database(&error, projection.name())),
            }
        }
        Ok(positions)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, ApiError> {
        self.pool.get().await.map_err(|error| {
            tracing::warn!(%error, "no read-model database connection");
            ApiError::DatabaseUnavailable
        })
    }
}

/// A started query service: its state, and the task following projection announcements.
/// Mount it with [`QueryService::app_config`]; dropping it stops the follower.
#[derive(Debug)]
pub struct QueryService {
    state: web::Data<State>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for QueryService {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl QueryService {
    /// Builds the pool, subscribes to `<prefix>.projections.*`, reads the checkpoints once
    /// (a database that is down is only logged: `/readyz` reports it) and starts following.
    pub async fn start(
        config: QueryConfig,
        nats: async_nats::Client,
    ) -> Result<QueryService, QueryError> {
        let page = dashboard::Page::new(config.ingest_url.as_deref())?;
        let pg_config: tokio_postgres::Config =
            config
                .database_url
                .parse()
                .map_err(|error: tokio_postgres::Error| QueryError::DatabaseUrl {
                    url: config.database_url.clone(),
                    reason: error.to_string(),
                })?;
        let mut pg_config = pg_config;
        pg_config.connect_timeout(Duration::from_millis(DATABASE_TIMEOUT_MS));
        pg_config.application_name("ledger-query");
        let manager = deadpool_postgres::Manager::from_config(
            pg_config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(config.database_connections_max)
            .wait_timeout(Some(Duration::from_millis(DATABASE_TIMEOUT_MS)))
            .create_timeout(Some(Duration::from_millis(DATABASE_TIMEOUT_MS)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|error| QueryError::Pool(error.to_string()))?;
        let subject = config.bus.projection_subject("*");
        let mut announcements = nats
            .subscribe(subject)
            .await
            .map_err(|error| QueryError::Nats(ledger_store::error_text(&error)))?;
        metrics::describe();
        let state = web::Data::new(State {
            pool,
            access: Access::new(config.tokens.clone(), config.rate_limit),
            positions: Positions::new(),
            cache: AnswerCache::new(config.cache_bytes_max, config.cache_ttl),
            nats,
            page,
            config,
        });
        if let Err(error) = state.poll_checkpoints().await {
            tracing::warn!(%error, "cannot read the projections' checkpoints yet");
        }
        let follower_state = state.clone();
        let follower = tokio::spawn(async move {
            let state = follower_state;
            let mut poll = tokio::time::interval(state.config.checkpoint_poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    message = announcements.next() => {
                        let Some(message) = message else {
                            tracing::warn!("projection announcements ended; polling checkpoints only");
                            break;
                        };
                        let name = message.subject.as_str().rsplit('.').next().unwrap_or("");
                        if let (Some(projection), Some(position)) = (
                            Projection::from_name(name),
                            positions::parse_announcement(&message.payload),
                        ) {
                            state.advance(projection, position);
                        }
                    }
                    _ = poll.tick() => {
                        if let Err(error) = state.poll_checkpoints().await {
                            tracing::debug!(%error, "cannot read the checkpoints");
                        }
                    }
                }
            }
            loop {
                poll.tick().await;
                if let Err(error) = state.poll_checkpoints().await {
                    tracing::debug!(%error, "cannot read the checkpoints");
                }
            }
        });
        Ok(QueryService { state, follower })
    }

    /// Mounts every route: `App::new().configure(service.app_config())`.
    pub fn app_config(&self) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
        let state = self.state.clone();
        move |config| handlers::configure(config, state)
    }

    /// The latest known position of `projection`.
    pub fn position(&self, projection: Projection) -> u64 {
        self.state.positions.get(projection)
    }

    /// Serves on `config.bind` until `shutdown` completes, then lets in-flight requests finish.
    /// `on_listening` gets the bound addresses (port 0 resolved).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        on_listening: impl FnOnce(&[SocketAddr]),
    ) -> Result<(), QueryError> {
        let (server, addresses) = self.bind(shutdown)?;
        on_listening(&addresses);
        server.await?;
        tracing::info!("query stopped");
        drop(self);
        Ok(())
    }

    /// Binds the HTTP server; it runs once the returned `Server` is awaited or spawned.
    fn bind(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(actix_web::dev::Server, Vec<SocketAddr>), QueryError> {
        let state = self.state.clone();
        let bind = state.config.bind;
        let workers = state.config.workers;
        let mut server = HttpServer::new(move || {
            App::new().configure({
                let state = state.clone();
                move |config| handlers::configure(config, state)
            })
        })
        .max_connections(CONNECTIONS_PER_WORKER_MAX)
        .backlog(4_096)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
        .shutdown_signal(shutdown);
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server
            .bind(bind)
            .map_err(|error| QueryError::Bind { bind, error })?;
        let addresses = server.addrs();
        for address in &addresses {
            tracing::info!(%address, "query listening");
        }
        Ok((server.run(), addresses))
    }
}
