//! `ledger sync xendit` and `ledger sync paypal` (issue 15, backfill): the commands read the
//! providers' settings, import through the writer and print the report; a second run skips
//! what the first imported. The import itself is tested in `ledger-sync`
//! (`tests/it/backfill.rs`).

use std::process::{Command, Output};

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_testkit::ledger::TestLedger;
use serde_json::json;

use super::sync_stripe::report_line;
use super::{stderr, stdout};

async fn sync(ledger: &TestLedger, provider: &str, settings: &[(&str, &str)]) -> Output {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    command
        .args(["sync", provider])
        .env("DATABASE_URL", ledger.database().url())
        .env("NATS_URL", nats_url)
        .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
        .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
        .env("RUST_LOG", "warn");
    for (name, value) in settings {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run ledger sync"))
        .await
        .expect("the command's thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_sync_xendit_imports_the_invoices_once_and_paypal_needs_its_credentials() {
    let server = HttpReceiver::start().await;
    let invoice = json!({
        "id": "inv_cli_1", "external_id": "order-1", "status": "PAID", "amount": 50_000,
        "paid_amount": 50_000, "payer_email": "cli@example.com", "currency": "IDR",
        "created": "2026-01-05T08:00:00.000Z", "updated": "2026-01-05T09:00:00.000Z",
        "paid_at": "2026-01-05T09:00:00.000Z",
    });
    server.answer_path(
        "/v2/invoices?limit=100",
        ScriptedAnswer::json(200, json!([invoice])),
    );
    server.answer_path(
        "/v2/invoices?limit=100&last_invoice_id=inv_cli_1",
        ScriptedAnswer::json(200, json!([])),
    );
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let settings = [
        ("LEDGER_XENDIT_API_BASE", server.url.as_str()),
        ("LEDGER_XENDIT_API_KEY", "xnd_development_cli"),
    ];

    let first = sync(&ledger, "xendit", &settings).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let counts = report_line(&stdout(&first), "invoice");
    assert_eq!(
        (counts["objects"], counts["appended"]),
        (1, 1),
        "{counts:?}"
    );
    let again = sync(&ledger, "xendit", &settings).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let counts = report_line(&stdout(&again), "invoice");
    assert_eq!(
        (counts["skipped"], counts["appended"]),
        (1, 0),
        "{counts:?}"
    );

    let paypal = sync(&ledger, "paypal", &[]).await;
    assert!(!paypal.status.success());
    assert!(
        stderr(&paypal).contains("LEDGER_PAYPAL_CLIENT_ID"),
        "{}",
        stderr(&paypal)
    );
}
