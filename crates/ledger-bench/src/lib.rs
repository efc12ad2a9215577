//! `ledger bench`: throughput figures, each next to a raw PostgreSQL baseline measured in the
//! same run on the same server, so the ratio says what the ledger's own work costs.

use std::time::Instant;

use futures_util::{TryStreamExt, pin_mut};
use ledger_domain::{EventStatus, Issuer, Provider, UniqueKeyChanges, proto};
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent, RequestFingerprint, Store};
use prost::Message;
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use ledger_devenv::progress;
use ledger_writer::SCHEMA_VERSION;

mod notify;
mod projectors;
mod query;
mod soak;
mod sync;
mod webhooks;
mod writer;

const BENCH_DATABASE: &str = "ledger_bench";
/// Distinct customers the generated events are spread over.
const BENCH_STREAMS: u64 = 100_000;

#[derive(Debug, clap::Subcommand)]
pub enum BenchTarget {
    /// Event store: append throughput for batches of 1, 100 and 1000 events, and read_all.
    Store(StoreBenchArgs),
    /// Write path: commands/s and latency over NATS with 1, 16 and 64 clients.
    Writer(crate::writer::WriterBenchArgs),
    /// Webhooks: signed Stripe deliveries/s and latency through ingest and the writer with 1,
    /// 16 and 64 senders, next to commands/s over NATS, and the process's memory.
    Webhooks(crate::webhooks::WebhooksBenchArgs),
    /// Projectors: rebuild events/s of each over a generated history, and live lag at a fixed
    /// command rate.
    Projectors(crate::projectors::ProjectorsBenchArgs),
    /// Notify projector: events/s with 1% of events notified, next to the customers
    /// projector, and the delivery worker's deliveries/s to a loopback receiver.
    Notify(crate::notify::NotifyBenchArgs),
    /// Query service: requests/s and p50/p99 of the summary (cached and uncached) and of a
    /// single customer, over 100,000 customers and about a million events.
    Query(crate::query::QueryBenchArgs),
    /// Soak: the ledger's processes under a steady load for minutes, with each process's
    /// memory and the p99 latencies every minute.
    Soak(crate::soak::SoakBenchArgs),
    /// Backfill: Stripe objects/s imported by `ledger sync stripe`'s code from a generated
    /// account served locally, next to the store's append of as many events, and memory.
    Sync(crate::sync::SyncBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct StoreBenchArgs {
    /// Events appended one per transaction.
    #[arg(long, default_value_t = 20_000)]
    single_events: u64,
    /// Events appended in batches of 100.
    #[arg(long, default_value_t = 200_000)]
    batch_100_events: u64,
    /// Events appended in batches of 1000; read_all then reads this many.
    #[arg(long, default_value_t = 1_000_000)]
    batch_1000_events: u64,
}

pub async fn run(target: BenchTarget) -> anyhow::Result<()> {
    match target {
        BenchTarget::Store(args) => store(args).await,
        BenchTarget::Writer(args) => crate::writer::run(args).await,
        BenchTarget::Webhooks(args) => crate::webhooks::run(args).await,
        BenchTarget::Projectors(args) => crate::projectors::run(args).await,
        BenchTarget::Notify(args) => crate::notify::run(args).await,
        BenchTarget::Query(args) => crate::query::run(args).await,
        BenchTarget::Soak(args) => crate::soak::run(args).await,
        BenchTarget::Sync(args) => crate::sync::run(args).await,
    }
}

struct Figure {
    phase: String,
    events: u64,
    per_second: f64,
    baseline_per_second: f64,
    target_per_second: Option<f64>,
}

/// A writer on its own stream and subjects (a new run id), running in this process until
/// [`BenchWriter::stop`].
pub(crate) struct BenchWriter {
    pub(crate) bus: ledger_bus::BusConfig,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ledger_writer::WriterError>>,
}

impl BenchWriter {
    /// `cache_bytes_max`: the writer's bound on the customers' states it keeps in memory
    /// ([`ledger_writer::WriterConfig::cache_bytes_max`]).
    pub(crate) async fn start(
        store: &Store,
        nats_url: &str,
        cache_bytes_max: u64,
    ) -> anyhow::Result<BenchWriter> {
        let run_id = Uuid::now_v7().simple().to_string();
        let bus = ledger_bus::BusConfig {
            subject_prefix: format!("bench{run_id}"),
            stream_name: format!("LEDGER_BENCH_{}", run_id.to_uppercase()),
            ..ledger_bus::BusConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ledger_writer::run(
            store.clone(),
            async_nats::connect(nats_url).await?,
            ledger_writer::WriterConfig {
                bus: bus.clone(),
                cache_bytes_max,
                ..ledger_writer::WriterConfig::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(BenchWriter { bus, stop, task })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// Recreates the migrated database `name` on `services`; returns its URL and a connection.
pub(crate) async fn fresh_database(
    services: &ledger_devenv::services::Services,
    name: &str,
) -> anyhow::Result<(String, tokio_postgres::Client)> {
    let database_url =
        ledger_devenv::services::recreate_database(services.database_url(), name).await?;
    let (mut client, connection) =
        tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    ledger_store::migrate(&mut client).await?;
    Ok((database_url, client))
}

async fn store(args: StoreBenchArgs) -> anyhow::Result<()> {
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, mut client) = fresh_database(&services, BENCH_DATABASE).await?;
    client
        .batch_execute("CREATE TABLE raw_events (LIKE customer_payment_events INCLUDING ALL)")
        .await?;
    let store = Store::connect(&database_url)?;
    let writer = store.writer().await?;
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    println!("ledger bench store: PostgreSQL {server_version}, {database_url}");

    let streams: Vec<Uuid> = (0..BENCH_STREAMS).map(|_| Uuid::now_v7()).collect();
    let mut figures = Vec::new();
    let mut next_request = 0u64;
    for (batch_events, total_events, target) in [
        (1, args.single_events, None),
        (100, args.batch_100_events, None),
        (1_000, args.batch_1000_events, Some(80_000.0)),
    ] {
        let batches: Vec<Vec<AppendRequest>> = (0..total_events / batch_events)
            .map(|_| {
                (0..batch_events)
                    .map(|_| {
                        next_request += 1;
                        bench_request(next_request, &streams)
                    })
                    .collect()
            })
            .collect();
        let raw_batches = raw_rows(&batches, (next_request - total_events) as i64);

        let bar = progress::events_bar(total_events, "appending");
        let started = Instant::now();
        for batch in batches {
            let size = batch.len() as u64;
            for outcome in writer.append(batch).await? {
                outcome?;
            }
            bar.inc(size);
        }
        let elapsed = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let baseline_started = Instant::now();
        raw_append(&mut client, raw_batches, batch_events == 1).await?;
        let baseline_elapsed = baseline_started.elapsed().as_secs_f64();
        figures.push(Figure {
            phase: format!("append, batches of {batch_events}"),
            events: total_events,
            per_second: total_events as f64 / elapsed,
            baseline_per_second: total_events as f64 / baseline_elapsed,
            target_per_second: target,
        });
    }

    let read_events = args.batch_1000_events;
    let bar = progress::events_bar(read_events, "reading");
    let started = Instant::now();
    let decoded = decode_all(&store, read_events, &bar).await?;
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(
        decoded == read_events,
        "read_all returned {decoded} events, not {read_events}"
    );
    let baseline_started = Instant::now();
    let copied = raw_copy_out(&client, read_events).await?;
    let baseline_elapsed = baseline_started.elapsed().as_secs_f64();
    figures.push(Figure {
        phase: "read_all, decoded".to_owned(),
        events: decoded,
        per_second: decoded as f64 / elapsed,
        baseline_per_second: copied as f64 / baseline_elapsed,
        target_per_second: Some(400_000.0),
    });

    println!(
        "{:<26} {:>10} {:>12} {:>14} {:>7} {:>10}",
        "phase", "events", "events/s", "raw rows/s", "ratio", "target"
    );
    for figure in &figures {
        println!(
            "{:<26} {:>10} {:>12.0} {:>14.0} {:>7.2} {:>10}",
            figure.phase,
            figure.events,
            figure.per_second,
            figure.baseline_per_second,
            figure.per_second / figure.baseline_per_second,
            figure
                .target_per_second
                .map_or("-".to_owned(), |target| format!(">={target:.0}")),
        );
    }
    println!(
        "raw baselines: single-row INSERT transactions; binary COPY of the same batch in one \
         transaction; COPY TO STDOUT of the same rows"
    );
    drop(writer);
    drop(store);
    drop(client);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}

/// Reads `limit` events with `read_all` and decodes each payload; returns how many decoded.
async fn decode_all(
    store: &Store,
    limit: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let events = store.read_all(1, limit);
    pin_mut!(events);
    let mut decoded = 0u64;
    while let Some(event) = events.try_next().await? {
        let payload = proto::Event::decode(&event.event.payload[..])?;
        decoded += u64::from(payload.kind.is_some());
        if decoded.is_multiple_of(100_000) {
            bar.set_position(decoded);
        }
    }
    Ok(decoded)
}

/// A distinct fingerprint per request, 32 bytes like the writer's SHA-256 ones.
fn bench_fingerprint(n: u64) -> RequestFingerprint {
    let mut fingerprint = [0; 32];
    fingerprint[..8].copy_from_slice(&n.to_be_bytes());
    RequestFingerprint(fingerprint)
}

/// One request with one realistic event (a payment on a subscription) for stream `n % streams`.
fn bench_request(n: u64, streams: &[Uuid]) -> AppendRequest {
    let stream_id = streams[(n % streams.len() as u64) as usize];
    let payload = proto::Event {
        kind: Some(proto::event::Kind::PaymentSucceeded(
            proto::PaymentSucceeded {
                payment_id: format!("py_bench_{n}"),
                invoice_id: format!("in_bench_{n}"),
                subscription_id: "sub_main".to_owned(),
                amount: Some(proto::Money {
                    amount_minor: 4_900,
                    currency: "USD".to_owned(),
                }),
            },
        )),
    };
    AppendRequest {
        stream_id,
        expected_version: ExpectedVersion::Any,
        idempotency_key: format!("bench:{n}"),
        request_fingerprint: bench_fingerprint(n),
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "payment_succeeded".to_owned(),
            account_id: format!("cus_bench{}", n % streams.len() as u64),
            payment_provider_type: Provider::Stripe,
            status: EventStatus::Complete,
            issuer: Issuer::PaymentProvider,
            occurred_at: OffsetDateTime::now_utc(),
            correlation_id: None,
            causation_id: None,
            schema_version: SCHEMA_VERSION,
            payload: payload.encode_to_vec().into(),
        }],
        unique_keys: UniqueKeyChanges::default(),
        provider_objects: Vec::new(),
    }
}

/// One event as a plain row of the raw baseline table.
struct RawRow {
    global_position: i64,
    event_id: Uuid,
    stream_id: Uuid,
    event_type: String,
    account_id: String,
    payment_provider_type: &'static str,
    status: &'static str,
    issuer: &'static str,
    occurred_at: OffsetDateTime,
    idempotency_key: String,
    correlation_id: Option<Uuid>,
    schema_version: i16,
    payload: Vec<u8>,
    hash: Vec<u8>,
}

impl RawRow {
    fn parameters(&self) -> [&(dyn ToSql + Sync); 18] {
        [
            &self.global_position,
            &self.event_id,
            &self.stream_id,
            &self.global_position,
            &self.event_type,
            &self.account_id,
            &self.payment_provider_type,
            &self.status,
            &self.issuer,
            &self.occurred_at,
            &self.occurred_at,
            &self.idempotency_key,
            &self.correlation_id,
            &self.correlation_id,
            &self.schema_version,
            &self.payload,
            &self.hash,
            &self.hash,
        ]
    }
}

fn raw_rows(batches: &[Vec<AppendRequest>], first_position: i64) -> Vec<Vec<RawRow>> {
    let mut global_position = first_position;
    batches
        .iter()
        .map(|batch| {
            batch
                .iter()
                .flat_map(|request| request.events.iter().map(move |event| (request, event)))
                .map(|(request, event)| {
                    global_position += 1;
                    RawRow {
                        global_position,
                        event_id: event.event_id,
                        stream_id: request.stream_id,
                        event_type: event.event_type.clone(),
                        account_id: event.account_id.clone(),
                        payment_provider_type: event.payment_provider_type.as_str(),
                        status: event.status.as_str(),
                        issuer: event.issuer.as_str(),
                        occurred_at: event.occurred_at,
                        idempotency_key: request.idempotency_key.clone(),
                        correlation_id: event.correlation_id,
                        schema_version: event.schema_version,
                        payload: event.payload.to_vec(),
                        hash: vec![7; 32],
                    }
                })
                .collect()
        })
        .collect()
}

/// The same rows written with plain PostgreSQL to a table of the same shape and indexes: one
/// autocommitted INSERT per row for single events, one binary COPY per transaction for batches.
async fn raw_append(
    client: &mut tokio_postgres::Client,
    batches: Vec<Vec<RawRow>>,
    single_rows: bool,
) -> anyhow::Result<()> {
    // The table was created LIKE the event table: its columns, in order, are the event's.
    let insert = client
        .prepare(
            "INSERT INTO raw_events VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .await?;
    let column_types = insert.params().to_vec();
    for batch in batches {
        if single_rows {
            for row in &batch {
                client.execute(&insert, &row.parameters()).await?;
            }
            continue;
        }
        let transaction = client.transaction().await?;
        let sink = transaction
            .copy_in("COPY raw_events FROM STDIN (FORMAT binary)")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &column_types);
        pin_mut!(writer);
        for row in &batch {
            writer.as_mut().write(&row.parameters()).await?;
        }
        writer.finish().await?;
        transaction.commit().await?;
    }
    Ok(())
}

/// Streams `limit` rows of the event table to the client with COPY; returns the rows seen.
async fn raw_copy_out(client: &tokio_postgres::Client, limit: u64) -> anyhow::Result<u64> {
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT * FROM customer_payment_events ORDER BY global_position \
             LIMIT {limit}) TO STDOUT"
        ))
        .await?;
    pin_mut!(stream);
    let mut rows = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        rows += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
    }
    Ok(rows)
}

/// The store's own append of `events` events (one per request, realistic payments over
/// [`BENCH_STREAMS`] new customers) in batches of 100, through [`ledger_store::Writer`]: the
/// baseline of the benchmarks whose requests end in such batches (`bench sync`). Returns the
/// events appended and the seconds taken.
pub(crate) async fn store_append(store: &Store, events: u64) -> anyhow::Result<(u64, f64)> {
    let writer = store.writer().await?;
    let streams: Vec<Uuid> = (0..BENCH_STREAMS.min(events))
        .map(|_| Uuid::now_v7())
        .collect();
    let batches: Vec<Vec<AppendRequest>> = (0..events.div_ceil(100))
        .map(|batch| {
            (batch * 100..((batch + 1) * 100).min(events))
                .map(|n| bench_request(n, &streams))
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        for outcome in writer.append(batch).await? {
            outcome?;
        }
    }
    Ok((events, started.elapsed().as_secs_f64()))
}
