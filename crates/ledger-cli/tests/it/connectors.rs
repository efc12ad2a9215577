//! `ledger connectors messages` and `renormalize` against a running writer.

use std::process::Command;

use ledger_domain::proto;
use ledger_testkit::ledger::TestLedger;

fn customer_event(
    event_id: &str,
    event_type: &str,
    account_id: &str,
    email: &str,
) -> proto::ProviderDelivery {
    let body = serde_json::json!({
        "id": event_id, "object": "event", "type": event_type, "created": 1_764_000_000,
        "data": {"object": {"id": account_id, "object": "customer", "email": email, "name": "N"}}
    });
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: serde_json::to_vec(&body).expect("JSON").into(),
        received_at_unix_micros: 1_764_000_000_000_000,
        ..proto::ProviderDelivery::default()
    }
}

fn ledger(ledger: &TestLedger, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env("DATABASE_URL", ledger.database().url())
        .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
        .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the ledger binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_lists_the_inbox_and_renormalize_appends_nothing_new() {
    let test = TestLedger::new().await;
    let writer = test.start_writer();
    let client = test.client();
    // Two customers; then the first's account takes the second's email, which fails; then a
    // redelivery.
    for (event_id, event_type, account_id, email) in [
        ("evt_ok", "customer.created", "cus_ok", "ok@example.com"),
        (
            "evt_other",
            "customer.created",
            "cus_other",
            "other@example.com",
        ),
        ("evt_bad", "customer.updated", "cus_ok", "other@example.com"),
        ("evt_ok", "customer.created", "cus_ok", "ok@example.com"),
    ] {
        client
            .deliver(&customer_event(event_id, event_type, account_id, email))
            .await
            .expect("recorded");
    }
    assert_eq!(test.last_position().await, 2);

    let listed = ledger(&test, &["connectors", "messages", "--provider", "stripe"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.lines().count(), 5, "a header and four rows:\n{text}");
    assert!(
        text.contains("evt_ok\tcustomer.created\tappended\t1\t"),
        "{text}"
    );
    assert!(
        text.contains("evt_ok\tcustomer.created\tduplicate\t-\t"),
        "{text}"
    );
    let failed = ledger(&test, &["connectors", "messages", "--outcome", "failed"]);
    let failed = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.lines().count(), 2, "{failed}");
    assert!(failed.contains("evt_bad"), "{failed}");
    let refused = ledger(&test, &["connectors", "messages", "--outcome", "lost"]);
    assert!(!refused.status.success(), "an unknown outcome is refused");

    // The appended messages are already applied; the failed one fails again: exit 1, nothing
    // appended, each re-run recorded with its reference.
    let rerun = ledger(
        &test,
        &["connectors", "renormalize", "--provider", "stripe"],
    );
    let output = String::from_utf8_lossy(&rerun.stdout);
    assert_eq!(rerun.status.code(), Some(1), "{output}");
    assert!(
        output.contains("evt_ok customer.created -> ignored"),
        "{output}"
    );
    assert!(
        output.contains("evt_bad customer.updated -> failed"),
        "{output}"
    );
    assert!(output.contains("3 message(s) re-normalized"), "{output}");
    assert!(output.contains("0 appended new events"), "{output}");
    assert_eq!(test.last_position().await, 2, "nothing appended");
    let since = ledger(
        &test,
        &[
            "connectors",
            "renormalize",
            "--provider",
            "stripe",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(since.status.success());
    assert!(String::from_utf8_lossy(&since.stdout).contains("0 message(s) re-normalized"));
    writer.stop().await.expect("the writer stops");
}

/// A signed delivery's event id and type may hold control characters (only NUL is refused):
/// listed, each is escaped, so the delivery adds no row or column to the listing and sends no
/// escape sequence to the operator's terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_escapes_the_control_characters_of_a_providers_text() {
    let test = TestLedger::new().await;
    let writer = test.start_writer();
    test.client()
        .deliver(&customer_event(
            "evt_a\nfake\trow",
            "customer.created\u{1b}]0;title\u{7}",
            "cus_escaped",
            "escaped@example.com",
        ))
        .await
        .expect("recorded");
    let listed = ledger(&test, &["connectors", "messages"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.lines().count(), 2, "a header and one row:\n{text}");
    assert!(
        text.contains("\tevt_a\\nfake\\trow\tcustomer.created\\u{1b}]0;title\\u{7}\tignored\t"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
    writer.stop().await.expect("writer stops");
}
