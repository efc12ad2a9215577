//! `ledger sync stripe` (issue 15, backfill) against localstripe: an account of a few hundred
//! customers and subscriptions, imported by the binary into one ledger, gives the same read
//! models as the same history received by webhook in another; an interrupted run resumes from
//! its cursor; a second run appends nothing.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use ledger_projector::ProjectorConfig;
use ledger_testkit::ledger::{RunningProjector, TestLedger};
use ledger_testkit::localstripe::LocalStripe;

use super::stripe_end_to_end::{Ingest, SECRET, settle};
use super::{stderr, stdout};

/// Customers created at localstripe; every one subscribes to the basic plan, every third also
/// to the pro plan, and every fifth cancels its basic subscription.
const CUSTOMERS: usize = 150;
const CARD_PAYS: &str = "4242424242424242";

pub(super) async fn read_side(ledger: &TestLedger) -> (RunningProjector, RunningProjector) {
    let customers = ledger
        .start_projector(
            projector_customers::CustomersProjector::new(ledger.store.clone()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    let revenue = ledger
        .start_projector(
            projector_revenue::RevenueProjector::new(ledger.store.clone(), Default::default()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    (customers, revenue)
}

pub(super) fn sync(ledger: &TestLedger, stripe: &LocalStripe, extra: &[&str]) -> Output {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["sync", "stripe", "--no-events"])
        .args(extra)
        .env("DATABASE_URL", ledger.database().url())
        .env("NATS_URL", nats_url)
        .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
        .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
        .env("LEDGER_STRIPE_API_BASE", &stripe.url)
        .env("LEDGER_STRIPE_API_KEY", "sk_test_backfill")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ledger sync stripe")
}

/// The report's line of `list`: its counts by column name.
pub(super) fn report_line(output: &str, list: &str) -> BTreeMap<String, u64> {
    let mut lines = output.lines();
    let header: Vec<&str> = lines.next().expect("a header").split('\t').collect();
    let line = lines
        .find(|line| line.split('\t').next() == Some(list))
        .unwrap_or_else(|| panic!("no line {list} in {output}"));
    header
        .iter()
        .zip(line.split('\t'))
        .skip(1)
        .map(|(name, value)| ((*name).to_owned(), value.parse().expect("a count")))
        .collect()
}

/// What the read side shows, without what depends on the order of arrival (positions, inbox
/// ids, times within the day): customers, subscriptions, accounts, totals, the timeline's
/// events per customer, and the revenue schema's tables (by day).
async fn read_models(ledger: &TestLedger) -> Vec<(String, Vec<String>)> {
    let database = ledger.database().client().await;
    let queries = [
        (
            "customers",
            "SELECT customer_id, account_id, payment_provider_type, created_at::date, email, \
                    name, status, mrr_minor, mrr_currency, last_payment_status, \
                    last_payment_at::date \
             FROM customers.customers",
        ),
        (
            "subscriptions",
            "SELECT customer_id, subscription_id, status, plan_id, billing_interval, \
                    interval_count, quantity, unit_amount_minor, currency, mrr_minor, \
                    trial_end, current_period_end, cancel_at_period_end \
             FROM customers.subscriptions",
        ),
        (
            "provider_accounts",
            "SELECT * FROM customers.provider_accounts",
        ),
        ("totals", "SELECT * FROM customers.totals"),
        (
            "timeline",
            "SELECT customer_id, occurred_at::date, event_type, status, issuer, \
                    payment_provider_type, amount_minor, currency, subscription_id \
             FROM customers.timeline",
        ),
    ];
    let mut models = Vec::new();
    for (name, query) in queries {
        let mut rows: Vec<String> = database
            .query(&format!("SELECT t::text FROM ({query}) t"), &[])
            .await
            .expect(name)
            .iter()
            .map(|row| row.get(0))
            .collect();
        rows.sort();
        models.push((name.to_owned(), rows));
    }
    for (table, rows, checksum) in ledger.schema_checksum("revenue").await {
        models.push((
            format!("revenue.{table}"),
            vec![format!("{rows} {checksum}")],
        ));
    }
    models
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_gives_the_read_models_of_the_webhooks_resumes_and_appends_nothing_twice() {
    let stripe = LocalStripe::start().await;

    // The ledger that receives the account's history by webhook, as it happens.
    let by_webhook = TestLedger::new().await;
    let writer_a = by_webhook.start_writer();
    let (customers_a, revenue_a) = read_side(&by_webhook).await;
    let ingest = Ingest::start(by_webhook.client()).await;
    let endpoint = format!("http://{}/v1/webhooks/stripe", ingest.address);
    stripe.register_webhook("ledger", &endpoint, SECRET).await;
    stripe.create_plan("plan_basic", 900, "eur", "month").await;
    stripe.create_plan("plan_pro", 2900, "eur", "month").await;
    let mut subscriptions = 0;
    for n in 0..CUSTOMERS {
        let customer = stripe
            .create_customer(&format!("c{n}@example.com"), &format!("Customer {n}"))
            .await;
        stripe.use_card(&customer, CARD_PAYS).await;
        let quantity = u32::try_from(n % 3 + 1).expect("small");
        let basic = stripe
            .create_subscription(&customer, "plan_basic", quantity, None)
            .await;
        assert_eq!(basic["status"], "active", "{basic}");
        subscriptions += 1;
        if n % 3 == 0 {
            stripe
                .create_subscription(&customer, "plan_pro", 1, None)
                .await;
            subscriptions += 1;
        }
        if n % 5 == 0 {
            stripe.cancel(basic["id"].as_str().expect("an id")).await;
        }
    }
    assert_eq!(subscriptions, 200);
    settle(&stripe, &by_webhook).await;
    assert!(by_webhook.projector_caught_up("customers").await);
    assert!(by_webhook.projector_caught_up("revenue").await);
    drop(ingest);

    // The ledger that imports the account afterwards.
    let by_backfill = TestLedger::new().await;
    let writer_b = by_backfill.start_writer();
    let (customers_b, revenue_b) = read_side(&by_backfill).await;
    let database = by_backfill.database().client().await;

    // Interrupted after one page: the first 100 customers, the cursor on the 100th.
    let first = sync(&by_backfill, &stripe, &["--pages", "1"]);
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    let report = stdout(&first);
    assert!(
        report.contains("stopped after 1 page(s) (--pages); run again to resume"),
        "{report}"
    );
    let customers = report_line(&report, "customer");
    assert_eq!(customers["pages"], 1, "{report}");
    assert_eq!(customers["objects"], 100, "{report}");
    assert_eq!(customers["appended"], 100, "{report}");
    let first_page = stripe.get("/v1/customers?limit=100").await;
    let hundredth = first_page["data"][99]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let cursor: Option<String> = database
        .query_one(
            "SELECT cursor FROM provider_sync_cursors \
             WHERE provider = 'stripe' AND object_kind = 'customer'",
            &[],
        )
        .await
        .expect("the customers' cursor")
        .get(0);
    assert_eq!(cursor.as_deref(), Some(hundredth.as_str()));
    let backfilled: i64 = database
        .query_one(
            "SELECT count(*) FROM provider_inbox WHERE source = 'backfill'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(backfilled, 100);

    // Resumed: the customers after the cursor, then every other list to its end.
    let second = sync(&by_backfill, &stripe, &[]);
    assert!(
        second.status.success(),
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    let report = stdout(&second);
    assert!(report.contains("complete (correlation id "), "{report}");
    let customers = report_line(&report, "customer");
    assert_eq!(
        (
            customers["pages"],
            customers["objects"],
            customers["appended"]
        ),
        (1, 50, 50),
        "{report}"
    );
    let listed = report_line(&report, "subscription");
    assert_eq!(listed["objects"], 200, "{report}");
    assert_eq!(listed["failed"] + listed["waiting"], 0, "{report}");
    assert!(
        report.contains("dispute: not offered by the server (404), skipped"),
        "{report}"
    );
    assert!(by_backfill.projector_caught_up("customers").await);
    assert!(by_backfill.projector_caught_up("revenue").await);

    // What the test did at localstripe, customer by customer: basic at 9.00 x (n % 3 + 1)
    // unless canceled (every fifth), pro at 29.00 for every third.
    let made: Vec<(String, String, i64)> = (0..CUSTOMERS)
        .map(|n| {
            let basic = if n % 5 == 0 {
                0
            } else {
                900 * i64::try_from(n % 3 + 1).expect("small")
            };
            let pro = if n % 3 == 0 { 2_900 } else { 0 };
            let status = if basic + pro > 0 {
                "active"
            } else {
                "canceled"
            };
            (format!("c{n}@example.com"), status.to_owned(), basic + pro)
        })
        .collect();
    let mut imported_customers: Vec<(String, String, i64)> = database
        .query(
            "SELECT email, status, mrr_minor::bigint FROM customers.customers",
            &[],
        )
        .await
        .expect("customers")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    imported_customers.sort();
    let mut made = made;
    made.sort();
    assert_eq!(imported_customers, made, "the backfill's customers");

    let expected = read_models(&by_webhook).await;
    let imported = read_models(&by_backfill).await;
    for ((name, webhook_rows), (_, backfill_rows)) in expected.iter().zip(&imported) {
        let only_webhook: Vec<&String> = webhook_rows
            .iter()
            .filter(|row| !backfill_rows.contains(row))
            .collect();
        let only_backfill: Vec<&String> = backfill_rows
            .iter()
            .filter(|row| !webhook_rows.contains(row))
            .collect();
        assert!(
            only_webhook.is_empty() && only_backfill.is_empty(),
            "{name}: only by webhook: {only_webhook:#?}\nonly by backfill: {only_backfill:#?}"
        );
        assert_eq!(webhook_rows.len(), backfill_rows.len(), "{name}");
    }
    assert_eq!(
        expected
            .iter()
            .find(|(name, _)| name == "customers")
            .map(|(_, rows)| rows.len()),
        Some(CUSTOMERS)
    );

    // A second complete run reads everything again and appends nothing.
    let last_position = by_backfill.last_position().await;
    let third = sync(&by_backfill, &stripe, &[]);
    assert!(
        third.status.success(),
        "{}{}",
        stdout(&third),
        stderr(&third)
    );
    let total = report_line(&stdout(&third), "total");
    assert_eq!(total["appended"], 0, "{}", stdout(&third));
    assert_eq!(total["skipped"], total["objects"], "{}", stdout(&third));
    assert_eq!(by_backfill.last_position().await, last_position);

    for projector in [customers_a, revenue_a, customers_b, revenue_b] {
        projector.stop().await;
    }
    writer_a.stop().await.expect("writer");
    writer_b.stop().await.expect("writer");
}
