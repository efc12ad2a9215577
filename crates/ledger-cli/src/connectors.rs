//! `ledger connectors`: the provider inbox. `messages` lists the recorded webhook deliveries
//! (reading the database, as an auditor would); `renormalize` sends stored messages through
//! the writer again (docs/connectors.md, "Path: ingest, writer, inbox").

use std::process::ExitCode;

use anyhow::Context;
use ledger_bus::{BusConfig, Client};
use ledger_domain::{Provider, proto};
use ledger_store::{INBOX_ROWS_MAX, InboxFilter, InboxOutcome, InboxRow, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ledger_connectors::printable;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConnectorsCommand {
    /// List the inbox's recorded deliveries, newest first.
    Messages {
        /// Only this provider's: stripe, paypal or xendit.
        #[arg(long, value_parser = parse_provider)]
        provider: Option<Provider>,
        /// Only this outcome: appended, duplicate, ignored, stale, failed or waiting.
        #[arg(long, value_parser = parse_outcome)]
        outcome: Option<InboxOutcome>,
        /// Rows at most (up to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Normalize stored messages again through the writer (as the NATS user `ingest`): what
    /// was appended is not appended again (idempotency keys); a command that changed under the
    /// same key is reported, not appended. Oldest first.
    Renormalize {
        /// The provider whose messages to re-run.
        #[arg(long, value_parser = parse_provider)]
        provider: Provider,
        /// Only messages received at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
    },
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    match text.parse() {
        Ok(Provider::Internal) | Err(_) => Err(format!(
            "unknown provider {text:?}: expected stripe, paypal or xendit"
        )),
        Ok(provider) => Ok(provider),
    }
}

fn parse_outcome(text: &str) -> Result<InboxOutcome, String> {
    text.parse()
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
        format!("{text:?} is not an RFC 3339 time (2026-11-30T00:00:00Z): {error}")
    })
}

fn time_text(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

fn positions_text(positions: &[u64]) -> String {
    if positions.is_empty() {
        return "-".to_owned();
    }
    positions
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `ledger connectors messages`.
pub(crate) async fn messages(
    database_url: &str,
    provider: Option<Provider>,
    outcome: Option<InboxOutcome>,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect(database_url)?;
    let rows = store
        .inbox_rows(&InboxFilter {
            provider,
            outcome,
            limit,
            ..InboxFilter::default()
        })
        .await?;
    println!("received_at\tprovider\tevent_id\tevent_type\toutcome\tpositions\tinbox_id\treason");
    for InboxRow {
        row,
        global_positions,
        ..
    } in &rows
    {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            time_text(row.received_at),
            row.provider,
            printable(&row.provider_event_id),
            printable(&row.event_type),
            row.outcome,
            positions_text(global_positions),
            row.id,
            printable(&row.reason)
        );
    }
    eprintln!("{} message(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `ledger connectors renormalize`: exit 1 when a message could not be re-run or a mapping
/// changed under a used key.
pub(crate) async fn renormalize(
    database_url: &str,
    nats: async_nats::Client,
    bus: BusConfig,
    provider: Provider,
    since: Option<OffsetDateTime>,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect(database_url)?;
    let rows: Vec<InboxRow> = store
        .inbox_rows(&InboxFilter {
            provider: Some(provider),
            received_since: since,
            limit: INBOX_ROWS_MAX,
            oldest_first: true,
            ..InboxFilter::default()
        })
        .await?
        .into_iter()
        // The deliveries as received: not redeliveries, not earlier re-runs.
        .filter(|row| {
            row.row.outcome != InboxOutcome::Duplicate && row.row.renormalizes_inbox_id.is_none()
        })
        .collect();
    let client = Client::new(nats, bus);
    let total = rows.len();
    let (mut appended, mut changed, mut failed) = (0_usize, 0_usize, 0_usize);
    for (done, stored) in rows.iter().enumerate() {
        let delivery = proto::ProviderDelivery {
            provider: proto::PaymentProvider::from(provider) as i32,
            body: bytes::Bytes::new(),
            received_at_unix_micros: i64::try_from(
                stored.row.received_at.unix_timestamp_nanos() / 1_000,
            )
            .unwrap_or_default(),
            correlation_id: String::new(),
            renormalizes_inbox_id: stored.row.id.to_string(),
            // A re-run keeps its original row's source.
            source: proto::DeliverySource::Unspecified as i32,
        };
        let recorded = client.deliver(&delivery).await.with_context(|| {
            format!(
                "re-normalizing inbox row {} ({}); the rows before it are done",
                stored.row.id,
                printable(&stored.row.provider_event_id)
            )
        })?;
        let outcome = ledger_bus::delivery_outcome_name(recorded.outcome());
        if !recorded.global_positions.is_empty() {
            appended += 1;
        }
        if !recorded.changed_idempotency_keys.is_empty() {
            changed += 1;
            println!(
                "{} {}: the mapping changed under idempotency keys {} (not appended)",
                stored.row.id,
                printable(&stored.row.provider_event_id),
                printable(&recorded.changed_idempotency_keys.join(", "))
            );
        } else if recorded.outcome() == proto::DeliveryOutcome::Failed {
            failed += 1;
        }
        println!(
            "[{}/{total}] {} {} -> {outcome} {} {}",
            done + 1,
            printable(&stored.row.provider_event_id),
            printable(&stored.row.event_type),
            positions_text(&recorded.global_positions),
            printable(&recorded.reason)
        );
    }
    println!(
        "{total} message(s) re-normalized: {appended} appended new events, {changed} changed \
         mappings reported, {failed} failed"
    );
    if total == INBOX_ROWS_MAX as usize {
        println!(
            "only the first {INBOX_ROWS_MAX} messages were re-run: run again with --since after \
             the last one"
        );
    }
    Ok(if changed > 0 || failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
