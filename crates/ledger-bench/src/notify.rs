//! `ledger bench notify`: events/s the notify projector sustains when 1% of events produce a
//! notification, next to the customers projector on the same events, then the delivery
//! worker's deliveries/s to a receiver on loopback.

use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_devenv::history;
use ledger_devenv::receivers::HttpReceiver;
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{
    Customer, Stream, decide, evolve, occurred_at_unix_micros, unique_key_changes,
};
use ledger_projector::{Projector, ProjectorConfig};
use ledger_store::{AppendRequest, ExpectedVersion, Store};
use uuid::Uuid;

use ledger_devenv::progress;

const BENCH_DATABASE: &str = "ledger_bench_notify";
/// Events per customer: a registration, a subscription and monthly payments.
const EVENTS_PER_CUSTOMER: u64 = 20;
/// One payment in this many fails (and the next one recovers it): two notifications per
/// `FAILURE_EVERY_EVENTS` events, 1 %.
const FAILURE_EVERY_EVENTS: u64 = 200;
/// Requests appended per store transaction while loading the history.
const APPEND_BATCH_REQUESTS_MAX: usize = 1_000;
/// How long the worker may take to send every delivery.
const DELIVERIES_WAIT_MS: u64 = 600_000;

#[derive(Debug, clap::Args)]
pub struct NotifyBenchArgs {
    /// Events in the history the projectors catch up on.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
}

pub(crate) async fn run(args: NotifyBenchArgs) -> anyhow::Result<()> {
    let services = ledger_devenv::services::ensure().await?;
    let database_url =
        ledger_devenv::services::recreate_database(services.database_url(), BENCH_DATABASE).await?;
    let (mut client, connection) =
        tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    ledger_store::migrate(&mut client).await?;
    let store = Store::connect(&database_url)?;
    let receiver = HttpReceiver::start().await;
    load_history(&store, &receiver.url, args.events).await?;
    let events = store.last_position().await?;
    println!(
        "ledger bench notify: {events} events, {database_url}, receiver {}",
        receiver.url
    );

    let nats = async_nats::connect(services.nats_url())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", services.nats_url()))?;
    let run_id = Uuid::now_v7().simple().to_string();
    let bus = ledger_bus::BusConfig {
        subject_prefix: format!("bench{run_id}"),
        stream_name: format!("LEDGER_BENCH_{}", run_id.to_uppercase()),
        ..ledger_bus::BusConfig::default()
    };
    let config = ProjectorConfig {
        bus: bus.clone(),
        ..ProjectorConfig::default()
    };
    let customers = catch_up(
        projector_customers::CustomersProjector::new(store.clone()),
        &database_url,
        &nats,
        &config,
        events,
    )
    .await?;
    let notify = catch_up(
        projector_notify::NotifyProjector::new(store.clone(), projector_notify::Rules::default()),
        &database_url,
        &nats,
        &config,
        events,
    )
    .await?;
    let decided: i64 = client
        .query_one("SELECT count(*) FROM notify_delivery.deliveries", &[])
        .await?
        .get(0);

    let started = Instant::now();
    let delivered = deliver_all(&database_url, &client, &receiver).await?;
    let delivery_elapsed = started.elapsed();
    if let Err(error) = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await
    {
        tracing::debug!(%error, "no bench stream to delete");
    }

    let per_second = |count: u64, elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!("{:<44} {:>10} {:>12}", "phase", "count", "per second");
    println!(
        "{:<44} {:>10} {:>12.0}",
        "customers projector, catch-up (events)",
        events,
        per_second(events, customers)
    );
    println!(
        "{:<44} {:>10} {:>12.0}",
        format!("notify projector, catch-up (events, {decided} notified)"),
        events,
        per_second(events, notify)
    );
    println!(
        "{:<44} {:>10} {:>12.0}",
        "delivery worker, webhooks to loopback",
        delivered,
        per_second(delivered, delivery_elapsed)
    );
    drop(store);
    drop(client);
    ledger_devenv::services::drop_database(services.database_url(), BENCH_DATABASE).await?;
    Ok(())
}

/// A webhook integration to `receiver_url`, then customers paying monthly, one payment in
/// `FAILURE_EVERY_EVENTS` events failing and the next one recovering it.
async fn load_history(store: &Store, receiver_url: &str, events: u64) -> anyhow::Result<()> {
    let writer = store.writer().await?;
    let metadata = |key: String, customer_id: String, micros: i64| proto::CommandMetadata {
        idempotency_key: key,
        customer_id,
        expected_version: None,
        occurred_at_unix_micros: micros,
        issuer: proto::Issuer::PaymentProvider as i32,
        payment_provider: proto::PaymentProvider::Stripe as i32,
        account_id: String::new(),
        correlation_id: String::new(),
        causation_id: String::new(),
    };
    let start_micros = 1_767_225_600_000_000i64;
    let integration = ledger_devenv::demo_notify::register_sample_webhook(
        &format!("{receiver_url}/bench"),
        start_micros,
    );
    // Sealed as the writer would (the bench appends through the store).
    let integration_id = Uuid::now_v7();
    let keys = ledger_devenv::demo_notify::demo_secret_keys()?;
    let integration_events = Stream::Empty
        .decide(&integration)?
        .into_iter()
        .map(|event| keys.seal_event(integration_id, event))
        .collect::<Result<Vec<_>, _>>()?;
    let mut requests = vec![ledger_writer::append_request(
        integration_id,
        &integration,
        ledger_domain::UniqueKeyChanges::default(),
        integration_events,
        ExpectedVersion::Exact(0),
    )?];
    let customers = events.div_ceil(EVENTS_PER_CUSTOMER);
    let bar = progress::events_bar(events, "loading");
    let mut appended = 0u64;
    let mut position = 1u64;
    for index in 0..customers {
        let id = Uuid::now_v7();
        let mut state = Customer::default();
        let mut past_due = false;
        for step in 0..EVENTS_PER_CUSTOMER {
            position += 1;
            let micros = start_micros + i64::try_from(step).unwrap_or(0) * 2_592_000_000_000;
            let key = format!("bench:{index}:{step}");
            let kind = match step {
                0 => Kind::RegisterCustomer(proto::CustomerRegistered {
                    email: format!("bench{index}@example.com"),
                    name: format!("Bench {index}"),
                    provider_account: None,
                }),
                1 => Kind::StartSubscription(proto::SubscriptionStarted {
                    subscription_id: "sub_1".to_owned(),
                    plan: Some(proto::Plan {
                        plan_id: "pro".to_owned(),
                        unit_price: Some(history::money(4_900, "USD")),
                        interval: proto::BillingInterval::Month as i32,
                        interval_count: 1,
                    }),
                    quantity: 1,
                    trial_end_unix_seconds: None,
                    current_period_end_unix_seconds: micros / 1_000_000 + 2_592_000,
                    discount: None,
                }),
                _ if position.is_multiple_of(FAILURE_EVERY_EVENTS) && !past_due => {
                    past_due = true;
                    Kind::RecordPaymentFailed(proto::PaymentFailed {
                        payment_id: format!("py_{step}"),
                        invoice_id: String::new(),
                        subscription_id: "sub_1".to_owned(),
                        amount: Some(history::money(4_900, "USD")),
                        failure_code: "card_declined".to_owned(),
                        failure_message: String::new(),
                        attempt_count: 1,
                    })
                }
                _ => {
                    past_due = false;
                    Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                        payment_id: format!("py_{step}"),
                        invoice_id: String::new(),
                        subscription_id: "sub_1".to_owned(),
                        amount: Some(history::money(4_900, "USD")),
                    })
                }
            };
            let customer_id = if step == 0 {
                String::new()
            } else {
                id.to_string()
            };
            let command = proto::Command {
                metadata: Some(metadata(key, customer_id, micros)),
                kind: Some(kind),
            };
            let decided = decide(&state, &command)?;
            requests.push(ledger_writer::append_request(
                id,
                &command,
                unique_key_changes(&state, &decided),
                decided.clone(),
                ExpectedVersion::Exact(state.version),
            )?);
            state = decided.iter().fold(state, |state, event| {
                evolve(state, event, occurred_at_unix_micros(&command))
            });
            if requests.len() >= APPEND_BATCH_REQUESTS_MAX {
                appended += append(&writer, &mut requests).await?;
                bar.set_position(appended);
            }
        }
    }
    append(&writer, &mut requests).await?;
    bar.finish_and_clear();
    Ok(())
}

async fn append(
    writer: &ledger_store::Writer,
    requests: &mut Vec<AppendRequest>,
) -> anyhow::Result<u64> {
    let batch = std::mem::take(requests);
    let count = batch.len() as u64;
    for outcome in writer.append(batch).await? {
        outcome?;
    }
    Ok(count)
}

/// Builds `projector` from an empty schema up to position `last`; returns how long it took.
async fn catch_up<P: Projector>(
    projector: P,
    database_url: &str,
    nats: &async_nats::Client,
    config: &ProjectorConfig,
    last: u64,
) -> anyhow::Result<Duration> {
    let name = projector.name();
    let (progressed, mut progress_seen) = tokio::sync::watch::channel(0u64);
    let bar = progress::events_bar(last, name);
    let started = Instant::now();
    ledger_projector::replay(
        projector,
        database_url,
        nats.clone(),
        config,
        async move {
            let _ = progress_seen.wait_for(|position| *position >= last).await;
        },
        |position| {
            bar.set_position(position);
            let _ = progressed.send(position);
        },
    )
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(elapsed)
}

/// Runs the delivery worker until no delivery is pending; returns how many were delivered.
async fn deliver_all(
    database_url: &str,
    client: &tokio_postgres::Client,
    receiver: &HttpReceiver,
) -> anyhow::Result<u64> {
    let pending = || async {
        client
            .query_one(
                "SELECT count(*) FROM notify_delivery.deliveries WHERE status = 'pending'",
                &[],
            )
            .await
            .map_or(1, |row| row.get::<_, i64>(0))
    };
    let done = async {
        let deadline = Instant::now() + Duration::from_millis(DELIVERIES_WAIT_MS);
        while pending().await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    projector_notify::run_worker(
        database_url,
        ledger_devenv::demo_notify::loopback_delivery_config()?,
        done,
    )
    .await?;
    anyhow::ensure!(
        pending().await == 0,
        "deliveries still pending after the wait"
    );
    Ok(receiver.requests().len() as u64)
}
