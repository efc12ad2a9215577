//! `ledger send <command> --json '<body>'`: send one command through NATS and print the answer.

use std::process::ExitCode;

use anyhow::Context;
use ledger_bus::{BusConfig, Client, Encoding, SendError};
use ledger_domain::proto;
use time::OffsetDateTime;

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The command, e.g. `register_customer`, `start_subscription`, `refund_payment`.
    command: String,
    /// The command's body as proto3 JSON, e.g. '{"email": "ada@example.com", "name": "Ada"}'.
    #[arg(long)]
    json: String,
    /// Idempotency key; resending the same request with it returns the original result, and
    /// another request with it is refused (`idempotency_key_reused`). Default: a new UUID.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Business time of the command, in Unix microseconds. Default: now, so a resend with the
    /// same idempotency key must pass the first send's time to be the same request.
    #[arg(long)]
    occurred_at_unix_micros: Option<i64>,
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
}

pub(crate) async fn run(
    nats_url: &str,
    bus: BusConfig,
    args: &SendArgs,
) -> anyhow::Result<ExitCode> {
    let body: serde_json::Value =
        serde_json::from_str(&args.json).context("--json is not valid JSON")?;
    let provider: ledger_domain::Provider = args.provider.parse()?;
    let issuer: ledger_domain::Issuer = args.issuer.parse()?;
    let occurred_at_unix_micros = match args.occurred_at_unix_micros {
        Some(occurred_at_unix_micros) => occurred_at_unix_micros,
        None => i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000)?,
    };
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
    let nats = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {nats_url}; is NATS_URL right?"))?;
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
