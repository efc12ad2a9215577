//! `ledger bench sync`: the backfill's import rate (`ledger_sync::import_stripe`, the same code
//! as `ledger sync stripe`) of a generated Stripe account, its pages recorded to a file first
//! and served from it by a local HTTP server, so the figure is the ledger's own cost (reading
//! the pages, wrapping, one delivery page per list page (decision 0035), the writer's parse,
//! resolve, normalize, inbox and group-commit append), not the making of the pages.
//! Half the objects are customers, half their subscriptions (one each). Printed next to two
//! baselines of the same run: reading the pages alone from the local server, and the store's
//! raw append of as many events in batches of 100; and with the process's resident memory
//! before, during (its peak) and after: pages are streamed, so memory must not grow with the
//! account (the writer's cache of customers' states is bounded, `--cache-mib`). The resident
//! memory is also printed after each tenth of the objects, to show where it levels off.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use ledger_bus::Client;
use ledger_store::Store;
use ledger_sync::{ImportOptions, StripeApi, StripeReader};
use serde_json::json;

use crate::webhooks::{rss_kib, rss_kib_of};

const BENCH_DATABASE: &str = "ledger_bench_sync";
/// How long one delivery waits for the writer's answer: `ledger sync stripe`'s timeout.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The generated account's objects are dated from here (2026-01-01T00:00:00Z), one second
/// apart.
const CREATED_FROM: i64 = 1_767_225_600;

#[derive(Debug, clap::Args)]
pub struct SyncBenchArgs {
    /// Objects in the generated account (half customers, half subscriptions).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..))]
    objects: u64,
    /// Pages in flight to the writer at once (`ledger sync stripe --pages-in-flight`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pages_in_flight: u64,
    /// MiB of customers' states the writer keeps in memory at most (`ledger run writer
    /// --cache-mib`; the same default).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    cache_mib: u64,
    /// Skip the raw append baseline.
    #[arg(long)]
    no_baseline: bool,
}

/// The generated account: `customers` customers `cus_<n>`, each with one active subscription
/// `sub_<n>`, listed oldest first.
#[derive(Debug, Clone, Copy)]
struct Account {
    customers: u64,
}

impl Account {
    fn customer(n: u64) -> serde_json::Value {
        json!({
            "id": format!("cus_{n:09}"), "object": "customer", "livemode": false,
            "created": CREATED_FROM + i64::try_from(n).unwrap_or(0),
            "email": format!("c{n}@bench.example"), "name": format!("Bench {n}"),
            "balance": 0, "currency": "usd", "delinquent": false, "metadata": {},
        })
    }

    fn subscription(n: u64) -> serde_json::Value {
        let created = CREATED_FROM + i64::try_from(n).unwrap_or(0);
        json!({
            "id": format!("sub_{n:09}"), "object": "subscription", "livemode": false,
            "customer": format!("cus_{n:09}"), "status": "active", "created": created,
            "start_date": created, "current_period_start": created,
            "current_period_end": created + 31 * 86_400, "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{
                "id": format!("si_{n:09}"), "object": "subscription_item", "quantity": 1 + n % 3,
                "price": {"id": "price_bench", "object": "price", "unit_amount": 1_500,
                          "currency": "usd", "recurring": {"interval": "month",
                          "interval_count": 1}},
            }]},
            "metadata": {},
        })
    }

    /// The page of the list at `path` from its object `first` (empty for lists it has none
    /// of).
    fn page(self, path: &str, first: u64, limit: u64) -> serde_json::Value {
        let make: fn(u64) -> serde_json::Value = match path {
            "/v1/customers" => Account::customer,
            "/v1/subscriptions" => Account::subscription,
            _ => return json!({"object": "list", "data": [], "has_more": false, "url": path}),
        };
        let end = (first + limit).min(self.customers);
        let data: Vec<serde_json::Value> = (first..end).map(make).collect();
        json!({"object": "list", "data": data, "has_more": end < self.customers, "url": path})
    }
}

/// The account's list pages of [`PAGE_OBJECTS`] objects, as the server answers them, recorded
/// to a file before the import (the file is deleted when this is dropped).
struct Recorded {
    account: Account,
    path: std::path::PathBuf,
    file: std::fs::File,
    /// (list path, index of the page's first object) -> (offset, length) in the file.
    pages: std::collections::HashMap<(&'static str, u64), (u64, usize)>,
}

/// Objects per recorded page: the importer's page size (Stripe's largest).
const PAGE_OBJECTS: u64 = 100;
/// The lists the account has objects in.
const LISTS: [&str; 2] = ["/v1/customers", "/v1/subscriptions"];

impl Recorded {
    /// Writes every page of `account`'s lists to a new file in the temporary directory.
    fn record(account: Account) -> anyhow::Result<Recorded> {
        use std::io::Write as _;
        let path = std::env::temp_dir().join(format!(
            "ledger-bench-sync-{}-{}.json",
            std::process::id(),
            CREATED_FROM
        ));
        let mut writer = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut pages = std::collections::HashMap::new();
        let mut offset = 0;
        for list in LISTS {
            for first in (0..account.customers).step_by(PAGE_OBJECTS as usize) {
                let body = serde_json::to_vec(&account.page(list, first, PAGE_OBJECTS))?;
                writer.write_all(&body)?;
                pages.insert((list, first), (offset, body.len()));
                offset += u64::try_from(body.len())?;
            }
        }
        writer.flush()?;
        let file = std::fs::File::open(&path)?;
        Ok(Recorded {
            account,
            path,
            file,
            pages,
        })
    }

    /// The page after `starting_after` of the list at `path`: recorded, else made now.
    fn page(&self, path: &str, starting_after: Option<&str>, limit: u64) -> Vec<u8> {
        use std::os::unix::fs::FileExt as _;
        let first = starting_after
            .and_then(|id| id.split('_').nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let recorded = LISTS
            .into_iter()
            .find(|list| *list == path)
            .filter(|_| limit == PAGE_OBJECTS)
            .and_then(|list| self.pages.get(&(list, first)).copied());
        if let Some((offset, length)) = recorded {
            let mut body = vec![0; length];
            if self.file.read_exact_at(&mut body, offset).is_ok() {
                return body;
            }
        }
        serde_json::to_vec(&self.account.page(path, first, limit)).unwrap_or_default()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn list(
    recorded: web::Data<Recorded>,
    request: actix_web::HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let value = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let limit = value("limit")
        .and_then(|limit| limit.parse().ok())
        .unwrap_or(10_u64)
        .min(100);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(recorded.page(request.path(), value("starting_after"), limit))
}

/// Serves `recorded` on a free loopback port, on a thread of its own; returns its address and
/// the server's handle (stop it when done).
fn serve(recorded: Recorded) -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let recorded = web::Data::new(recorded);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(recorded.clone())
                    .default_service(web::get().to(list))
            })
            .workers(1)
            // The bench stops it; Ctrl-C or SIGTERM must stop the whole bench, not only this
            // server under a running import.
            .disable_signals()
            .listen(listener)?
            .run();
            let _ = handle_sender.send(server.handle());
            server.await
        })
    });
    let handle = handle_receiver
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow::anyhow!("the bench's Stripe server did not start"))?;
    Ok((address, handle))
}

/// Reads every page of the account's two lists without recording anything: the cost of the
/// server, HTTP and JSON alone. Returns the objects read and the seconds it took.
async fn read_pages(reader: &StripeReader) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut objects = 0;
    for path in LISTS {
        let mut cursor: Option<String> = None;
        loop {
            let page = reader.page(path, &[], cursor.as_deref()).await?;
            objects += u64::try_from(page.objects.len()).unwrap_or(u64::MAX);
            cursor = page
                .objects
                .last()
                .and_then(|object| object.get("id"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            if !page.has_more || cursor.is_none() {
                break;
            }
        }
    }
    Ok((objects, started.elapsed().as_secs_f64()))
}

pub(crate) async fn run(args: SyncBenchArgs) -> anyhow::Result<()> {
    let rss_start = rss_kib();
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, _client) = crate::fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let account = Account {
        customers: args.objects / 2,
    };
    let objects = account.customers * 2;
    println!(
        "ledger bench sync: {objects} objects ({} customers, {} subscriptions), {} pages in \
         flight, PostgreSQL {database_url}, NATS {}",
        account.customers,
        account.customers,
        args.pages_in_flight,
        services.nats_url()
    );
    let writer =
        crate::BenchWriter::start(&store, services.nats_url(), args.cache_mib * 1024 * 1024)
            .await?;
    let bus = writer.bus.clone();
    let client = Client::new(async_nats::connect(services.nats_url()).await?, bus.clone())
        .with_request_timeout(DELIVERY_TIMEOUT);
    let recording = Instant::now();
    let recorded = Recorded::record(account)?;
    println!(
        "recorded the account's {} pages to {} in {:.2} s",
        recorded.pages.len(),
        recorded.path.display(),
        recording.elapsed().as_secs_f64()
    );
    let (address, server) = serve(recorded)?;
    let reader = StripeReader::new(
        StripeApi {
            api_base: format!("http://{address}"),
            api_key: ledger_sync::ApiSecret::new("sk_test_bench".to_owned()),
        },
        Duration::from_secs(30),
    )?;
    let options = ImportOptions {
        since: None,
        pages_max: None,
        pages_in_flight: usize::try_from(args.pages_in_flight).unwrap_or(1),
        events: false,
    };
    let (read_objects, read_seconds) = read_pages(&reader).await?;
    let bar = ledger_devenv::progress::events_bar(objects, "importing");
    let rss_before = rss_kib();
    let mut rss_peak = rss_before;
    // (objects imported, resident KiB) after each tenth of the objects.
    let mut rss_by_tenth: Vec<(u64, u64)> = Vec::with_capacity(10);
    let mut imported = 0;
    let started = Instant::now();
    let report = ledger_sync::import_stripe(
        &reader,
        &store,
        &client,
        &options,
        &mut |page: &ledger_sync::PageDone| {
            bar.inc(page.objects);
            let rss = rss_kib();
            rss_peak = rss_peak.max(rss);
            imported += page.objects;
            let tenths = u64::try_from(rss_by_tenth.len()).unwrap_or(u64::MAX);
            if imported * 10 >= (tenths + 1) * objects {
                rss_by_tenth.push((imported, rss));
            }
        },
    )
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let total = report.total();
    // A delivery the writer answered after the client's timeout was sent again and answered
    // `duplicate`: it was appended all the same, once.
    anyhow::ensure!(
        total.appended + total.duplicate == objects
            && total.failed + total.waiting + total.unreadable == 0,
        "{} of {objects} objects appended: {total:?}",
        total.appended
    );
    let events = store.last_position().await?;
    let per_second = objects as f64 / elapsed.as_secs_f64();
    let rss_end = rss_kib();
    server.stop(true).await;
    writer.stop().await?;

    println!(
        "{objects} objects imported as {events} events ({} appended, {} answered duplicate \
         after a retry)",
        total.appended, total.duplicate
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        "setup", "objects", "seconds", "objects/s"
    );
    println!(
        "{:<44} {:>10} {:>10.2} {:>12.0}",
        "sync: page -> writer (normalize, inbox, append)",
        objects,
        elapsed.as_secs_f64(),
        per_second
    );
    println!(
        "{:<44} {:>10} {:>10.2} {:>12.0}",
        "baseline: read the pages only (local server)",
        read_objects,
        read_seconds,
        read_objects as f64 / read_seconds
    );
    if !args.no_baseline {
        let (events, seconds) = crate::store_append(&store, objects).await?;
        println!(
            "{:<44} {:>10} {:>10.2} {:>12.0}",
            "baseline: store append, batches of 100",
            events,
            seconds,
            events as f64 / seconds
        );
    }
    println!(
        "resident memory of this process (server, import, writer): {} MiB at start, {} MiB \
         before the import, {} MiB peak during it (sampled after each page), {} MiB at the \
         end, {} MiB peak of the process (VmHWM); target >= 20000 objects/s",
        rss_start / 1_024,
        rss_before / 1_024,
        rss_peak / 1_024,
        rss_end / 1_024,
        rss_kib_of("self", "VmHWM") / 1_024
    );
    println!(
        "resident memory by objects imported (cache of customers' states: {} MiB): {}",
        args.cache_mib,
        rss_by_tenth
            .iter()
            .map(|(imported, rss)| format!("{imported}: {} MiB", rss / 1_024))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let nats = async_nats::connect(services.nats_url()).await?;
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await;
    drop(store);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}
