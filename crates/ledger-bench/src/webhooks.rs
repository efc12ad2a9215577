//! `ledger bench webhooks`: signed Stripe deliveries per second end to end (HTTP request ->
//! signature check -> NATS -> writer: inbox, normalization, append -> 200) with 1, 16 and 64
//! concurrent senders, next to `bench writer`'s commands/s against the same writer in the same
//! run, and the resident memory of the process (ingest, writer and senders) at start and end.
//! With `--deliveries N` it instead sends N deliveries from 64 senders and reports the resident
//! memory at start, after every 100,000 deliveries and at the end, with each stretch's rate
//! and latency: whether ingest and the writer stay flat over a long run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_bus::Client;
use ledger_connectors::stripe;
use ledger_ingest::{IngestConfig, WebhookConfig};
use ledger_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::writer::{Measured, measure};

const BENCH_DATABASE: &str = "ledger_bench_webhooks";
const SENDER_COUNTS: [usize; 3] = [1, 16, 64];
/// Senders of a `--deliveries` run.
const ENDURANCE_SENDERS: usize = 64;
/// A `--deliveries` run reports memory, rate and latency after each stretch of this many.
const REPORT_EVERY_DELIVERIES: u64 = 100_000;
/// Answers in flight between the senders and the tally (a bound, not a tuning knob).
const ANSWERS_QUEUE_MAX: usize = 4_096;
/// Bytes of one HTTP response the senders accept.
const RESPONSE_BYTES_MAX: usize = 1 << 20;
/// The endpoint secret the bench signs with.
pub(crate) const BENCH_SECRET: &str = "whsec_bench_0123456789abcdef";

#[derive(Debug, clap::Args)]
pub struct WebhooksBenchArgs {
    /// Seconds each configuration runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Instead of the timed configurations, send this many deliveries (each a new customer)
    /// from 64 senders, and report resident memory every 100,000.
    #[arg(long)]
    deliveries: Option<u64>,
}

/// When the senders stop.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// At this time.
    Deadline(Instant),
    /// After this many deliveries in all.
    Count(u64),
}

/// This process's resident memory in KiB (`VmRSS` of `/proc/self/status`; 0 where there is
/// none).
pub(crate) fn rss_kib() -> u64 {
    rss_kib_of("self", "VmRSS")
}

/// The resident memory in KiB of process `pid` (a number, or `self`): `field` of
/// `/proc/<pid>/status` (`VmRSS`: now; `VmHWM`: its peak), 0 where there is none (not Linux,
/// or the process is gone).
pub(crate) fn rss_kib_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

pub(crate) async fn run(args: WebhooksBenchArgs) -> anyhow::Result<()> {
    let rss_start = rss_kib();
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, _client) = crate::fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "ledger bench webhooks: {}s per configuration, PostgreSQL {database_url}, NATS {}",
        args.seconds,
        services.nats_url()
    );
    let writer = crate::BenchWriter::start(
        &store,
        services.nats_url(),
        ledger_writer::WriterConfig::default().cache_bytes_max,
    )
    .await?;
    let bus = writer.bus.clone();
    // Unique per run: the webhooks' event ids.
    let run_id = bus.subject_prefix.clone();
    let client = Client::new(async_nats::connect(services.nats_url()).await?, bus.clone());
    // A free port: bound, read and released, then taken by ingest.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (stop_ingest, ingest_stopped) = tokio::sync::oneshot::channel::<()>();
    let config = IngestConfig {
        bind: address,
        tokens: ledger_access::Tokens::default(),
        rate_limit: None,
        webhooks: WebhookConfig {
            stripe: Some(stripe::WebhookSecrets::new(
                &[BENCH_SECRET],
                stripe::TOLERANCE_SECONDS_DEFAULT,
            )),
            ..WebhookConfig::default()
        },
        cors_origins: ledger_ingest::AllowedOrigins::default(),
    };
    // The server's future is not `Send`: it runs on a thread of its own, as `ledger run
    // ingest` runs it on its main thread.
    let ingest_client = client.clone();
    let ingest = std::thread::spawn(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ledger_ingest::serve(config, ingest_client, async move {
                let _ = ingest_stopped.await;
            }))?;
        Ok(())
    });
    wait_for_port(address).await?;

    if let Some(count) = args.deliveries {
        endurance(address, count, &run_id, rss_start).await?;
    } else {
        timed(address, &client, duration, &run_id, rss_start).await?;
    }
    let _ = stop_ingest.send(());
    tokio::task::spawn_blocking(move || ingest.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))??;
    writer.stop().await?;
    let nats = async_nats::connect(services.nats_url()).await?;
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await;
    drop(store);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}

/// The timed configurations: 1, 16 and 64 senders for `duration` each, then `bench writer`'s
/// load for as long; prints the table and the memory at start and end.
async fn timed(
    address: SocketAddr,
    client: &Client,
    duration: Duration,
    run_id: &str,
    rss_start: u64,
) -> anyhow::Result<()> {
    let mut results: Vec<Measured> = Vec::new();
    for senders in SENDER_COUNTS {
        let started = Instant::now();
        let mut latencies = Vec::new();
        let errors = deliveries(
            address,
            senders,
            Until::Deadline(started + duration),
            &format!("{run_id}-{senders}"),
            |latency| latencies.push(latency),
        )
        .await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(errors == 0, "{errors} deliveries were not answered 200");
        let count = latencies.len() as u64;
        results.push(measure(
            "webhooks: ingest + writer",
            senders,
            count,
            latencies,
            elapsed,
        ));
    }
    for clients in SENDER_COUNTS {
        let (commands, latencies, elapsed) = crate::writer::load(
            std::slice::from_ref(client),
            clients,
            duration,
            &format!("{run_id}-commands-{clients}"),
        )
        .await?;
        results.push(measure(
            "commands over NATS (writer)",
            clients,
            commands,
            latencies,
            elapsed,
        ));
    }
    let rss_end = rss_kib();

    println!(
        "{:<28} {:>7} {:>9} {:>11} {:>8} {:>8}",
        "setup", "senders", "requests", "requests/s", "p50 ms", "p99 ms"
    );
    for row in &results {
        println!(
            "{:<28} {:>7} {:>9} {:>11.0} {:>8.2} {:>8.2}",
            row.setup, row.clients, row.commands, row.per_second, row.p50_ms, row.p99_ms
        );
    }
    println!(
        "resident memory of this process (ingest, writer, senders): {} MiB at start, {} MiB at \
         the end; target >= 4000 deliveries/s at 64 senders with p99 < 50 ms",
        rss_start / 1_024,
        rss_end / 1_024
    );
    Ok(())
}

/// `count` deliveries from [`ENDURANCE_SENDERS`] senders; after every
/// [`REPORT_EVERY_DELIVERIES`] (and at the end) prints the resident memory with that
/// stretch's deliveries/s and p50/p99. The latencies of one stretch are kept at a time, so the
/// senders' own memory stays flat.
async fn endurance(
    address: SocketAddr,
    count: u64,
    run_id: &str,
    rss_start: u64,
) -> anyhow::Result<()> {
    println!(
        "{count} deliveries from {ENDURANCE_SENDERS} senders; resident memory of this process \
         (ingest, writer, senders) at start: {} MiB",
        rss_start / 1_024
    );
    println!(
        "{:>10} {:>8} {:>13} {:>8} {:>8}",
        "delivered", "RSS MiB", "deliveries/s", "p50 ms", "p99 ms"
    );
    let capacity = usize::try_from(REPORT_EVERY_DELIVERIES.min(count)).unwrap_or(usize::MAX);
    let mut stretch: Vec<Duration> = Vec::with_capacity(capacity);
    let mut stretch_started = Instant::now();
    let mut delivered = 0u64;
    let report = |stretch: &mut Vec<Duration>, started: Instant, delivered: u64| {
        let row = measure(
            "",
            ENDURANCE_SENDERS,
            stretch.len() as u64,
            std::mem::take(stretch),
            started.elapsed(),
        );
        println!(
            "{delivered:>10} {:>8} {:>13.0} {:>8.2} {:>8.2}",
            rss_kib() / 1_024,
            row.per_second,
            row.p50_ms,
            row.p99_ms
        );
    };
    let errors = deliveries(
        address,
        ENDURANCE_SENDERS,
        Until::Count(count),
        run_id,
        |latency| {
            stretch.push(latency);
            delivered += 1;
            if delivered.is_multiple_of(REPORT_EVERY_DELIVERIES) {
                report(&mut stretch, stretch_started, delivered);
                stretch.reserve(capacity);
                stretch_started = Instant::now();
            }
        },
    )
    .await?;
    if !stretch.is_empty() {
        report(&mut stretch, stretch_started, delivered);
    }
    anyhow::ensure!(errors == 0, "{errors} deliveries were not answered 200");
    println!(
        "resident memory: {} MiB at start, {} MiB at the end",
        rss_start / 1_024,
        rss_kib() / 1_024
    );
    Ok(())
}

/// Waits (up to 10 s) until ingest accepts connections on `address`.
async fn wait_for_port(address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "ingest did not listen on {address}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `senders` keep-alive connections, each posting a new signed `customer.created` (a new
/// customer each) as soon as the previous answer is in, until `until`. Calls `on_answer` with
/// each answer's latency as it comes; returns how many answers were not 200.
async fn deliveries(
    address: SocketAddr,
    senders: usize,
    until: Until,
    run_id: &str,
    mut on_answer: impl FnMut(Duration),
) -> anyhow::Result<u64> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, BENCH_SECRET.as_bytes());
    let sent_count = Arc::new(AtomicU64::new(0));
    let (answers, mut answered) = tokio::sync::mpsc::channel::<(Duration, bool)>(ANSWERS_QUEUE_MAX);
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let key = key.clone();
            let prefix = format!("{run_id}_{sender}");
            let sent_count = sent_count.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let mut buffer = vec![0u8; 16 * 1024];
                let mut n = 0u64;
                loop {
                    let more = match until {
                        Until::Deadline(deadline) => Instant::now() < deadline,
                        Until::Count(count) => sent_count.fetch_add(1, Ordering::Relaxed) < count,
                    };
                    if !more {
                        break;
                    }
                    n += 1;
                    let request = signed_request(&key, &format!("{prefix}_{n}"));
                    let sent = Instant::now();
                    stream.write_all(&request).await?;
                    let status = read_response(&mut stream, &mut buffer).await?;
                    if answers.send((sent.elapsed(), status == 200)).await.is_err() {
                        break;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    drop(answers);
    let mut errors = 0;
    while let Some((latency, ok)) = answered.recv().await {
        on_answer(latency);
        if !ok {
            errors += 1;
        }
    }
    for task in tasks {
        task.await.context("sender task")??;
    }
    Ok(errors)
}

/// The HTTP request of a Stripe `customer.created` for account `cus_<id>`, signed now.
pub(crate) fn signed_request(key: &ring::hmac::Key, id: &str) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = format!(
        r#"{{"id":"evt_{id}","object":"event","type":"customer.created","created":{now},"data":{{"object":{{"id":"cus_{id}","object":"customer","email":"{id}@bench.example","name":"Bench"}}}}}}"#
    );
    let mut signed = format!("{now}.").into_bytes();
    signed.extend_from_slice(body.as_bytes());
    let signature: String = ring::hmac::sign(key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "POST /v1/webhooks/stripe HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Stripe-Signature: t={now},v1={signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response (headers and a `content-length` body); returns its status.
pub(crate) async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    let mut filled = 0usize;
    loop {
        if filled == buffer.len() {
            anyhow::ensure!(buffer.len() < RESPONSE_BYTES_MAX, "response too large");
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = stream.read(&mut buffer[filled..]).await?;
        anyhow::ensure!(read > 0, "the server closed the connection");
        filled += read;
        let Some(header_end) = buffer[..filled]
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
        else {
            continue;
        };
        let headers = std::str::from_utf8(&buffer[..header_end])?;
        let status: u16 = headers
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("no status line")?;
        let length: usize = headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("no content-length")?;
        let total = header_end + 4 + length;
        while filled < total {
            if filled == buffer.len() {
                anyhow::ensure!(buffer.len() < RESPONSE_BYTES_MAX, "response too large");
                buffer.resize(buffer.len() * 2, 0);
            }
            let read = stream.read(&mut buffer[filled..]).await?;
            anyhow::ensure!(read > 0, "the server closed the connection");
            filled += read;
        }
        return Ok(status);
    }
}
