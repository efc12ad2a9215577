//! The pipeline against a nats-server running the shipped users and subject permissions
//! (`deploy/nats-auth.conf`): each component works as its own user, and nobody else can send a
//! command or publish into the event stream.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::Duration;

use futures_util::StreamExt;
use ledger_bus::{BusConfig, Client, ConnectError, NatsAuth, SendError};
use ledger_devenv::services::{NATS_AUTH_CONF, NatsServerOptions, start_private_nats_with};
use ledger_testkit::{TestDb, commands, ledger::eventually};

const USERS: [&str; 7] = [
    "writer",
    "projector",
    "query",
    "auditor",
    "ingest",
    "client",
    "provider_sync",
];

/// Passwords of the shipped users, each in a file as the components read them.
struct Passwords {
    dir: PathBuf,
}

impl Passwords {
    fn create() -> Passwords {
        let dir = std::env::temp_dir().join(ledger_testkit::unique_name("nats-passwords"));
        std::fs::create_dir_all(&dir).expect("password directory");
        for user in USERS {
            std::fs::write(dir.join(user), format!("{}\n", uuid::Uuid::new_v4()))
                .expect("password file");
        }
        Passwords { dir }
    }

    fn file(&self, user: &str) -> PathBuf {
        self.dir.join(user)
    }

    fn read(&self, user: &str) -> String {
        std::fs::read_to_string(self.file(user))
            .expect("password")
            .trim_end()
            .to_owned()
    }

    /// The server's environment: `LEDGER_NATS_<USER>_PASSWORD` for each user, quoted (nats-server
    /// parses a variable's value as a configuration value).
    fn server_environment(&self) -> Vec<(String, String)> {
        USERS
            .iter()
            .map(|user| {
                (
                    format!("LEDGER_NATS_{}_PASSWORD", user.to_uppercase()),
                    format!("\"{}\"", self.read(user)),
                )
            })
            .collect()
    }

    fn auth(&self, user: &str) -> NatsAuth {
        NatsAuth {
            user: Some(user.to_owned()),
            password_file: Some(self.file(user)),
            ..NatsAuth::default()
        }
    }
}

impl Drop for Passwords {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ledger_as(user: &str, passwords: &Passwords, environment: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    command
        .envs(environment.iter().map(|(name, value)| (*name, value)))
        .env("NATS_USER", user)
        .env("NATS_PASSWORD_FILE", passwords.file(user));
    command
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn checkpoint(database: &TestDb, schema: &str) -> i64 {
    database
        .client()
        .await
        .query_opt(
            &format!("SELECT global_position FROM {schema}.projector_checkpoint"),
            &[],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |row| row.get(0))
}

fn assert_refused(result: Result<async_nats::Client, ConnectError>, what: &str) {
    match result {
        Err(ConnectError::Refused { .. }) => {}
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_as_the_shipped_nats_users_and_nobody_else_writes() {
    let passwords = Passwords::create();
    let nats = start_private_nats_with(&NatsServerOptions {
        includes: vec![("nats-auth.conf".to_owned(), NATS_AUTH_CONF.to_owned())],
        environment: passwords.server_environment(),
        ..NatsServerOptions::default()
    })
    .await
    .expect("an auth-enabled nats-server");
    let database = TestDb::new().await;
    let environment = [
        ("DATABASE_URL", database.url().to_owned()),
        ("NATS_URL", nats.url().to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let bus = BusConfig::default();
    let url = nats.url();

    // Who may not connect at all.
    assert_refused(
        ledger_bus::connect(url, &NatsAuth::default(), "anonymous").await,
        "an anonymous client",
    );
    let wrong_password = Passwords::create();
    assert_refused(
        ledger_bus::connect(url, &wrong_password.auth("client"), "guesser").await,
        "a wrong password",
    );

    // The query service's user hears the announcements.
    let query = ledger_bus::connect(url, &passwords.auth("query"), "query")
        .await
        .expect("query connects");
    let mut announcements = query
        .subscribe(bus.projection_subject("customers"))
        .await
        .expect("query subscribes to announcements");
    query.flush().await.expect("subscribed");

    let writer = ledger_as("writer", &passwords, &environment)
        .args(["run", "writer"])
        .spawn()
        .expect("start the writer");
    let projector = ledger_as("projector", &passwords, &environment)
        .args(["run", "projector", "customers"])
        .spawn()
        .expect("start the projector");

    let sent = ledger_as("client", &passwords, &environment)
        .args([
            "send",
            "register_customer",
            "--json",
            r#"{"email": "ada@example.com", "name": "Ada"}"#,
        ])
        .output()
        .expect("ledger send");
    assert!(sent.status.success(), "{}", stderr(&sent));
    let accepted: serde_json::Value = serde_json::from_slice(&sent.stdout).expect("JSON answer");
    assert_eq!(accepted["events"][0]["global_position"], "1");

    assert!(
        eventually(20_000, || async {
            checkpoint(&database, "customers").await == 1
        })
        .await,
        "the projector, as user projector, reads the stream"
    );
    let announced = tokio::time::timeout(Duration::from_secs(10), announcements.next())
        .await
        .expect("an announcement within 10 s")
        .expect("a message");
    assert_eq!(&announced.payload[..], b"1");

    // Users other than `client` cannot send commands (provider_sync only its two): no writer
    // ever sees them.
    for user in ["query", "projector", "auditor", "provider_sync"] {
        let nats = ledger_bus::connect(url, &passwords.auth(user), user)
            .await
            .expect("connects");
        let client =
            Client::new(nats, bus.clone()).with_request_timeout(Duration::from_millis(300));
        let result = client
            .send(&commands::register(user, &format!("{user}@example.com")))
            .await;
        assert!(
            matches!(result, Err(SendError::Unavailable { .. })),
            "{user} sent a command: {result:?}"
        );
    }
    // Only ingest (and provider_sync, for Stripe) sends provider deliveries (the writer trusts
    // them as verified): the same request as another user is never answered, as ingest it is.
    let delivery = ledger_domain::proto::ProviderDelivery {
        provider: ledger_domain::proto::PaymentProvider::Stripe as i32,
        body: br#"{"id": "evt_1", "type": "ping", "created": 1700000000, "data": {"object": {}}}"#
            .to_vec()
            .into(),
        received_at_unix_micros: 1_700_000_000_000_000,
        ..Default::default()
    };
    // provider_sync's own commands reach the writer (which refuses this one: no such customer).
    let provider_sync = Client::new(
        ledger_bus::connect(url, &passwords.auth("provider_sync"), "provider_sync")
            .await
            .expect("provider_sync connects"),
        bus.clone(),
    )
    .with_request_timeout(Duration::from_millis(2_000));
    let answered = provider_sync
        .send(&commands::command(
            "provider-sync:fail",
            &uuid::Uuid::new_v4().to_string(),
            ledger_domain::proto::command::Kind::FailCancellation(
                ledger_domain::proto::CancellationFailed {
                    subscription_id: "sub_1".to_owned(),
                    failure_code: "resource_missing".to_owned(),
                    failure_message: "No such subscription".to_owned(),
                },
            ),
        ))
        .await;
    assert!(
        matches!(answered, Err(SendError::Rejected(_))),
        "provider_sync's fail_cancellation reached the writer: {answered:?}"
    );
    for user in ["client", "query", "projector", "auditor", "provider_sync"] {
        let nats = ledger_bus::connect(url, &passwords.auth(user), user)
            .await
            .expect("connects");
        let client =
            Client::new(nats, bus.clone()).with_request_timeout(Duration::from_millis(300));
        // provider_sync may deliver what it read from Stripe's API itself (the periodic
        // repair, docs/connectors.md "Reconciliation"), and nothing of another provider.
        let delivery = if user == "provider_sync" {
            ledger_domain::proto::ProviderDelivery {
                provider: ledger_domain::proto::PaymentProvider::Paypal as i32,
                ..delivery.clone()
            }
        } else {
            delivery.clone()
        };
        let result = client.deliver(&delivery).await;
        assert!(
            matches!(result, Err(SendError::Unavailable { .. })),
            "{user} sent a delivery: {result:?}"
        );
    }
    let ingest = Client::new(
        ledger_bus::connect(url, &passwords.auth("ingest"), "ingest")
            .await
            .expect("ingest connects"),
        bus.clone(),
    );
    let recorded = ingest
        .deliver(&delivery)
        .await
        .expect("ingest's delivery is recorded");
    assert_eq!(
        recorded.outcome(),
        ledger_domain::proto::DeliveryOutcome::Ignored
    );
    assert!(recorded.global_positions.is_empty());

    // Nobody but the writer publishes into the stream: not a client, plainly or through
    // JetStream, and not the projector.
    for user in ["client", "projector", "query"] {
        let nats = ledger_bus::connect(url, &passwords.auth(user), user)
            .await
            .expect("connects");
        nats.publish(bus.event_subject("customer_registered"), "forged".into())
            .await
            .expect("published (the server drops it)");
        nats.flush().await.expect("flushed");
        let forged = async_nats::jetstream::new(nats)
            .publish(bus.event_subject("customer_registered"), "forged".into())
            .await;
        if let Ok(acknowledgement) = forged {
            assert!(
                tokio::time::timeout(Duration::from_secs(2), acknowledgement)
                    .await
                    .map_or(true, |ack| ack.is_err()),
                "{user} got a JetStream acknowledgement"
            );
        }
    }
    // The query service (readiness) and the auditor read the stream's head.
    for user in ["query", "auditor"] {
        let nats = ledger_bus::connect(url, &passwords.auth(user), user)
            .await
            .expect("connects");
        let mut stream = async_nats::jetstream::new(nats)
            .get_stream(&bus.stream_name)
            .await
            .unwrap_or_else(|error| panic!("{user} reads the stream: {error}"));
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.state.last_sequence, 1, "only the writer's event");
        assert_eq!(info.state.messages, 1);
    }
    let events = database
        .client()
        .await
        .query_one("SELECT count(*) FROM customer_payment_events", &[])
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(events, 1);

    // `ledger audit verify` compares the table's head with the stream as user auditor.
    let verify = ledger_as("auditor", &passwords, &environment)
        .args(["audit", "verify"])
        .output()
        .expect("ledger audit verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );

    stop(projector);
    stop(writer);
    // The components themselves (connections named `ledger-*`) never hit a permission.
    let log = std::fs::read_to_string(nats.instance_dir().join("nats-server.log")).expect("log");
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Violation") && line.contains("rust:ledger-"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert!(log.contains("Publish Violation - User \"client\", Subject \"ledger.events."));
    drop(nats);
}
