//! `ledger sync stripe | paypal | xendit`: the backfill of a provider account's history
//! through the writer (docs/connectors.md, "Backfill"; the import itself is `ledger_sync`).

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};
use ledger_sync::{
    ImportOptions, ImportReport, ListName, PageDone, PaypalReader, StripeApi, StripeReader,
    SyncError, XenditReader,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// How long one delivery waits for the writer's answer before it is sent again.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// `ledger sync ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SyncCommand {
    /// Import the Stripe account's customers, subscriptions, invoices, charges and disputes,
    /// then its events of the last 30 days, through the writer (run as NATS user `ingest`).
    /// Needs LEDGER_STRIPE_API_KEY (or _FILE; a restricted key with read access is enough) and
    /// DATABASE_URL for the cursors. Idempotent; resumes after an interruption.
    Stripe(StripeArgs),
    /// Import the PayPal account's sales and refunds (Transaction Search, the last three years
    /// or --since) and the subscriptions they pay, then its webhook event notifications of the
    /// last 30 days, through the writer (run as NATS user `ingest`). Needs
    /// LEDGER_PAYPAL_CLIENT_ID and LEDGER_PAYPAL_CLIENT_SECRET (or _FILE) of an app with
    /// Transaction Search enabled, and DATABASE_URL for the cursors. Idempotent; resumes after
    /// an interruption.
    Paypal(PaypalArgs),
    /// Import the Xendit account's invoices through the writer (run as NATS user `ingest`).
    /// Needs LEDGER_XENDIT_API_KEY (or _FILE; read permission for Invoices is enough) and
    /// DATABASE_URL for the cursors. Idempotent; resumes after an interruption.
    Xendit(BackfillArgs),
}

/// What every `ledger sync <provider>` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct BackfillArgs {
    /// Only objects created on or after this day (YYYY-MM-DD, UTC) or time (RFC 3339).
    #[arg(long, value_parser = parse_since)]
    since: Option<OffsetDateTime>,
    /// Stop after this many pages in all; run again to resume from there.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pages: Option<u64>,
    /// Pages whose objects are in flight to the writer at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pages_in_flight: u64,
    /// The longest one request to the provider may take, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
}

impl BackfillArgs {
    fn options(&self, events: bool) -> ImportOptions {
        ImportOptions {
            since: self.since,
            pages_max: self.pages,
            pages_in_flight: usize::try_from(self.pages_in_flight).unwrap_or(1),
            events,
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// `ledger sync stripe`.
#[derive(Debug, clap::Args)]
pub(crate) struct StripeArgs {
    #[command(flatten)]
    backfill: BackfillArgs,
    /// Do not read GET /v1/events after the object lists.
    #[arg(long)]
    no_events: bool,
    /// Import nothing: compare every subscription Stripe holds with the customers read model
    /// and print the drift, one line per subscription (missing on either side, different
    /// status, price, quantity, currency, period end). Exit code 0 when there is none, 1 when
    /// there is (docs/connectors.md, "Reconciliation").
    #[arg(long, conflicts_with_all = ["since", "pages"])]
    check: bool,
    /// With --check: import the drifting subscriptions as Stripe holds them now (inbox source
    /// repair), then check again and print what remains; the exit code is the second check's.
    #[arg(long, requires = "check")]
    repair: bool,
}

/// `ledger sync paypal`.
#[derive(Debug, clap::Args)]
pub(crate) struct PaypalArgs {
    #[command(flatten)]
    backfill: BackfillArgs,
    /// Do not read GET /v1/notifications/webhooks-events after the transactions.
    #[arg(long)]
    no_events: bool,
}

/// `--since`: a day (midnight UTC) or an RFC 3339 time, from 1970 (the providers' list filters
/// take Unix seconds) up to now (a later one lists nothing).
fn parse_since(text: &str) -> Result<OffsetDateTime, String> {
    let day_format = format_description!("[year]-[month]-[day]");
    let since = if text.len() == "2026-01-31".len() {
        time::Date::parse(text, day_format)
            .map(|day| day.midnight().assume_utc())
            .map_err(|error| {
                format!("{text:?} is not a day (YYYY-MM-DD, e.g. 2026-01-31): {error}")
            })?
    } else {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
            format!("{text:?} is neither a day (2026-01-31) nor an RFC 3339 time: {error}")
        })?
    };
    if since < OffsetDateTime::UNIX_EPOCH {
        return Err(format!(
            "{text:?} is before 1970-01-01: the providers list objects by their Unix time"
        ));
    }
    if since > OffsetDateTime::now_utc() {
        return Err(format!(
            "{text:?} is in the future: nothing was created since"
        ));
    }
    Ok(since)
}

/// Stripe's API from the environment (as provider-sync reads it): the key is required.
pub(crate) fn stripe_api() -> anyhow::Result<StripeApi> {
    crate::provider_sync::stripe_api()?.ok_or_else(|| {
        anyhow::anyhow!(
            "set LEDGER_STRIPE_API_KEY (or LEDGER_STRIPE_API_KEY_FILE) to a Stripe secret or \
             restricted key with read access"
        )
    })
}

/// A bar for one list: its length when the server gives a total, else a spinner; objects/s.
fn list_bar(list: ListName, total_count: Option<u64>) -> ProgressBar {
    let (bar, template) = match total_count {
        Some(total) => (
            ProgressBar::new(total),
            "{msg:>12} [{bar:40}] {human_pos}/{human_len} objects  {rate}/s  ETA {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg:>12} {spinner} {human_pos} objects  {rate}/s  {elapsed}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .map(|style| {
            style.with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{}", HumanCount(state.per_sec() as u64));
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(list.as_str());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `ledger sync stripe`: exit 1 when an object failed or could not be imported.
pub(crate) async fn stripe(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    args: &StripeArgs,
) -> anyhow::Result<ExitCode> {
    let reader = StripeReader::new(stripe_api()?, args.backfill.request_timeout())?;
    if args.check {
        return crate::reconcile::check(database_url, nats, bus, &reader, args.repair).await;
    }
    let options = args.backfill.options(!args.no_events);
    backfill(database_url, nats, bus, Reader::Stripe(reader), &options).await
}

/// `ledger sync paypal`: exit 1 when an object failed or could not be imported.
pub(crate) async fn paypal(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    args: &PaypalArgs,
) -> anyhow::Result<ExitCode> {
    let api = crate::provider_sync::paypal_api()?.ok_or_else(|| {
        anyhow::anyhow!(
            "set LEDGER_PAYPAL_CLIENT_ID and LEDGER_PAYPAL_CLIENT_SECRET (or _FILE) to the \
             credentials of a PayPal REST app with Transaction Search enabled"
        )
    })?;
    let reader = Reader::Paypal(PaypalReader::new(api, args.backfill.request_timeout())?);
    let options = args.backfill.options(!args.no_events);
    backfill(database_url, nats, bus, reader, &options).await
}

/// `ledger sync xendit`: exit 1 when an object failed or could not be imported.
pub(crate) async fn xendit(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    args: &BackfillArgs,
) -> anyhow::Result<ExitCode> {
    let api = crate::provider_sync::xendit_api()?.ok_or_else(|| {
        anyhow::anyhow!(
            "set LEDGER_XENDIT_API_KEY (or LEDGER_XENDIT_API_KEY_FILE) to a Xendit secret key \
             with read permission for Invoices"
        )
    })?;
    let reader = Reader::Xendit(XenditReader::new(api, args.request_timeout())?);
    backfill(database_url, nats, bus, reader, &args.options(false)).await
}

/// The provider a backfill reads.
enum Reader {
    Stripe(StripeReader),
    Paypal(PaypalReader),
    Xendit(XenditReader),
}

/// Imports what `reader` reads through the writer, with a bar per list, then prints the
/// report.
async fn backfill(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    reader: Reader,
    options: &ImportOptions,
) -> anyhow::Result<ExitCode> {
    let store = ledger_store::Store::connect(database_url)?;
    // Pages of objects are in flight at once: a writer busy with them may take longer than a
    // single command's 5 s before it answers (a retry would only come back as a duplicate).
    let client = ledger_bus::Client::new(nats, bus).with_request_timeout(DELIVERY_TIMEOUT);
    let mut bars = Bars::default();
    let mut progress = |page: &PageDone| bars.page(page);
    let report = match &reader {
        Reader::Stripe(reader) => {
            ledger_sync::import_stripe(reader, &store, &client, options, &mut progress).await
        }
        Reader::Paypal(reader) => {
            ledger_sync::import_paypal(reader, &store, &client, options, &mut progress).await
        }
        Reader::Xendit(reader) => {
            ledger_sync::import_xendit(reader, &store, &client, options, &mut progress).await
        }
    };
    bars.finish();
    print_report(report)
}

/// The progress display: one bar per list, in the order read.
#[derive(Default)]
struct Bars {
    current: Option<(ListName, ProgressBar)>,
}

impl Bars {
    fn page(&mut self, page: &PageDone) {
        if self
            .current
            .as_ref()
            .is_none_or(|(list, _)| *list != page.list)
        {
            self.finish();
            self.current = Some((page.list, list_bar(page.list, page.total_count)));
        }
        if let Some((_, bar)) = &self.current {
            bar.inc(page.objects);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

/// Prints a run's counts per list; exit 1 when an object failed or could not be imported.
fn print_report(report: Result<ImportReport, SyncError>) -> anyhow::Result<ExitCode> {
    let report = report?;
    println!(
        "list\tpages\tobjects\tskipped\tappended\tduplicate\tignored\tstale\tfailed\twaiting\tunreadable"
    );
    for (list, counts) in &report.lists {
        print_row(list.as_str(), counts);
    }
    print_row("total", &report.total());
    for list in &report.not_listed {
        println!(
            "{}: not offered by the server (404), skipped",
            list.as_str()
        );
    }
    if report.complete {
        println!("complete (correlation id {})", report.correlation_id);
    } else {
        println!(
            "stopped after {} page(s) (--pages); run again to resume from the cursors",
            report.total().pages
        );
    }
    let total = report.total();
    Ok(if total.failed > 0 || total.unreadable > 0 {
        println!(
            "{} object(s) failed and {} could not be imported: see `ledger connectors messages \
             --outcome failed` and the log",
            total.failed, total.unreadable
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line of the report, tab-separated.
fn print_row(name: &str, counts: &ledger_sync::ListReport) {
    println!(
        "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        counts.pages,
        counts.objects,
        counts.skipped,
        counts.appended,
        counts.duplicate,
        counts.ignored,
        counts.stale,
        counts.failed,
        counts.waiting,
        counts.unreadable
    );
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_a_day_or_a_time_from_1970_to_now_and_says_what_is_wrong() {
        assert_eq!(
            parse_since("2026-01-31").map(|since| since.unix_timestamp()),
            Ok(1_769_817_600)
        );
        assert_eq!(
            parse_since("2026-01-31T12:00:00+01:00").map(|since| since.unix_timestamp()),
            Ok(1_769_857_200)
        );
        let month = parse_since("2026-13-01").unwrap_err();
        assert!(
            month.contains("is not a day") && month.contains("month"),
            "{month}"
        );
        let before = parse_since("1969-01-01").unwrap_err();
        assert!(before.contains("before 1970-01-01"), "{before}");
        let future = parse_since("2999-01-01").unwrap_err();
        assert!(future.contains("in the future"), "{future}");
        let neither = parse_since("yesterday").unwrap_err();
        assert!(neither.contains("neither a day"), "{neither}");
    }
}
