//! `ledger notify`: operate the monitoring notifications (integrations, deliveries, retries, a
//! test message), on the database in `DATABASE_URL`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ledger_secrets::SecretKeys;
use projector_notify::{
    AllowedTarget, DELIVERY_ROWS_MAX, DeliveryConfig, EgressPolicy, SMTP_PORTS_DEFAULT,
};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use ledger_connectors::printable;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NotifyCommand {
    /// The integrations (secrets masked).
    List,
    /// The newest deliveries with their last attempt.
    Deliveries {
        /// Only those that are dead or failed and wait for a retry.
        #[arg(long)]
        failed: bool,
        /// Rows to show (at most 1,000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a delivery again now, with a fresh retry schedule (a dead one included).
    Retry {
        /// The delivery id (from `ledger notify deliveries`).
        delivery_id: Uuid,
    },
    /// Send a sample notification through an integration now and print how it went.
    Test {
        /// The integration id (from `ledger notify list`).
        integration_id: Uuid,
        #[command(flatten)]
        egress: EgressArgs,
    },
}

/// Where the notify delivery worker may connect (docs/security.md, "Outbound requests"):
/// by default `https://` only, SMTP ports 25, 465 and 587, and no loopback, private,
/// link-local or other internal address, checked on the address each connection reaches.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EgressArgs {
    /// Also send to `http://` URLs.
    #[arg(long, env = "LEDGER_NOTIFY_ALLOW_HTTP")]
    notify_allow_http: bool,
    /// Internal networks, addresses or host names the worker may reach anyway,
    /// comma-separated: `10.1.0.0/16,127.0.0.1,relay.internal`.
    #[arg(long, env = "LEDGER_NOTIFY_ALLOW_INTERNAL", value_delimiter = ',')]
    notify_allow_internal: Vec<AllowedTarget>,
    /// The SMTP ports the worker may connect to, comma-separated.
    #[arg(long, env = "LEDGER_NOTIFY_SMTP_PORTS", value_delimiter = ',', default_values_t = SMTP_PORTS_DEFAULT)]
    notify_smtp_ports: Vec<u16>,
    /// The keys that open the integrations' sealed secrets.
    #[command(flatten)]
    secrets: SecretsArgs,
}

impl EgressArgs {
    /// The default delivery schedule with this policy and these keys.
    pub(crate) fn delivery_config(&self) -> anyhow::Result<DeliveryConfig> {
        Ok(DeliveryConfig {
            egress: EgressPolicy {
                allow_http: self.notify_allow_http,
                allowlist: self.notify_allow_internal.clone(),
                smtp_ports: self.notify_smtp_ports.clone(),
            },
            secrets: self.secrets.keys()?,
            ..DeliveryConfig::default()
        })
    }
}

/// The key ring of integration secrets (docs/security.md, "Secrets and key rotation"): the
/// writer seals with the first key, the delivery worker opens with any.
#[derive(Clone, clap::Args)]
pub(crate) struct SecretsArgs {
    /// `key_id:base64 key` entries (32-byte keys, `openssl rand -base64 32`), comma-separated,
    /// the sealing key first.
    #[arg(long, env = "LEDGER_SECRETS_KEYS", hide_env_values = true)]
    secrets_keys: Option<String>,
    /// A file holding the same entries, one per line (when --secrets-keys is not set).
    #[arg(long, env = "LEDGER_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsArgs")
            .field("secrets_keys", &self.secrets_keys.as_ref().map(|_| "****"))
            .field("secrets_key_file", &self.secrets_key_file)
            .finish()
    }
}

impl SecretsArgs {
    /// The key ring, or `None` when neither setting is given.
    pub(crate) fn keys(&self) -> anyhow::Result<Option<Arc<SecretKeys>>> {
        Ok(SecretKeys::from_settings(
            self.secrets_keys.as_deref(),
            self.secrets_key_file.as_deref(),
        )?
        .map(Arc::new))
    }
}

pub(crate) async fn run(database_url: &str, command: NotifyCommand) -> anyhow::Result<ExitCode> {
    let mut client = crate::database::connect(database_url).await?;
    projector_notify::ensure_outbox(&mut client).await?;
    match command {
        NotifyCommand::List => {
            let integrations = projector_notify::integrations(&client).await?;
            if integrations.is_empty() {
                println!(
                    "no integrations (register one with `ledger send register_integration`, and \
                     run `ledger run projector notify`)"
                );
            }
            for integration in integrations {
                println!(
                    "{}  {:<24} {:<8} {:<8} {}\n    kinds: {}",
                    integration.integration_id,
                    printable(&integration.name),
                    integration.channel,
                    integration.status,
                    printable(&integration.target),
                    integration.kinds.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NotifyCommand::Deliveries { failed, limit } => {
            let rows =
                projector_notify::deliveries(&client, failed, limit.min(DELIVERY_ROWS_MAX)).await?;
            println!(
                "{:<36}  {:<36}  {:<20} {:<9} {:>3} {:>4} {:>6}  {:<20}  error",
                "delivery", "integration", "kind", "status", "try", "code", "ms", "next attempt"
            );
            for row in rows {
                let optional = |value: Option<i32>| value.map_or("-".to_owned(), |v| v.to_string());
                println!(
                    "{:<36}  {:<36}  {:<20} {:<9} {:>3} {:>4} {:>6}  {:<20}  {}",
                    row.delivery_id,
                    row.integration_id,
                    row.kind,
                    row.status,
                    row.attempts,
                    optional(row.last_status_code),
                    optional(row.last_latency_ms),
                    row.next_attempt_at
                        .and_then(|at| at.format(&Rfc3339).ok())
                        .unwrap_or_else(|| "-".to_owned()),
                    printable(&row.last_error.unwrap_or_default())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NotifyCommand::Retry { delivery_id } => {
            if projector_notify::retry(&client, delivery_id).await? {
                println!(
                    "delivery {delivery_id} is due now; the worker of `ledger run projector notify` sends it"
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no undelivered delivery {delivery_id}");
                Ok(ExitCode::FAILURE)
            }
        }
        NotifyCommand::Test {
            integration_id,
            egress,
        } => {
            let outcome = projector_notify::send_test(
                &mut client,
                integration_id,
                &egress.delivery_config()?,
            )
            .await?;
            let code = outcome
                .status_code
                .map_or("no answer".to_owned(), |code| code.to_string());
            match outcome.error {
                None => {
                    println!(
                        "sent {} sample as delivery {}: {code} in {} ms",
                        outcome.kind.as_str(),
                        outcome.delivery_id,
                        outcome.latency_ms
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(error) => {
                    eprintln!(
                        "the test delivery {} failed ({code}, {} ms): {error}",
                        outcome.delivery_id, outcome.latency_ms
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
