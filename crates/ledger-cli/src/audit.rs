//! `ledger audit verify`: recompute the hash chain over the event store.

use std::process::ExitCode;

use ledger_store::Store;

use crate::progress;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// First global position to verify.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Last global position to verify (default: the last appended).
    #[arg(long)]
    to: Option<u64>,
}

pub(crate) async fn verify(database_url: &str, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(database_url)?;
    Ok(if verify_store(&store, args.from, args.to).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Verifies `from..=to` with a progress bar and prints the verdict; true when intact.
pub(crate) async fn verify_store(
    store: &Store,
    from: u64,
    to: Option<u64>,
) -> anyhow::Result<bool> {
    let to = match to {
        Some(to) => to,
        None => store.last_position().await?,
    };
    let bar = progress::events_bar((to + 1).saturating_sub(from), "verifying");
    let verification = store
        .verify_chain(from, to, |checked| bar.set_position(checked))
        .await?;
    bar.finish_and_clear();
    match verification.first_break {
        None => {
            let head_hash: String = verification
                .last_verified_hash
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            println!(
                "audit verify: OK, {} events (positions {from}..={to}) match their hash chain; \
                 hash at {to}: {head_hash}",
                verification.verified_events
            );
            Ok(true)
        }
        Some(chain_break) => {
            println!(
                "audit verify: TAMPERED at global position {}: {} ({} events before it verified)",
                chain_break.global_position, chain_break.reason, verification.verified_events
            );
            Ok(false)
        }
    }
}
