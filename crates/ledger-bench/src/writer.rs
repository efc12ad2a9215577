//! `ledger bench writer`: commands/s end to end (request sent -> reply with position) with 1,
//! 16 and 64 concurrent NATS clients, with group commit on and off, next to the same load as
//! direct single-event store appends; then the same 64-client load over `--partitions` writers,
//! each with its own database and stream, customers routed by [`partition_of`]
//! (docs/scaling.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_bus::{BusConfig, Client};
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::unique_key_changes;
use ledger_store::{ExpectedVersion, Store};
use ledger_writer::WriterConfig;
use time::OffsetDateTime;
use uuid::Uuid;

const BENCH_DATABASE: &str = "ledger_bench_writer";
const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];

#[derive(Debug, clap::Args)]
pub struct WriterBenchArgs {
    /// Seconds each configuration runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Writers of the partitioned run (each with its own database and stream); 1 skips it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    partitions: u16,
}

pub(crate) struct Measured {
    pub(crate) setup: String,
    pub(crate) clients: usize,
    pub(crate) commands: u64,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

pub(crate) async fn run(args: WriterBenchArgs) -> anyhow::Result<()> {
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, client) = crate::fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "ledger bench writer: {}s per configuration, PostgreSQL {database_url}, NATS {}",
        args.seconds,
        services.nats_url()
    );

    let mut results = Vec::new();
    // One stream for both writer configurations: the second continues where the first left.
    let bus_id = Uuid::now_v7().simple().to_string();
    let bus = BusConfig {
        subject_prefix: format!("bench{bus_id}"),
        stream_name: format!("LEDGER_BENCH_{}", bus_id.to_uppercase()),
        ..BusConfig::default()
    };
    for group_commit in [true, false] {
        let run_id = Uuid::now_v7().simple().to_string();
        // The writer and the clients use separate connections, as separate processes would.
        let writer_nats = async_nats::connect(services.nats_url()).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(ledger_writer::run(
            store.clone(),
            writer_nats.clone(),
            WriterConfig {
                bus: bus.clone(),
                group_commit,
                ..WriterConfig::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let client_nats = async_nats::connect(services.nats_url()).await?;
        let client = Client::new(client_nats, bus.clone());
        for clients in CLIENT_COUNTS {
            let setup = if group_commit {
                "writer, group commit"
            } else {
                "writer, one tx per command"
            };
            let (commands, latencies, elapsed) = load(
                std::slice::from_ref(&client),
                clients,
                duration,
                &format!("{run_id}-{clients}"),
            )
            .await?;
            results.push(measure(setup, clients, commands, latencies, elapsed));
        }
        let _ = stop.send(());
        writer.await??;
    }
    let nats = async_nats::connect(services.nats_url()).await?;
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await;
    for clients in CLIENT_COUNTS {
        let (commands, latencies, elapsed) = direct_appends(&store, clients, duration).await?;
        results.push(measure(
            "store append_one, direct",
            clients,
            commands,
            latencies,
            elapsed,
        ));
    }

    if args.partitions > 1 {
        let partitions = usize::from(args.partitions);
        let (commands, latencies, elapsed) =
            partitioned(&services, partitions, 64, duration).await?;
        results.push(measure(
            &format!("{partitions} writers, partitioned"),
            64,
            commands,
            latencies,
            elapsed,
        ));
    }

    println!(
        "{:<28} {:>7} {:>9} {:>11} {:>8} {:>8}",
        "setup", "clients", "commands", "commands/s", "p50 ms", "p99 ms"
    );
    for row in &results {
        println!(
            "{:<28} {:>7} {:>9} {:>11.0} {:>8.2} {:>8.2}",
            row.setup, row.clients, row.commands, row.per_second, row.p50_ms, row.p99_ms
        );
    }
    let at_64 = |setup: &str| {
        results
            .iter()
            .find(|row| row.setup == setup && row.clients == 64)
            .map_or(0.0, |row| row.per_second)
    };
    println!(
        "group commit at 64 clients: {:.1}x one transaction per command (target >= 3x); \
         target >= 15000 commands/s with p99 < 25 ms",
        at_64("writer, group commit") / at_64("writer, one tx per command").max(1.0)
    );
    drop(store);
    drop(client);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}

/// The load of [`load`] over `partitions` writers, each leading its own database and stream
/// (a partition's lock, positions, hash chain and stream are its own: docs/scaling.md).
async fn partitioned(
    services: &ledger_devenv::services::Services,
    partitions: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Vec<Duration>, Duration)> {
    let run_id = Uuid::now_v7().simple().to_string();
    let mut writers = Vec::with_capacity(partitions);
    let mut routes = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let database = format!("{BENCH_DATABASE}_p{partition}");
        let (database_url, _) = crate::fresh_database(services, &database).await?;
        let bus = BusConfig {
            subject_prefix: format!("bench{run_id}p{partition}"),
            stream_name: format!("LEDGER_BENCH_{}_P{partition}", run_id.to_uppercase()),
            ..BusConfig::default()
        };
        let writer_nats = async_nats::connect(services.nats_url()).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(ledger_writer::run(
            Store::connect(&database_url)?,
            writer_nats,
            WriterConfig {
                bus: bus.clone(),
                ..WriterConfig::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        writers.push((database, bus.stream_name.clone(), stop, writer));
        routes.push(Client::new(
            async_nats::connect(services.nats_url()).await?,
            bus,
        ));
    }
    let measured = load(&routes, clients, duration, &run_id).await;
    let nats = async_nats::jetstream::new(async_nats::connect(services.nats_url()).await?);
    for (database, stream_name, stop, writer) in writers {
        let _ = stop.send(());
        writer.await??;
        let _ = nats.delete_stream(&stream_name).await;
        ledger_devenv::services::drop_database(services.database_url(), &database).await?;
    }
    measured
}

/// The partition of a customer among `partitions` writers: the first 8 bytes of the SHA-256
/// of its id's 16 bytes, big-endian, modulo `partitions` (docs/scaling.md). A function of the
/// id alone, so any router (ingest, an internal service, a connector) computes the same.
///
/// # Panics
/// When `partitions` is 0.
pub(crate) fn partition_of(customer_id: Uuid, partitions: usize) -> usize {
    let digest = ring::digest::digest(&ring::digest::SHA256, customer_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest.as_ref()[..8]);
    let partitions = u64::try_from(partitions).unwrap_or(u64::MAX);
    // The remainder is below `partitions`, itself a usize.
    usize::try_from(u64::from_be_bytes(head) % partitions).unwrap_or(0)
}

pub(crate) fn measure(
    setup: &str,
    clients: usize,
    commands: u64,
    mut latencies: Vec<Duration>,
    elapsed: Duration,
) -> Measured {
    latencies.sort_unstable();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |latency| latency.as_secs_f64() * 1_000.0)
    };
    Measured {
        setup: setup.to_owned(),
        clients,
        commands,
        per_second: commands as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(50),
        p99_ms: percentile(99),
    }
}

/// Customers each client registers before the timed part, and records payments for in turn.
const CUSTOMERS_PER_CLIENT: usize = 20;

/// `clients` closed-loop clients. Each registers its customers (not timed), then records
/// payments for them in turn until `duration` is over. A customer's commands go to the writer
/// of its partition: `partitions[partition_of(customer, partitions.len())]`. Returns commands
/// answered, their latencies and the elapsed time.
pub(crate) async fn load(
    partitions: &[Client],
    clients: usize,
    duration: Duration,
    run_id: &str,
) -> anyhow::Result<(u64, Vec<Duration>, Duration)> {
    let mut customers_by_client = Vec::with_capacity(clients);
    for index in 0..clients {
        let mut customers = Vec::with_capacity(CUSTOMERS_PER_CLIENT);
        for customer in 0..CUSTOMERS_PER_CLIENT {
            let key = format!("{run_id}-{index}-{customer}");
            // The router chooses the id, so the registration already goes to its partition.
            let customer_id = Uuid::now_v7();
            let client = &partitions[partition_of(customer_id, partitions.len())];
            let register = command(
                &format!("{key}-register"),
                &customer_id.to_string(),
                Kind::RegisterCustomer(proto::CustomerRegistered {
                    email: format!("{key}@bench.example"),
                    name: "Bench".to_owned(),
                    provider_account: None,
                }),
            );
            client.send(&register).await?;
            customers.push((customer_id, client.clone()));
        }
        customers_by_client.push(customers);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = customers_by_client
        .into_iter()
        .enumerate()
        .map(|(index, customers)| {
            let prefix = format!("{run_id}-{index}");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    let (customer_id, client) = &customers[n % customers.len()];
                    let payment = command(
                        &format!("{prefix}-{n}"),
                        &customer_id.to_string(),
                        Kind::RecordPaymentSucceeded(payment(&format!("py_{prefix}_{n}"))),
                    );
                    let sent = Instant::now();
                    client.send(&payment).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("client task")??);
    }
    let elapsed = started.elapsed();
    Ok((latencies.len() as u64, latencies, elapsed))
}

/// The same load without NATS or the writer: `clients` tasks appending one event per
/// transaction through the store's writer.
async fn direct_appends(
    store: &Store,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Vec<Duration>, Duration)> {
    let writer = Arc::new(store.writer().await?);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                let customer_id = Uuid::now_v7();
                let state = ledger_domain::Customer::default();
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let key = format!("direct-{customer_id}-{index}-{n}");
                    let body = payment(&key);
                    let command = command(
                        &key,
                        &customer_id.to_string(),
                        Kind::RecordPaymentSucceeded(body.clone()),
                    );
                    let event = proto::event::Kind::PaymentSucceeded(body);
                    let events = vec![event];
                    let request = ledger_writer::append_request(
                        customer_id,
                        &command,
                        unique_key_changes(&state, &events),
                        events,
                        ExpectedVersion::Any,
                    )?;
                    let sent = Instant::now();
                    writer.append_one(request).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("append task")??);
    }
    let elapsed = started.elapsed();
    Ok((latencies.len() as u64, latencies, elapsed))
}

pub(crate) fn payment(payment_id: &str) -> proto::PaymentSucceeded {
    proto::PaymentSucceeded {
        payment_id: payment_id.to_owned(),
        invoice_id: String::new(),
        subscription_id: String::new(),
        amount: Some(proto::Money {
            amount_minor: 4_900,
            currency: "USD".to_owned(),
        }),
    }
}

pub(crate) fn command(idempotency_key: &str, customer_id: &str, kind: Kind) -> proto::Command {
    let now_micros =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    proto::Command {
        metadata: Some(proto::CommandMetadata {
            idempotency_key: idempotency_key.to_owned(),
            customer_id: customer_id.to_owned(),
            expected_version: None,
            occurred_at_unix_micros: now_micros,
            issuer: proto::Issuer::PaymentProvider as i32,
            payment_provider: proto::PaymentProvider::Stripe as i32,
            account_id: "cus_bench".to_owned(),
            correlation_id: String::new(),
            causation_id: String::new(),
        }),
        kind: Some(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;
    use uuid::Uuid;

    #[test]
    fn a_customer_always_falls_in_the_same_partition_and_partitions_share_the_customers() {
        let id = Uuid::parse_str("0190a5c4-0000-7000-8000-000000000001").unwrap();
        assert_eq!(partition_of(id, 1), 0);
        // SHA-256 of the 16 bytes, first 8 bytes big-endian: 7601337968769118286 (computed
        // with Python's hashlib), so 0 mod 2, 6 mod 7, 14 mod 16.
        assert_eq!(partition_of(id, 2), 0);
        assert_eq!(partition_of(id, 7), 6);
        assert_eq!(partition_of(id, 16), 14);
        let mut counts = [0usize; 4];
        for n in 0..4_000u128 {
            counts[partition_of(Uuid::from_u128(n), 4)] += 1;
        }
        // Even within 10 % of 1,000 each.
        assert!(
            counts.iter().all(|&c| (900..=1_100).contains(&c)),
            "{counts:?}"
        );
    }
}
