//! `ledger demo` on a first run: the flags it offers work, a command can be sent to it, and
//! the usual obstacles (a taken port, a PostgreSQL that wants a password, a NATS without
//! JetStream) each get a message with the cause and the fix.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use ledger_devenv::services::{
    NatsServerOptions, PostgresServerOptions, start_private_nats_with, start_private_postgres_with,
};
use ledger_testkit::{TestDb, unique_name};

use crate::stderr;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// `ledger demo <args>` without the environment variables the demo reads, so the flags are
/// what counts.
fn ledger_demo(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    command.arg("demo").args(args);
    for variable in ["DATABASE_URL", "NATS_URL", "LEDGER_DEMO_BIND"] {
        command.env_remove(variable);
    }
    command.output().expect("run ledger demo")
}

/// The demo on the flags alone (no DATABASE_URL / NATS_URL in its environment), with its own
/// subject prefix and stream, prints a `ledger send` line; run as printed, it registers a
/// customer through the running demo. Ctrl-C stops the demo.
#[tokio::test]
async fn demo_prints_a_send_line_that_reaches_the_running_demo() {
    let database = TestDb::new().await;
    let demo_database = format!("{}_demo", database.name());
    let prefix = unique_name("demo_prefix");
    let stream = unique_name("DEMO_STREAM").to_uppercase();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "demo",
            "--customers",
            "10",
            "--months",
            "3",
            "--database",
            &demo_database,
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            database.url(),
            "--nats-url",
            &nats_url(),
            "--subject-prefix",
            &prefix,
            "--stream-name",
            &stream,
        ])
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let mut send_line = None;
    while let Some(Ok(line)) = lines.next() {
        if printed
            .last()
            .is_some_and(|last: &String| last == "send a command:")
        {
            send_line = Some(line.trim().to_owned());
        }
        let serving = line == "serving until Ctrl-C";
        printed.push(line);
        if serving {
            break;
        }
    }
    let printed = printed.join("\n");
    let send_line = send_line.unwrap_or_else(|| panic!("no send line in:\n{printed}"));
    assert!(
        printed.contains(&format!("subjects {prefix}.cmd.<command>, stream {stream}")),
        "{printed}"
    );
    assert!(
        send_line.starts_with(env!("CARGO_BIN_EXE_ledger")),
        "{send_line}"
    );

    // The deliveries line works as printed too (`DATABASE_URL=... <ledger> notify deliveries`).
    let deliveries_line = printed
        .lines()
        .find_map(|line| line.strip_prefix("notifications: "))
        .unwrap_or_else(|| panic!("no notifications line in:\n{printed}"));
    let words = shlex::split(deliveries_line).expect("a shell line");
    let (variable, url) = words[0].split_once('=').expect("DATABASE_URL=...");
    let deliveries = Command::new(&words[1])
        .args(&words[2..])
        .env(variable, url)
        .output()
        .expect("run the deliveries line");
    assert!(deliveries.status.success(), "{}", stderr(&deliveries));

    let words = shlex::split(&send_line).expect("a shell line");
    let sent = Command::new(&words[0])
        .args(&words[1..])
        .env_remove("NATS_URL")
        .env_remove("LEDGER_SUBJECT_PREFIX")
        .output()
        .expect("run the send line");
    let answer = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{answer}{}", stderr(&sent));
    assert!(answer.contains("\"customer_registered\""), "{answer}");

    // The demo's events are in the stream it was told to use.
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
    let mut demo_stream = jetstream
        .get_stream(&stream)
        .await
        .expect("the named stream");
    let messages = demo_stream
        .info()
        .await
        .expect("stream info")
        .state
        .messages;
    assert!(messages > 10, "{messages} messages");

    let interrupted = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let status = demo.wait().expect("the demo exits");
    assert!(status.success(), "{status}");
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the demo's stream");
    database
        .client()
        .await
        .batch_execute(&format!("DROP DATABASE \"{demo_database}\" WITH (FORCE)"))
        .await
        .expect("drop the demo database");
}

/// A stream the user named that already holds events is refused, not deleted.
#[tokio::test]
async fn demo_keeps_a_named_stream_that_holds_events() {
    let stream = unique_name("DEMO_KEEP").to_uppercase();
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{}.>", stream.to_lowercase())],
            ..Default::default()
        })
        .await
        .expect("create a stream");
    jetstream
        .publish(format!("{}.x", stream.to_lowercase()), "event".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let output = ledger_demo(&[
        "--bind",
        "127.0.0.1:0",
        "--nats-url",
        &nats_url(),
        "--stream-name",
        &stream,
        "--exit",
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("stream {stream} already holds 1 messages")),
        "{message}"
    );
    assert!(message.contains("--stream-name"), "{message}");
    let mut kept = jetstream.get_stream(&stream).await.expect("still there");
    assert_eq!(kept.info().await.expect("info").state.messages, 1);
    jetstream.delete_stream(&stream).await.expect("delete");
}

#[test]
fn demo_on_a_taken_port_names_the_address_the_cause_and_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("listen");
    let address = taken.local_addr().expect("address").to_string();
    let output = ledger_demo(&["--bind", &address, "--exit"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("cannot listen on {address}")),
        "{message}"
    );
    assert!(
        message.contains("another process listens on port"),
        "{message}"
    );
    assert!(message.contains("--bind"), "{message}");
    assert!(!message.contains("did not start"), "{message}");
}

#[tokio::test]
async fn demo_against_nats_without_jetstream_says_how_to_enable_it() {
    let nats = start_private_nats_with(&NatsServerOptions {
        without_jetstream: true,
        ..NatsServerOptions::default()
    })
    .await
    .expect("a nats-server without JetStream");
    let output = ledger_demo(&["--bind", "127.0.0.1:0", "--nats-url", nats.url(), "--exit"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "NATS at {} does not have JetStream enabled",
            nats.url()
        )),
        "{message}"
    );
    assert!(message.contains("nats-server with -js"), "{message}");
    assert!(!message.contains("no answer"), "{message}");
}

/// A server that asks for a password: without one in the URL, one message naming
/// DATABASE_URL and the URL form; a wrong one, the server's refusal; the right one, a demo
/// that runs (its query role gets a password too).
#[tokio::test]
async fn demo_against_a_postgres_that_wants_a_password() {
    let password = "s3cret@demo";
    let postgres = start_private_postgres_with(&PostgresServerOptions {
        password: Some(password.to_owned()),
    })
    .await
    .expect("a PostgreSQL with password authentication");
    let without_password = format!("postgres://postgres@127.0.0.1:{}/postgres", postgres.port());
    let demo_database = unique_name("demo_password");
    let demo = |url: &str| {
        ledger_demo(&[
            "--database",
            &demo_database,
            "--customers",
            "5",
            "--months",
            "2",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--nats-url",
            &nats_url(),
            "--exit",
        ])
    };

    let output = demo(&without_password);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("asks for a password and the URL has none"),
        "{message}"
    );
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(
        message.contains("postgres://postgres:PASSWORD@HOST:PORT/postgres"),
        "{message}"
    );
    assert!(!message.contains("invalid configuration"), "{message}");
    assert_eq!(message.matches("password missing").count(), 0, "{message}");

    let wrong = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        postgres.port()
    );
    let output = demo(&wrong);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(message.contains("postgres:***@"), "{message}");
    assert!(!message.contains(":wrong@"), "{message}");

    let output = demo(postgres.url());
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("audit verify: OK"), "{printed}");
    assert!(printed.contains("headline figures"), "{printed}");
    // --exit stopped the servers: no address of them is printed.
    assert!(!printed.contains("dashboard:"), "{printed}");
    assert!(!printed.contains("send a command"), "{printed}");
    async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"))
        .delete_stream(format!("DEMO_{}", demo_database.to_uppercase()))
        .await
        .expect("the demo's stream");
}

/// `--stripe-api-base` without its secrets, or at an address that does not answer, stops the
/// demo at start with the variable to set or the cause, before it touches any server (no
/// PostgreSQL or NATS is given here, and none is needed to get the message).
#[test]
fn demo_with_stripe_api_base_names_what_is_missing() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let base = format!("http://{closed}");
    let run = |environment: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(["demo", "--bind", "127.0.0.1:0", "--stripe-api-base", &base])
            .args(["--exit"]);
        for variable in [
            "DATABASE_URL",
            "NATS_URL",
            "LEDGER_DEMO_BIND",
            "LEDGER_STRIPE_API_KEY",
            "LEDGER_STRIPE_API_KEY_FILE",
            "LEDGER_STRIPE_WEBHOOK_SECRETS",
            "LEDGER_STRIPE_WEBHOOK_SECRETS_FILE",
        ] {
            command.env_remove(variable);
        }
        command.envs(environment.iter().copied());
        let output = command.output().expect("run ledger demo");
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            output.stdout.is_empty(),
            "nothing loaded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        stderr(&output)
    };

    let message = run(&[]);
    assert!(message.contains("LEDGER_STRIPE_API_KEY"), "{message}");
    let message = run(&[("LEDGER_STRIPE_API_KEY", "sk_test_demo_secret")]);
    assert!(
        message.contains("LEDGER_STRIPE_WEBHOOK_SECRETS"),
        "{message}"
    );
    let message = run(&[
        ("LEDGER_STRIPE_API_KEY", "sk_test_demo_secret"),
        ("LEDGER_STRIPE_WEBHOOK_SECRETS", "whsec_demo_secret"),
    ]);
    assert!(message.contains("--stripe-api-base"), "{message}");
    assert!(
        message.contains(&format!("{base} does not answer")),
        "{message}"
    );
    assert!(!message.contains("sk_test_demo_secret"), "{message}");
}
