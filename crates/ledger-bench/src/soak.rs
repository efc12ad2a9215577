//! `ledger bench soak`: the ledger's long-running processes (`run writer`, `run ingest`,
//! `run projector customers revenue notify`, `run query`), each a process of this binary as an
//! operator runs it, on a fresh database and stream, under a steady load for `--minutes`:
//! payments over NATS at `--command-rate`, signed Stripe webhooks through ingest at
//! `--webhook-rate` and revenue summaries from the query service at `--read-rate`. Every
//! minute it prints each process's resident memory and the minute's p99 latencies; at the
//! end, each process's memory growth from the first minute to the last (flat is the target).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_bus::{BusConfig, Client};
use ledger_domain::proto::{self, command::Kind};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::webhooks::{BENCH_SECRET, rss_kib_of, signed_request};
use crate::writer::{command, payment};

const SOAK_DATABASE: &str = "ledger_bench_soak";
const QUERY_ROLE: &str = "ledger_query_soak";
const QUERY_PASSWORD: &str = "soak-query-password";
const TOKEN: &str = "soak-token-0123456789abcdef";
/// Customers the payments are spread over.
const CUSTOMERS: usize = 1_000;

#[derive(Debug, clap::Args)]
pub struct SoakBenchArgs {
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=1_440))]
    minutes: u64,
    /// Payments sent over NATS per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    command_rate: u32,
    /// Signed Stripe webhooks posted to ingest per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    webhook_rate: u32,
    /// Revenue summaries read from the query service per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    read_rate: u32,
}

/// Latencies of one kind of request in the current minute, and its errors.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    errors: u64,
}

type Shared = Arc<Mutex<Window>>;

/// The ledger's processes, killed on drop.
struct Fleet {
    children: Vec<(&'static str, Child)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) async fn run(args: SoakBenchArgs) -> anyhow::Result<()> {
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, client) = crate::fresh_database(&services, SOAK_DATABASE).await?;
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {QUERY_ROLE} LOGIN PASSWORD '{QUERY_PASSWORD}' \
             IN ROLE ledger_query; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .await?;
    let query_url =
        ledger_devenv::services::database_url_with_user(&database_url, QUERY_ROLE, QUERY_PASSWORD);
    let run_id = Uuid::now_v7().simple().to_string();
    let bus = BusConfig {
        subject_prefix: format!("soak{run_id}"),
        stream_name: format!("LEDGER_SOAK_{}", run_id.to_uppercase()),
        ..BusConfig::default()
    };
    let ingest = loopback_address()?;
    let query = loopback_address()?;
    let log_dir = std::env::temp_dir().join(format!("ledger-soak-{run_id}"));
    std::fs::create_dir_all(&log_dir)?;
    let ledger = std::env::current_exe().context("the ledger binary's path")?;
    let spawn = |name: &'static str, args: &[&str]| -> anyhow::Result<(&'static str, Child)> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
        let child = Command::new(&ledger)
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("NATS_URL", services.nats_url())
            .env("LEDGER_SUBJECT_PREFIX", &bus.subject_prefix)
            .env("LEDGER_STREAM_NAME", &bus.stream_name)
            .env("LEDGER_INGEST_TOKENS", format!("{TOKEN}:commands:write"))
            .env("LEDGER_STRIPE_WEBHOOK_SECRETS", BENCH_SECRET)
            .env("LEDGER_QUERY_DATABASE_URL", &query_url)
            .env("LEDGER_QUERY_TOKENS", format!("{TOKEN}:metrics:read"))
            .env("LEDGER_QUERY_RATE_LIMIT_PER_SECOND", "100000")
            .env("LEDGER_QUERY_RATE_LIMIT_BURST", "100000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting ledger {}", args.join(" ")))?;
        Ok((name, child))
    };
    let mut fleet = Fleet {
        children: Vec::new(),
    };
    fleet.children.push(spawn("writer", &["run", "writer"])?);
    fleet.children.push(spawn(
        "ingest",
        &["run", "ingest", "--bind", &ingest.to_string()],
    )?);
    fleet.children.push(spawn(
        "projectors",
        &["run", "projector", "customers", "revenue", "notify"],
    )?);
    fleet.children.push(spawn(
        "query",
        &["run", "query", "--bind", &query.to_string()],
    )?);
    println!(
        "ledger bench soak: {} min; {} payments/s over NATS, {} webhooks/s through ingest, \
         {} summaries/s from query; processes' logs in {}",
        args.minutes,
        args.command_rate,
        args.webhook_rate,
        args.read_rate,
        log_dir.display()
    );

    let nats = async_nats::connect(services.nats_url()).await?;
    let client = Client::new(nats, bus.clone()).with_request_timeout(Duration::from_secs(10));
    let customers = register(&client, &run_id).await?;
    let until = Instant::now() + Duration::from_secs(args.minutes * 60);
    let (commands, webhooks, reads) = (Shared::default(), Shared::default(), Shared::default());
    let tasks = vec![
        tokio::spawn(payments(
            client.clone(),
            customers,
            args.command_rate,
            until,
            commands.clone(),
        )),
        tokio::spawn(deliveries(
            ingest,
            args.webhook_rate,
            until,
            run_id.clone(),
            webhooks.clone(),
        )),
        tokio::spawn(summaries(query, args.read_rate, until, reads.clone())),
    ];

    print!("{:>6}", "minute");
    for kind in ["payments", "webhooks", "reads"] {
        print!(" {:>14} {:>7}", format!("{kind} p99 ms"), "errors");
    }
    for (name, _) in &fleet.children {
        print!(" {:>14}", format!("{name} MiB"));
    }
    println!();
    let mut first: Option<Vec<u64>> = None;
    let mut last = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(60),
    );
    for minute in 1..=args.minutes {
        ticker.tick().await;
        print!("{minute:>6}");
        for window in [&commands, &webhooks, &reads] {
            let (p99, errors) = drain(window);
            print!(" {p99:>14.2} {errors:>7}");
        }
        last = Vec::new();
        for (name, child) in &mut fleet.children {
            anyhow::ensure!(
                child.try_wait()?.is_none(),
                "ledger's {name} process exited; its log is in {}",
                log_dir.display()
            );
            let mib = rss_kib_of(&child.id().to_string(), "VmRSS") / 1_024;
            print!(" {mib:>14}");
            last.push(mib);
        }
        println!();
        first.get_or_insert_with(|| last.clone());
    }
    for task in tasks {
        task.await.context("load task")??;
    }
    let first = first.unwrap_or_default();
    for ((name, _), (first, last)) in fleet.children.iter().zip(first.iter().zip(&last)) {
        println!(
            "{name}: {first} MiB after the first minute, {last} MiB after the last ({:+} MiB)",
            i128::from(*last) - i128::from(*first)
        );
    }
    drop(fleet);
    let _ = async_nats::jetstream::new(async_nats::connect(services.nats_url()).await?)
        .delete_stream(&bus.stream_name)
        .await;
    drop(client);
    ledger_devenv::services::drop_database(services.database_url(), SOAK_DATABASE).await?;
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(())
}

/// A free port on 127.0.0.1.
fn loopback_address() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Registers [`CUSTOMERS`] customers (waiting for the writer to lead); their ids.
async fn register(client: &Client, run_id: &str) -> anyhow::Result<Vec<String>> {
    let mut customers = Vec::with_capacity(CUSTOMERS);
    for n in 0..CUSTOMERS {
        let key = format!("soak-{run_id}-{n}");
        let register = command(
            &key,
            "",
            Kind::RegisterCustomer(proto::CustomerRegistered {
                email: format!("{key}@soak.example"),
                name: "Soak".to_owned(),
                provider_account: None,
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            match client.send(&register).await {
                Ok(reply) => break reply,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "the writer is not answering yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error).context("the writer did not answer for 60 s"),
            }
        };
        customers.push(reply.customer_id);
    }
    Ok(customers)
}

/// A ticker of `rate` per second that skips ticks it could not keep up with (the load is
/// open: a slow answer delays the next request instead of piling them up).
fn pace(rate: u32) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker
}

async fn payments(
    client: Client,
    customers: Vec<String>,
    rate: u32,
    until: Instant,
    window: Shared,
) -> anyhow::Result<()> {
    let mut ticker = pace(rate);
    let run_id = Uuid::now_v7().simple().to_string();
    let mut n = 0usize;
    while Instant::now() < until {
        ticker.tick().await;
        n += 1;
        let payment = command(
            &format!("soak-{run_id}-{n}"),
            &customers[n % customers.len()],
            Kind::RecordPaymentSucceeded(payment(&format!("py_soak_{run_id}_{n}"))),
        );
        let sent = Instant::now();
        let ok = client.send(&payment).await.is_ok();
        record(&window, sent.elapsed(), ok);
    }
    Ok(())
}

async fn deliveries(
    ingest: std::net::SocketAddr,
    rate: u32,
    until: Instant,
    run_id: String,
    window: Shared,
) -> anyhow::Result<()> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, BENCH_SECRET.as_bytes());
    let mut ticker = pace(rate);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut stream = None;
    let mut n = 0u64;
    while Instant::now() < until {
        ticker.tick().await;
        n += 1;
        let request = signed_request(&key, &format!("soak_{run_id}_{n}"));
        let sent = Instant::now();
        let status = post(&mut stream, ingest, &request, &mut buffer).await;
        record(
            &window,
            sent.elapsed(),
            status.is_ok_and(|status| status == 200),
        );
    }
    Ok(())
}

async fn summaries(
    query: std::net::SocketAddr,
    rate: u32,
    until: Instant,
    window: Shared,
) -> anyhow::Result<()> {
    let request = format!(
        "GET /v1/metrics/summary?currency=USD HTTP/1.1\r\nHost: soak\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n"
    )
    .into_bytes();
    let mut ticker = pace(rate);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut stream = None;
    while Instant::now() < until {
        ticker.tick().await;
        let sent = Instant::now();
        let status = post(&mut stream, query, &request, &mut buffer).await;
        // 503 until the revenue read model has its first figures: counted as an error.
        record(
            &window,
            sent.elapsed(),
            status.is_ok_and(|status| status == 200),
        );
    }
    Ok(())
}

/// Sends `request` on the kept-alive connection (opening one when there is none or the last
/// failed); the answer's status.
async fn post(
    stream: &mut Option<tokio::net::TcpStream>,
    address: std::net::SocketAddr,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    let connection = match stream {
        Some(connection) => connection,
        None => stream.insert(tokio::net::TcpStream::connect(address).await?),
    };
    let answer = async {
        connection.write_all(request).await?;
        crate::webhooks::read_response(connection, buffer).await
    }
    .await;
    if answer.is_err() {
        *stream = None;
    }
    answer
}

fn record(window: &Shared, latency: Duration, ok: bool) {
    if let Ok(mut window) = window.lock() {
        window.latencies.push(latency);
        if !ok {
            window.errors += 1;
        }
    }
}

/// The window's p99 in milliseconds and its errors, emptying it for the next minute.
fn drain(window: &Shared) -> (f64, u64) {
    let Ok(mut window) = window.lock() else {
        return (0.0, 0);
    };
    let Window {
        mut latencies,
        errors,
    } = std::mem::take(&mut *window);
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .map_or(0.0, |latency| latency.as_secs_f64() * 1_000.0);
    (p99, errors)
}
