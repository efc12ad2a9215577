//! The decider's pipeline (decision 0036): a batch decided while the batch before it is being
//! appended is decided on top of that one, and decided again when that one was not appended as
//! decided. Against the test PostgreSQL (`just test` provides it).

use std::time::{Duration, Instant};

use ledger_bus::Encoding;
use ledger_domain::proto;
use ledger_store::{AppendRejection, Store};
use ledger_testkit::TestDb;
use ledger_testkit::commands::{register, start_subscription, with_expected_version};
use uuid::Uuid;

use super::{Appending, BatchOutcome, Decided, Decider, Incoming, Request};
use crate::WriterConfig;
use crate::metrics::WriterMetrics;
use crate::waiting::Awaiting;

async fn decider(database: &TestDb) -> Decider {
    let store = Store::connect(database.url()).expect("a store on the test database");
    let writer = store.writer().await.expect("the writer lock");
    let awaiting = Awaiting::load(&store)
        .await
        .expect("the waiting deliveries");
    Decider::new(
        store,
        writer,
        &WriterConfig::default(),
        awaiting,
        WriterMetrics::register(),
    )
}

fn incoming(command: proto::Command) -> Vec<Incoming> {
    vec![Incoming {
        request: Request::Command(command),
        reply_to: "test.reply".into(),
        encoding: Encoding::Protobuf,
        received_at: Instant::now(),
    }]
}

/// `register_customer` for the customer id `customer_id` (chosen by the test).
fn register_as(customer_id: Uuid, idempotency_key: &str) -> proto::Command {
    let mut command = register(idempotency_key, "ada@example.com");
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.customer_id = customer_id.to_string();
    }
    command
}

/// A transaction holding the event table in `EXCLUSIVE` mode: appends wait, reads go on.
async fn lock_the_event_table(database: &TestDb) -> tokio_postgres::Client {
    let locked = database.client().await;
    locked
        .batch_execute("BEGIN; LOCK TABLE customer_payment_events IN EXCLUSIVE MODE")
        .await
        .expect("the table locked");
    locked
}

/// Ends the transaction of [`lock_the_event_table`] half a second from now, time enough for
/// the next batch to be decided while the one before waits.
fn unlock_soon(locked: tokio_postgres::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        locked.batch_execute("COMMIT").await.expect("unlocked");
    })
}

/// Waits for the batch in `appending` and takes its answer.
async fn finish(decider: &mut Decider, appending: &mut Option<Appending>) -> Decided {
    let mut last = appending.take().expect("a batch being appended");
    let appended = last.appended().await;
    decider
        .finish(last, appended)
        .expect("the batch's answer")
        .0
}

/// The stream versions appended for the batch's one request, or its rejection.
fn outcome(decided: &Decided) -> Result<Vec<u64>, String> {
    match &decided.outcome {
        BatchOutcome::Appended { outcomes, .. } if outcomes.is_empty() => {
            Err("decided without an append (rejected)".to_owned())
        }
        BatchOutcome::Appended { outcomes, .. } => match &outcomes[0] {
            Ok(committed) => Ok(committed
                .events
                .iter()
                .map(|event| event.stream_version)
                .collect()),
            Err(AppendRejection::IdempotencyKeyReused { .. }) => {
                Err("idempotency_key_reused".to_owned())
            }
            Err(rejection) => Err(rejection.to_string()),
        },
        BatchOutcome::Failed(reply) => Err(format!("failed: {reply:?}")),
    }
}

#[tokio::test]
async fn a_batch_decided_while_the_one_before_is_appended_sees_what_that_one_decided() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let customer_id = Uuid::now_v7();
    // Holds the first batch's insert until the second one is decided, so that the second
    // cannot read the first from the store.
    let locked = lock_the_event_table(&database).await;
    let mut appending = None;
    let announced = decider
        .decide_and_append(
            incoming(register_as(customer_id, "register")),
            &mut appending,
        )
        .await
        .expect("the registration decided");
    assert!(announced.is_empty());
    let unblock = unlock_soon(locked);
    let subscription = with_expected_version(
        start_subscription("subscribe", &customer_id.to_string(), "sub_1", "USD"),
        1,
    );
    let announced = decider
        .decide_and_append(incoming(subscription), &mut appending)
        .await
        .expect("the subscription decided");
    unblock.await.expect("the unlocking task");
    assert_eq!(announced.len(), 1);
    assert_eq!(outcome(&announced[0]), Ok(vec![1]));
    let subscribed = finish(&mut decider, &mut appending).await;
    assert_eq!(outcome(&subscribed), Ok(vec![2]));
}

#[tokio::test]
async fn a_batch_decided_on_top_of_one_not_appended_as_decided_is_decided_again() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let customer_id = Uuid::now_v7();
    let customer = customer_id.to_string();
    let mut appending = None;
    decider
        .decide_and_append(
            incoming(register_as(customer_id, "register")),
            &mut appending,
        )
        .await
        .expect("the registration decided");
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![1])
    );

    // The decider accepts a subscription under the registration's key; the store refuses it
    // at the append. The next batch, decided meanwhile on top of it (version 2), expects
    // version 1: only deciding it again from the store accepts it.
    let reused = start_subscription("register", &customer, "sub_1", "USD");
    decider
        .decide_and_append(incoming(reused), &mut appending)
        .await
        .expect("the reused key decided");
    let expecting_one = with_expected_version(
        start_subscription("subscribe", &customer, "sub_2", "USD"),
        1,
    );
    let announced = decider
        .decide_and_append(incoming(expecting_one), &mut appending)
        .await
        .expect("the next batch decided");
    assert_eq!(announced.len(), 1);
    assert_eq!(
        outcome(&announced[0]),
        Err("idempotency_key_reused".to_owned())
    );
    let subscribed = finish(&mut decider, &mut appending).await;
    assert_eq!(outcome(&subscribed), Ok(vec![2]));
}

/// A Stripe event delivered by its webhook, received at its creation time.
fn stripe(event_id: &str, event_type: &str, created: i64, object: serde_json::Value) -> Incoming {
    let body = serde_json::json!({
        "id": event_id, "object": "event", "type": event_type, "created": created,
        "data": {"object": object}
    });
    let delivery = proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: serde_json::to_vec(&body).expect("JSON").into(),
        received_at_unix_micros: created * 1_000_000,
        ..proto::ProviderDelivery::default()
    };
    Incoming {
        request: Request::Delivery(crate::delivery::Admitted::new(delivery)),
        reply_to: "test.reply".into(),
        encoding: Encoding::Protobuf,
        received_at: Instant::now(),
    }
}

#[tokio::test]
async fn a_delivery_waiting_in_the_batch_being_appended_is_released_by_the_next_one() {
    use serde_json::json;
    const T0: i64 = 1_764_000_000;
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let customer = stripe(
        "evt_cus",
        "customer.created",
        T0,
        json!({"id": "cus_1", "object": "customer", "email": "ada@example.com"}),
    );
    decider
        .decide_and_append(vec![customer], &mut appending)
        .await
        .expect("the customer decided");
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![1])
    );

    let locked = lock_the_event_table(&database).await;
    // The invoice waits for its subscription; its inbox row is not committed when the
    // subscription's batch releases it.
    let invoice = stripe(
        "evt_in",
        "invoice.paid",
        T0 + 120,
        json!({
            "id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1",
            "status": "paid", "currency": "usd", "amount_due": 4_900, "amount_paid": 4_900,
            "charge": "ch_1",
            "lines": {"data": [{"period": {"start": T0 + 60, "end": T0 + 60 + 30 * 86_400}}]}
        }),
    );
    decider
        .decide_and_append(vec![invoice], &mut appending)
        .await
        .expect("the invoice decided");
    let unblock = unlock_soon(locked);
    let subscription = stripe(
        "evt_sub",
        "customer.subscription.created",
        T0 + 60,
        json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "created": T0 + 60, "cancel_at_period_end": false,
            "items": {"data": [{
                "quantity": 1, "current_period_end": T0 + 60 + 30 * 86_400,
                "price": {"id": "price_pro", "unit_amount": 4_900, "currency": "usd",
                          "recurring": {"interval": "month", "interval_count": 1}}
            }]}
        }),
    );
    decider
        .decide_and_append(vec![subscription], &mut appending)
        .await
        .expect("the subscription decided");
    unblock.await.expect("the unlocking task");
    finish(&mut decider, &mut appending).await;

    let customer_id =
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, "cus_1");
    let types: Vec<String> = decider
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("the customer's events")
        .into_iter()
        .map(|recorded| recorded.event.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "customer_registered",
            "subscription_started",
            "invoice_issued",
            "invoice_finalized",
            "payment_succeeded"
        ]
    );
    let waiting = decider.store.waiting_deliveries().await.expect("waiting");
    assert!(waiting.is_empty(), "{waiting:?}");
}
