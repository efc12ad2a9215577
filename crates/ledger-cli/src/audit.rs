//! `ledger audit verify`: recompute the hash chain over the event store, then compare the
//! table's head with every other copy that recorded it (the JetStream stream's last message,
//! each projector's checkpoint), so that a deleted tail is detected too. What this proves and
//! what it cannot: docs/decisions/0013-audit-verify-compares-the-head.md.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ledger_store::{CopyVerdict, Hash, HeadCopy, Store, TableHead};

use ledger_devenv::progress;

/// Exit status when the table was changed: a chain break, a copy ahead of the table or one
/// whose hash the table no longer has.
const EXIT_TAMPERED: u8 = 1;
/// Exit status when verification could not do what was asked: `--to` past the last event,
/// `--from` after `--to`, or the stream could not be read (without `--skip-stream`).
const EXIT_INCOMPLETE: u8 = 2;
/// How long connecting to NATS may take (JetStream requests keep async-nats's own timeout).
const NATS_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// First global position to verify.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Last global position to verify (default: the last appended); past the last event, the
    /// verification fails.
    #[arg(long)]
    to: Option<u64>,
    /// Do not compare the table's head with the JetStream stream (NATS unreachable, or the
    /// stream removed on purpose); the report says the stream was not checked.
    #[arg(long)]
    skip_stream: bool,
}

/// Where the event stream is, for comparing its last message with the table.
pub(crate) struct StreamLocation<'a> {
    pub(crate) nats_url: &'a str,
    /// The NATS user to read it as (`auditor` in `deploy/nats-auth.conf`).
    pub(crate) nats_auth: &'a ledger_bus::NatsAuth,
    pub(crate) stream_name: &'a str,
}

/// Verifies the chain over `--from..=--to` and compares the head with the stream and the
/// checkpoints; prints what was checked. Exit 0: intact; 1: tampered; 2: incomplete.
pub(crate) async fn verify(
    database_url: &str,
    stream: StreamLocation<'_>,
    args: VerifyArgs,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect(database_url)?;
    let head = store.head().await?;
    let mut report = String::new();
    let chain_intact = match chain_report(&store, &head, args.from, args.to, &mut report).await? {
        ChainVerdict::Intact => true,
        ChainVerdict::Tampered => false,
        ChainVerdict::NotVerified => {
            print!("audit verify: INCOMPLETE\n{report}");
            return Ok(ExitCode::from(EXIT_INCOMPLETE));
        }
    };
    writeln!(
        report,
        "  table head: position {}, hash {}",
        head.global_position,
        hex(&head.hash)
    )?;

    let mut copies_intact = true;
    let mut complete = true;
    match stream_head(&stream, args.skip_stream).await {
        StreamHead::Skipped => writeln!(
            report,
            "  stream {}: not checked (--skip-stream)",
            stream.stream_name
        )?,
        StreamHead::Unreadable(reason) => {
            complete = false;
            writeln!(
                report,
                "  stream {}: NOT CHECKED: {reason}; start NATS (NATS_URL, LEDGER_STREAM_NAME) \
                 or pass --skip-stream",
                stream.stream_name
            )?;
        }
        StreamHead::Read(copy) => {
            copies_intact &= compare(&store, &head, &copy, &mut report).await?;
        }
    }
    let client = crate::database::connect(database_url).await?;
    let checkpoints = ledger_projector::checkpoints(&client).await?;
    if checkpoints.is_empty() {
        writeln!(report, "  projector checkpoints: none in this database")?;
    }
    for copy in &checkpoints {
        copies_intact &= compare(&store, &head, copy, &mut report).await?;
    }

    let (verdict, status) = match (chain_intact && copies_intact, complete) {
        (false, _) => ("TAMPERED", EXIT_TAMPERED),
        (true, false) => ("INCOMPLETE", EXIT_INCOMPLETE),
        (true, true) => ("OK", 0),
    };
    println!("audit verify: {verdict}");
    print!("{report}");
    Ok(ExitCode::from(status))
}

/// What the chain check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainVerdict {
    Intact,
    Tampered,
    /// Nothing could be checked as asked (`--to` past the end, `--from` after `--to`).
    NotVerified,
}

impl ChainVerdict {
    fn word(self) -> &'static str {
        match self {
            ChainVerdict::Intact => "OK",
            ChainVerdict::Tampered => "TAMPERED",
            ChainVerdict::NotVerified => "INCOMPLETE",
        }
    }
}

/// Verifies the chain over `from..=to` (`to` defaults to the head) and writes what was
/// checked.
async fn chain_report(
    store: &Store,
    head: &TableHead,
    from: u64,
    to: Option<u64>,
    report: &mut String,
) -> anyhow::Result<ChainVerdict> {
    let last = head.global_position;
    let to = to.unwrap_or(last);
    if to > last {
        writeln!(
            report,
            "  chain: NOT VERIFIED: --to {to} is past the last event in the table \
             (position {last})"
        )?;
        return Ok(ChainVerdict::NotVerified);
    }
    let from = from.max(1);
    if last == 0 {
        writeln!(report, "  chain: the table has no events")?;
        return Ok(ChainVerdict::Intact);
    }
    if from > to {
        writeln!(
            report,
            "  chain: NOT VERIFIED: --from {from} is after --to {to}"
        )?;
        return Ok(ChainVerdict::NotVerified);
    }
    let bar = progress::events_bar(to + 1 - from, "verifying");
    let verification = store
        .verify_chain(from, to, |checked| bar.set_position(checked))
        .await?;
    bar.finish_and_clear();
    match verification.first_break {
        None => {
            writeln!(
                report,
                "  chain: {} events (positions {from}..={to}) match their hash chain; \
                 hash at {to}: {}",
                verification.verified_events,
                hex(&verification.last_verified_hash)
            )?;
            Ok(ChainVerdict::Intact)
        }
        Some(chain_break) => {
            writeln!(
                report,
                "  chain: TAMPERED at global position {}: {} ({} events from {from} before it \
                 verified)",
                chain_break.global_position, chain_break.reason, verification.verified_events
            )?;
            Ok(ChainVerdict::Tampered)
        }
    }
}

/// Compares one copy with the table and writes the line; false when it shows tampering.
async fn compare(
    store: &Store,
    head: &TableHead,
    copy: &HeadCopy,
    report: &mut String,
) -> anyhow::Result<bool> {
    let verdict = store.compare_head_copy(head, copy).await?;
    let (name, at, last) = (&copy.name, copy.global_position, head.global_position);
    match verdict {
        CopyVerdict::Level => writeln!(report, "  {name}: at {at}, level with the table")?,
        CopyVerdict::Behind { events } => writeln!(
            report,
            "  {name}: at {at}, behind the table by {events} (hash at {at} matches)"
        )?,
        CopyVerdict::Ahead { .. } => writeln!(
            report,
            "  {name}: AHEAD at {at}, past the table's last event ({last}): events {}..={at} \
             were deleted from the table",
            last + 1
        )?,
        CopyVerdict::HashMismatch => writeln!(
            report,
            "  {name}: at {at}, HASH MISMATCH: the table's event at {at} is not the one this \
             copy saw ({}): history was rewritten",
            hex(&copy.hash)
        )?,
    }
    Ok(!verdict.is_evidence_of_tampering())
}

/// What the stream says about the log's head.
enum StreamHead {
    Skipped,
    Unreadable(String),
    Read(HeadCopy),
}

/// The stream's last sequence and the chain hash its last message carries.
async fn stream_head(location: &StreamLocation<'_>, skip: bool) -> StreamHead {
    if skip {
        return StreamHead::Skipped;
    }
    match read_stream_head(location).await {
        Ok(copy) => StreamHead::Read(copy),
        Err(error) => StreamHead::Unreadable(ledger_store::error_text(error.as_ref())),
    }
}

async fn read_stream_head(location: &StreamLocation<'_>) -> anyhow::Result<HeadCopy> {
    let nats = tokio::time::timeout(
        Duration::from_millis(NATS_TIMEOUT_MS),
        ledger_bus::connect(location.nats_url, location.nats_auth, "ledger-audit"),
    )
    .await
    .with_context(|| format!("no answer from NATS at {} in time", location.nats_url))??;
    let jetstream = async_nats::jetstream::new(nats);
    let mut stream = jetstream
        .get_stream(location.stream_name)
        .await
        .context("cannot read the stream")?;
    let last_sequence = stream
        .info()
        .await
        .context("cannot read the stream's state")?
        .state
        .last_sequence;
    let name = format!("stream {}", location.stream_name);
    if last_sequence == 0 {
        return Ok(HeadCopy {
            name,
            global_position: 0,
            hash: ledger_store::GENESIS_HASH,
        });
    }
    let message = stream
        .get_raw_message(last_sequence)
        .await
        .with_context(|| format!("cannot read the stream's last message ({last_sequence})"))?;
    let event = ledger_bus::decode_recorded_event(&message.payload)
        .with_context(|| format!("the stream's message {last_sequence} is not an event"))?;
    anyhow::ensure!(
        event.global_position == last_sequence,
        "the stream's message {last_sequence} carries global position {}",
        event.global_position
    );
    Ok(HeadCopy {
        name,
        global_position: last_sequence,
        hash: event.hash,
    })
}

/// Verifies `from..=to` of the table's chain (the demo's check of its own history) and prints
/// the verdict; true when intact.
pub(crate) async fn verify_store(
    store: &Store,
    from: u64,
    to: Option<u64>,
) -> anyhow::Result<bool> {
    let head = store.head().await?;
    let mut report = String::new();
    let verdict = chain_report(store, &head, from, to, &mut report).await?;
    print!("audit verify: {}\n{report}", verdict.word());
    Ok(verdict == ChainVerdict::Intact)
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}
