//! The HTTP services' tokens and rate limits from flags and the environment, read the same
//! way for `ledger run ingest` (`LEDGER_INGEST_*`) and `ledger run query` (`LEDGER_QUERY_*`).

use std::path::Path;

use anyhow::Context;
use ledger_access::{RateLimit, Scope, Tokens};

/// The tokens of `--tokens` and the file of `--tokens-file` (one entry a line), with the
/// service's `allowed` scopes; `env_prefix` (`LEDGER_INGEST`) names the settings in errors.
/// None at all is an error: a service never runs open.
pub(crate) fn tokens(
    env_prefix: &str,
    text: Option<&str>,
    file: Option<&Path>,
    allowed: &[Scope],
) -> anyhow::Result<Tokens> {
    let mut all = text.unwrap_or_default().to_owned();
    if let Some(path) = file {
        let file = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {env_prefix}_TOKENS_FILE {}", path.display()))?;
        all.push('\n');
        all.push_str(&file);
    }
    let tokens = Tokens::parse(&all, allowed).with_context(|| format!("{env_prefix}_TOKENS"))?;
    if tokens.is_empty() {
        let scopes: Vec<&str> = allowed.iter().map(|scope| scope.as_str()).collect();
        anyhow::bail!(
            "no API tokens: set {env_prefix}_TOKENS=\"<token>:{}\" or {env_prefix}_TOKENS_FILE \
             (create a token with `openssl rand -hex 32`; at least 16 characters)",
            scopes.join(",")
        );
    }
    Ok(tokens)
}

/// The per-token limit of `--rate-limit-per-second` (0: off) and `--rate-limit-burst`.
pub(crate) fn rate_limit(
    env_prefix: &str,
    requests_per_second: u32,
    burst: u32,
) -> anyhow::Result<Option<RateLimit>> {
    RateLimit::from_settings(requests_per_second, burst)
        .with_context(|| format!("{env_prefix}_RATE_LIMIT_BURST"))
}
