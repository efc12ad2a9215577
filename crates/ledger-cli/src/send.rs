//! `ledger send <command> --json '<body>'`: send one command through NATS and print the answer.

use std::process::ExitCode;

use anyhow::Context;
use ledger_bus::{BusConfig, Client, Encoding, SendError};
use ledger_domain::proto;
use time::OffsetDateTime;

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The command (the field names of `ledger.v1.Command` in proto/ledger/v1/commands.proto).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(ledger_domain::COMMAND_NAMES))]
    command: String,
    /// The command's body as proto3 JSON, e.g. '{"email": "ada@example.com", "name": "Ada"}'.
    #[arg(long)]
    json: String,
    /// Idempotency key; resending the same request with it returns the original result, and
    /// another request with it is refused (`idempotency_key_reused`). Default: a new UUID.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The customer (UUID), or the integration for integration commands; omit for
    /// register_customer and register_integration to let the ledger choose one.
    #[arg(long, default_value = "")]
    customer_id: String,
    /// The customer's stream version the command is based on.
    #[arg(long)]
    expected_version: Option<u64>,
    /// stripe, paypal, xendit or internal.
    #[arg(long, default_value = "internal")]
    provider: String,
    /// The customer's account id at the provider.
    #[arg(long, default_value = "")]
    account_id: String,
    /// internal or payment_provider.
    #[arg(long, default_value = "internal")]
    issuer: String,
    /// Business time: when it happened, in RFC 3339 (`2026-02-10T09:30:00Z`). Default: now, so
    /// a resend with the same idempotency key must repeat the first send's time to be the same
    /// request. Late and out-of-order facts are sent with the time they happened.
    #[arg(long, value_parser = parse_occurred_at)]
    occurred_at: Option<OffsetDateTime>,
}

fn parse_occurred_at(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("expected RFC 3339, e.g. 2026-02-10T09:30:00Z: {error}"))
}

pub(crate) async fn run(
    nats: async_nats::Client,
    bus: BusConfig,
    args: &SendArgs,
) -> anyhow::Result<ExitCode> {
    let body: serde_json::Value =
        serde_json::from_str(&args.json).context("--json is not valid JSON")?;
    let provider: ledger_domain::Provider = args.provider.parse()?;
    let issuer: ledger_domain::Issuer = args.issuer.parse()?;
    let occurred_at = args.occurred_at.unwrap_or_else(OffsetDateTime::now_utc);
    let occurred_at_unix_micros = i64::try_from(occurred_at.unix_timestamp_nanos() / 1_000)?;
    let metadata = proto::CommandMetadata {
        idempotency_key: args
            .idempotency_key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        customer_id: args.customer_id.clone(),
        expected_version: args.expected_version,
        occurred_at_unix_micros,
        issuer: proto::Issuer::from(issuer) as i32,
        payment_provider: proto::PaymentProvider::from(provider) as i32,
        account_id: args.account_id.clone(),
        correlation_id: String::new(),
        causation_id: String::new(),
    };
    // The command is `{"metadata": ..., "<command>": <body>}` in the proto3 JSON mapping.
    let command_json = serde_json::json!({
        "metadata": serde_json::to_value(&metadata)?,
        args.command.as_str(): body,
    });
    let command: proto::Command = serde_json::from_value(command_json).with_context(|| {
        format!(
            "{:?} is not a command, or its body does not match it (see proto/ledger/v1/commands.proto)",
            args.command
        )
    })?;
    let client = Client::new(nats, bus).with_encoding(Encoding::Json);
    match client.send(&command).await {
        Ok(accepted) => {
            println!("{}", serde_json::to_string_pretty(&accepted)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(SendError::Rejected(rejected)) => {
            println!("{}", serde_json::to_string_pretty(&rejected)?);
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other.into()),
    }
}
