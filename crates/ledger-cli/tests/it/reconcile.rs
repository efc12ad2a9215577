//! `ledger sync stripe --check [--repair]` (issue 15) against localstripe: the check reports
//! exactly the changes made directly at localstripe and exits 1, `--repair` brings the ledger
//! to them and exits 0 with a clean second check, and a third check exits 0. And
//! `ledger run provider-sync --reconcile-every` repairs such a change by itself.

use std::process::Output;

use ledger_testkit::ledger::TestLedger;
use ledger_testkit::localstripe::LocalStripe;
use serde_json::Value;

use super::provider_sync::provider_sync;
use super::sync_stripe::{read_side, sync};
use super::{stderr, stdout};

const CARD_PAYS: &str = "4242424242424242";

/// Three customers at localstripe, each with one subscription to 1 x `basic` (15.00 USD a
/// month), paid: returns (customer id, subscription) of each.
async fn account(stripe: &LocalStripe) -> Vec<(String, Value)> {
    stripe.create_plan("basic", 1_500, "usd", "month").await;
    let mut subscriptions = Vec::new();
    for index in 0..3 {
        let customer = stripe
            .create_customer(
                &format!("reconcile{index}@example.com"),
                &format!("Customer {index}"),
            )
            .await;
        stripe.use_card(&customer, CARD_PAYS).await;
        let subscription = stripe
            .create_subscription(&customer, "basic", 1, None)
            .await;
        assert_eq!(subscription["status"], "active", "{subscription}");
        subscriptions.push((customer, subscription));
    }
    subscriptions
}

fn id(object: &Value) -> &str {
    object["id"].as_str().expect("an id")
}

fn check(ledger: &TestLedger, stripe: &LocalStripe, extra: &[&str]) -> (i32, String) {
    let output: Output = sync(ledger, stripe, &[&["--check"], extra].concat());
    (
        output.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&output), stderr(&output)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_drift_made_at_stripe_and_repair_removes_it() {
    let stripe = LocalStripe::start().await;
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let _read_side = read_side(&ledger).await;
    let subscriptions = account(&stripe).await;
    let imported = sync(&ledger, &stripe, &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));

    let (code, output) = check(&ledger, &stripe, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("compared 3 Stripe subscriptions: 0 drifts"),
        "{output}"
    );

    let (canceled_customer, canceled) = &subscriptions[0];
    let (grown_customer, grown) = &subscriptions[1];
    stripe.cancel(id(canceled)).await;
    stripe.change_plan(grown, "basic", 3).await;

    let (code, output) = check(&ledger, &stripe, &[]);
    assert_eq!(code, 1, "{output}");
    let drift: Vec<&str> = output.lines().filter(|line| line.contains('\t')).collect();
    let mut expected = vec![
        format!(
            "{}\t{canceled_customer}\tstatus active -> canceled",
            id(canceled)
        ),
        format!("{}\t{grown_customer}\tquantity 1 -> 3", id(grown)),
    ];
    let mut drift: Vec<String> = drift.into_iter().map(str::to_owned).collect();
    drift.sort();
    expected.sort();
    assert_eq!(drift, expected, "{output}");
    assert!(
        output.contains("compared 3 Stripe subscriptions: 2 drifts"),
        "{output}"
    );

    let (code, output) = check(&ledger, &stripe, &["--repair"]);
    assert_eq!(code, 0, "{output}");
    let remaining = output.split("remaining:").nth(1).expect("a second check");
    assert!(
        remaining.contains("compared 3 Stripe subscriptions: 0 drifts"),
        "{output}"
    );
    let (code, output) = check(&ledger, &stripe, &[]);
    assert_eq!(code, 0, "{output}");

    let database = ledger.database().client().await;
    let repaired: Vec<(String, String)> = database
        .query(
            "SELECT event_type, outcome FROM provider_inbox WHERE source = 'repair' \
             AND outcome = 'appended' ORDER BY event_type",
            &[],
        )
        .await
        .expect("the inbox")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        repaired,
        vec![
            (
                "customer.subscription.deleted".to_owned(),
                "appended".to_owned()
            ),
            (
                "customer.subscription.updated".to_owned(),
                "appended".to_owned()
            ),
        ]
    );
    let statuses: Vec<(String, String, i32)> = database
        .query(
            "SELECT subscription_id, status, quantity FROM customers.subscriptions \
             WHERE subscription_id = ANY($1) ORDER BY status",
            &[&vec![id(canceled).to_owned(), id(grown).to_owned()]],
        )
        .await
        .expect("the read model")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (id(grown).to_owned(), "active".to_owned(), 3),
            (id(canceled).to_owned(), "canceled".to_owned(), 1),
        ]
    );
}

/// Kills the process on drop, so a failed assertion leaves nothing running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sync_repairs_a_change_made_at_stripe_every_period_by_itself() {
    let stripe = LocalStripe::start().await;
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let _read_side = read_side(&ledger).await;
    let subscriptions = account(&stripe).await;
    let imported = sync(&ledger, &stripe, &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    // Changed at Stripe with no webhook to the ledger: only a reconciliation can see it.
    let (_, canceled) = &subscriptions[0];
    stripe.cancel(id(canceled)).await;

    let _provider_sync = Running(provider_sync(
        &ledger,
        &stripe.url,
        &["--reconcile-every", "5s"],
    ));
    let database = ledger.database().client().await;
    let status = || async {
        database
            .query_one(
                "SELECT status FROM customers.subscriptions WHERE subscription_id = $1",
                &[&id(canceled)],
            )
            .await
            .expect("the subscription")
            .get::<_, String>(0)
    };
    assert_eq!(status().await, "active");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status().await != "canceled" {
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic round repaired the cancellation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let repairs: i64 = database
        .query_one(
            "SELECT count(*) FROM provider_inbox WHERE source = 'repair' AND outcome = 'appended'",
            &[],
        )
        .await
        .expect("the inbox")
        .get(0);
    assert_eq!(repairs, 1, "one repair, of the one change");
}
