//! The `ledger` binary as a user runs it, against a real PostgreSQL.

mod chaos;
mod cluster;
mod connectors;
mod demo;
mod deployment;
mod grants;
mod nats_auth;
mod observability;
mod provider_sync;
mod reconcile;
mod staying_up;
mod stripe_end_to_end;
mod sync_providers;
mod sync_stripe;

use std::process::{Command, Output};

use ledger_testkit::TestDb;

fn ledger(args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run the ledger binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A value clap refuses names the environment variable it came from, with the flag; one from
/// the command line names the flag alone.
#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let refused = |args: &[&str], variable: &str, value: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(args)
            .env(variable, value)
            .output()
            .expect("run the ledger binary");
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        stderr(&output)
    };
    let first_line = |text: String| text.lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        first_line(refused(&["run", "writer"], "LEDGER_WRITER_CACHE_MIB", "0")),
        "error: invalid value '0' for '--cache-mib <CACHE_MIB> / LEDGER_WRITER_CACHE_MIB': 0 is \
         not in 1..=1048576"
    );
    assert_eq!(
        first_line(refused(
            &["run", "projector", "customers"],
            "LEDGER_PROJECTOR_STATES_MIB",
            "lots"
        )),
        "error: invalid value 'lots' for '--states-mib <STATES_MIB> / \
         LEDGER_PROJECTOR_STATES_MIB': invalid digit found in string"
    );
    // Every `env` setting, not these two alone: the query service's cache.
    assert!(
        first_line(refused(&["run", "query"], "LEDGER_QUERY_CACHE_MIB", "-1"))
            .contains("'--cache-mib <CACHE_MIB> / LEDGER_QUERY_CACHE_MIB'")
    );
    // A list setting (comma-separated): clap refuses one of its values, not the whole text.
    assert_eq!(
        first_line(refused(
            &["run", "projector", "notify"],
            "LEDGER_NOTIFY_SMTP_PORTS",
            "25,smtp"
        )),
        "error: invalid value 'smtp' for '--notify-smtp-ports <NOTIFY_SMTP_PORTS> / \
         LEDGER_NOTIFY_SMTP_PORTS': invalid digit found in string"
    );
    // Given on the command line, the variable set too: the value refused is the flag's.
    assert_eq!(
        first_line(refused(
            &["run", "writer", "--cache-mib", "0"],
            "LEDGER_WRITER_CACHE_MIB",
            "0"
        )),
        "error: invalid value '0' for '--cache-mib <CACHE_MIB>': 0 is not in 1..=1048576"
    );
}

/// A setting the process would compute with beyond its range (MiB to bytes, days to seconds, a
/// cache's time to live) is refused at start with exit code 2, not a panic (exit code 101,
/// "attempt to multiply with overflow", moka's "time_to_live is longer than 1000 years") or, in
/// a release build, a wrapped value: 144115188075855873 days of stream retention wrapped to one
/// day.
#[test]
fn a_setting_too_large_to_compute_with_is_refused_at_start() {
    let refused = |args: &[&str], variables: &[(&str, &str)], range: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(args)
            .envs(variables.iter().copied())
            .output()
            .expect("run the ledger binary");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&format!("is not in {range}")),
            "{args:?}: {}",
            stderr(&output)
        );
    };
    refused(
        &["run", "writer"],
        &[("LEDGER_STREAM_MAX_AGE_DAYS", "144115188075855873")],
        "0..=36500",
    );
    refused(
        &["run", "query"],
        &[("LEDGER_QUERY_CACHE_MIB", "17592186044416")],
        "0..=1048576",
    );
    refused(
        &["run", "query"],
        &[("LEDGER_QUERY_CACHE_TTL_SECONDS", "99999999999")],
        "0..=86400",
    );
    refused(
        &["bench", "sync", "--cache-mib", "17592186044416"],
        &[],
        "1..=1048576",
    );
}

#[tokio::test]
async fn demo_history_verifies_and_audit_verify_names_a_tampered_position() {
    let database = TestDb::new().await;
    // The demo recreates its own database next to the test's one.
    let demo_database = format!("{}_demo", database.name());
    let demo = ledger(
        &[
            "demo",
            "--customers",
            "40",
            "--months",
            "6",
            "--database",
            &demo_database,
            "--bind",
            "127.0.0.1:0",
            "--exit",
        ],
        database.url(),
    );
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let demo_output = stdout(&demo);
    assert!(
        demo_output.contains("demo: 40 customers over 6 months"),
        "{demo_output}"
    );
    assert!(demo_output.contains("audit verify: OK"), "{demo_output}");
    assert!(demo_output.contains("customer_registered"), "{demo_output}");
    assert!(
        demo_output.contains("notify: sample webhook integration"),
        "{demo_output}"
    );
    assert!(demo_output.contains("payment_failed"), "{demo_output}");
    // --exit stopped the query service: its address is not printed.
    assert!(!demo_output.contains("dashboard:"), "{demo_output}");
    assert!(demo_output.contains("headline figures"), "{demo_output}");
    assert!(demo_output.contains(" MRR "), "{demo_output}");
    // The demo's stream, named after its database.
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let nats = async_nats::connect(&nats_url).await.expect("NATS");
    async_nats::jetstream::new(nats)
        .delete_stream(format!("DEMO_{}", demo_database.to_uppercase()))
        .await
        .expect("the demo's stream exists");

    let demo_url = database.url().replace(database.name(), &demo_database);
    let migrate = ledger(&["migrate"], &demo_url);
    assert!(migrate.status.success(), "migrate is idempotent");

    // The demo's stream was removed above: only the chain and the checkpoints are compared.
    let verify = ledger(&["audit", "verify", "--skip-stream"], &demo_url);
    assert!(verify.status.success());
    assert!(
        stdout(&verify).starts_with("audit verify: OK"),
        "{}",
        stdout(&verify)
    );

    let (client, connection) = tokio_postgres::connect(&demo_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "ALTER TABLE customer_payment_events DISABLE TRIGGER customer_payment_events_append_only_rows; \
             UPDATE customer_payment_events SET occurred_at = occurred_at - interval '1 day' \
               WHERE global_position = 42; \
             ALTER TABLE customer_payment_events ENABLE TRIGGER customer_payment_events_append_only_rows;",
        )
        .await
        .expect("tamper");
    let tampered = ledger(&["audit", "verify", "--skip-stream"], &demo_url);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        stdout(&tampered).contains("TAMPERED at global position 42"),
        "{}",
        stdout(&tampered)
    );
    drop(client);
    database
        .client()
        .await
        .batch_execute(&format!("DROP DATABASE \"{demo_database}\" WITH (FORCE)"))
        .await
        .expect("drop the demo database");
}

#[test]
fn audit_verify_without_a_reachable_database_fails_with_advice() {
    let output = ledger(&["audit", "verify"], "postgres://postgres@127.0.0.1:1/none");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

/// `ledger run writer` and `ledger send` as separate processes, as a user runs them.
#[tokio::test]
async fn run_writer_and_send_work_as_a_user_runs_them() {
    let database = TestDb::new().await;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let subject_prefix = ledger_testkit::unique_name("cli").to_lowercase();
    let stream_name = ledger_testkit::unique_name("EVENTS");
    let environment = [
        ("DATABASE_URL", database.url().to_owned()),
        ("NATS_URL", nats_url.clone()),
        ("LEDGER_SUBJECT_PREFIX", subject_prefix),
        ("LEDGER_STREAM_NAME", stream_name.clone()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut writer = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["run", "writer", "--stream-max-age-days", "30"])
        .envs(environment.clone())
        .spawn()
        .expect("start the writer");
    let send = |arguments: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ledger"))
            .arg("send")
            .args(arguments)
            .envs(environment.clone())
            .output()
            .expect("run ledger send")
    };
    let register = [
        "register_customer",
        "--json",
        r#"{"email": "ada@example.com", "name": "Ada"}"#,
        "--idempotency-key",
        "cli-1",
        // A resend is the same request only with the same business time.
        "--occurred-at",
        "2026-02-10T09:30:00Z",
    ];
    let first = send(&register);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let accepted: serde_json::Value = serde_json::from_slice(&first.stdout).expect("JSON answer");
    assert_eq!(accepted["events"][0]["global_position"], "1");
    assert_eq!(accepted["events"][0]["event_type"], "customer_registered");
    let customer_id = accepted["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();

    let occurred_at: std::time::SystemTime = database
        .client()
        .await
        .query_one(
            "SELECT occurred_at FROM customer_payment_events WHERE global_position = 1",
            &[],
        )
        .await
        .expect("the event")
        .get(0);
    assert_eq!(
        occurred_at,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_770_715_800),
        "--occurred-at is the business time"
    );

    let again: serde_json::Value =
        serde_json::from_slice(&send(&register).stdout).expect("JSON answer");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["events"], accepted["events"]);

    let rejected = send(&[
        "start_subscription",
        "--customer-id",
        &customer_id,
        "--json",
        r#"{"subscription_id": "sub_1", "quantity": 1, "current_period_end_unix_seconds": "1800000000",
            "plan": {"plan_id": "pro", "interval": "BILLING_INTERVAL_MONTH", "interval_count": 1,
                     "unit_price": {"amount_minor": "4900", "currency": "usd"}}}"#,
    ]);
    assert_eq!(rejected.status.code(), Some(1));
    let rejection: serde_json::Value = serde_json::from_slice(&rejected.stdout).expect("JSON");
    assert_eq!(rejection["code"], "invalid_currency");

    let help = send(&["--help"]);
    assert!(
        stdout(&help).contains("start_subscription") && stdout(&help).contains("refund_payment"),
        "--help lists the commands: {}",
        stdout(&help)
    );
    let unknown = send(&["refund", "--json", "{}"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("refund_payment"),
        "an unknown command names the right ones"
    );

    let nats = async_nats::connect(nats_url).await.expect("NATS");
    let jetstream = async_nats::jetstream::new(nats);
    let mut stream = jetstream.get_stream(&stream_name).await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(
        info.config.max_age,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert_eq!(info.state.last_sequence, 1);

    let terminated = Command::new("kill")
        .args(["-TERM", &writer.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    assert!(
        writer.wait().expect("writer exits").success(),
        "a clean stop on SIGTERM"
    );
    jetstream
        .delete_stream(&stream_name)
        .await
        .expect("delete the stream");
}

/// `ledger notify test` reaches a local receiver; `list` masks the secret; `deliveries` shows
/// the sample. (Multi-threaded: the receiver answers while this thread waits for the binary.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reaches_a_local_receiver() {
    let test_ledger = ledger_testkit::ledger::TestLedger::new().await;
    let receiver = ledger_devenv::receivers::HttpReceiver::start().await;
    let writer = test_ledger.start_writer();
    let projector = test_ledger
        .start_projector(
            projector_notify::NotifyProjector::new(
                test_ledger.store.clone(),
                projector_notify::Rules::default(),
            ),
            ledger_projector::ProjectorConfig::default(),
            false,
        )
        .await;
    let secret = "whsec_cli_test_0123456789";
    let integration = test_ledger
        .client()
        .send(&ledger_testkit::commands::register_webhook(
            "cli-hook",
            &format!("{}/hook", receiver.url),
            secret,
        ))
        .await
        .expect("registered")
        .customer_id;
    assert!(test_ledger.projector_caught_up("notify").await);
    let url = test_ledger.database().url();

    let list = ledger(&["notify", "list"], url);
    assert!(list.status.success());
    assert!(stdout(&list).contains(&integration), "{}", stdout(&list));
    assert!(!stdout(&list).contains(secret), "{}", stdout(&list));

    assert!(
        stdout(&list).contains("(signing secret sealed with key test)"),
        "{}",
        stdout(&list)
    );

    // The receiver is on loopback and the secret sealed: both allowed explicitly.
    let notify_test = || {
        ledger(
            &[
                "notify",
                "test",
                &integration,
                "--notify-allow-http",
                "--notify-allow-internal",
                "127.0.0.1",
                "--secrets-keys",
                ledger_testkit::ledger::SECRETS_KEYS,
            ],
            url,
        )
    };
    let test = notify_test();
    assert!(
        test.status.success(),
        "{}{}",
        stdout(&test),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout(&test).contains("sent payment_failed sample"),
        "{}",
        stdout(&test)
    );
    assert_eq!(receiver.requests().len(), 1);
    assert!(receiver.requests()[0].header("ledger-signature").is_some());

    let deliveries = ledger(&["notify", "deliveries"], url);
    assert!(
        stdout(&deliveries).contains("delivered"),
        "{}",
        stdout(&deliveries)
    );
    let failed = ledger(&["notify", "deliveries", "--failed"], url);
    assert_eq!(stdout(&failed).lines().count(), 1, "only the header");

    // A receiver's error answer is shown with its control characters escaped: it can neither
    // add a row to the listing nor reach the terminal as an escape sequence.
    receiver.answer_next_with([ledger_devenv::receivers::ScriptedAnswer {
        status: 500,
        body: "down\nforged-row\t\u{1b}[31mred".to_owned(),
        ..ledger_devenv::receivers::ScriptedAnswer::default()
    }]);
    let refused = notify_test();
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let failed = ledger(&["notify", "deliveries", "--failed"], url);
    let listing = stdout(&failed);
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(!listing.contains('\u{1b}'), "{listing:?}");
    assert!(
        listing.contains("down\\nforged-row\\t\\u{1b}[31mred"),
        "{listing:?}"
    );

    let unknown = ledger(
        &["notify", "test", "00000000-0000-0000-0000-000000000000"],
        url,
    );
    assert_eq!(unknown.status.code(), Some(1));
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// `GET path` over a fresh connection; the status and the whole response (head and body).
fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    http(port, "GET", path, token, "")
}

/// `method path` with a JSON `body` over a fresh connection; the status and the whole response.
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let authorization = token.map_or(String::new(), |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response))
}

/// A free local port.
/// The URL of `database` for a login role in `ledger_query` (the query service's grants).
async fn query_role_url(database: &ledger_testkit::TestDb) -> String {
    database
        .client()
        .await
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE ledger_query_cli_test LOGIN IN ROLE ledger_query; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .await
        .expect("query role");
    database
        .url()
        .replacen("postgres@", "ledger_query_cli_test@", 1)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits up to 20 s for `GET /healthz` to answer 200 on `port`.
fn wait_healthy(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http_get(port, "/healthz", None).is_none_or(|(status, _)| status != 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not answer /healthz"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `ledger run ingest` as an operator runs it: it refuses to start without tokens or with
/// another service's scopes, and then admits only its tokens, within their rate limit.
#[test]
fn run_ingest_needs_tokens_and_limits_each() {
    let run_ingest = |tokens: Option<&str>, per_second: &str, burst: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(["run", "ingest"])
            .env_remove("LEDGER_INGEST_TOKENS")
            .env_remove("LEDGER_INGEST_TOKENS_FILE")
            .env("LEDGER_INGEST_RATE_LIMIT_PER_SECOND", per_second)
            .env("LEDGER_INGEST_RATE_LIMIT_BURST", burst)
            .env("RUST_LOG", "warn");
        if let Some(tokens) = tokens {
            command.env("LEDGER_INGEST_TOKENS", tokens);
        }
        command
    };
    let refusals = [
        (
            None,
            "1",
            "1",
            "no API tokens: set LEDGER_INGEST_TOKENS=\"<token>:commands:write,integrations:admin\"",
        ),
        (
            Some("short:commands:write"),
            "1",
            "1",
            "openssl rand -hex 32",
        ),
        (
            Some("cli-ingest-token-0123456789:metrics:read"),
            "1",
            "1",
            "scope `metrics:read`, not one of this service's: commands:write, integrations:admin",
        ),
        (
            Some("cli-ingest-token-0123456789:commands:write"),
            "5",
            "0",
            "needs a burst of at least 1",
        ),
    ];
    for (tokens, per_second, burst, expected) in refusals {
        let output = run_ingest(tokens, per_second, burst)
            .output()
            .expect("run ledger run ingest");
        assert_eq!(output.status.code(), Some(1), "{tokens:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{tokens:?}: {stderr}");
    }
    // PayPal's client credentials are read as provider-sync reads them: one with a line break
    // could go in no request's header (every verification would fail as if PayPal were down).
    let output = run_ingest(Some("cli-ingest-token-0123456789:commands:write"), "1", "1")
        .env("LEDGER_PAYPAL_WEBHOOK_IDS", "WH-1")
        .env("LEDGER_PAYPAL_CLIENT_ID", "client")
        .env("LEDGER_PAYPAL_CLIENT_SECRET", "secret\nline")
        .output()
        .expect("run ledger run ingest");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "LEDGER_PAYPAL_CLIENT_SECRET (or LEDGER_PAYPAL_CLIENT_SECRET_FILE) holds a space, a \
             line break"
        ),
        "{stderr}"
    );

    let port = free_port();
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let token = "cli-ingest-token-0123456789";
    let mut ingest = run_ingest(Some(&format!("{token}:commands:write")), "1", "1")
        .env("LEDGER_INGEST_BIND", format!("127.0.0.1:{port}"))
        .env("NATS_URL", nats_url)
        .env(
            "LEDGER_SUBJECT_PREFIX",
            ledger_testkit::unique_name("cli").to_lowercase(),
        )
        .spawn()
        .expect("start the ingest service");
    wait_healthy(port);
    let (status, response) = http(port, "POST", "/v1/customers", None, "{}").expect("answer");
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("\"code\":\"unauthorized\""), "{response}");
    // Admitted (then refused for its body, before any writer is asked) ...
    let (status, response) = http(port, "POST", "/v1/customers", Some(token), "{").expect("answer");
    assert_eq!(status, 400, "{response}");
    // ... and over the limit of 1 per second, burst 1.
    let (status, response) = http(port, "POST", "/v1/customers", Some(token), "{").expect("answer");
    assert_eq!(status, 429, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{response}"
    );
    assert!(response.contains("\"code\":\"rate_limited\""), "{response}");
    // A second ingest on the taken port names the address and the setting.
    let taken = run_ingest(Some(&format!("{token}:commands:write")), "1", "1")
        .env("LEDGER_INGEST_BIND", format!("127.0.0.1:{port}"))
        .env(
            "NATS_URL",
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
        )
        .output()
        .expect("run a second ingest");
    assert_eq!(taken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (--bind / LEDGER_INGEST_BIND)"
        )),
        "{stderr}"
    );
    ingest.kill().expect("stop the ingest service");
    let _ = ingest.wait();
}

/// `ledger run query` as an operator runs it: settings from the environment, the restricted
/// role, a token; and advice when the database URL is missing.
#[tokio::test]
async fn run_query_serves_the_api_as_configured() {
    let database = TestDb::new().await;
    let missing = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["run", "query"])
        .env_remove("LEDGER_QUERY_DATABASE_URL")
        .env(
            "LEDGER_QUERY_TOKENS",
            "cli-test-token-0123456789:metrics:read",
        )
        .output()
        .expect("run ledger run query");
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("LEDGER_QUERY_DATABASE_URL"), "{stderr}");

    let query_url = query_role_url(&database).await;
    let port = free_port();
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let mut query = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["run", "query"])
        .env("LEDGER_QUERY_DATABASE_URL", &query_url)
        .env(
            "LEDGER_QUERY_TOKENS",
            "cli-test-token-0123456789:metrics:read",
        )
        .env("LEDGER_QUERY_BIND", format!("127.0.0.1:{port}"))
        .env("NATS_URL", nats_url)
        .env(
            "LEDGER_SUBJECT_PREFIX",
            ledger_testkit::unique_name("cli").to_lowercase(),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start the query service");
    wait_healthy(port);
    let summary = "/v1/metrics/summary?currency=USD";
    assert_eq!(
        http_get(port, summary, None).map(|(status, _)| status),
        Some(401)
    );
    assert_eq!(
        http_get(port, "/v1/customers", Some("cli-test-token-0123456789")).map(|(s, _)| s),
        Some(403),
        "the token has metrics:read only"
    );
    let (status, body) =
        http_get(port, summary, Some("cli-test-token-0123456789")).expect("answer");
    assert_eq!(status, 503, "no revenue read model yet: {body}");
    assert!(body.contains("read_model_unavailable"), "{body}");
    query.kill().expect("stop the query service");
    let _ = query.wait();
}

/// Issue 11, item 7: deleting the last event (trigger disabled) leaves a valid chain, but the
/// stream and the projector's checkpoint still hold it, so `audit verify` fails naming them;
/// `--to` past the end and an unreachable NATS fail as incomplete; the report states exactly
/// what was checked.
#[tokio::test]
async fn audit_verify_detects_a_deleted_tail_from_the_stream_and_the_checkpoints() {
    let test_ledger = ledger_testkit::ledger::TestLedger::new().await;
    let writer = test_ledger.start_writer();
    let projector = test_ledger
        .start_projector(
            projector_customers::CustomersProjector::new(test_ledger.store.clone()),
            ledger_projector::ProjectorConfig::default(),
            false,
        )
        .await;
    for n in 0..3 {
        test_ledger
            .client()
            .send(&ledger_testkit::commands::register(
                &format!("k{n}"),
                &format!("{n}@example.com"),
            ))
            .await
            .expect("accepted");
    }
    assert!(test_ledger.projector_caught_up("customers").await);
    projector.stop().await;
    writer.stop().await.expect("writer");
    let hashes: Vec<String> = test_ledger
        .table_events()
        .await
        .iter()
        .map(|event| {
            event
                .hash
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        })
        .collect();
    let stream_name = test_ledger.bus.stream_name.clone();
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let verify = |nats_url: &str, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["audit", "verify"])
            .args(extra)
            .env("DATABASE_URL", test_ledger.database().url())
            .env("NATS_URL", nats_url)
            .env("LEDGER_STREAM_NAME", &stream_name)
            .output()
            .expect("run the ledger binary");
        (output.status.code(), stdout(&output))
    };

    assert_eq!(
        verify(&nats_url, &[]),
        (
            Some(0),
            format!(
                "audit verify: OK\n  \
                 chain: 3 events (positions 1..=3) match their hash chain; hash at 3: {h3}\n  \
                 table head: position 3, hash {h3}\n  \
                 stream {stream_name}: at 3, level with the table\n  \
                 checkpoint customers: at 3, level with the table\n",
                h3 = hashes[2]
            )
        )
    );
    let (status, unreachable) = verify("nats://127.0.0.1:1", &["--from", "2"]);
    assert_eq!(status, Some(2), "{unreachable}");
    assert!(
        unreachable.starts_with("audit verify: INCOMPLETE\n  chain: 2 events (positions 2..=3)"),
        "{unreachable}"
    );
    assert!(
        unreachable.contains(&format!(
            "  stream {stream_name}: NOT CHECKED: cannot connect to NATS at nats://127.0.0.1:1"
        )),
        "{unreachable}"
    );

    test_ledger
        .database()
        .client()
        .await
        .batch_execute(
            "ALTER TABLE customer_payment_events DISABLE TRIGGER customer_payment_events_append_only_rows; \
             DELETE FROM customer_payment_events WHERE global_position = 3; \
             ALTER TABLE customer_payment_events ENABLE TRIGGER customer_payment_events_append_only_rows;",
        )
        .await
        .expect("delete the last event");
    assert_eq!(
        verify(&nats_url, &[]),
        (
            Some(1),
            format!(
                "audit verify: TAMPERED\n  \
                 chain: 2 events (positions 1..=2) match their hash chain; hash at 2: {h2}\n  \
                 table head: position 2, hash {h2}\n  \
                 stream {stream_name}: AHEAD at 3, past the table's last event (2): events 3..=3 \
                 were deleted from the table\n  \
                 checkpoint customers: AHEAD at 3, past the table's last event (2): events 3..=3 \
                 were deleted from the table\n",
                h2 = hashes[1]
            )
        )
    );
    let (status, skipped) = verify(&nats_url, &["--skip-stream"]);
    assert_eq!(status, Some(1), "the checkpoint still shows the deletion");
    assert!(
        skipped.contains(&format!(
            "  stream {stream_name}: not checked (--skip-stream)\n"
        )),
        "{skipped}"
    );
    assert_eq!(
        verify(&nats_url, &["--to", "3"]),
        (
            Some(2),
            "audit verify: INCOMPLETE\n  \
             chain: NOT VERIFIED: --to 3 is past the last event in the table (position 2)\n"
                .to_owned()
        )
    );
}
