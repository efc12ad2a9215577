//! `ledger bench projectors`: how fast each projector rebuilds from the event table, and how
//! far behind the log it runs live.
//!
//! - Rebuild: a random valid history (`ledger_devenv::history`, 2 % of events dated late) is
//!   appended to a fresh database; each projector then replays it from position 1 alone.
//!   Figure: events/s from the start of the replay to the commit of its last batch.
//! - Live lag: on a new, empty ledger, a writer and every projector run in this process;
//!   commands for new customers are sent at a fixed rate through NATS. For each appended event, lag = the time its
//!   projector announced a checkpoint at or past it on `<prefix>.projections.<name>` (after the
//!   commit) minus its `recorded_at` (taken by the writer before it appends the batch).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use ledger_bus::{BusConfig, Client};
use ledger_devenv::history::{self, Rng, Shape};
use ledger_projector::{Projector, ProjectorConfig};
use ledger_store::Store;
use ledger_writer::WriterConfig;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::fresh_database;
use ledger_devenv::progress;

const BENCH_DATABASE: &str = "ledger_bench_projectors";
/// Customers generated (and appended) at a time while loading.
const LOAD_CHUNK_CUSTOMERS: usize = 5_000;
/// Commands attempted per customer; about half are accepted.
const STEPS_PER_CUSTOMER: usize = 20;
/// Concurrent senders of the live load (each owns its customers, so their order holds).
const LIVE_LANES: usize = 64;

#[derive(Debug, clap::Args)]
pub struct ProjectorsBenchArgs {
    /// Events in the history each projector rebuilds.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Commands per second sent while the live lag is measured.
    #[arg(long, default_value_t = 2_000)]
    live_rate: u64,
    /// Seconds of live load.
    #[arg(long, default_value_t = 20)]
    live_seconds: u64,
    /// Events per catch-up transaction (default: the runtime's).
    #[arg(long)]
    page_events: Option<u64>,
}

pub(crate) async fn run(args: ProjectorsBenchArgs) -> anyhow::Result<()> {
    let services = ledger_devenv::services::ensure().await?;
    let (database_url, _client) = fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let nats = async_nats::connect(services.nats_url()).await?;
    let bus_id = Uuid::now_v7().simple().to_string();
    let bus = BusConfig {
        subject_prefix: format!("bench{bus_id}"),
        stream_name: format!("LEDGER_BENCH_{}", bus_id.to_uppercase()),
        ..BusConfig::default()
    };
    let defaults = ProjectorConfig::default();
    let config = ProjectorConfig {
        bus: bus.clone(),
        table_page_events: args.page_events.unwrap_or(defaults.table_page_events),
        ..defaults
    };
    println!(
        "ledger bench projectors: PostgreSQL {database_url}, NATS {}",
        services.nats_url()
    );

    let mut rng = Rng::new(7);
    let loaded = load(&store, &mut rng, args.events).await?;
    println!("history: {loaded} events");
    let mut rebuilds = Vec::new();
    for name in ["customers", "revenue"] {
        let started = Instant::now();
        match name {
            "customers" => {
                replay_once(
                    projector_customers::CustomersProjector::new(store.clone()),
                    &database_url,
                    &nats,
                    &config,
                    loaded,
                )
                .await?
            }
            _ => {
                replay_once(
                    projector_revenue::RevenueProjector::new(store.clone(), Default::default()),
                    &database_url,
                    &nats,
                    &config,
                    loaded,
                )
                .await?
            }
        }
        let elapsed = started.elapsed();
        rebuilds.push((name, elapsed, loaded as f64 / elapsed.as_secs_f64()));
    }
    println!(
        "{:<12} {:>10} {:>10} {:>12}",
        "rebuild", "events", "seconds", "events/s"
    );
    for (name, elapsed, rate) in &rebuilds {
        println!(
            "{name:<12} {loaded:>10} {:>10.1} {rate:>12.0}   (target >= 100000)",
            elapsed.as_secs_f64()
        );
    }

    drop(store);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;

    // The live lag on an empty ledger: a writer starting on the loaded one would first
    // republish its whole history to the stream.
    let (database_url, _client) = fresh_database(&services, BENCH_DATABASE).await?;
    let store = Store::connect(&database_url)?;
    let lags = live_lag(&args, &store, &database_url, &nats, &bus, &config, &mut rng).await?;
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10}",
        "live lag", "events", "p50 ms", "p99 ms", "max ms"
    );
    for (name, mut lags) in lags {
        lags.sort_unstable_by(f64::total_cmp);
        let percentile = |p: usize| {
            lags.get((lags.len() * p / 100).min(lags.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "{name:<12} {:>10} {:>10.1} {:>10.1} {:>10.1}   (target p99 < 100 ms)",
            lags.len(),
            percentile(50),
            percentile(99),
            lags.last().copied().unwrap_or(0.0)
        );
    }
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await;
    drop(store);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}

/// Appends generated customers until at least `events` events are in the store.
async fn load(store: &Store, rng: &mut Rng, events: u64) -> anyhow::Result<u64> {
    let writer = store.writer().await?;
    let bar = progress::events_bar(events, "loading");
    let mut loaded = 0;
    while loaded < events {
        let shape = Shape {
            customers: LOAD_CHUNK_CUSTOMERS,
            steps: STEPS_PER_CUSTOMER,
            late_percent: 2,
        };
        let requests: Vec<_> = history::generate(rng, shape)
            .into_iter()
            .map(|generated| generated.request)
            .collect();
        for chunk in requests.chunks(1_000) {
            for outcome in writer.append(chunk.to_vec()).await? {
                loaded += outcome?.events.len() as u64;
            }
        }
        bar.set_position(loaded.min(events));
    }
    bar.finish_and_clear();
    Ok(loaded)
}

/// Replays `projector` from position 1 until it has applied `through`, then stops it.
async fn replay_once<P: Projector>(
    projector: P,
    database_url: &str,
    nats: &async_nats::Client,
    config: &ProjectorConfig,
    through: u64,
) -> anyhow::Result<()> {
    let bar = progress::events_bar(through, projector.name());
    let (done, finished) = oneshot::channel::<()>();
    let mut done = Some(done);
    let progress = |position: u64| {
        bar.set_position(position.min(through));
        if position >= through
            && let Some(done) = done.take()
        {
            let _ = done.send(());
        }
    };
    let shutdown = async move {
        let _ = finished.await;
    };
    ledger_projector::replay(
        projector,
        database_url,
        nats.clone(),
        config,
        shutdown,
        progress,
    )
    .await?;
    bar.finish_and_clear();
    Ok(())
}

/// Lags (ms) per projector of the events appended under the live load.
async fn live_lag(
    args: &ProjectorsBenchArgs,
    store: &Store,
    database_url: &str,
    nats: &async_nats::Client,
    bus: &BusConfig,
    config: &ProjectorConfig,
    rng: &mut Rng,
) -> anyhow::Result<BTreeMap<&'static str, Vec<f64>>> {
    let first_live = store.last_position().await? + 1;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let writer = tokio::spawn(ledger_writer::run(
        store.clone(),
        nats.clone(),
        WriterConfig {
            bus: bus.clone(),
            ..WriterConfig::default()
        },
        until_stopped(stopped.clone()),
    ));
    let customers = tokio::spawn({
        let (database_url, nats, config) = (database_url.to_owned(), nats.clone(), config.clone());
        let projector = projector_customers::CustomersProjector::new(store.clone());
        let shutdown = until_stopped(stopped.clone());
        async move {
            ledger_projector::run(projector, &database_url, nats, &config, shutdown, |_| {}).await
        }
    });
    let revenue = tokio::spawn({
        let (database_url, nats, config) = (database_url.to_owned(), nats.clone(), config.clone());
        let projector = projector_revenue::RevenueProjector::new(store.clone(), Default::default());
        let shutdown = until_stopped(stopped.clone());
        async move {
            ledger_projector::run(projector, &database_url, nats, &config, shutdown, |_| {}).await
        }
    });
    // Announcements as they arrive: (projector, position, when).
    let announcements: Arc<Mutex<Vec<(String, u64, OffsetDateTime)>>> = Arc::default();
    let mut subscription = nats
        .subscribe(format!("{}.projections.>", bus.subject_prefix))
        .await?;
    let listener = tokio::spawn({
        let announcements = Arc::clone(&announcements);
        async move {
            while let Some(message) = subscription.next().await {
                let at = OffsetDateTime::now_utc();
                let position = String::from_utf8_lossy(&message.payload)
                    .parse()
                    .unwrap_or(0);
                let name = message.subject.rsplit('.').next().unwrap_or("").to_owned();
                if let Ok(mut announcements) = announcements.lock() {
                    announcements.push((name, position, at));
                }
            }
        }
    });

    let generated = history::generate(
        rng,
        Shape {
            customers: (args.live_rate * args.live_seconds) as usize / 10,
            steps: STEPS_PER_CUSTOMER,
            late_percent: 2,
        },
    );
    let mut lanes: Vec<Vec<ledger_domain::proto::Command>> = vec![Vec::new(); LIVE_LANES];
    for one in generated {
        let customer = one.request.stream_id;
        lanes[(customer.as_u128() % LIVE_LANES as u128) as usize].push(one.command);
    }
    let client = Client::new(nats.clone(), bus.clone());
    let deadline = Instant::now() + Duration::from_secs(args.live_seconds);
    let lane_period = Duration::from_secs_f64(LIVE_LANES as f64 / args.live_rate as f64);
    let bar = progress::events_bar(args.live_rate * args.live_seconds, "live load");
    let senders: Vec<_> = lanes
        .into_iter()
        .map(|commands| {
            let (client, bar) = (client.clone(), bar.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(lane_period);
                for command in commands {
                    ticks.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    client.send(&command).await.context("live command")?;
                    bar.inc(1);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    bar.finish_and_clear();
    let last = store.last_position().await?;
    // Let the projectors catch up with the last command, then stop everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);
    writer.await??;
    customers.await??;
    revenue.await??;
    listener.abort();
    let recorded: Vec<(u64, OffsetDateTime)> = {
        let (client, connection) =
            tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .query(
                "SELECT global_position, recorded_at FROM customer_payment_events \
                 WHERE global_position BETWEEN $1 AND $2 ORDER BY 1",
                &[&i64::try_from(first_live)?, &i64::try_from(last)?],
            )
            .await?
            .iter()
            .map(|row| (u64::try_from(row.get::<_, i64>(0)).unwrap_or(0), row.get(1)))
            .collect()
    };
    let announcements = announcements
        .lock()
        .map_err(|_| anyhow::anyhow!("the announcement listener panicked"))?
        .clone();
    let mut lags = BTreeMap::new();
    for name in ["customers", "revenue"] {
        let mine: Vec<&(String, u64, OffsetDateTime)> = announcements
            .iter()
            .filter(|(projector, _, _)| projector == name)
            .collect();
        let mut next = 0;
        let mut lags_ms = Vec::with_capacity(recorded.len());
        for (position, recorded_at) in &recorded {
            while next < mine.len() && mine[next].1 < *position {
                next += 1;
            }
            let Some((_, _, at)) = mine.get(next) else {
                anyhow::bail!("projector {name} never announced position {position}");
            };
            lags_ms.push((*at - *recorded_at).as_seconds_f64() * 1_000.0);
        }
        lags.insert(name, lags_ms);
    }
    Ok(lags)
}
