//! The writer against real PostgreSQL and NATS: each test has its own database, subjects and
//! JetStream stream.

mod faults;
mod inputs;
mod round_trip;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use ledger_bus::{BusConfig, Client, decode_recorded_event};
use ledger_domain::proto;
use ledger_store::{RecordedEvent, Store};
use ledger_testkit::{TestDb, unique_name};
use ledger_writer::{WriterConfig, WriterError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2026-01-01T00:00:00Z in microseconds.
const NOW_MICROS: i64 = 1_767_225_600_000_000;

/// One test's world: a migrated database, a NATS connection and unique bus names.
struct World {
    _database: TestDb,
    store: Store,
    nats: async_nats::Client,
    bus: BusConfig,
}

impl World {
    async fn new() -> World {
        let database = TestDb::new().await;
        let store = Store::connect(database.url()).expect("store");
        let nats_url =
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let nats = async_nats::connect(nats_url)
            .await
            .expect("connect to NATS");
        let bus = BusConfig {
            subject_prefix: unique_name("t").to_lowercase(),
            stream_name: unique_name("EVENTS"),
            ..BusConfig::default()
        };
        World {
            _database: database,
            store,
            nats,
            bus,
        }
    }

    fn config(&self) -> WriterConfig {
        WriterConfig {
            bus: self.bus.clone(),
            ..WriterConfig::default()
        }
    }

    fn start_writer(&self) -> RunningWriter {
        self.start_writer_with(self.config())
    }

    fn start_writer_with(&self, config: WriterConfig) -> RunningWriter {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ledger_writer::run(
            self.store.clone(),
            self.nats.clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        RunningWriter { stop, task }
    }

    fn client(&self) -> Client {
        Client::new(self.nats.clone(), self.bus.clone())
            .with_request_timeout(Duration::from_millis(1_000))
    }

    fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.nats.clone())
    }

    /// Every event in the JetStream stream, in sequence order, checked against its sequence.
    async fn stream_events(&self) -> Vec<RecordedEvent> {
        let stream = self
            .jetstream()
            .get_stream(&self.bus.stream_name)
            .await
            .expect("stream");
        let last = stream.get_info().await.expect("info").state.last_sequence;
        let mut events = Vec::new();
        for sequence in 1..=last {
            let message = stream.get_raw_message(sequence).await.expect("message");
            let event = decode_recorded_event(&message.payload).expect("decode");
            assert_eq!(
                event.global_position, sequence,
                "sequence == global_position"
            );
            events.push(event);
        }
        events
    }

    async fn table_events(&self) -> Vec<RecordedEvent> {
        use futures_util::TryStreamExt;
        self.store
            .read_all(1, u64::MAX)
            .try_collect()
            .await
            .expect("read_all")
    }

    /// The table is gap-free and the stream holds exactly its events, one for one.
    async fn assert_stream_matches_table(&self) -> usize {
        let table = self.table_events().await;
        let stream = self.stream_events().await;
        let positions: Vec<u64> = table.iter().map(|e| e.global_position).collect();
        assert_eq!(positions, (1..=table.len() as u64).collect::<Vec<_>>());
        let ids = |events: &[RecordedEvent]| -> Vec<_> {
            events
                .iter()
                .map(|e| (e.global_position, e.event.event_id, e.hash))
                .collect()
        };
        assert_eq!(
            ids(&stream),
            ids(&table),
            "stream and table agree event for event"
        );
        table.len()
    }

    async fn delete_stream(&self) {
        let _ = self.jetstream().delete_stream(&self.bus.stream_name).await;
    }
}

struct RunningWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WriterError>>,
}

impl RunningWriter {
    /// Asks the writer to stop and waits for it.
    async fn stop(self) -> Result<(), WriterError> {
        let _ = self.stop.send(());
        self.task.await.expect("writer task")
    }
}

/// Waits up to `timeout_ms` for `condition` to hold.
async fn eventually<F, Fut>(timeout_ms: u64, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn metadata(idempotency_key: &str, customer_id: &str) -> proto::CommandMetadata {
    proto::CommandMetadata {
        idempotency_key: idempotency_key.to_owned(),
        customer_id: customer_id.to_owned(),
        expected_version: None,
        occurred_at_unix_micros: NOW_MICROS,
        issuer: proto::Issuer::Internal as i32,
        payment_provider: proto::PaymentProvider::Stripe as i32,
        account_id: "cus_test".to_owned(),
        correlation_id: String::new(),
        causation_id: String::new(),
    }
}

fn register(idempotency_key: &str, email: &str) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, "")),
        kind: Some(proto::command::Kind::RegisterCustomer(
            proto::CustomerRegistered {
                email: email.to_owned(),
                name: "Ada".to_owned(),
                provider_account: None,
            },
        )),
    }
}

fn start_subscription(
    idempotency_key: &str,
    customer_id: &str,
    subscription_id: &str,
    currency: &str,
) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, customer_id)),
        kind: Some(proto::command::Kind::StartSubscription(
            proto::SubscriptionStarted {
                subscription_id: subscription_id.to_owned(),
                plan: Some(proto::Plan {
                    plan_id: "pro-monthly".to_owned(),
                    unit_price: Some(proto::Money {
                        amount_minor: 4_900,
                        currency: currency.to_owned(),
                    }),
                    interval: proto::BillingInterval::Month as i32,
                    interval_count: 1,
                }),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 30 * 86_400,
                discount: None,
            },
        )),
    }
}
