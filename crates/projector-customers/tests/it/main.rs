//! The customers read model from a known history, against real PostgreSQL and NATS, with exact
//! expected rows.

use ledger_domain::proto::{self, command::Kind};
use ledger_projector::ProjectorConfig;
use ledger_testkit::commands::{NOW_MICROS, metadata, money, register, start_subscription};
use ledger_testkit::ledger::{RunningProjector, TestLedger};
use ledger_testkit::projector_faults;
use projector_customers::CustomersProjector;

async fn start(ledger: &TestLedger, replay: bool) -> RunningProjector {
    let config = ProjectorConfig {
        live_batch_events_max: 3,
        ..ProjectorConfig::default()
    };
    ledger
        .start_projector(
            CustomersProjector::new(ledger.store.clone()),
            config,
            replay,
        )
        .await
}

async fn caught_up(ledger: &TestLedger) -> bool {
    ledger.projector_caught_up("customers").await
}

fn command(key: &str, customer_id: &str, kind: Kind) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(key, customer_id)),
        kind: Some(kind),
    }
}

/// Ada: monthly USD subscription of 2 seats, paid, partly refunded. Bob: yearly JPY plan,
/// cancelling at period end. Carol: registered only. Returns their customer ids.
async fn send_history(ledger: &TestLedger, first_part_only: bool) -> [String; 3] {
    let client = ledger.client();
    let send = |command: proto::Command| {
        let client = client.clone();
        async move { client.send(&command).await.expect("accepted") }
    };
    let mut ada_registration = register("ada-1", "ada@example.com");
    if let Some(Kind::RegisterCustomer(body)) = ada_registration.kind.as_mut() {
        body.provider_account = Some(proto::ProviderAccount {
            provider: proto::PaymentProvider::Stripe as i32,
            account_id: "cus_ada".to_owned(),
        });
    }
    let ada = send(ada_registration).await.customer_id;
    let mut subscription = start_subscription("ada-2", &ada, "sub_1", "USD");
    if let Some(Kind::StartSubscription(body)) = subscription.kind.as_mut() {
        body.quantity = 2;
    }
    send(subscription).await;
    let bob = send(register("bob-1", "bob@example.com")).await.customer_id;
    let carol = send(register("carol-1", "carol@example.com"))
        .await
        .customer_id;
    if first_part_only {
        return [ada, bob, carol];
    }
    send(command(
        "ada-3",
        &ada,
        Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
            payment_id: "py_1".to_owned(),
            invoice_id: String::new(),
            subscription_id: "sub_1".to_owned(),
            amount: Some(money(9_800, "USD")),
        }),
    ))
    .await;
    send(command(
        "ada-4",
        &ada,
        Kind::RefundPayment(proto::PaymentRefunded {
            refund_id: "re_1".to_owned(),
            payment_id: "py_1".to_owned(),
            amount: Some(money(1_000, "USD")),
            reason: "requested_by_customer".to_owned(),
        }),
    ))
    .await;
    send(command(
        "bob-2",
        &bob,
        Kind::StartSubscription(proto::SubscriptionStarted {
            subscription_id: "sub_b".to_owned(),
            plan: Some(proto::Plan {
                plan_id: "business-yearly".to_owned(),
                unit_price: Some(money(120_000, "JPY")),
                interval: proto::BillingInterval::Year as i32,
                interval_count: 1,
            }),
            quantity: 1,
            trial_end_unix_seconds: None,
            current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 365 * 86_400,
            discount: None,
        }),
    ))
    .await;
    send(command(
        "bob-3",
        &bob,
        Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id: "sub_b".to_owned(),
            at_period_end: true,
            reason: "too_expensive".to_owned(),
        }),
    ))
    .await;
    [ada, bob, carol]
}

type CustomerRow = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

async fn customer_rows(ledger: &TestLedger) -> Vec<CustomerRow> {
    let client = ledger.database().client().await;
    client
        .query(
            "SELECT email, account_id, payment_provider_type, status, mrr_minor, mrr_currency, \
               last_payment_status, last_global_position \
             FROM customers.customers ORDER BY email",
            &[],
        )
        .await
        .expect("customers")
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
        .collect()
}

async fn digest(ledger: &TestLedger) -> String {
    let client = ledger.database().client().await;
    client
        .query_one(
            "SELECT concat_ws('|', \
               (SELECT string_agg(c::text, ',' ORDER BY customer_id) FROM customers.customers c), \
               (SELECT string_agg(s::text, ',' ORDER BY customer_id, subscription_id) FROM customers.subscriptions s), \
               (SELECT string_agg(t::text, ',' ORDER BY customer_id, currency) FROM customers.totals t), \
               (SELECT string_agg(a::text, ',' ORDER BY provider, account_id) FROM customers.provider_accounts a), \
               (SELECT string_agg(l::text, ',' ORDER BY customer_id, global_position) FROM customers.timeline l))",
            &[],
        )
        .await
        .expect("digest")
        .get(0)
}

#[tokio::test]
async fn a_known_history_gives_exact_customer_rows() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let projector = start(&ledger, false).await;
    let [ada, _bob, _carol] = send_history(&ledger, false).await;
    assert!(caught_up(&ledger).await);

    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        customer_rows(&ledger).await,
        vec![
            (
                "ada@example.com".into(),
                "cus_test".into(),
                "stripe".into(),
                "active".into(),
                Some(9_800),
                some("USD"),
                some("succeeded"),
                6
            ),
            (
                "bob@example.com".into(),
                "cus_test".into(),
                "stripe".into(),
                "cancel_pending".into(),
                Some(10_000),
                some("JPY"),
                None,
                8
            ),
            (
                "carol@example.com".into(),
                "cus_test".into(),
                "stripe".into(),
                "none".into(),
                None,
                None,
                None,
                4
            ),
        ]
    );

    let client = ledger.database().client().await;
    let ada_id: uuid::Uuid = ada.parse().expect("uuid");
    let subscription = client
        .query_one(
            "SELECT status, plan_id, billing_interval, quantity, unit_amount_minor, currency, \
               mrr_minor, cancel_at_period_end FROM customers.subscriptions WHERE customer_id = $1",
            &[&ada_id],
        )
        .await
        .expect("subscription");
    assert_eq!(
        (
            subscription.get::<_, String>(0),
            subscription.get::<_, String>(1),
            subscription.get::<_, String>(2),
            subscription.get::<_, i32>(3),
            subscription.get::<_, i64>(4),
            subscription.get::<_, String>(5),
            subscription.get::<_, i64>(6),
            subscription.get::<_, bool>(7),
        ),
        (
            "active".into(),
            "pro-monthly".into(),
            "month".into(),
            2,
            4_900,
            "USD".into(),
            9_800,
            false
        )
    );
    let totals = client
        .query_one(
            "SELECT currency, paid_minor, refunded_minor FROM customers.totals WHERE customer_id = $1",
            &[&ada_id],
        )
        .await
        .expect("totals");
    assert_eq!(
        (
            totals.get::<_, String>(0),
            totals.get::<_, i64>(1),
            totals.get::<_, i64>(2)
        ),
        ("USD".into(), 9_800, 1_000)
    );
    let account: uuid::Uuid = client
        .query_one(
            "SELECT customer_id FROM customers.provider_accounts \
             WHERE provider = 'stripe' AND account_id = 'cus_ada'",
            &[],
        )
        .await
        .expect("account")
        .get(0);
    assert_eq!(account, ada_id);
    let timeline: Vec<(String, Option<i64>)> = client
        .query(
            "SELECT event_type, amount_minor FROM customers.timeline \
             WHERE customer_id = $1 ORDER BY global_position",
            &[&ada_id],
        )
        .await
        .expect("timeline")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        timeline,
        vec![
            ("customer_registered".into(), None),
            ("subscription_started".into(), None),
            ("payment_succeeded".into(), Some(9_800)),
            ("payment_refunded".into(), Some(1_000)),
        ]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn a_projector_with_an_empty_cache_resumes_to_the_same_rows_as_a_replay() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let first = start(&ledger, false).await;
    send_history(&ledger, true).await;
    assert!(caught_up(&ledger).await);
    first.stop().await;
    // The rest of the history arrives while no projector runs; a new one (empty cache) must
    // replay each customer's earlier events from the store.
    send_history(&ledger, false).await;
    let resumed = start(&ledger, false).await;
    assert!(caught_up(&ledger).await);
    let resumed_digest = digest(&ledger).await;
    resumed.stop().await;
    assert_eq!(customer_rows(&ledger).await.len(), 3);

    let replayed = start(&ledger, true).await;
    assert!(caught_up(&ledger).await);
    assert_eq!(digest(&ledger).await, resumed_digest);
    replayed.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn killed_mid_stream_resumes_to_the_same_tables_as_a_fresh_rebuild() {
    projector_faults::killed_mid_stream_resumes_to_a_fresh_rebuild(|ledger| {
        CustomersProjector::new(ledger.store.clone())
    })
    .await;
}

#[tokio::test]
async fn redelivered_messages_change_nothing() {
    projector_faults::redelivered_messages_change_nothing(|ledger| {
        CustomersProjector::new(ledger.store.clone())
    })
    .await;
}

#[tokio::test]
async fn a_rebuild_while_commands_arrive_ends_as_a_fresh_rebuild() {
    projector_faults::rebuild_while_appending_ends_as_a_fresh_rebuild(|ledger| {
        CustomersProjector::new(ledger.store.clone())
    })
    .await;
}
