//! `ledger run ingest`: the ingest service's settings from flags and the environment.

use std::net::SocketAddr;

use ledger_access::Scope;
use ledger_ingest::IngestConfig;

use crate::access;

/// Settings of the ingest service.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_INGEST_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Bearer tokens and their scopes:
    /// `token:commands:write;token2:commands:write,integrations:admin`.
    #[arg(long, env = "LEDGER_INGEST_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// A file of tokens, one `token:scope,scope` per line (`#` starts a comment).
    #[arg(long, env = "LEDGER_INGEST_TOKENS_FILE")]
    tokens_file: Option<std::path::PathBuf>,
    /// Commands per second each token may send, sustained (0: no limit).
    #[arg(long, env = "LEDGER_INGEST_RATE_LIMIT_PER_SECOND", default_value_t = ledger_ingest::RATE_LIMIT_DEFAULT.requests_per_second.get())]
    rate_limit_per_second: u32,
    /// Commands each token may send at once after a quiet spell.
    #[arg(long, env = "LEDGER_INGEST_RATE_LIMIT_BURST", default_value_t = ledger_ingest::RATE_LIMIT_DEFAULT.burst.get())]
    rate_limit_burst: u32,
}

impl IngestArgs {
    pub(crate) fn config(&self) -> anyhow::Result<IngestConfig> {
        const ENV_PREFIX: &str = "LEDGER_INGEST";
        Ok(IngestConfig {
            bind: self.bind,
            tokens: access::tokens(
                ENV_PREFIX,
                self.tokens.as_deref(),
                self.tokens_file.as_deref(),
                Scope::INGEST,
            )?,
            rate_limit: access::rate_limit(
                ENV_PREFIX,
                self.rate_limit_per_second,
                self.rate_limit_burst,
            )?,
        })
    }
}
