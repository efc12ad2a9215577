//! The `ledger` binary as a user runs it, against a real PostgreSQL.

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

    let demo_url = database.url().replace(database.name(), &demo_database);
    let migrate = ledger(&["migrate"], &demo_url);
    assert!(migrate.status.success(), "migrate is idempotent");

    let verify = ledger(&["audit", "verify"], &demo_url);
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
    let tampered = ledger(&["audit", "verify"], &demo_url);
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
