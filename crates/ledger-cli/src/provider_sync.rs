//! `ledger run provider-sync` and `ledger provider-sync attempts`: the outbound half of the
//! connectors (docs/connectors.md, "Outbound: provider-sync").

use std::process::ExitCode;
use std::time::Duration;

use futures_util::FutureExt;
use indicatif::MultiProgress;
use provider_sync::{
    ATTEMPT_ROWS_MAX, ApiSecret, PaypalApi, ProviderApis, StripeApi, SyncConfig, XenditApi,
};
use time::format_description::well_known::Rfc3339;

use crate::ingest::{PAYPAL_API_BASE_DEFAULT, credential, setting};
use crate::projectors;
use ledger_connectors::printable;
use ledger_devenv::progress;

/// Stripe's API.
const STRIPE_API_BASE_DEFAULT: &str = "https://api.stripe.com";
/// Xendit's API.
const XENDIT_API_BASE_DEFAULT: &str = "https://api.xendit.co";
/// `--request-timeout-ms` unless given (also the demo's, `demo_stripe`).
pub(crate) const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// `--concurrent-requests` unless given (also the demo's).
pub(crate) const CONCURRENT_REQUESTS_DEFAULT: u64 = 4;

/// `ledger run provider-sync`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// The longest one request to a provider may take, in milliseconds.
    #[arg(long, env = "LEDGER_PROVIDER_SYNC_REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// Requests in flight to one provider at most.
    #[arg(long, env = "LEDGER_PROVIDER_SYNC_CONCURRENT_REQUESTS", default_value_t = CONCURRENT_REQUESTS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrent_requests: u64,
    /// Also reconcile the Stripe account with the ledger this often (`1h`, `30m`, `1day`): a
    /// `ledger sync stripe --check --repair` round, the first one this long after start,
    /// logged; never two at once. Needs LEDGER_STRIPE_API_KEY, and NATS user provider_sync
    /// may then publish Stripe deliveries (docs/connectors.md, "Reconciliation").
    #[arg(long, env = "LEDGER_RECONCILE_EVERY", value_parser = parse_every)]
    reconcile_every: Option<Duration>,
}

/// A duration of at least 5 seconds, as humantime reads it (`1h`, `90min`, `1day 2h`). A round
/// lists every subscription at Stripe: production periods are minutes to hours (Stripe's rate
/// limits), seconds only suit a test account.
fn parse_every(text: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))?;
    if every < Duration::from_secs(5) {
        return Err(format!("{text:?} is shorter than 5 seconds"));
    }
    Ok(every)
}

/// `ledger provider-sync ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ProviderSyncCommand {
    /// The newest requests made to the providers, with their call's status and result.
    Attempts {
        /// Only the failed ones (retried or refused) and those still in flight.
        #[arg(long)]
        failed: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// A provider's key `name` (or `<name>_FILE`), required when its base URL variable is set.
fn required(base: &str, name: &str) -> anyhow::Result<Option<String>> {
    let value = credential(name)?;
    if value.is_none() && std::env::var_os(base).is_some() {
        anyhow::bail!("{base} is set, so {name} (or {name}_FILE) is needed");
    }
    Ok(value)
}

/// A base URL variable, or its default, without a trailing `/`.
fn base(name: &str, default: &str) -> anyhow::Result<String> {
    Ok(setting(name)?
        .unwrap_or_else(|| default.to_owned())
        .trim_end_matches('/')
        .to_owned())
}

/// Stripe's API from the environment (`LEDGER_STRIPE_API_BASE`, `LEDGER_STRIPE_API_KEY` or
/// `_FILE`) when its key is set: what provider-sync calls, what the reconciliation and
/// ingest's on-demand sync read.
pub(crate) fn stripe_api() -> anyhow::Result<Option<StripeApi>> {
    Ok(
        match required("LEDGER_STRIPE_API_BASE", "LEDGER_STRIPE_API_KEY")? {
            None => None,
            Some(api_key) => Some(StripeApi {
                api_base: base("LEDGER_STRIPE_API_BASE", STRIPE_API_BASE_DEFAULT)?,
                api_key: ApiSecret::new(api_key),
            }),
        },
    )
}

/// PayPal's API from the environment (`LEDGER_PAYPAL_API_BASE`, `LEDGER_PAYPAL_CLIENT_ID`,
/// `LEDGER_PAYPAL_CLIENT_SECRET` or `_FILE`) when its client id and secret are set: what
/// provider-sync calls and the backfill reads.
pub(crate) fn paypal_api() -> anyhow::Result<Option<PaypalApi>> {
    Ok(
        match (
            credential("LEDGER_PAYPAL_CLIENT_ID")?,
            credential("LEDGER_PAYPAL_CLIENT_SECRET")?,
        ) {
            (None, None) => None,
            (Some(client_id), Some(client_secret)) => Some(PaypalApi {
                api_base: base("LEDGER_PAYPAL_API_BASE", PAYPAL_API_BASE_DEFAULT)?,
                client_id,
                client_secret: ApiSecret::new(client_secret),
            }),
            _ => anyhow::bail!(
                "set both LEDGER_PAYPAL_CLIENT_ID and LEDGER_PAYPAL_CLIENT_SECRET (or its _FILE), or neither"
            ),
        },
    )
}

/// Xendit's API from the environment (`LEDGER_XENDIT_API_BASE`, `LEDGER_XENDIT_API_KEY` or
/// `_FILE`) when its key is set: what provider-sync calls and the backfill reads.
pub(crate) fn xendit_api() -> anyhow::Result<Option<XenditApi>> {
    Ok(
        match required("LEDGER_XENDIT_API_BASE", "LEDGER_XENDIT_API_KEY")? {
            None => None,
            Some(api_key) => Some(XenditApi {
                api_base: base("LEDGER_XENDIT_API_BASE", XENDIT_API_BASE_DEFAULT)?,
                api_key: ApiSecret::new(api_key),
            }),
        },
    )
}

/// The providers' APIs from the environment: each provider whose key (or client id and
/// secret) is set; a base URL without its key is an error.
fn apis(args: &RunArgs) -> anyhow::Result<ProviderApis> {
    let stripe = stripe_api()?;
    let paypal = paypal_api()?;
    let xendit = xendit_api()?;
    Ok(ProviderApis::new(
        stripe,
        paypal,
        xendit,
        Duration::from_millis(args.request_timeout_ms),
        usize::try_from(args.concurrent_requests).unwrap_or(1),
    )?)
}

/// Runs the projector and the worker until Ctrl-C / SIGTERM, again after every failure that
/// waiting can fix; a configuration error stops it at start.
pub(crate) async fn run(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    // Checked before anything runs, so a missing key is an error at start.
    apis(args)?;
    let reconciling = match args.reconcile_every {
        None => None,
        Some(every) => {
            let Some(api) = stripe_api()? else {
                anyhow::bail!(
                    "--reconcile-every reconciles Stripe: set LEDGER_STRIPE_API_KEY (or \
                     LEDGER_STRIPE_API_KEY_FILE)"
                );
            };
            let reader = ledger_sync::StripeReader::new(
                api,
                Duration::from_millis(args.request_timeout_ms),
            )?;
            let client = ledger_bus::Client::new(nats.clone(), bus.clone());
            tracing::info!(every = %humantime::format_duration(every), "reconciling Stripe periodically");
            Some(tokio::spawn(crate::reconcile::every(
                database_url.to_owned(),
                client,
                reader,
                every,
            )))
        }
    };
    let store = ledger_store::Store::connect(database_url)?;
    let table_last = store.last_position().await?;
    let config = ledger_projector::ProjectorConfig {
        bus,
        ..ledger_projector::ProjectorConfig::default()
    };
    let bars = MultiProgress::new();
    let bar = (
        bars.add(progress::events_bar(table_last, "provider_sync")),
        table_last,
    );
    let supervised = projectors::supervise(
        "provider_sync",
        false,
        bar,
        |_, shutdown, progress| {
            let (nats, config) = (nats.clone(), &config);
            async move {
                let apis = apis(args)
                    .map_err(|error| provider_sync::SyncError::Config(format!("{error:#}")))?;
                provider_sync::run(
                    database_url,
                    nats,
                    config,
                    apis,
                    SyncConfig::default(),
                    false,
                    shutdown,
                    progress,
                )
                .await
            }
            .boxed()
        },
        provider_sync::SyncError::needs_operator,
    )
    .await;
    if let Some(reconciling) = reconciling {
        reconciling.abort();
    }
    supervised?;
    Ok(ExitCode::SUCCESS)
}

/// One row of `ledger provider-sync attempts`, tab-separated: when, provider, request, outcome,
/// status code, latency, call, call status, error, what the ledger made of the answer. The
/// provider's text (its error message, the ids its webhooks named) is shown with its control
/// characters escaped: it can neither add a row to the listing nor reach the operator's terminal
/// as an escape sequence.
fn attempt_line(row: provider_sync::AttemptRow) -> String {
    let optional = |value: Option<i32>| value.map_or("-".to_owned(), |v| v.to_string());
    let text = |value: Option<String>| value.map_or("-".to_owned(), |v| printable(&v));
    format!(
        "{}\t{}\t{}\t{}\t{}\t{} ms\tcall {} ({} {}, {})\t{}\t{}",
        row.started_at.format(&Rfc3339).unwrap_or_default(),
        printable(&row.provider),
        printable(&row.request),
        printable(&row.outcome),
        optional(row.status_code),
        optional(row.latency_ms),
        row.call_id,
        printable(&row.action),
        printable(&row.subscription_id),
        printable(&row.call_status),
        text(row.error),
        text(row.call_result),
    )
}

/// `ledger provider-sync attempts`.
pub(crate) async fn command(
    database_url: &str,
    command: ProviderSyncCommand,
) -> anyhow::Result<ExitCode> {
    let client = crate::database::connect(database_url).await?;
    match command {
        ProviderSyncCommand::Attempts { failed, limit } => {
            let rows =
                provider_sync::attempts(&client, failed, limit.min(ATTEMPT_ROWS_MAX)).await?;
            for row in rows {
                println!("{}", attempt_line(row));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_shows_the_providers_text_with_its_control_characters_escaped() {
        let row = provider_sync::AttemptRow {
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            call_id: uuid::Uuid::nil(),
            provider: "paypal".to_owned(),
            action: "cancel".to_owned(),
            subscription_id: "I-1\nforged".to_owned(),
            request: "POST /v1/billing/subscriptions/I-1/cancel".to_owned(),
            outcome: "refused".to_owned(),
            status_code: Some(422),
            latency_ms: Some(3),
            error: Some("X: down\nforged-row\t\u{1b}[31mred".to_owned()),
            call_status: "done".to_owned(),
            call_result: None,
        };
        let line = attempt_line(row);
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(
            line.contains("\tX: down\\nforged-row\\t\\u{1b}[31mred\t-"),
            "{line:?}"
        );
        assert!(line.contains("(cancel I-1\\nforged, done)"), "{line:?}");
    }
}
