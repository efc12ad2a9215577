//! The customers read model from a known history, against real PostgreSQL and NATS, with exact
//! expected rows.

use ledger_domain::proto;
use ledger_domain::proto::command::Kind;
use ledger_projector::ProjectorConfig;
use ledger_testkit::commands::{NOW_MICROS, command, money, register, register_webhook};
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
            "SELECT email, account_id, payment_provider_type, status, mrr_minor::bigint, mrr_currency, \
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
               (SELECT string_agg(p::text, ',' ORDER BY customer_id, payment_id) FROM customers.payments p), \
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
    let ada = ledger.send_known_history(false).await.ada;
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
            "SELECT currency, paid_minor::bigint, refunded_minor::bigint FROM customers.totals WHERE customer_id = $1",
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
    ledger.send_known_history(true).await;
    assert!(caught_up(&ledger).await);
    first.stop().await;
    // The rest of the history arrives while no projector runs; a new one (empty cache) must
    // replay each customer's earlier events from the store.
    ledger.send_known_history(false).await;
    let resumed = start(&ledger, false).await;
    stops_with_the_rows_of_a_replay(&ledger, resumed).await;
    writer.stop().await.expect("writer");
}

/// Stops `projector` once caught up with the three customers of the known history, then checks
/// that a replay gives the same tables.
async fn stops_with_the_rows_of_a_replay(ledger: &TestLedger, projector: RunningProjector) {
    assert!(caught_up(ledger).await);
    let expected = digest(ledger).await;
    projector.stop().await;
    assert_eq!(customer_rows(ledger).await.len(), 3);
    let replayed = start(ledger, true).await;
    assert!(caught_up(ledger).await);
    assert_eq!(digest(ledger).await, expected);
    replayed.stop().await;
}

#[tokio::test]
async fn a_projector_that_keeps_no_states_ends_with_the_same_rows_as_a_replay() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    // A bound below any customer's state: every batch of three events empties the states and
    // the next one reads its customers' earlier events from the table.
    let config = ProjectorConfig {
        live_batch_events_max: 3,
        states_bytes_max: 1,
        ..ProjectorConfig::default()
    };
    let live = ledger
        .start_projector(CustomersProjector::new(ledger.store.clone()), config, false)
        .await;
    ledger.send_known_history(true).await;
    ledger.send_known_history(false).await;
    stops_with_the_rows_of_a_replay(&ledger, live).await;
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

/// An integration's stream is configuration, not a customer: no row, no timeline entry.
#[tokio::test]
async fn integration_events_make_no_customer_rows() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let projector = start(&ledger, false).await;
    let client = ledger.client();
    client
        .send(&register_webhook(
            "integration-1",
            "https://example.com/hooks",
            "0123456789abcdef",
        ))
        .await
        .expect("accepted");
    client
        .send(&register("carol-1", "carol@example.com"))
        .await
        .expect("accepted");
    assert!(caught_up(&ledger).await);
    let rows = customer_rows(&ledger).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "carol@example.com");
    let timeline: i64 = ledger
        .database()
        .client()
        .await
        .query_one("SELECT count(*) FROM customers.timeline", &[])
        .await
        .expect("timeline")
        .get(0);
    assert_eq!(timeline, 1);
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// Issue 11, item 4: the same dated plan changes in every arrival order end at the newest,
/// 90.00, in every customer's subscription row (the revenue model agrees from Mar 1).
#[tokio::test]
async fn late_older_plan_changes_end_at_the_newest_in_every_arrival_order() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let sent = ledger.send_plan_changes_in_every_order().await;
    let projector = start(&ledger, false).await;
    assert!(caught_up(&ledger).await);
    let client = ledger.database().client().await;
    for customer in &sent.customers {
        let row = client
            .query_one(
                "SELECT status, unit_amount_minor, mrr_minor FROM customers.subscriptions \
                 WHERE customer_id = $1::text::uuid",
                &[customer],
            )
            .await
            .expect("subscription row");
        assert_eq!(
            (
                row.get::<_, String>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2)
            ),
            ("active".to_owned(), 9_000, 9_000),
            "{customer}"
        );
    }
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// A payment's row follows its refunds and refund requests (decision 0025): two requests
/// processing count as asked for, a failed one frees its amount, an answered one becomes
/// refunded; a failed payment has a row with nothing refunded. Batches of 3 events split the
/// history, so rows are both inserted and updated across batches.
#[tokio::test]
async fn payments_follow_their_refunds_and_refund_requests() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let projector = start(&ledger, false).await;
    let ada = ledger.send_known_history(false).await.ada;
    let client = ledger.client();
    let send = |key: &str, kind: Kind| {
        let command = command(key, &ada, kind);
        let client = client.clone();
        async move { client.send(&command).await.expect("accepted") }
    };
    let request = |refund_request_id: &str, amount_minor: i64| {
        Kind::RequestRefund(proto::RefundRequested {
            refund_request_id: refund_request_id.to_owned(),
            payment_id: "py_1".to_owned(),
            amount: Some(money(amount_minor, "USD")),
            reason: "requested_by_customer".to_owned(),
        })
    };
    send("ada-rr-1", request("rr_1", 2_000)).await;
    send("ada-rr-2", request("rr_2", 3_000)).await;
    send(
        "ada-py-2",
        Kind::RecordPaymentFailed(proto::PaymentFailed {
            payment_id: "py_2".to_owned(),
            invoice_id: String::new(),
            subscription_id: "sub_1".to_owned(),
            amount: Some(money(9_800, "USD")),
            failure_code: "card_declined".to_owned(),
            failure_message: "Your card was declined.".to_owned(),
            attempt_count: 1,
        }),
    )
    .await;
    assert!(caught_up(&ledger).await);
    let at = time::OffsetDateTime::from_unix_timestamp(NOW_MICROS / 1_000_000).expect("time");
    let row = |payment_id: &str, status: &str, refunded: i64, requested: i64| {
        (
            payment_id.to_owned(),
            at,
            status.to_owned(),
            9_800,
            "USD".to_owned(),
            refunded,
            requested,
        )
    };
    assert_eq!(
        payment_rows(&ledger).await,
        vec![
            row("py_1", "succeeded", 1_000, 5_000),
            row("py_2", "failed", 0, 0),
        ]
    );

    send(
        "ada-rr-2-failed",
        Kind::FailRefund(proto::RefundFailed {
            refund_request_id: "rr_2".to_owned(),
            failure_code: "charge_disputed".to_owned(),
            failure_message: "The charge is disputed.".to_owned(),
        }),
    )
    .await;
    send(
        "ada-rr-1-refunded",
        Kind::RefundPayment(proto::PaymentRefunded {
            refund_id: "re_2".to_owned(),
            payment_id: "py_1".to_owned(),
            amount: Some(money(2_000, "USD")),
            reason: "requested_by_customer".to_owned(),
            refund_request_id: "rr_1".to_owned(),
        }),
    )
    .await;
    assert!(caught_up(&ledger).await);
    assert_eq!(
        payment_rows(&ledger).await,
        vec![
            row("py_1", "succeeded", 3_000, 0),
            row("py_2", "failed", 0, 0),
        ]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

type PaymentRow = (String, time::OffsetDateTime, String, i64, String, i64, i64);

async fn payment_rows(ledger: &TestLedger) -> Vec<PaymentRow> {
    let client = ledger.database().client().await;
    client
        .query(
            "SELECT payment_id, occurred_at, status, amount_minor, currency, refunded_minor, \
               refund_requested_minor FROM customers.payments ORDER BY payment_id",
            &[],
        )
        .await
        .expect("payments")
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
            )
        })
        .collect()
}

type HolderRow = (String, String, String, String);

/// Each subscription with the provider holding it, next to its customer's registration
/// provider: (email, subscription, holder, registration provider).
async fn holder_rows(ledger: &TestLedger) -> Vec<HolderRow> {
    let client = ledger.database().client().await;
    client
        .query(
            "SELECT c.email, s.subscription_id, s.payment_provider_type, c.payment_provider_type \
             FROM customers.subscriptions s JOIN customers.customers c USING (customer_id) \
             ORDER BY c.email, s.subscription_id",
            &[],
        )
        .await
        .expect("subscriptions")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

/// Decision 0032: the provider holding a subscription is the one its `subscription_started`
/// came through, as provider-sync decides, not the customer's registration provider nor the
/// provider of a later event about it. Batches of 3 events update rows across batches, and a
/// replay (other batches) gives the same tables.
#[tokio::test]
async fn each_subscription_is_held_by_the_provider_that_started_it() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let projector = start(&ledger, false).await;
    let dan = ledger.send_subscriptions_held_elsewhere().await.dan;
    assert!(caught_up(&ledger).await);

    let row = |email: &str, subscription: &str, holder: &str, registration: &str| {
        (
            email.to_owned(),
            subscription.to_owned(),
            holder.to_owned(),
            registration.to_owned(),
        )
    };
    let expected = vec![
        row("dan@example.com", "sub_own", "internal", "internal"),
        row("dan@example.com", "sub_stripe", "stripe", "internal"),
        row("erin@example.com", "sub_paypal", "paypal", "stripe"),
    ];
    assert_eq!(holder_rows(&ledger).await, expected);
    let statuses: Vec<String> = ledger
        .database()
        .client()
        .await
        .query(
            "SELECT status FROM customers.subscriptions WHERE customer_id = $1::text::uuid \
             ORDER BY subscription_id",
            &[&dan],
        )
        .await
        .expect("statuses")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(statuses, ["paused", "paused"]);

    let live = digest(&ledger).await;
    projector.stop().await;
    let replayed = start(&ledger, true).await;
    assert!(caught_up(&ledger).await);
    assert_eq!(holder_rows(&ledger).await, expected);
    assert_eq!(digest(&ledger).await, live);
    replayed.stop().await;
    writer.stop().await.expect("writer");
}
