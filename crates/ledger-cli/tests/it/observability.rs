//! Issue 16, observability: every `ledger run` process serves `/metrics` on --metrics-bind,
//! each metric the alert rules name is there, logs are JSON with `LOG_FORMAT=json`, and a
//! command's correlation id goes from ingest's header into the event and the processes' logs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger_testkit::ledger::{SECRETS_KEYS, TestLedger};
use uuid::Uuid;

const ALERTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/prometheus/alerts.yml"
);
/// The compose deployment's Prometheus, which loads [`ALERTS`].
const PROMETHEUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/prometheus/prometheus.yml"
);
const TOKEN: &str = "observability-token-0123456789";

/// The ledger's processes, each with its metrics port and JSON log; killed on drop, their
/// logs removed unless the test failed (then they are kept to read).
struct Processes {
    children: Vec<Child>,
    log_dir: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("the processes' logs: {}", self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

impl Processes {
    /// Starts `ledger <args>` on `ledger`'s database and subjects, serving metrics on
    /// `metrics_port`, logging JSON to `<log>.log`.
    fn spawn(
        &mut self,
        ledger: &TestLedger,
        log: &str,
        args: &[&str],
        metrics_port: u16,
        environment: &[(&str, &str)],
    ) {
        let file = std::fs::File::create(self.log(log)).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(args)
            .env("DATABASE_URL", ledger.database().url())
            .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
            .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
            .env("LEDGER_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,async_nats=warn,tokio_postgres=warn,ledger_writer=debug,\
                 ledger_projector=debug,ledger_ingest=debug",
            )
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ledger");
        self.children.push(child);
    }

    fn log(&self, log: &str) -> PathBuf {
        self.log_dir.join(format!("{log}.log"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The metric names an expression mentions (`ledger_...`, a histogram's `_bucket` series
/// included), from every `expr:` of the rules file.
fn alert_metric_names(rules: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_expression = false;
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("expr:") {
            in_expression = true;
        } else if trimmed.starts_with("for:")
            || trimmed.starts_with("labels:")
            || trimmed.starts_with("annotations:")
            || trimmed.starts_with("- alert:")
        {
            in_expression = false;
        }
        if !in_expression {
            continue;
        }
        let mut rest = trimmed;
        while let Some(start) = rest.find("ledger_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// The metric names of a Prometheus text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// `GET /metrics` on `port`, retried for up to 30 s while the process starts.
async fn scrape(http: &reqwest::Client, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            && response.status() == 200
        {
            return response.text().await.expect("metrics text");
        }
        assert!(
            Instant::now() < deadline,
            "nothing serves metrics on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The JSON log lines of `path` (each must parse).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect()
}

/// Waits up to 30 s for a log line of `path` with `message` whose context names
/// `correlation_id`; returns it.
async fn wait_for_line(path: &Path, message: &str, correlation_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = json_lines(path).into_iter().find(|line| {
            line["message"] == message && line["context"]["correlation_id"] == correlation_id
        });
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} with correlation_id {correlation_id} in {}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processes_serve_the_alerts_metrics_log_json_and_carry_the_correlation_id() {
    let ledger = TestLedger::new().await;
    let log_dir = std::env::temp_dir().join(ledger_testkit::unique_name("observability"));
    std::fs::create_dir_all(&log_dir).expect("log directory");
    let mut processes = Processes {
        children: Vec::new(),
        log_dir,
    };
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let ingest_port = free_port();
    let ingest_bind = format!("127.0.0.1:{ingest_port}");
    processes.spawn(&ledger, "writer", &["run", "writer"], ports[0], &[]);
    processes.spawn(
        &ledger,
        "ingest",
        &["run", "ingest", "--bind", &ingest_bind],
        ports[1],
        &[
            ("LEDGER_INGEST_TOKENS", &format!("{TOKEN}:commands:write")),
            ("LEDGER_STRIPE_WEBHOOK_SECRETS", "whsec_observability_test"),
        ],
    );
    processes.spawn(
        &ledger,
        "projector",
        &["run", "projector", "customers", "notify"],
        ports[2],
        &[("LEDGER_SECRETS_KEYS", SECRETS_KEYS)],
    );
    // Provider-sync checks at start that its API answers; nothing calls it here.
    let stripe = ledger_devenv::receivers::HttpReceiver::start().await;
    processes.spawn(
        &ledger,
        "provider-sync",
        &["run", "provider-sync"],
        ports[3],
        &[
            ("LEDGER_STRIPE_API_KEY", "sk_test_observability"),
            ("LEDGER_STRIPE_API_BASE", &stripe.url),
        ],
    );
    let query_url = crate::query_role_url(ledger.database()).await;
    let query_bind = format!("127.0.0.1:{}", free_port());
    processes.spawn(
        &ledger,
        "query",
        &["run", "query", "--bind", &query_bind],
        ports[5],
        &[
            ("LEDGER_QUERY_DATABASE_URL", &query_url),
            ("LEDGER_QUERY_TOKENS", &format!("{TOKEN}:customers:read")),
        ],
    );
    let http = reqwest::Client::new();
    // Both projectors consume the stream live (a catch-up from the table would apply the two
    // commands' events in one batch, which names no single correlation id).
    let deadline = Instant::now() + Duration::from_secs(60);
    while json_lines(&processes.log("projector"))
        .iter()
        .filter(|line| line["message"] == "consuming the event stream")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the projectors did not go live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A command through ingest with the client's correlation id.
    let correlation_id = Uuid::now_v7().to_string();
    let command = ledger_testkit::commands::register("observability-1", "ada@example.com");
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        let sent = http
            .post(format!("http://{ingest_bind}/v1/customers"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/x-protobuf")
            .header("X-Correlation-Id", &correlation_id)
            .body(prost::Message::encode_to_vec(&command))
            .send()
            .await;
        // Until ingest listens and the writer leads.
        if let Ok(response) = sent
            && response.status() == 201
        {
            break response;
        }
        assert!(Instant::now() < deadline, "the command was not accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        response
            .headers()
            .get("x-correlation-id")
            .and_then(|value| value.to_str().ok()),
        Some(correlation_id.as_str()),
        "the answer names the client's id"
    );
    let stored: Option<Uuid> = ledger
        .database()
        .client()
        .await
        .query_one(
            "SELECT correlation_id FROM customer_payment_events WHERE global_position = 1",
            &[],
        )
        .await
        .expect("the event")
        .get(0);
    assert_eq!(
        stored.map(|id| id.to_string()),
        Some(correlation_id.clone())
    );

    // Without a header (and none in the body), ingest makes one and the event carries it.
    let second = ledger_testkit::commands::register("observability-2", "bo@example.com");
    let response = http
        .post(format!("http://{ingest_bind}/v1/customers"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-protobuf")
        .header("X-Request-Id", "not-a-uuid")
        .body(prost::Message::encode_to_vec(&second))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 201);
    let made: Uuid = response
        .headers()
        .get("x-correlation-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| Uuid::try_parse(text).ok())
        .expect("ingest's id in the answer");
    let stored: Option<Uuid> = ledger
        .database()
        .client()
        .await
        .query_one(
            "SELECT correlation_id FROM customer_payment_events WHERE global_position = 2",
            &[],
        )
        .await
        .expect("the event")
        .get(0);
    assert_eq!(stored, Some(made));

    // The id in each process's JSON log, as a span field.
    let ingest_line =
        wait_for_line(&processes.log("ingest"), "sending command", &correlation_id).await;
    assert_eq!(ingest_line["service"], "ingest");
    assert_eq!(ingest_line["level"], "DEBUG");
    assert_eq!(ingest_line["context"]["route"], "/v1/customers");
    assert!(
        time::OffsetDateTime::parse(
            ingest_line["timestamp"].as_str().expect("timestamp"),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{ingest_line}"
    );
    assert!(
        !std::fs::read_to_string(processes.log("ingest"))
            .unwrap_or_default()
            .contains(TOKEN),
        "the bearer token is never logged"
    );
    let writer_line =
        wait_for_line(&processes.log("writer"), "command decided", &correlation_id).await;
    assert_eq!(writer_line["service"], "writer");
    assert_eq!(writer_line["context"]["idempotency_key"], "observability-1");
    let projector_line = wait_for_line(
        &processes.log("projector"),
        "applied batch",
        &correlation_id,
    )
    .await;
    assert_eq!(projector_line["service"], "projector");
    assert_eq!(projector_line["context"]["first_position"], 1);
    assert!(
        projector_line["context"]["apply_us"].is_u64(),
        "numbers stay numbers: {projector_line}"
    );
    for log in ["writer", "ingest", "projector", "provider-sync"] {
        for line in json_lines(&processes.log(log)) {
            let keys: Vec<&str> = line
                .as_object()
                .expect("an object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                [
                    "context",
                    "level",
                    "message",
                    "service",
                    "target",
                    "timestamp"
                ],
                "{log}: {line}"
            );
        }
    }

    // The query service counts what it answers (one 200, after it listens).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = http
            .get(format!("http://{query_bind}/v1/customers"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if answered.is_ok_and(|response| response.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query service did not answer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every metric the alert rules name is served by one of the processes.
    let mut served = BTreeSet::new();
    let mut texts = Vec::new();
    for &port in ports[..4].iter().chain(&ports[5..]) {
        let text = scrape(&http, port).await;
        served.extend(exposed_names(&text));
        texts.push(text);
    }
    let rules = std::fs::read_to_string(ALERTS).expect("deploy/prometheus/alerts.yml");
    let named = alert_metric_names(&rules);
    assert!(named.len() >= 12, "{named:?}");
    let missing: Vec<&String> = named.difference(&served).collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{served:?}");

    // And they count what happened: two commands accepted, two customers registered, both
    // applied by the customers projector, two ingest requests answered 201.
    let all = texts.concat();
    for expected in [
        "ledger_writer_commands_total{service=\"writer\",outcome=\"accepted\"} 2",
        "ledger_writer_events_total{service=\"writer\",event_type=\"customer_registered\"} 2",
        "ledger_writer_leader{service=\"writer\"} 1",
        "ledger_ingest_requests_total{service=\"ingest\",route=\"/v1/customers\",status=\"201\"} 2",
        "ledger_notify_deliveries_total{service=\"projector\",outcome=\"dead\"} 0",
        "ledger_provider_sync_attempts_total{service=\"provider-sync\",provider=\"stripe\",outcome=\"succeeded\"} 0",
        "ledger_query_requests_total{service=\"query\",route=\"/v1/customers\",status=\"200\"} 1",
        "ledger_query_cache_misses_total{service=\"query\",projection=\"customers\"} 1",
    ] {
        assert!(
            all.lines().any(|line| line == expected),
            "no {expected:?} in\n{all}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let applied =
        "ledger_projector_events_applied_total{service=\"projector\",projector=\"customers\"} 2";
    while !scrape(&http, ports[2])
        .await
        .lines()
        .any(|line| line == applied)
    {
        assert!(Instant::now() < deadline, "no {applied:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The endpoint answers only the allowed clients: networks and plain addresses, as the
    // docs write them.
    let mut refused = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["run", "writer"])
        .env("DATABASE_URL", ledger.database().url())
        .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
        .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
        .env("LEDGER_METRICS_BIND", format!("127.0.0.1:{}", ports[4]))
        .env("LEDGER_METRICS_ALLOW", "10.0.5.0/24,10.0.6.7,::2")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start a standby writer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{}/metrics", ports[4]))
            .send()
            .await
        {
            break response.status();
        }
        assert!(Instant::now() < deadline, "the standby serves no metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 403);
    let _ = refused.kill();
    let _ = refused.wait();
    drop(processes);
}

/// A malformed setting stops the process at start with a message, not a log line.
#[test]
fn bad_metrics_settings_and_log_formats_are_refused_at_start() {
    let run = |environment: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["run", "writer"])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .envs(environment.iter().copied())
            .output()
            .expect("run ledger")
    };
    let format = run(&[("LOG_FORMAT", "xml")]);
    assert_eq!(format.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&format.stderr),
        "error: LOG_FORMAT=\"xml\": use `json` or `text` (the default)\n"
    );
    let allow = run(&[
        ("LEDGER_METRICS_BIND", "127.0.0.1:0"),
        ("LEDGER_METRICS_ALLOW", "somewhere"),
    ]);
    assert_eq!(allow.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&allow.stderr).contains(
            "--metrics-allow / LEDGER_METRICS_ALLOW: \"somewhere\" is not an address or a network"
        ),
        "{}",
        String::from_utf8_lossy(&allow.stderr)
    );
    // A restriction without the endpoint it restricts (found by the break-it pass: even a
    // malformed one was accepted).
    let unbound = run(&[("LEDGER_METRICS_ALLOW", "somewhere")]);
    assert_eq!(unbound.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unbound.stderr).contains(
            "--metrics-allow / LEDGER_METRICS_ALLOW restricts the metrics endpoint, which \
             --metrics-bind / LEDGER_METRICS_BIND does not open"
        ),
        "{}",
        String::from_utf8_lossy(&unbound.stderr)
    );
}

/// `promtool check config` accepts the compose deployment's Prometheus configuration and the
/// alert rules it loads (skipped, saying so, without promtool).
#[test]
fn promtool_accepts_the_prometheus_configuration_and_its_alert_rules() {
    let Ok(output) = Command::new("promtool")
        .args(["check", "config", PROMETHEUS])
        .output()
    else {
        eprintln!("skipped: promtool is not installed (Debian package `prometheus`)");
        return;
    };
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("SUCCESS: 12 rules found"), "{printed}");
}
