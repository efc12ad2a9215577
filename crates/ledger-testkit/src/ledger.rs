//! A running ledger for one test: its own database, NATS subjects and JetStream stream, and
//! writers started on demand.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use std::{env, thread};

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::DeleteStreamErrorKind;
use futures_util::TryStreamExt;
use ledger_bus::{BusConfig, Client, decode_recorded_event};
use ledger_domain::proto::{self, command::Kind};
use ledger_projector::{Projector, ProjectorConfig, ProjectorError};
use ledger_store::{RecordedEvent, Store};
use ledger_writer::{WriterConfig, WriterError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::commands::{NOW_MICROS, command, money, register, start_subscription, through};
use crate::{TestDb, unique_name};
use ledger_devenv::services::DEFAULT_NATS_URL;

/// `url` with `role` as the session's role from the connection on (PostgreSQL's `role`
/// setting as a startup option: the owner's connection then has `role`'s privileges only).
fn with_session_role(url: &str, role: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20role%3D{role}")
}

/// How long a projector may take to catch up with the table in a test.
const PROJECTOR_CATCH_UP_MS: u64 = 20_000;

/// How long the test client waits for one answer; the writer answers in milliseconds, and a
/// request to a killed writer is retried after this.
const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// How long `Drop` may take to connect to NATS and delete the test's stream.
const STREAM_DELETE_TIMEOUT_MS: u64 = 5_000;
/// How often [`eventually`] checks its condition.
const EVENTUALLY_POLL_MS: u64 = 25;

/// One test's ledger: a migrated database, a NATS connection and bus names (subject prefix and
/// JetStream stream) no other test uses. No writer runs until [`TestLedger::start_writer`].
///
/// On `Drop` the stream is deleted and the database dropped.
#[derive(Debug)]
pub struct TestLedger {
    /// The event store on this test's database, as its owner.
    pub store: Store,
    /// The same store with the privileges of role `ledger_writer` only, as a deployment's
    /// writer has them (docs/security.md): the writers of [`TestLedger::start_writer`] use it,
    /// so every writer test also checks that the role's grants suffice.
    writer_store: Store,
    /// A connection to the shared NATS server.
    pub nats: async_nats::Client,
    /// This test's subject prefix and stream name.
    pub bus: BusConfig,
    database: TestDb,
    nats_url: String,
}

impl TestLedger {
    /// A fresh database and bus names, on the servers in `DATABASE_URL` and `NATS_URL` (default
    /// `nats://127.0.0.1:4222`).
    ///
    /// # Panics
    ///
    /// If a server cannot be reached; the message says what to do.
    pub async fn new() -> TestLedger {
        let database = TestDb::new().await;
        let store = Store::connect(database.url()).expect("a store on the test database");
        let writer_store = Store::connect(&with_session_role(database.url(), "ledger_writer"))
            .expect("a store as ledger_writer on the test database");
        let nats_url = nats_url();
        let nats = async_nats::connect(&nats_url).await.unwrap_or_else(|error| {
            panic!(
                "cannot connect to NATS at {nats_url} ({error}): run the tests with `just test` \
                 (it provides the servers and sets NATS_URL) or set NATS_URL to a server with \
                 JetStream enabled"
            )
        });
        let bus = BusConfig {
            subject_prefix: unique_name("t").to_lowercase(),
            stream_name: unique_name("EVENTS"),
            ..BusConfig::default()
        };
        TestLedger {
            store,
            writer_store,
            nats,
            bus,
            database,
            nats_url,
        }
    }

    /// This test's database.
    pub fn database(&self) -> &TestDb {
        &self.database
    }

    /// The default writer settings on this test's bus names.
    pub fn writer_config(&self) -> WriterConfig {
        WriterConfig {
            bus: self.bus.clone(),
            secrets: Some(secret_keys()),
            ..WriterConfig::default()
        }
    }

    /// Spawns a writer with [`TestLedger::writer_config`] on the current runtime.
    pub fn start_writer(&self) -> RunningWriter {
        self.start_writer_with(self.writer_config())
    }

    /// Spawns a writer with `config` on the current runtime. It waits for the writer lock, so a
    /// second one is a standby.
    pub fn start_writer_with(&self, config: WriterConfig) -> RunningWriter {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ledger_writer::run(
            self.writer_store.clone(),
            self.nats.clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        RunningWriter { stop, task }
    }

    /// A command client on this test's subjects, with a short request timeout.
    pub fn client(&self) -> Client {
        Client::new(self.nats.clone(), self.bus.clone())
            .with_request_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
    }

    /// A JetStream context on this test's connection.
    pub fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.nats.clone())
    }

    /// The last global position in the event table (0 when empty).
    pub async fn last_position(&self) -> u64 {
        self.store.last_position().await.expect("last_position")
    }

    /// Every event in the JetStream stream, in sequence order, checked against its sequence.
    pub async fn stream_events(&self) -> Vec<RecordedEvent> {
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

    /// Every event in the table, in position order.
    pub async fn table_events(&self) -> Vec<RecordedEvent> {
        self.store
            .read_all(1, u64::MAX)
            .try_collect()
            .await
            .expect("read_all")
    }

    /// Asserts that the table is gap-free and the stream holds exactly its events, one for one;
    /// returns how many there are.
    pub async fn assert_stream_matches_table(&self) -> usize {
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
}

impl Drop for TestLedger {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime (whose tasks drive `self.nats`) may be the
        // current thread: delete the stream from a thread with its own runtime and connection,
        // and wait for it, as `TestDb` does for the database.
        let nats_url = self.nats_url.clone();
        let stream_name = self.bus.stream_name.clone();
        let deleted = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start a runtime: {error}"))?;
            runtime.block_on(async {
                let delete = async {
                    let nats = async_nats::connect(&nats_url).await.map_err(|error| {
                        format!("cannot connect to NATS at {nats_url}: {error}")
                    })?;
                    match jetstream::new(nats).delete_stream(&stream_name).await {
                        Ok(_) => Ok(true),
                        Err(error) => match error.kind() {
                            DeleteStreamErrorKind::JetStream(jetstream_error)
                                if jetstream_error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                            {
                                Ok(false)
                            }
                            _ => Err(error.to_string()),
                        },
                    }
                };
                tokio::time::timeout(Duration::from_millis(STREAM_DELETE_TIMEOUT_MS), delete)
                    .await
                    .map_err(|_| format!("timed out after {STREAM_DELETE_TIMEOUT_MS} ms"))?
            })
        })
        .join();
        let stream = &self.bus.stream_name;
        match deleted {
            Ok(Ok(true)) => debug!(stream, "deleted test stream"),
            Ok(Ok(false)) => debug!(stream, "no test stream to delete"),
            Ok(Err(error)) => warn!(stream, error, "cannot delete test stream"),
            Err(_) => warn!(stream, "deleting the test stream panicked"),
        }
    }
}

/// A writer spawned by [`TestLedger::start_writer`]. Dropping it (or only its `stop` side,
/// after moving `task` out) also asks the writer to stop.
#[derive(Debug)]
pub struct RunningWriter {
    stop: oneshot::Sender<()>,
    /// The writer's task: abort it to kill the writer, await it for how it ended.
    pub task: JoinHandle<Result<(), WriterError>>,
}

impl RunningWriter {
    /// Asks the writer to stop and waits for it.
    ///
    /// # Panics
    ///
    /// If the writer's task panicked or was aborted.
    pub async fn stop(self) -> Result<(), WriterError> {
        let _ = self.stop.send(());
        self.task.await.expect("writer task")
    }
}

impl TestLedger {
    /// Spawns `projector` on this ledger's database and stream (`config.bus` is set to this
    /// ledger's). With `replay`, it drops the projector's schema first, and this returns once
    /// the rebuild has committed its first batch, so that [`TestLedger::projector_caught_up`]
    /// cannot read the old checkpoint.
    ///
    /// # Panics
    ///
    /// If a replay stops before committing a batch.
    pub async fn start_projector<P: Projector>(
        &self,
        projector: P,
        mut config: ProjectorConfig,
        replay: bool,
    ) -> RunningProjector {
        config.bus = self.bus.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (progressed, mut progress_seen) = tokio::sync::watch::channel(0u64);
        let database_url = self.database().url().to_owned();
        let nats = self.nats.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let progress = move |global_position: u64| {
                let _ = progressed.send(global_position);
            };
            if replay {
                ledger_projector::replay(
                    projector,
                    &database_url,
                    nats,
                    &config,
                    shutdown,
                    progress,
                )
                .await
            } else {
                ledger_projector::run(projector, &database_url, nats, &config, shutdown, progress)
                    .await
            }
        });
        if replay && progress_seen.changed().await.is_err() {
            let outcome = task.await;
            panic!("the replay ended before committing a first batch: {outcome:?}");
        }
        RunningProjector { stop, task }
    }

    /// Waits (up to 20 s) until projector `name`'s checkpoint is the table's last position.
    pub async fn projector_caught_up(&self, name: &str) -> bool {
        eventually(PROJECTOR_CATCH_UP_MS, || async {
            self.projector_checkpoint(name).await == self.last_position().await
        })
        .await
    }

    /// Projector `name`'s checkpoint, 0 before its schema exists.
    pub async fn projector_checkpoint(&self, name: &str) -> u64 {
        let client = self.database().client().await;
        client
            .query_opt(
                &format!("SELECT global_position FROM {name}.projector_checkpoint"),
                &[],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

impl TestLedger {
    /// [`schema_checksum`] of this ledger's database.
    pub async fn schema_checksum(&self, schema: &str) -> Vec<(String, i64, String)> {
        schema_checksum(&self.database().client().await, schema).await
    }
}

/// Per table of `schema` but its checkpoint, in name order: (table, rows, MD5 of its rows as
/// text, sorted). Equal checksums mean equal read models.
pub async fn schema_checksum(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Vec<(String, i64, String)> {
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' \
                 AND table_name <> 'projector_checkpoint' \
             ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("tables");
    let mut checksums = Vec::with_capacity(tables.len());
    for table in tables {
        let table: String = table.get(0);
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) \
                     FROM {schema}.{table} t"
                ),
                &[],
            )
            .await
            .expect("checksum");
        checksums.push((table, row.get(0), row.get(1)));
    }
    checksums
}

/// The customers of [`TestLedger::send_known_history`], by name.
#[derive(Debug, Clone)]
pub struct KnownCustomers {
    pub ada: String,
    pub bob: String,
    pub carol: String,
}

impl TestLedger {
    /// Sends a small known history through the writer and returns the customers' ids. Ada
    /// (Stripe account `cus_ada`): 2 seats of `pro-monthly` at 49.00 USD, a 98.00 payment,
    /// 10.00 refunded. Bob: `business-yearly` at 120,000 JPY, cancelling at period end. Carol:
    /// registered only. 8 events, positions 1 to 8; with `first_part_only`, the first 4 (the
    /// registrations and Ada's subscription).
    ///
    /// # Panics
    ///
    /// If the writer refuses a command.
    pub async fn send_known_history(&self, first_part_only: bool) -> KnownCustomers {
        let client = self.client();
        let send = |command: proto::Command| {
            let client = client.clone();
            async move { client.send(&command).await.expect("accepted") }
        };
        let mut ada_registration = register("ada-1", "ada@example.com");
        if let Some(Kind::RegisterCustomer(body)) = ada_registration.kind.as_mut() {
            body.provider_account = Some(proto::ProviderAccount {
                provider: proto::PaymentProvider::Stripe as i32,
                account_id: "cus_ada".to_owned(),
            });
        }
        let ada = send(ada_registration).await.customer_id;
        let mut subscription = start_subscription("ada-2", &ada, "sub_1", "USD");
        if let Some(Kind::StartSubscription(body)) = subscription.kind.as_mut() {
            body.quantity = 2;
        }
        send(subscription).await;
        let bob = send(register("bob-1", "bob@example.com")).await.customer_id;
        let carol = send(register("carol-1", "carol@example.com"))
            .await
            .customer_id;
        if first_part_only {
            return KnownCustomers { ada, bob, carol };
        }
        send(command(
            "ada-3",
            &ada,
            Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: "py_1".to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: Some(money(9_800, "USD")),
            }),
        ))
        .await;
        send(command(
            "ada-4",
            &ada,
            Kind::RefundPayment(proto::PaymentRefunded {
                refund_id: "re_1".to_owned(),
                payment_id: "py_1".to_owned(),
                amount: Some(money(1_000, "USD")),
                reason: "requested_by_customer".to_owned(),
                refund_request_id: String::new(),
            }),
        ))
        .await;
        send(command(
            "bob-2",
            &bob,
            Kind::StartSubscription(proto::SubscriptionStarted {
                subscription_id: "sub_b".to_owned(),
                plan: Some(proto::Plan {
                    plan_id: "business-yearly".to_owned(),
                    unit_price: Some(money(120_000, "JPY")),
                    interval: proto::BillingInterval::Year as i32,
                    interval_count: 1,
                }),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 365 * 86_400,
                discount: None,
            }),
        ))
        .await;
        send(command(
            "bob-3",
            &bob,
            Kind::RequestCancellation(proto::CancellationRequested {
                subscription_id: "sub_b".to_owned(),
                at_period_end: true,
                reason: "too_expensive".to_owned(),
            }),
        ))
        .await;
        KnownCustomers { ada, bob, carol }
    }
}

/// The customers of [`TestLedger::send_subscriptions_held_elsewhere`], by name.
#[derive(Debug, Clone)]
pub struct HeldElsewhere {
    pub dan: String,
    pub erin: String,
}

impl TestLedger {
    /// Sends subscriptions held by another provider than their customer's registration one
    /// (decision 0032: the holder is the provider its `subscription_started` came through) and
    /// returns the customers' ids. Dan (`dan@example.com`) registered internally; his
    /// `sub_stripe` was started through Stripe (account `cus_dan`), `sub_own` internally; both
    /// are then paused through the other one. Erin (`erin@example.com`) registered through
    /// Stripe; her `sub_paypal` was started through PayPal (`I-ERIN`). All USD `pro-monthly`.
    /// 7 events.
    ///
    /// # Panics
    ///
    /// If the writer refuses a command.
    pub async fn send_subscriptions_held_elsewhere(&self) -> HeldElsewhere {
        use proto::PaymentProvider::{Internal, Paypal, Stripe};
        let client = self.client();
        let send = |command: proto::Command| {
            let client = client.clone();
            async move { client.send(&command).await.expect("accepted") }
        };
        let dan = send(through(Internal, "", register("dan-1", "dan@example.com")))
            .await
            .customer_id;
        let start = |key: &str, subscription_id: &str| {
            start_subscription(key, &dan, subscription_id, "USD")
        };
        send(through(Stripe, "cus_dan", start("dan-2", "sub_stripe"))).await;
        send(through(Internal, "", start("dan-3", "sub_own"))).await;
        let pause = |key: &str, subscription_id: &str| {
            command(
                key,
                &dan,
                Kind::PauseSubscription(proto::SubscriptionPaused {
                    subscription_id: subscription_id.to_owned(),
                    resumes_at_unix_seconds: None,
                }),
            )
        };
        send(through(Internal, "", pause("dan-4", "sub_stripe"))).await;
        send(through(Stripe, "cus_dan", pause("dan-5", "sub_own"))).await;
        let erin = send(register("erin-1", "erin@example.com"))
            .await
            .customer_id;
        send(through(
            Paypal,
            "I-ERIN",
            start_subscription("erin-2", &erin, "sub_paypal", "USD"),
        ))
        .await;
        HeldElsewhere { dan, erin }
    }
}

/// The customers of [`TestLedger::send_plan_changes_in_every_order`] and the answers they got.
#[derive(Debug)]
pub struct PlanChangesInEveryOrder {
    /// One customer per order, in the order of `ORDERS`.
    pub customers: Vec<String>,
    /// The distinct answers: `accepted` or a rejection code.
    pub answers: BTreeSet<String>,
}

impl TestLedger {
    /// Issue 11, item 4: a monthly 60.00 USD subscription `s1` started on 2026-01-08, a change
    /// to 90.00 dated 2026-03-01 and one to 70.00 dated 2026-02-10, sent in each of the six
    /// orders (one customer per order), then all sent again (a provider redelivers, and
    /// retries what was refused because the subscription was not there yet). In business time
    /// every customer ends at 90.00 from 2026-03-01.
    pub async fn send_plan_changes_in_every_order(&self) -> PlanChangesInEveryOrder {
        const ORDERS: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let client = self.client();
        let dated = |key: String, customer: &str, day: i64, kind: Kind| {
            let mut command = command(&key, customer, kind);
            if let Some(metadata) = command.metadata.as_mut() {
                metadata.occurred_at_unix_micros = NOW_MICROS + day * 86_400_000_000;
            }
            command
        };
        let plan = |amount_minor: i64| proto::Plan {
            plan_id: format!("plan-{amount_minor}"),
            unit_price: Some(money(amount_minor, "USD")),
            interval: proto::BillingInterval::Month as i32,
            interval_count: 1,
        };
        let change = |amount_minor: i64| {
            Kind::ChangePlan(proto::PlanChanged {
                subscription_id: "s1".to_owned(),
                plan: Some(plan(amount_minor)),
                quantity: 1,
                discount: None,
            })
        };
        let mut customers = Vec::new();
        let mut answers = BTreeSet::new();
        for (index, order) in ORDERS.iter().enumerate() {
            let customer = client
                .send(&register(
                    &format!("order-{index}"),
                    &format!("order-{index}@example.com"),
                ))
                .await
                .expect("registered")
                .customer_id;
            let start = Kind::StartSubscription(proto::SubscriptionStarted {
                subscription_id: "s1".to_owned(),
                plan: Some(plan(6_000)),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 400 * 86_400,
                discount: None,
            });
            let commands = [
                dated(format!("order-{index}-jan-8"), &customer, 7, start),
                dated(format!("order-{index}-mar-1"), &customer, 59, change(9_000)),
                dated(
                    format!("order-{index}-feb-10"),
                    &customer,
                    40,
                    change(7_000),
                ),
            ];
            for position in order.iter().chain(order.iter()) {
                answers.insert(match client.send(&commands[*position]).await {
                    Ok(_) => "accepted".to_owned(),
                    Err(ledger_bus::SendError::Rejected(rejected)) => rejected.code,
                    Err(error) => panic!("no answer from the writer: {error}"),
                });
            }
            customers.push(customer);
        }
        PlanChangesInEveryOrder { customers, answers }
    }
}

/// A projector spawned by [`TestLedger::start_projector`].
#[derive(Debug)]
pub struct RunningProjector {
    stop: oneshot::Sender<()>,
    /// The projector's task: abort it to kill the projector, await it for how it ended.
    pub task: JoinHandle<Result<(), ProjectorError>>,
}

impl RunningProjector {
    /// Asks the projector to stop and waits for it.
    ///
    /// # Panics
    ///
    /// If the projector failed, panicked or was aborted.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("projector task")
            .expect("the projector stops cleanly");
    }
}

/// The tests' key ring for integration secrets (one key, id `test`): the writers of
/// [`TestLedger`] seal with it, and delivery workers in tests open with it.
pub const SECRETS_KEYS: &str = "test:dGVzdC1vbmx5LWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=";

/// [`SECRETS_KEYS`], parsed.
///
/// # Panics
///
/// Never: the constant is a valid key ring.
pub fn secret_keys() -> std::sync::Arc<ledger_secrets::SecretKeys> {
    std::sync::Arc::new(ledger_secrets::SecretKeys::parse(SECRETS_KEYS).expect("the test key ring"))
}

/// Waits up to `timeout_ms` for `condition` to hold; returns whether it did.
pub async fn eventually<F, Fut>(timeout_ms: u64, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(EVENTUALLY_POLL_MS)).await;
    }
    false
}

/// `NATS_URL`, or the shared server on the default port when it is unset or empty.
fn nats_url() -> String {
    env::var("NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}
