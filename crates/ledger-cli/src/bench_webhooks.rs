//! `ledger bench webhooks`: signed Stripe deliveries per second end to end (HTTP request ->
//! signature check -> NATS -> writer: inbox, normalization, append -> 200) with 1, 16 and 64
//! concurrent senders, next to `bench writer`'s commands/s against the same writer in the same
//! run, and the resident memory of the process (ingest, writer and senders) at start and end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_bus::{BusConfig, Client};
use ledger_connectors::stripe;
use ledger_ingest::{IngestConfig, WebhookConfig};
use ledger_store::Store;
use ledger_writer::WriterConfig;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::bench_writer::{Measured, measure};

const BENCH_DATABASE: &str = "ledger_bench_webhooks";
const SENDER_COUNTS: [usize; 3] = [1, 16, 64];
/// The endpoint secret the bench signs with.
const BENCH_SECRET: &str = "whsec_bench_0123456789abcdef";

#[derive(Debug, clap::Args)]
pub(crate) struct WebhooksBenchArgs {
    /// Seconds each configuration runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// The process's resident memory in KiB (`VmRSS` of `/proc/self/status`; 0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
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
    let services = ledger_testkit::services::ensure().await?;
    let (database_url, _client) = crate::bench::fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "ledger bench webhooks: {}s per configuration, PostgreSQL {database_url}, NATS {}",
        args.seconds,
        services.nats_url()
    );
    let run_id = Uuid::now_v7().simple().to_string();
    let bus = BusConfig {
        subject_prefix: format!("bench{run_id}"),
        stream_name: format!("LEDGER_BENCH_{}", run_id.to_uppercase()),
        ..BusConfig::default()
    };
    let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(ledger_writer::run(
        store.clone(),
        async_nats::connect(services.nats_url()).await?,
        WriterConfig {
            bus: bus.clone(),
            ..WriterConfig::default()
        },
        async move {
            let _ = writer_stopped.await;
        },
    ));
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

    let mut results: Vec<Measured> = Vec::new();
    for senders in SENDER_COUNTS {
        let (latencies, errors, elapsed) =
            deliveries(address, senders, duration, &format!("{run_id}-{senders}")).await?;
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
        let (commands, latencies, elapsed) = crate::bench_writer::load(
            &client,
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
    let _ = stop_ingest.send(());
    tokio::task::spawn_blocking(move || ingest.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))??;
    let _ = stop_writer.send(());
    writer.await??;
    let nats = async_nats::connect(services.nats_url()).await?;
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await;
    drop(store);
    ledger_testkit::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
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
/// customer each) as soon as the previous answer is in, until `duration` is over. Returns the
/// latencies of the answers, how many were not 200, and the elapsed time.
async fn deliveries(
    address: SocketAddr,
    senders: usize,
    duration: Duration,
    run_id: &str,
) -> anyhow::Result<(Vec<Duration>, u64, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, BENCH_SECRET.as_bytes());
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let key = key.clone();
            let prefix = format!("{run_id}_{sender}");
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let mut buffer = vec![0u8; 16 * 1024];
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let request = signed_request(&key, &format!("{prefix}_{n}"));
                    let sent = Instant::now();
                    stream.write_all(&request).await?;
                    let status =
                        crate::bench_query::read_response(&mut stream, &mut buffer).await?;
                    latencies.push(sent.elapsed());
                    if status != 200 {
                        errors += 1;
                    }
                }
                anyhow::Ok((latencies, errors))
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (sender_latencies, sender_errors) = task.await.context("sender task")??;
        latencies.extend(sender_latencies);
        errors += sender_errors;
    }
    Ok((latencies, errors, started.elapsed()))
}

/// The HTTP request of a Stripe `customer.created` for account `cus_<id>`, signed now.
fn signed_request(key: &ring::hmac::Key, id: &str) -> Vec<u8> {
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
