//! Issue 13 end to end: a history made at localstripe (a stateful fake Stripe that signs and
//! delivers webhooks) over several days reaches a real ingest (`POST /v1/webhooks/stripe`), a
//! real writer and the customers and revenue projectors, on this test's PostgreSQL database
//! and NATS stream. The read models are checked against what the test did at localstripe, as
//! far as localstripe tells (see `ledger_testkit::localstripe`: no
//! `customer.subscription.updated`, no `charge.refunded`, and trials stay `incomplete`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ledger_connectors::stripe::WebhookSecrets;
use ledger_ingest::{IngestConfig, WebhookConfig};
use ledger_projector::ProjectorConfig;
use ledger_testkit::ledger::{TestLedger, eventually};
use ledger_testkit::localstripe::LocalStripe;
use serde_json::Value;
use uuid::Uuid;

pub(crate) const SECRET: &str = "whsec_end_to_end_0123456789";
const DAY_SECONDS: i64 = 86_400;
/// The history starts this many days ago.
const FIRST_DAY_AGO: i64 = 40;
/// localstripe signs a delivery with its event's date: the endpoint's tolerance covers the
/// history (Stripe itself signs with the time of the delivery).
const TOLERANCE_SECONDS: i64 = (FIRST_DAY_AGO + 1) * DAY_SECONDS;
/// How long localstripe's deliveries of one day may take to be recorded (each is sent one
/// second after its event).
const SETTLE_MS: u64 = 30_000;
const CARD_PAYS: &str = "4242424242424242";
const CARD_NEEDS_AUTHENTICATION: &str = "4000002760003184";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Noon (UTC) `days_ago` days before today: the day's business date stays the same however
/// long the day's steps take.
fn noon(days_ago: i64) -> i64 {
    now().div_euclid(DAY_SECONDS) * DAY_SECONDS - days_ago * DAY_SECONDS + DAY_SECONDS / 2
}

/// The UTC date of `unix_seconds`, as PostgreSQL prints a `date`.
fn date(unix_seconds: i64) -> String {
    let day = time::OffsetDateTime::from_unix_timestamp(unix_seconds).expect("a date");
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// A `customers.customers` row: id, account, provider, email, name, status, MRR (minor units)
/// and its currency.
type CustomerRow = (
    Uuid,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
);
/// A `customers.subscriptions` row: customer, subscription, status, plan, quantity, unit
/// amount and MRR (minor units) with their currency.
type SubscriptionRow = (Uuid, String, String, String, i32, i64, String, i64);

/// `ledger_ingest::serve` on a free port, on a thread of its own (its future is not `Send`,
/// as in `ledger run ingest`); stopped on `Drop`.
pub(crate) struct Ingest {
    pub(crate) address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ingest {
    pub(crate) async fn start(client: ledger_bus::Client) -> Ingest {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let config = IngestConfig {
            bind: address,
            tokens: ledger_access::Tokens::default(),
            rate_limit: None,
            webhooks: WebhookConfig {
                stripe: Some(WebhookSecrets::new(&[SECRET], TOLERANCE_SECONDS)),
                ..WebhookConfig::default()
            },
            cors_origins: ledger_ingest::AllowedOrigins::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(ledger_ingest::serve(config, client, async move {
                    let _ = stopped.await;
                }))
                .expect("ingest runs");
        });
        assert!(
            eventually(10_000, || async {
                tokio::net::TcpStream::connect(address).await.is_ok()
            })
            .await,
            "ingest listens on {address}"
        );
        Ingest {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the inbox holds a row for every event localstripe has emitted so far: each of
/// its deliveries was answered 200 (localstripe does not retry).
pub(crate) async fn settle(stripe: &LocalStripe, ledger: &TestLedger) {
    let emitted: BTreeSet<String> = stripe.event_ids().await.into_iter().collect();
    let database = ledger.database().client().await;
    let recorded = || async {
        database
            .query("SELECT DISTINCT provider_event_id FROM provider_inbox", &[])
            .await
            .expect("inbox")
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<BTreeSet<String>>()
    };
    let all_recorded =
        eventually(SETTLE_MS, || async { emitted.is_subset(&recorded().await) }).await;
    let missing: Vec<_> = emitted.difference(&recorded().await).cloned().collect();
    assert!(all_recorded, "deliveries not recorded: {missing:?}");
}

/// `Stripe-Signature` of `body` at `timestamp`: the header localstripe sent with it.
fn stripe_signature(timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag: String = ring::hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={timestamp},v1={tag}")
}

/// The sum of `amount_paid` over the customer's paid invoices at localstripe.
async fn paid_at_localstripe(stripe: &LocalStripe, customer: &str) -> i64 {
    stripe
        .get(&format!("/v1/invoices?customer={customer}&limit=100"))
        .await["data"]
        .as_array()
        .expect("invoices")
        .iter()
        .filter(|invoice| invoice["status"] == "paid")
        .map(|invoice| invoice["amount_paid"].as_i64().expect("amount_paid"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localstripe_history_reaches_the_customers_and_revenue_read_models() {
    let stripe = LocalStripe::start().await;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customers_projector = ledger
        .start_projector(
            projector_customers::CustomersProjector::new(ledger.store.clone()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    let revenue_projector = ledger
        .start_projector(
            projector_revenue::RevenueProjector::new(ledger.store.clone(), Default::default()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    let ingest = Ingest::start(ledger.client()).await;
    let endpoint = format!("http://{}/v1/webhooks/stripe", ingest.address);
    stripe.register_webhook("ledger", &endpoint, SECRET).await;
    let travel = |days_ago: i64| {
        let stripe = &stripe;
        async move {
            let at = noon(days_ago);
            stripe.set_clock(at - now()).await;
            at
        }
    };

    // Day 0: Ada pays 9.00 EUR a month, Carol 3 x 9.00; Bob starts a trial, which localstripe
    // keeps `incomplete` (Stripe: `trialing`), so the ledger does not start it.
    let day_0 = travel(FIRST_DAY_AGO).await;
    stripe.create_plan("plan_basic", 900, "eur", "month").await;
    stripe.create_plan("plan_pro", 2900, "eur", "month").await;
    let ada = stripe
        .create_customer("ada@example.com", "Ada Lovelace")
        .await;
    stripe.use_card(&ada, CARD_PAYS).await;
    let ada_basic = stripe
        .create_subscription(&ada, "plan_basic", 1, None)
        .await;
    assert_eq!(text(&ada_basic, "/status"), "active");
    let bob = stripe.create_customer("bob@example.com", "Bob").await;
    stripe.use_card(&bob, CARD_PAYS).await;
    let bob_trial = stripe
        .create_subscription(&bob, "plan_pro", 1, Some(day_0 + 14 * DAY_SECONDS))
        .await;
    assert_eq!(text(&bob_trial, "/status"), "incomplete");
    let carol = stripe.create_customer("carol@example.com", "Carol").await;
    stripe.use_card(&carol, CARD_PAYS).await;
    let carol_basic = stripe
        .create_subscription(&carol, "plan_basic", 3, None)
        .await;
    settle(&stripe, &ledger).await;

    // Day 10: Ada adds 29.00 a month (an expansion of her MRR) and moves her first
    // subscription to 2 x 29.00, which localstripe does not announce
    // (no customer.subscription.updated).
    let day_1 = travel(FIRST_DAY_AGO - 10).await;
    let ada_pro = stripe.create_subscription(&ada, "plan_pro", 1, None).await;
    let ada_pro_id = text(&ada_pro, "/id").to_owned();
    stripe.change_plan(&ada_basic, "plan_pro", 2).await;
    settle(&stripe, &ledger).await;

    // Day 20: an invoice of Ada's second subscription fails (its authentication fails), then is
    // paid with another card; 5.00 of it are refunded (localstripe emits no charge.refunded).
    travel(FIRST_DAY_AGO - 20).await;
    stripe.use_card(&ada, CARD_NEEDS_AUTHENTICATION).await;
    let failed = stripe.invoice_and_pay(&ada, &ada_pro_id).await;
    assert_eq!(text(&failed, "/status"), "open");
    let retried_invoice = text(&failed, "/id").to_owned();
    stripe.fail_authentication(&failed).await;
    stripe.use_card(&ada, CARD_PAYS).await;
    let paid = stripe.pay(&retried_invoice).await;
    assert_eq!(text(&paid, "/status"), "paid");
    let refund = stripe.refund(text(&paid, "/charge/id"), 500).await;
    assert_eq!(text(&refund, "/status"), "succeeded");
    settle(&stripe, &ledger).await;

    // Day 30: Ada cancels her first subscription; its deletion's snapshot shows 2 x 29.00, so
    // the ledger changes the plan, then cancels: her MRR goes from 38.00 to 29.00.
    let day_3 = travel(FIRST_DAY_AGO - 30).await;
    stripe.cancel(text(&ada_basic, "/id")).await;
    settle(&stripe, &ledger).await;

    // Day 35: Carol cancels: she churns.
    let day_4 = travel(FIRST_DAY_AGO - 35).await;
    stripe.cancel(text(&carol_basic, "/id")).await;
    settle(&stripe, &ledger).await;

    assert!(ledger.projector_caught_up("customers").await);
    assert!(ledger.projector_caught_up("revenue").await);
    let database = ledger.database().client().await;
    let customer_of = |account: &str| {
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, account)
    };
    let (ada_id, bob_id, carol_id) = (customer_of(&ada), customer_of(&bob), customer_of(&carol));

    // The inbox: every delivery recorded once (rows re-running one are not deliveries), none
    // failed.
    let emitted = stripe.event_ids().await;
    let outcomes: BTreeMap<String, i64> = database
        .query(
            "SELECT outcome, count(*) FILTER (WHERE renormalizes_inbox_id IS NULL) \
             FROM provider_inbox GROUP BY outcome",
            &[],
        )
        .await
        .expect("outcomes")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(!outcomes.contains_key("failed"), "{outcomes:?}");
    assert_eq!(
        outcomes.values().sum::<i64>(),
        i64::try_from(emitted.len()).expect("count"),
        "one row per delivery: {outcomes:?}"
    );

    // The customers read model.
    let rows = database
        .query(
            "SELECT customer_id, account_id, payment_provider_type, email, name, status, \
                    mrr_minor::bigint, mrr_currency \
             FROM customers.customers ORDER BY email",
            &[],
        )
        .await
        .expect("customers");
    let customers: Vec<CustomerRow> = rows
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
            )
        })
        .collect();
    let eur = Some("EUR".to_owned());
    assert_eq!(
        customers,
        vec![
            (
                ada_id,
                ada.clone(),
                "stripe".to_owned(),
                "ada@example.com".to_owned(),
                "Ada Lovelace".to_owned(),
                "active".to_owned(),
                Some(2_900),
                eur.clone()
            ),
            (
                bob_id,
                bob.clone(),
                "stripe".to_owned(),
                "bob@example.com".to_owned(),
                "Bob".to_owned(),
                "none".to_owned(),
                None,
                None
            ),
            (
                carol_id,
                carol.clone(),
                "stripe".to_owned(),
                "carol@example.com".to_owned(),
                "Carol".to_owned(),
                "canceled".to_owned(),
                Some(0),
                eur.clone()
            ),
        ]
    );
    let accounts: BTreeSet<(String, String, Uuid)> = database
        .query(
            "SELECT provider, account_id, customer_id FROM customers.provider_accounts",
            &[],
        )
        .await
        .expect("accounts")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        accounts,
        BTreeSet::from([
            ("stripe".to_owned(), ada.clone(), ada_id),
            ("stripe".to_owned(), bob.clone(), bob_id),
            ("stripe".to_owned(), carol.clone(), carol_id),
        ])
    );
    let subscriptions: Vec<SubscriptionRow> = database
        .query(
            "SELECT customer_id, subscription_id, status, plan_id, quantity, unit_amount_minor, \
                    currency, mrr_minor \
             FROM customers.subscriptions ORDER BY customer_id, subscription_id",
            &[],
        )
        .await
        .expect("subscriptions")
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
            )
        })
        .collect();
    let mut expected_subscriptions = vec![
        // The first subscription's plan change reached the ledger with its deletion.
        (
            ada_id,
            text(&ada_basic, "/id").to_owned(),
            "canceled".to_owned(),
            "plan_pro".to_owned(),
            2,
            2_900,
            "EUR".to_owned(),
            0,
        ),
        (
            ada_id,
            ada_pro_id.clone(),
            "active".to_owned(),
            "plan_pro".to_owned(),
            1,
            2_900,
            "EUR".to_owned(),
            2_900,
        ),
        (
            carol_id,
            text(&carol_basic, "/id").to_owned(),
            "canceled".to_owned(),
            "plan_basic".to_owned(),
            3,
            900,
            "EUR".to_owned(),
            0,
        ),
    ];
    expected_subscriptions.sort();
    assert_eq!(
        subscriptions, expected_subscriptions,
        "Bob's trial is not there"
    );

    // Lifetime money: what localstripe says each paid; the refund is not emitted, so none is
    // known.
    let totals: BTreeMap<Uuid, (String, i64, i64)> = database
        .query(
            "SELECT customer_id, currency, paid_minor::bigint, refunded_minor::bigint \
             FROM customers.totals",
            &[],
        )
        .await
        .expect("totals")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect();
    let ada_paid = paid_at_localstripe(&stripe, &ada).await;
    let carol_paid = paid_at_localstripe(&stripe, &carol).await;
    assert_eq!(carol_paid, 3 * 900);
    assert!(ada_paid >= 900 + 2_900, "{ada_paid}");
    assert_eq!(
        totals,
        BTreeMap::from([
            (ada_id, ("EUR".to_owned(), ada_paid, 0)),
            (carol_id, ("EUR".to_owned(), carol_paid, 0)),
        ])
    );

    // The timeline: every event, with its provider and the inbox row of the message behind it
    // (the dashboard's raw-message link), which names the customer and the event's position.
    let timeline_rows: i64 = database
        .query_one("SELECT count(*) FROM customers.timeline", &[])
        .await
        .expect("timeline")
        .get(0);
    assert_eq!(
        timeline_rows,
        i64::try_from(ledger.last_position().await).expect("count")
    );
    let unlinked: Vec<(Uuid, i64, String)> = database
        .query(
            "SELECT t.customer_id, t.global_position, t.event_type FROM customers.timeline t \
             WHERE t.payment_provider_type <> 'stripe' OR t.issuer <> 'payment_provider' \
                OR NOT EXISTS (SELECT 1 FROM provider_inbox i \
                               WHERE i.id = t.causation_id AND i.customer_id = t.customer_id \
                                 AND t.global_position = ANY (i.global_positions))",
            &[],
        )
        .await
        .expect("timeline links")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(unlinked, vec![], "timeline rows without their message");
    let ada_timeline: Vec<String> = database
        .query(
            "SELECT event_type FROM customers.timeline WHERE customer_id = $1 \
             ORDER BY global_position",
            &[&ada_id],
        )
        .await
        .expect("timeline")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let count = |event_type: &str| ada_timeline.iter().filter(|t| *t == event_type).count();
    assert_eq!(ada_timeline[0], "customer_registered", "{ada_timeline:?}");
    assert_eq!(count("subscription_started"), 2, "{ada_timeline:?}");
    assert_eq!(count("plan_changed"), 1, "{ada_timeline:?}");
    assert_eq!(count("payment_failed"), 1, "{ada_timeline:?}");
    assert_eq!(count("subscription_cancelled"), 1, "{ada_timeline:?}");
    assert_eq!(count("payment_refunded"), 0, "{ada_timeline:?}");

    // The revenue read model: one net movement per customer and day, in minor units.
    let movements: Vec<(Uuid, String, String, i64)> = database
        .query(
            "SELECT customer_id, day::text, movement, delta::bigint FROM revenue.mrr_movements \
             WHERE currency = 'EUR' ORDER BY day, movement",
            &[],
        )
        .await
        .expect("movements")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let mut expected_movements = vec![
        (ada_id, date(day_0), "new".to_owned(), 900),
        (carol_id, date(day_0), "new".to_owned(), 2_700),
        (ada_id, date(day_1), "expansion".to_owned(), 2_900),
        (ada_id, date(day_3), "contraction".to_owned(), -900),
        (carol_id, date(day_4), "churn".to_owned(), -2_700),
    ];
    expected_movements.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    assert_eq!(movements, expected_movements);

    // A redelivery of a payment's webhook, byte for byte as localstripe signed it, appends
    // nothing and is recorded as a duplicate.
    let (body, inbox_rows_before): (Vec<u8>, i64) = {
        let row = database
            .query_one(
                "SELECT body, (SELECT count(*) FROM provider_inbox) FROM provider_inbox \
                 WHERE event_type = 'invoice.payment_succeeded' AND convert_from(body, 'UTF8') LIKE $1 \
                 ORDER BY recorded_at LIMIT 1",
                &[&format!("%{retried_invoice}%")],
            )
            .await
            .expect("the retried invoice's payment");
        (row.get(0), row.get(1))
    };
    let created = serde_json::from_slice::<Value>(&body).expect("JSON")["created"]
        .as_i64()
        .expect("created");
    let last_position = ledger.last_position().await;
    let answer = reqwest::Client::new()
        .post(&endpoint)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Stripe-Signature", stripe_signature(created, &body))
        .body(body)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(answer.status(), 200);
    let answer: Value = serde_json::from_slice(&answer.bytes().await.expect("body")).expect("JSON");
    assert_eq!(answer["outcome"], "duplicate", "{answer}");
    assert_eq!(ledger.last_position().await, last_position);
    let inbox_rows: i64 = database
        .query_one("SELECT count(*) FROM provider_inbox", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(inbox_rows, inbox_rows_before + 1);
    ledger.assert_stream_matches_table().await;

    drop(ingest);
    customers_projector.stop().await;
    revenue_projector.stop().await;
    writer.stop().await.expect("the writer stops");
}
