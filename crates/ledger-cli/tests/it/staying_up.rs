//! Issue 14: the long-running processes ride out outages of PostgreSQL and NATS without a
//! manual step, one instance runs per projector, and errors name their cause once.
//! Each test runs private servers, so it can stop and start them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ledger_bus::{BusConfig, Client, NatsAuth};
use ledger_devenv::services::{
    PrivateNats, PrivateNatsCluster, PrivatePostgres, start_private_nats, start_private_postgres,
};
use ledger_testkit::commands;
use ledger_testkit::ledger::eventually;

/// The private NATS a [`Deployment`] runs on: one server, or a cluster (`it::cluster`).
pub(super) trait NatsServers {
    /// The value of `NATS_URL` for the ledger's processes.
    fn url(&self) -> &str;
}

impl NatsServers for PrivateNats {
    fn url(&self) -> &str {
        PrivateNats::url(self)
    }
}

impl NatsServers for PrivateNatsCluster {
    fn url(&self) -> &str {
        PrivateNatsCluster::url(self)
    }
}

/// Private servers and the ledger's processes on them, killed on drop (also used by
/// [`super::chaos`] and [`super::cluster`]).
pub(super) struct Deployment<N: NatsServers = PrivateNats> {
    pub(super) postgres: PrivatePostgres,
    pub(super) nats: N,
    pub(super) children: Vec<Child>,
    pub(super) bus: BusConfig,
    log_dir: std::path::PathBuf,
}

impl Deployment {
    pub(super) async fn start() -> Deployment {
        let postgres = start_private_postgres().await.expect("private PostgreSQL");
        let nats = start_private_nats().await.expect("private nats-server");
        Deployment::start_with(postgres, nats).await
    }
}

impl<N: NatsServers> Deployment<N> {
    /// Migrates the database of `postgres`; the ledger's processes will use `nats`.
    pub(super) async fn start_with(postgres: PrivatePostgres, nats: N) -> Deployment<N> {
        let log_dir = std::env::temp_dir().join(ledger_testkit::unique_name("staying-up"));
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let deployment = Deployment {
            postgres,
            nats,
            children: Vec::new(),
            bus: BusConfig::default(),
            log_dir,
        };
        let migrate = deployment.ledger(&["migrate"]).output().expect("migrate");
        assert!(
            migrate.status.success(),
            "{}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        deployment
    }

    pub(super) fn ledger(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(args)
            .env("DATABASE_URL", self.postgres.url())
            .env("NATS_URL", self.nats.url())
            .env("RUST_LOG", "info,async_nats=warn,tokio_postgres=warn")
            .stdin(Stdio::null());
        command
    }

    /// Starts `ledger <args>` in the background; its stderr goes to `<log>.log`.
    pub(super) fn spawn(&mut self, log: &str, args: &[&str]) -> usize {
        self.spawn_with(log, args, &[])
    }

    /// [`Deployment::spawn`] with these environment variables added.
    pub(super) fn spawn_with(&mut self, log: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let file = std::fs::File::create(self.log_dir.join(format!("{log}.log"))).expect("log");
        let child = self
            .ledger(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ledger");
        self.children.push(child);
        self.children.len() - 1
    }

    pub(super) fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    /// Waits up to 20 s for `text` in `log`; panics with the log if it does not come.
    pub(super) async fn wait_for_log(&self, log: &str, text: &str) {
        assert!(
            eventually(20_000, || async { self.log(log).contains(text) }).await,
            "no {text:?} in {log}'s log:\n{}",
            self.log(log)
        );
    }

    fn still_running(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub(super) async fn client(&self) -> Client {
        let nats = ledger_bus::connect_service(self.nats.url(), &NatsAuth::default(), "test")
            .await
            .expect("NATS client");
        Client::new(nats, self.bus.clone()).with_request_timeout(Duration::from_secs(2))
    }

    pub(super) async fn query_i64(&self, sql: &str) -> Option<i64> {
        let (client, connection) =
            tokio_postgres::connect(self.postgres.url(), tokio_postgres::NoTls)
                .await
                .ok()?;
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.ok()?.try_get(0).ok()
    }

    /// Sends registrations `from..to` and returns the idempotency keys that were accepted.
    async fn register(&self, client: &Client, from: usize, to: usize) -> Vec<String> {
        let mut accepted = Vec::new();
        for n in from..to {
            let key = format!("outage-{n}");
            let command = commands::register(&key, &format!("c{n}@example.com"));
            if client.send(&command).await.is_ok() {
                accepted.push(key);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        accepted
    }

    /// Everything acknowledged is stored once, positions have no gap, the stream holds the
    /// table, the customers read model caught up with one row per registration and equals a
    /// rebuild.
    pub(super) async fn assert_intact(&mut self, accepted: &[String]) {
        let client = self.client().await;
        // The processes came back by themselves: a new command is accepted.
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        assert!(
            eventually(30_000, || {
                let client = client.clone();
                let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    client
                        .send(&commands::register(
                            &format!("after-{n}"),
                            &format!("a{n}@example.com"),
                        ))
                        .await
                        .is_ok()
                }
            })
            .await,
            "the writer did not come back; its log:\n{}",
            self.log("writer")
        );
        for key in accepted {
            let stored = self
                .query_i64(&format!(
                    "SELECT count(*) FROM customer_payment_events WHERE idempotency_key = '{key}'"
                ))
                .await;
            assert_eq!(stored, Some(1), "acknowledged {key} is stored once");
        }
        let last = self
            .query_i64("SELECT coalesce(max(global_position), 0) FROM customer_payment_events")
            .await
            .expect("last position");
        let count = self
            .query_i64("SELECT count(*) FROM customer_payment_events")
            .await
            .expect("count");
        assert_eq!(count, last, "positions have no gap");
        let nats = ledger_bus::connect(self.nats.url(), &NatsAuth::default(), "test")
            .await
            .expect("NATS");
        let jetstream = async_nats::jetstream::new(nats);
        assert!(
            eventually(30_000, || {
                let jetstream = jetstream.clone();
                let stream_name = self.bus.stream_name.clone();
                async move {
                    match jetstream.get_stream(&stream_name).await {
                        Ok(mut stream) => stream
                            .info()
                            .await
                            .is_ok_and(|info| info.state.last_sequence == last as u64),
                        Err(_) => false,
                    }
                }
            })
            .await,
            "the stream holds every event of the table"
        );
        assert!(
            eventually(30_000, || async {
                self.query_i64("SELECT global_position FROM customers.projector_checkpoint")
                    .await
                    == Some(last)
            })
            .await,
            "the projector did not come back; its log:\n{}",
            self.log("projector")
        );
        let rows = self
            .query_i64("SELECT count(*) FROM customers.customers")
            .await;
        let registrations = self
            .query_i64(
                "SELECT count(*) FROM customer_payment_events \
                 WHERE event_type = 'customer_registered'",
            )
            .await;
        assert_eq!(rows, registrations, "one customer row per registration");
        assert!(self.still_running(), "no process exited");
        self.assert_equals_a_rebuild(last).await;
    }

    /// The customers read model that lived through the outage equals a fresh rebuild from the
    /// table: the processes are stopped, `ledger replay customers` rebuilds it, and the two
    /// are compared table by table.
    async fn assert_equals_a_rebuild(&mut self, last: i64) {
        let (client, connection) =
            tokio_postgres::connect(self.postgres.url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL");
        tokio::spawn(connection);
        let lived = ledger_testkit::ledger::schema_checksum(&client, "customers").await;
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn("replay", &["replay", "customers"]);
        // Logged once the rebuild has caught up with the table, past the dropped schema.
        self.wait_for_log("replay", "consuming the event stream")
            .await;
        assert!(
            eventually(60_000, || async {
                self.query_i64("SELECT global_position FROM customers.projector_checkpoint")
                    .await
                    == Some(last)
            })
            .await,
            "the rebuild did not finish; its log:\n{}",
            self.log("replay")
        );
        let rebuilt = ledger_testkit::ledger::schema_checksum(&client, "customers").await;
        assert_eq!(lived, rebuilt, "the read model equals a fresh rebuild");
    }
}

impl<N: NatsServers> Drop for Deployment<N> {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// PostgreSQL stops for 10 s under load and comes back: the writer and the projector resume
/// with no manual step, and nothing acknowledged is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_and_projector_ride_out_a_postgres_restart() {
    let mut deployment = Deployment::start().await;
    deployment.spawn("writer", &["run", "writer"]);
    deployment.spawn("projector", &["run", "projector", "customers"]);
    let client = deployment.client().await;
    let mut accepted = deployment.register(&client, 0, 10).await;
    deployment.postgres.stop_server().await;
    let (during, ()) = tokio::join!(deployment.register(&client, 10, 40), async {
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    accepted.extend(during);
    deployment
        .postgres
        .start_server()
        .await
        .expect("PostgreSQL back");
    accepted.extend(deployment.register(&client, 40, 50).await);
    deployment.assert_intact(&accepted).await;
    let writer_log = deployment.log("writer");
    assert_eq!(
        writer_log.matches("failed; retrying with backoff").count(),
        1,
        "one warning per outage, not one per retry:\n{writer_log}"
    );
}

/// nats-server stops for 20 s under load and comes back, and the leading writer is killed
/// during the outage: the standby leads once NATS is back, the projector resumes, nothing
/// acknowledged is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_projector_ride_out_a_nats_restart_and_a_dead_leader() {
    let mut deployment = Deployment::start().await;
    let leader = deployment.spawn("first-writer", &["run", "writer"]);
    deployment
        .wait_for_log("first-writer", "writer is the leader")
        .await;
    deployment.spawn("writer", &["run", "writer"]);
    deployment.spawn("projector", &["run", "projector", "customers"]);
    let client = deployment.client().await;
    let mut accepted = deployment.register(&client, 0, 10).await;
    deployment.nats.stop_server();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut leader = deployment.children.remove(leader);
    let _ = leader.kill();
    let _ = leader.wait();
    tokio::time::sleep(Duration::from_secs(15)).await;
    deployment.nats.start_server().await.expect("NATS back");
    accepted.extend(deployment.register(&client, 10, 30).await);
    let projector_log = deployment.log("projector");
    let nats_warnings = projector_log
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains("NATS"))
        .count();
    assert_eq!(
        nats_warnings, 1,
        "one warning per NATS outage, not one per reconnect attempt:\n{projector_log}"
    );
    deployment.assert_intact(&accepted).await;
}

/// `ledger run writer` starts while NATS is unreachable and serves once it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_starts_without_nats_and_serves_when_it_comes() {
    let mut deployment = Deployment::start().await;
    deployment.nats.stop_server();
    deployment.spawn("writer", &["run", "writer"]);
    deployment.spawn("projector", &["run", "projector", "customers"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(deployment.still_running(), "{}", deployment.log("writer"));
    deployment.nats.start_server().await.expect("NATS");
    deployment.assert_intact(&[]).await;
}

/// One instance per projector: `ledger replay` refuses next to a running one and says what to
/// do; a second `ledger run projector` waits as a standby and takes over when the first dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_per_projector() {
    let mut deployment = Deployment::start().await;
    deployment.spawn("writer", &["run", "writer"]);
    let first = deployment.spawn("first", &["run", "projector", "customers"]);
    deployment
        .wait_for_log("first", "consuming the event stream")
        .await;
    let replay = deployment
        .ledger(&["replay", "customers"])
        .output()
        .expect("replay");
    assert_eq!(replay.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(
        stderr.contains(
            "projector customers is running in another process: ledger projector customers, pid"
        ) && stderr.contains("then run `ledger replay customers`"),
        "{stderr}"
    );
    deployment.spawn("second", &["run", "projector", "customers"]);
    deployment
        .wait_for_log("second", "waiting as a standby")
        .await;
    assert!(
        !deployment
            .log("second")
            .contains("consuming the event stream")
    );
    let mut first = deployment.children.remove(first);
    let _ = first.kill();
    let _ = first.wait();
    deployment
        .wait_for_log("second", "consuming the event stream")
        .await;
    let client = deployment.client().await;
    let accepted = deployment.register(&client, 0, 3).await;
    assert_eq!(accepted.len(), 3);
    deployment.assert_intact(&accepted).await;
}

/// Connection errors name the address tried (never the password) and the server's own words,
/// once: no text is repeated down the error chain.
#[tokio::test]
async fn connection_errors_name_the_address_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let store = ledger_store::Store::connect(&format!(
        "postgres://postgres:secret-password@127.0.0.1:{port}/ledger"
    ))
    .expect("a valid URL");
    let error = store
        .last_position()
        .await
        .expect_err("nothing listens there");
    let report = format!("{:#}", anyhow::Error::from(error));
    assert!(
        report.starts_with(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}: "
        )),
        "{report}"
    );
    assert!(report.contains("Connection refused"), "the cause: {report}");
    assert!(!report.contains("secret-password"), "{report}");
    assert_no_repeats(&report);

    // The server's own answer, not a generic hint: here, a database that does not exist.
    let postgres = start_private_postgres().await.expect("private PostgreSQL");
    let (server, _) = postgres
        .url()
        .rsplit_once('/')
        .expect("a database in the URL");
    let missing = format!("{server}/no_such_database");
    let store = ledger_store::Store::connect(&missing).expect("a valid URL");
    let report = format!(
        "{:#}",
        anyhow::Error::from(store.last_position().await.expect_err("no such database"))
    );
    assert!(
        report.contains("FATAL: database \"no_such_database\" does not exist")
            && !report.contains("is the server running"),
        "{report}"
    );
    assert_no_repeats(&report);
}

/// No `: `-separated part of `report` repeats the one before it.
fn assert_no_repeats(report: &str) {
    let parts: Vec<&str> = report.split(": ").collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "doubled text in {report}");
    }
}

/// The Stripe endpoint secret of `ledger run ingest` in the webhook outage test.
pub(super) const STRIPE_SECRET: &str = "whsec_staying_up_0123456789";

/// A signed Stripe `customer.created` for a new account `account`.
pub(super) fn stripe_delivery(event_id: &str, account: &str) -> (Vec<u8>, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let body = serde_json::to_vec(&serde_json::json!({
        "id": event_id, "object": "event", "type": "customer.created", "created": now,
        "data": {"object": {
            "id": account, "object": "customer", "email": format!("{account}@example.com"),
            "name": "N"
        }}
    }))
    .expect("JSON");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, STRIPE_SECRET.as_bytes());
    let mut signed = format!("{now}.").into_bytes();
    signed.extend_from_slice(&body);
    let tag: String = ring::hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    (body, format!("t={now},v1={tag}"))
}

/// Issue 13: PostgreSQL stops while `ledger run writer` and `ledger run ingest` run. A webhook
/// delivery is answered 503 with `Retry-After` and nothing is recorded; once PostgreSQL is
/// back, the provider's retry of the same delivery is appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_503_while_postgres_is_down_and_the_retry_is_recorded_once() {
    let mut deployment = Deployment::start().await;
    deployment.spawn("writer", &["run", "writer"]);
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let mut ingest = deployment.ledger(&["run", "ingest", "--bind", &address.to_string()]);
    ingest
        .env(
            "LEDGER_INGEST_TOKENS",
            "staying-up-token-0123456789:commands:write",
        )
        .env("LEDGER_STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    deployment
        .children
        .push(ingest.spawn().expect("start ingest"));
    let endpoint = format!("http://{address}/v1/webhooks/stripe");
    let http = reqwest::Client::new();
    let post = |event_id: &str, account: &str| {
        let (body, signature) = stripe_delivery(event_id, account);
        http.post(&endpoint)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signature)
            .body(body)
            .send()
    };
    assert!(
        eventually(20_000, || async {
            post("evt_before", "cus_before")
                .await
                .is_ok_and(|answer| answer.status() == 200)
        })
        .await,
        "ingest and the writer answer; the writer's log:\n{}",
        deployment.log("writer")
    );

    deployment.postgres.stop_server().await;
    let answer = post("evt_during", "cus_during")
        .await
        .expect("ingest answers");
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    deployment
        .postgres
        .start_server()
        .await
        .expect("PostgreSQL back");
    let recorded = |event_id: &'static str| {
        let deployment = &deployment;
        async move {
            deployment
                .query_i64(&format!(
                    "SELECT count(*) FROM provider_inbox WHERE provider_event_id = '{event_id}'"
                ))
                .await
        }
    };
    assert_eq!(recorded("evt_during").await, Some(0), "nothing recorded");

    // The provider retries the same delivery until it gets a 200.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Ok(answer) = post("evt_during", "cus_during").await
            && answer.status() == 200
        {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry is not accepted after PostgreSQL came back; the writer's log:\n{}",
            deployment.log("writer")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let answer: serde_json::Value =
        serde_json::from_slice(&answer.bytes().await.expect("body")).expect("JSON");
    assert_eq!(answer["outcome"], "appended", "{answer}");
    assert_eq!(recorded("evt_during").await, Some(1));
    assert_eq!(
        deployment
            .query_i64(
                "SELECT count(*) FROM customer_payment_events \
                 WHERE idempotency_key = 'stripe:evt_during'"
            )
            .await,
        Some(1),
        "appended once"
    );
    assert_eq!(
        deployment
            .query_i64("SELECT count(*) FROM customer_payment_events")
            .await,
        Some(2),
        "nothing else"
    );
}
