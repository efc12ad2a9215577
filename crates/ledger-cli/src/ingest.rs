//! `ledger run ingest`: the ingest service's settings from flags and the environment.

use std::net::SocketAddr;

use anyhow::Context;
use ledger_access::Scope;
use ledger_connectors::{stripe, xendit};
use ledger_ingest::{AllowedOrigins, IngestConfig, PaypalConfig, WebhookConfig};

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
    /// Origins of browser pages that may call the command endpoints, comma-separated: the
    /// dashboard's (`ledger run query`'s address as the browser sees it, e.g.
    /// `https://dashboard.example.com`). Unset: no page of another origin may.
    #[arg(long, env = "LEDGER_INGEST_CORS_ORIGINS", default_value = "")]
    cors_origins: String,
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
            webhooks: webhooks()?,
            cors_origins: AllowedOrigins::parse(&self.cors_origins)?,
        })
    }
}

/// PayPal's live API.
pub(crate) const PAYPAL_API_BASE_DEFAULT: &str = "https://api-m.paypal.com";

/// Environment variable `name`, else the contents of the file named by `<name>_FILE` (trailing
/// newlines dropped), else `None`. Both set is an error. An empty value counts as unset (an
/// empty secret is a variable that expanded to nothing, never a key), in either place.
pub(crate) fn setting(name: &str) -> anyhow::Result<Option<String>> {
    let file_variable = format!("{name}_FILE");
    let non_empty = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (non_empty(name), non_empty(&file_variable)) {
        (Some(_), Some(_)) => anyhow::bail!("set {name} or {file_variable}, not both"),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {file_variable} {path}"))?;
            let value = value.trim_end_matches(['\r', '\n']);
            Ok((!value.is_empty()).then(|| value.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// A provider's credential `name` (or `<name>_FILE`): visible ASCII characters only, as every
/// provider issues them. One with a line break (or a space, a control or non-ASCII character)
/// cannot go in a request's header: each request would fail and be retried as if the provider
/// were unreachable.
pub(crate) fn credential(name: &str) -> anyhow::Result<Option<String>> {
    let value = setting(name)?;
    if let Some(value) = &value
        && !value.chars().all(|character| character.is_ascii_graphic())
    {
        anyhow::bail!(
            "{name} (or {name}_FILE) holds a space, a line break, or a control or non-ASCII \
             character, which no provider's credential has: copy it again"
        );
    }
    Ok(value)
}

/// A comma-separated list setting (several values during a rotation); `None` when unset or
/// empty.
fn list_setting(name: &str) -> anyhow::Result<Option<Vec<String>>> {
    Ok(setting(name)?
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|items| !items.is_empty()))
}

/// The providers' webhook settings from the environment (docs/connectors.md, "Configuration").
pub(crate) fn webhooks() -> anyhow::Result<WebhookConfig> {
    let tolerance_seconds = match setting("LEDGER_STRIPE_WEBHOOK_TOLERANCE_SECONDS")? {
        Some(value) => value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|seconds| *seconds > 0)
            .with_context(|| {
                format!("LEDGER_STRIPE_WEBHOOK_TOLERANCE_SECONDS {value:?} is not a positive number of seconds")
            })?,
        None => stripe::TOLERANCE_SECONDS_DEFAULT,
    };
    let paypal = match list_setting("LEDGER_PAYPAL_WEBHOOK_IDS")? {
        None => None,
        Some(webhook_ids) => {
            let required = |name: &str| {
                credential(name)?.with_context(|| {
                    format!(
                        "LEDGER_PAYPAL_WEBHOOK_IDS is set, so {name} (or {name}_FILE) is needed"
                    )
                })
            };
            Some(PaypalConfig {
                webhook_ids,
                api_base: setting("LEDGER_PAYPAL_API_BASE")?
                    .unwrap_or_else(|| PAYPAL_API_BASE_DEFAULT.to_owned())
                    .trim_end_matches('/')
                    .to_owned(),
                client_id: required("LEDGER_PAYPAL_CLIENT_ID")?,
                client_secret: required("LEDGER_PAYPAL_CLIENT_SECRET")?,
            })
        }
    };
    Ok(WebhookConfig {
        stripe: list_setting("LEDGER_STRIPE_WEBHOOK_SECRETS")?
            .map(|secrets| stripe::WebhookSecrets::new(&secrets, tolerance_seconds)),
        paypal,
        xendit: list_setting("LEDGER_XENDIT_CALLBACK_TOKENS")?
            .map(|tokens| xendit::CallbackTokens::new(&tokens)),
        stripe_api: on_demand_stripe()?,
    })
}

/// How long ingest's on-demand sync waits for one request to Stripe.
const ON_DEMAND_REQUEST_TIMEOUT_SECONDS: u64 = 10;

/// Stripe's API for `POST /v1/sync/stripe/customers/{id}`, when `LEDGER_STRIPE_API_KEY` (or
/// `_FILE`) is set; without it the route answers 501 naming the variable.
fn on_demand_stripe() -> anyhow::Result<Option<ledger_sync::StripeReader>> {
    crate::provider_sync::stripe_api()?
        .map(|api| {
            ledger_sync::StripeReader::new(
                api,
                std::time::Duration::from_secs(ON_DEMAND_REQUEST_TIMEOUT_SECONDS),
            )
        })
        .transpose()
        .map_err(anyhow::Error::from)
}
