//! `ledger run query`: the query service's settings from flags and the environment.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use ledger_access::Scope;
use ledger_query::QueryConfig;

use crate::access;

/// Settings of the query service.
#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_QUERY_BIND", default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// The read models' database, as a login role that is a member of `ledger_query` (SELECT
    /// on the read models only, nothing on the event table).
    #[arg(long, env = "LEDGER_QUERY_DATABASE_URL")]
    query_database_url: Option<String>,
    /// A file holding that URL, password included, instead of LEDGER_QUERY_DATABASE_URL.
    #[arg(long, env = "LEDGER_QUERY_DATABASE_URL_FILE")]
    query_database_url_file: Option<std::path::PathBuf>,
    /// Bearer tokens and their scopes: `token:metrics:read,customers:read;token2:metrics:read`.
    #[arg(long, env = "LEDGER_QUERY_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// A file of tokens, one `token:scope,scope` per line (`#` starts a comment).
    #[arg(long, env = "LEDGER_QUERY_TOKENS_FILE")]
    tokens_file: Option<std::path::PathBuf>,
    /// Requests per second each token may send, sustained (0: no limit).
    #[arg(long, env = "LEDGER_QUERY_RATE_LIMIT_PER_SECOND", default_value_t = ledger_query::RATE_LIMIT_DEFAULT.requests_per_second.get())]
    rate_limit_per_second: u32,
    /// Requests each token may send at once after a quiet spell.
    #[arg(long, env = "LEDGER_QUERY_RATE_LIMIT_BURST", default_value_t = ledger_query::RATE_LIMIT_DEFAULT.burst.get())]
    rate_limit_burst: u32,
    /// MiB of cached answers per read model, at most 1,048,576 (1 TiB, as the writer's cache).
    #[arg(long, env = "LEDGER_QUERY_CACHE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    cache_mib: u64,
    /// Seconds a cached answer may be served without an announcement invalidating it, at most
    /// 86,400 (a day).
    #[arg(long, env = "LEDGER_QUERY_CACHE_TTL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    cache_ttl_seconds: u64,
    /// Longest wait for `?min_position=`, in milliseconds.
    #[arg(
        long,
        env = "LEDGER_QUERY_MIN_POSITION_WAIT_MS",
        default_value_t = 5_000
    )]
    min_position_wait_ms: u64,
    /// `/readyz` fails when a projection is more events than this behind the stream.
    #[arg(
        long,
        env = "LEDGER_QUERY_READY_LAG_EVENTS_MAX",
        default_value_t = 10_000
    )]
    ready_lag_events_max: u64,
    /// Pooled database connections at most.
    #[arg(
        long,
        env = "LEDGER_QUERY_DATABASE_CONNECTIONS_MAX",
        default_value_t = 16
    )]
    database_connections_max: usize,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "LEDGER_QUERY_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Ingest's base URL as operators' browsers reach it (e.g. `https://ingest.example.com`):
    /// the dashboard sends operators' actions there with their token (ingest must list this
    /// service's origin in `LEDGER_INGEST_CORS_ORIGINS`). Unset: the dashboard only reads.
    #[arg(long, env = "LEDGER_QUERY_INGEST_URL")]
    ingest_url: Option<String>,
}

impl QueryArgs {
    pub(crate) fn config(&self, bus: ledger_bus::BusConfig) -> anyhow::Result<QueryConfig> {
        let database_url = match (&self.query_database_url, &self.query_database_url_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set LEDGER_QUERY_DATABASE_URL or LEDGER_QUERY_DATABASE_URL_FILE, not both"
            ),
            (None, Some(path)) => Some(crate::database::url_from_file(
                "LEDGER_QUERY_DATABASE_URL_FILE",
                path,
            )?),
            (url, None) => url.clone(),
        };
        let database_url = database_url.context(
            "LEDGER_QUERY_DATABASE_URL (or LEDGER_QUERY_DATABASE_URL_FILE) is not set: give the query service a login role that is a \
             member of `ledger_query` (e.g. `CREATE ROLE ledger_query_app LOGIN IN ROLE \
             ledger_query`), never the writer's",
        )?;
        const ENV_PREFIX: &str = "LEDGER_QUERY";
        let tokens = access::tokens(
            ENV_PREFIX,
            self.tokens.as_deref(),
            self.tokens_file.as_deref(),
            Scope::QUERY,
        )?;
        let mut config = QueryConfig::new(self.bind, database_url, tokens);
        config.bus = bus;
        config.rate_limit = access::rate_limit(
            ENV_PREFIX,
            self.rate_limit_per_second,
            self.rate_limit_burst,
        )?;
        config.cache_bytes_max = self.cache_mib * 1024 * 1024;
        config.cache_ttl = Duration::from_secs(self.cache_ttl_seconds);
        config.min_position_wait = Duration::from_millis(self.min_position_wait_ms);
        config.ready_lag_events_max = self.ready_lag_events_max;
        config.database_connections_max = self.database_connections_max;
        config.workers = self.workers;
        config.ingest_url = self.ingest_url.clone();
        Ok(config)
    }
}
