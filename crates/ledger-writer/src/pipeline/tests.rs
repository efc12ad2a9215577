//! The decider's pipeline (decision 0036): a batch decided while the batch before it is being
//! appended is decided on top of that one, and decided again when that one was not appended as
//! decided. Against the test PostgreSQL (`just test` provides it).

use std::time::{Duration, Instant};

use ledger_bus::Encoding;
use ledger_domain::proto;
use ledger_store::{AppendRejection, Committed, Store};
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

impl Decider {
    /// [`Decider::decide_and_append`] with nothing else queued, returning the batches
    /// appended meanwhile.
    async fn decide_returning(
        &mut self,
        batch: Vec<Incoming>,
        appending: &mut Option<Appending>,
    ) -> Result<Vec<Decided>, crate::WriterError> {
        let (_queue, mut queued) = tokio::sync::mpsc::channel(1);
        let mut decided = Vec::new();
        self.decide_and_append(batch, (&mut queued, 1_000), appending, &mut decided)
            .await?;
        Ok(decided)
    }
}

fn incoming(command: proto::Command) -> Vec<Incoming> {
    vec![Incoming {
        request: Request::Command(command),
        reply_to: Some("test.reply".into()),
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

/// Ends the transaction of `TestDb::lock_the_event_table` half a second from now, time enough for
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
    let locked = database.lock_the_event_table().await;
    let mut appending = None;
    let announced = decider
        .decide_returning(
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
        .decide_returning(incoming(subscription), &mut appending)
        .await
        .expect("the subscription decided");
    unblock.await.expect("the unlocking task");
    assert_eq!(announced.len(), 1);
    assert_eq!(outcome(&announced[0]), Ok(vec![1]));
    let subscribed = finish(&mut decider, &mut appending).await;
    assert_eq!(outcome(&subscribed), Ok(vec![2]));
}

#[tokio::test]
async fn what_arrives_while_the_batch_before_is_appended_joins_the_batch_decided_meanwhile() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let customer_id = Uuid::now_v7();
    let customer = customer_id.to_string();
    let (queue, mut queued) = tokio::sync::mpsc::channel(8);
    let mut appending = None;
    let mut announced = Vec::new();
    decider
        .decide_and_append(
            incoming(register_as(customer_id, "register")),
            (&mut queued, 1_000),
            &mut appending,
            &mut announced,
        )
        .await
        .expect("the registration decided");
    // The subscription is decided while the registration is appended; the plan change
    // arrives meanwhile and is decided after it, in the same batch, on its state.
    let change = with_expected_version(start_subscription("second", &customer, "sub_2", "USD"), 2);
    queue
        .send(incoming(change).remove(0))
        .await
        .expect("queued");
    let first = with_expected_version(start_subscription("first", &customer, "sub_1", "USD"), 1);
    decider
        .decide_and_append(
            incoming(first),
            (&mut queued, 1_000),
            &mut appending,
            &mut announced,
        )
        .await
        .expect("the subscriptions decided");
    assert!(queued.try_recv().is_err(), "the queue was taken");
    assert_eq!(announced.len(), 1);
    let subscribed = finish(&mut decider, &mut appending).await;
    assert_eq!(subscribed.batch.len(), 2);
    let BatchOutcome::Appended { outcomes, .. } = &subscribed.outcome else {
        panic!("appended");
    };
    let versions: Vec<u64> = outcomes
        .iter()
        .map(|outcome| outcome.as_ref().expect("appended").events[0].stream_version)
        .collect();
    assert_eq!(versions, [2, 3]);
}

#[tokio::test]
async fn a_batch_decided_on_top_of_one_not_appended_as_decided_is_decided_again() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let customer_id = Uuid::now_v7();
    let customer = customer_id.to_string();
    let mut appending = None;
    decider
        .decide_returning(
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
        .decide_returning(incoming(reused), &mut appending)
        .await
        .expect("the reused key decided");
    let expecting_one = with_expected_version(
        start_subscription("subscribe", &customer, "sub_2", "USD"),
        1,
    );
    let announced = decider
        .decide_returning(incoming(expecting_one), &mut appending)
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
        reply_to: Some("test.reply".into()),
        encoding: Encoding::Protobuf,
        received_at: Instant::now(),
    }
}

#[tokio::test]
async fn a_delivery_waiting_in_the_batch_being_appended_is_released_by_the_next_one() {
    use serde_json::json;
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
        .decide_returning(vec![customer], &mut appending)
        .await
        .expect("the customer decided");
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![1])
    );

    let locked = database.lock_the_event_table().await;
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
        .decide_returning(vec![invoice], &mut appending)
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
        .decide_returning(vec![subscription], &mut appending)
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

/// Locks the event table (in a transaction on a connection of its own) so that a batch
/// being appended cannot insert its events, and so cannot commit, until the returned task
/// unlocks it, `after` from now: the next batch is decided while the first is uncommitted.
async fn hold_appends(database: &TestDb, after: Duration) -> tokio::task::JoinHandle<()> {
    let blocker = database.lock_the_event_table().await;
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        blocker.batch_execute("COMMIT").await.expect("unlocked");
    })
}

/// The event types of a stream, in order.
async fn event_types(decider: &Decider, stream_id: Uuid) -> Vec<String> {
    decider
        .store
        .read_stream(stream_id, 1)
        .await
        .expect("the stream's events")
        .into_iter()
        .map(|recorded| recorded.event.event_type)
        .collect()
}

fn stripe_customer(
    event_id: &str,
    event_type: &str,
    created: i64,
    id: &str,
    email: &str,
) -> Incoming {
    stripe(
        event_id,
        event_type,
        created,
        serde_json::json!({"id": id, "object": "customer", "email": email}),
    )
}

const T0: i64 = 1_764_000_000;

/// Decides `batch` (on top of the batch being appended, if any) and returns the batches
/// appended meanwhile.
async fn decide(
    decider: &mut Decider,
    batch: Vec<Incoming>,
    appending: &mut Option<Appending>,
) -> Vec<Decided> {
    decider
        .decide_returning(batch, appending)
        .await
        .expect("the batch decided")
}

#[tokio::test]
async fn an_email_released_by_the_batch_being_appended_is_free_for_the_next_one() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let created = stripe_customer("evt_1", "customer.created", T0, "cus_1", "old@example.com");
    decide(&mut decider, vec![created], &mut appending).await;
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![1])
    );

    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    let moved = stripe_customer(
        "evt_2",
        "customer.updated",
        T0 + 10,
        "cus_1",
        "new@example.com",
    );
    decide(&mut decider, vec![moved], &mut appending).await;
    // Sequentially: nobody holds old@ once the first customer moved, so cus_2 is a customer
    // of its own, not linked to the first one (the store still says the first one holds it).
    let another = stripe_customer(
        "evt_3",
        "customer.created",
        T0 + 20,
        "cus_2",
        "old@example.com",
    );
    let announced = decide(&mut decider, vec![another], &mut appending).await;
    unblock.await.expect("the unlocking task");
    assert_eq!(outcome(&announced[0]), Ok(vec![2]));
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![1])
    );
    let stripe_customer_id = |account: &str| {
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, account)
    };
    assert_eq!(
        event_types(&decider, stripe_customer_id("cus_1")).await,
        ["customer_registered", "customer_profile_updated"]
    );
    assert_eq!(
        event_types(&decider, stripe_customer_id("cus_2")).await,
        ["customer_registered"]
    );
}

#[tokio::test]
async fn a_delivery_finds_the_customer_registered_by_email_in_the_batch_being_appended() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let customer_id = Uuid::now_v7();
    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    decide(
        &mut decider,
        incoming(register_as(customer_id, "register")),
        &mut appending,
    )
    .await;
    let created = stripe_customer("evt_1", "customer.created", T0, "cus_1", "ada@example.com");
    let announced = decide(&mut decider, vec![created], &mut appending).await;
    unblock.await.expect("the unlocking task");
    assert_eq!(outcome(&announced[0]), Ok(vec![1]));
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![2])
    );
    assert_eq!(
        event_types(&decider, customer_id).await,
        ["customer_registered", "provider_account_linked"]
    );
    let by_account =
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, "cus_1");
    assert!(event_types(&decider, by_account).await.is_empty());
}

fn stripe_subscription(event_id: &str, event_type: &str, created: i64, id: &str) -> Incoming {
    stripe(
        event_id,
        event_type,
        created,
        serde_json::json!({
            "id": id, "object": "subscription", "customer": "cus_1", "status": "active",
            "created": T0 + 60, "cancel_at_period_end": false,
            "items": {"data": [{
                "quantity": 1, "current_period_end": T0 + 60 + 30 * 86_400,
                "price": {"id": "price_pro", "unit_amount": 4_900, "currency": "usd",
                          "recurring": {"interval": "month", "interval_count": 1}}
            }]}
        }),
    )
}

/// Stripe's customer `cus_1` (ada@example.com) with its subscription `sub_1`, appended.
async fn subscribed_customer(decider: &mut Decider, appending: &mut Option<Appending>) {
    let created = stripe_customer(
        "evt_cus",
        "customer.created",
        T0,
        "cus_1",
        "ada@example.com",
    );
    let subscribed =
        stripe_subscription("evt_sub", "customer.subscription.created", T0 + 60, "sub_1");
    decide(decider, vec![created, subscribed], appending).await;
    finish(decider, appending).await;
}

#[tokio::test]
async fn a_dispute_finds_the_customer_of_a_payment_in_the_batch_being_appended() {
    use serde_json::json;
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    subscribed_customer(&mut decider, &mut appending).await;

    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    let paid = stripe(
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
    decide(&mut decider, vec![paid], &mut appending).await;
    // Names no customer: found through the payment of its charge, which only the batch
    // being appended holds.
    let disputed = stripe(
        "evt_dp",
        "charge.dispute.created",
        T0 + 300,
        json!({"id": "dp_1", "object": "dispute", "amount": 4_900, "currency": "usd",
               "charge": "ch_1", "status": "needs_response"}),
    );
    decide(&mut decider, vec![disputed], &mut appending).await;
    unblock.await.expect("the unlocking task");
    finish(&mut decider, &mut appending).await;
    let customer_id =
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, "cus_1");
    assert_eq!(
        event_types(&decider, customer_id).await,
        [
            "customer_registered",
            "subscription_started",
            "invoice_issued",
            "invoice_finalized",
            "payment_succeeded",
            "dispute_opened"
        ]
    );
    let waiting = decider.store.waiting_deliveries().await.expect("waiting");
    assert!(waiting.is_empty(), "{waiting:?}");
}

#[tokio::test]
async fn a_batch_decided_on_top_of_one_whose_transaction_failed_is_decided_again() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let created = stripe_customer(
        "evt_cus",
        "customer.created",
        T0,
        "cus_1",
        "ada@example.com",
    );
    decide(&mut decider, vec![created], &mut appending).await;
    finish(&mut decider, &mut appending).await;
    let customer_id =
        ledger_connectors::customer_id_for_account(ledger_domain::Provider::Stripe, "cus_1");
    let customer = customer_id.to_string();

    // The store fails the whole transaction of the batch holding this delivery.
    let admin = database.client().await;
    admin
        .batch_execute(
            "CREATE FUNCTION fail_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.provider_event_id = 'evt_boom' THEN RAISE EXCEPTION 'boom'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER fail_boom BEFORE INSERT ON provider_inbox FOR EACH ROW \
               EXECUTE FUNCTION fail_boom();",
        )
        .await
        .expect("the failing trigger");
    let boom = stripe_subscription(
        "evt_boom",
        "customer.subscription.created",
        T0 + 60,
        "sub_1",
    );
    decide(&mut decider, vec![boom], &mut appending).await;
    // Decided on top of the subscription (version 3), then again from the store (2).
    let next = start_subscription("subscribe", &customer, "sub_2", "USD");
    let announced = decide(&mut decider, incoming(next), &mut appending).await;
    assert_eq!(announced.len(), 1);
    assert!(
        matches!(announced[0].outcome, BatchOutcome::Failed(_)),
        "{:?}",
        outcome(&announced[0])
    );
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![2])
    );

    // Nothing of the failed batch is left in the writer: the subscription it decided is
    // started when it comes again.
    admin
        .batch_execute("DROP TRIGGER fail_boom ON provider_inbox")
        .await
        .expect("the trigger dropped");
    let again = stripe_subscription(
        "evt_again",
        "customer.subscription.created",
        T0 + 60,
        "sub_1",
    );
    decide(&mut decider, vec![again], &mut appending).await;
    assert_eq!(
        outcome(&finish(&mut decider, &mut appending).await),
        Ok(vec![3])
    );
    assert_eq!(
        event_types(&decider, customer_id).await,
        [
            "customer_registered",
            "subscription_started",
            "subscription_started"
        ]
    );
}

/// Registers ada@example.com (key `register`), waits for it to be appended, and returns her
/// customer id.
async fn ada_registered(decider: &mut Decider, appending: &mut Option<Appending>) -> Uuid {
    decide(
        decider,
        incoming(register("register", "ada@example.com")),
        appending,
    )
    .await;
    let registered = finish(decider, appending).await;
    let BatchOutcome::Appended { outcomes, .. } = &registered.outcome else {
        panic!("the registration failed");
    };
    outcomes[0].as_ref().expect("registered").events[0].stream_id
}

/// A batch of a registration of ada@example.com under `key` and then Stripe's
/// `customer.created` for her (`cus_1`), decided and appended.
async fn ada_and_her_stripe_customer(
    decider: &mut Decider,
    appending: &mut Option<Appending>,
    key: &str,
) -> Decided {
    let mut batch = incoming(register(key, "ada@example.com"));
    batch.push(stripe_customer(
        "evt_1",
        "customer.created",
        T0,
        "cus_1",
        "ada@example.com",
    ));
    decide(decider, batch, appending).await;
    finish(decider, appending).await
}

/// How the delivery planned at `index` of a batch is answered.
fn delivery_recorded(
    plans: &[super::Plan],
    outcomes: &[Result<Committed, AppendRejection>],
    index: usize,
) -> proto::DeliveryRecorded {
    let super::Plan::Delivery(plan) = &plans[index] else {
        panic!("not a delivery");
    };
    let Some(proto::delivery_reply::Result::Recorded(recorded)) = plan.reply(outcomes).result
    else {
        panic!("not recorded");
    };
    recorded
}

#[tokio::test]
async fn a_retried_registration_changes_nothing_the_rest_of_its_batch_is_decided_on() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let customer_id = ada_registered(&mut decider, &mut appending).await;

    // The retry is answered with the registration; the delivery after it finds the customer
    // by its email, as it would had the retry come alone.
    let decided = ada_and_her_stripe_customer(&mut decider, &mut appending, "register").await;
    let BatchOutcome::Appended { outcomes, .. } = &decided.outcome else {
        panic!("the batch failed");
    };
    let retried = outcomes[0].as_ref().expect("the retry answered");
    assert!(retried.duplicate);
    assert_eq!(retried.events[0].stream_id, customer_id);
    let linked = outcomes[1].as_ref().expect("the delivery appended");
    assert_eq!(linked.events[0].stream_id, customer_id);
    assert_eq!(
        event_types(&decider, customer_id).await,
        ["customer_registered", "provider_account_linked"]
    );
}

#[tokio::test]
async fn a_registration_retried_while_it_is_being_appended_changes_nothing_the_next_batch_sees() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    decide(
        &mut decider,
        incoming(register("register", "ada@example.com")),
        &mut appending,
    )
    .await;
    let mut batch = incoming(register("register", "ada@example.com"));
    batch.push(stripe_customer(
        "evt_1",
        "customer.created",
        T0,
        "cus_1",
        "ada@example.com",
    ));
    let announced = decide(&mut decider, batch, &mut appending).await;
    unblock.await.expect("the unlocking task");
    let BatchOutcome::Appended { outcomes, .. } = &announced[0].outcome else {
        panic!("the registration failed");
    };
    let customer_id = outcomes[0].as_ref().expect("registered").events[0].stream_id;
    let decided = finish(&mut decider, &mut appending).await;
    let BatchOutcome::Appended { outcomes, .. } = &decided.outcome else {
        panic!("the batch failed");
    };
    assert!(outcomes[0].as_ref().expect("the retry answered").duplicate);
    let linked = outcomes[1].as_ref().expect("the delivery appended");
    assert_eq!(linked.events[0].stream_id, customer_id);
    assert_eq!(
        event_types(&decider, customer_id).await,
        ["customer_registered", "provider_account_linked"]
    );
}

#[tokio::test]
async fn a_snapshot_older_than_the_one_the_batch_being_appended_applied_is_stale() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    subscribed_customer(&mut decider, &mut appending).await;

    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    let canceled = |event_id: &str, created: i64| {
        stripe(
            event_id,
            "customer.subscription.deleted",
            created,
            serde_json::json!({
                "id": "sub_1", "object": "subscription", "customer": "cus_1",
                "status": "canceled", "created": T0 + 60, "cancel_at_period_end": false,
                "canceled_at": created, "ended_at": created,
                "items": {"data": [{
                    "quantity": 1, "current_period_end": T0 + 60 + 30 * 86_400,
                    "price": {"id": "price_pro", "unit_amount": 4_900, "currency": "usd",
                              "recurring": {"interval": "month", "interval_count": 1}}
                }]}
            }),
        )
    };
    decide(
        &mut decider,
        vec![canceled("evt_late", T0 + 600)],
        &mut appending,
    )
    .await;
    // Taken two minutes before the snapshot the batch being appended saw.
    let earlier = stripe_subscription(
        "evt_early",
        "customer.subscription.updated",
        T0 + 480,
        "sub_1",
    );
    decide(&mut decider, vec![earlier], &mut appending).await;
    unblock.await.expect("the unlocking task");
    let decided = finish(&mut decider, &mut appending).await;
    let BatchOutcome::Appended { plans, .. } = &decided.outcome else {
        panic!("the batch failed");
    };
    let super::Plan::Delivery(plan) = &plans[0] else {
        panic!("not a delivery");
    };
    let reply = plan.reply(&[]);
    let Some(proto::delivery_reply::Result::Recorded(recorded)) = reply.result else {
        panic!("not recorded");
    };
    assert_eq!(
        recorded.outcome(),
        proto::DeliveryOutcome::Stale,
        "{}",
        recorded.reason
    );
}

#[tokio::test]
async fn a_delivery_after_a_registration_whose_email_is_taken_finds_the_email_s_owner() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let customer_id = ada_registered(&mut decider, &mut appending).await;

    // Another registration with the same email (another key): the store refuses it, so the
    // delivery after it in the batch must find the email's owner, not the refused customer.
    let decided = ada_and_her_stripe_customer(&mut decider, &mut appending, "another").await;
    let BatchOutcome::Appended { plans, outcomes } = &decided.outcome else {
        panic!("the batch failed");
    };
    // The registration is refused as the store refuses a key another customer holds.
    let refused = match &plans[0] {
        super::Plan::Append { request_index, .. } => super::store_rejection(
            outcomes[*request_index]
                .as_ref()
                .expect_err("the registration refused"),
        ),
        super::Plan::Refused(reply) => reply.clone(),
        _ => panic!("not a command's plan"),
    };
    let Some(proto::command_reply::Result::Rejected(rejected)) = refused.result else {
        panic!("not refused: {refused:?}");
    };
    assert_eq!(rejected.code, "unique_key_taken");
    let recorded = delivery_recorded(plans, outcomes, 1);
    assert_eq!(recorded.customer_id, customer_id.to_string());
    assert_eq!(recorded.global_positions.len(), 1, "{}", recorded.reason);
    assert_eq!(
        event_types(&decider, customer_id).await,
        ["customer_registered", "provider_account_linked"]
    );
}

#[tokio::test]
async fn a_delivery_joining_a_batch_of_commands_is_not_decided_on_a_retry_s_effects() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let customer_id = ada_registered(&mut decider, &mut appending).await;

    // A batch being appended, so that what is queued meanwhile joins the next batch.
    decide(
        &mut decider,
        incoming(register("someone", "grace@example.com")),
        &mut appending,
    )
    .await;
    // The next batch holds commands only (a retry of the registration); the delivery queued
    // meanwhile joins it, and must find the customer by its email as if the retry were alone.
    let (queue, mut queued) = tokio::sync::mpsc::channel(8);
    queue
        .send(stripe_customer(
            "evt_1",
            "customer.created",
            T0,
            "cus_1",
            "ada@example.com",
        ))
        .await
        .expect("queued");
    let mut announced = Vec::new();
    decider
        .decide_and_append(
            incoming(register("register", "ada@example.com")),
            (&mut queued, 1_000),
            &mut appending,
            &mut announced,
        )
        .await
        .expect("the batch decided");
    assert!(queued.try_recv().is_err(), "the delivery joined the batch");
    let decided = finish(&mut decider, &mut appending).await;
    assert_eq!(decided.batch.len(), 2);
    let BatchOutcome::Appended { plans, outcomes } = &decided.outcome else {
        panic!("the batch failed");
    };
    let recorded = delivery_recorded(plans, outcomes, 1);
    assert_eq!(recorded.customer_id, customer_id.to_string());
    assert_eq!(
        event_types(&decider, customer_id).await,
        ["customer_registered", "provider_account_linked"]
    );
}

#[tokio::test]
async fn a_registration_whose_email_is_taken_releases_no_delivery_waiting_for_its_account() {
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    ada_registered(&mut decider, &mut appending).await;
    // A subscription of a Stripe customer the ledger does not know, without an email: it
    // waits for the customer's account.
    decide(
        &mut decider,
        vec![stripe_subscription(
            "evt_sub",
            "customer.subscription.created",
            T0 + 60,
            "sub_1",
        )],
        &mut appending,
    )
    .await;
    finish(&mut decider, &mut appending).await;
    assert_eq!(
        decider
            .store
            .waiting_deliveries()
            .await
            .expect("waiting")
            .len(),
        1
    );

    // A registration with that account but an email another customer holds: the store
    // refuses it, so nothing it would make known may release the subscription.
    let mut taken = register("another", "ada@example.com");
    if let Some(proto::command::Kind::RegisterCustomer(body)) = taken.kind.as_mut() {
        body.provider_account = Some(proto::ProviderAccount {
            provider: proto::PaymentProvider::Stripe as i32,
            account_id: "cus_1".to_owned(),
        });
    }
    decide(&mut decider, incoming(taken), &mut appending).await;
    let decided = finish(&mut decider, &mut appending).await;
    let BatchOutcome::Appended { outcomes, .. } = &decided.outcome else {
        panic!("the batch failed");
    };
    assert!(
        outcomes.iter().all(|outcome| outcome.is_ok()),
        "a request decided on a refused registration: {outcomes:?}"
    );
    let waiting = decider.store.waiting_deliveries().await.expect("waiting");
    assert_eq!(waiting.len(), 1, "the subscription no longer waits");
}

/// The first customer to hold a provider object keeps it, also against a later holder in the
/// batch being appended: a dispute of a charge recorded for one customer, then (wrongly) for
/// another in the batch being appended, goes to the first (found by the review of decision
/// 0037: the batches' own claims were looked at first, and the dispute went to the second).
#[tokio::test]
async fn a_provider_object_goes_to_its_first_holder_whatever_the_batch_being_appended_says() {
    use ledger_testkit::commands::record_payment;
    let database = TestDb::new().await;
    let mut decider = decider(&database).await;
    let mut appending = None;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    for (customer_id, name) in [(first, "first"), (second, "second")] {
        let mut registered = register(&format!("register:{name}"), &format!("{name}@example.com"));
        if let Some(metadata) = registered.metadata.as_mut() {
            metadata.customer_id = customer_id.to_string();
        }
        let started = start_subscription(
            &format!("start:{name}"),
            &customer_id.to_string(),
            "sub_1",
            "USD",
        );
        decide(&mut decider, incoming(registered), &mut appending).await;
        decide(&mut decider, incoming(started), &mut appending).await;
    }
    let paid = record_payment("paid:first", &first.to_string(), "ch_dup", 4_900);
    decide(&mut decider, incoming(paid), &mut appending).await;
    finish(&mut decider, &mut appending).await;

    let unblock = hold_appends(&database, Duration::from_millis(500)).await;
    let paid = record_payment("paid:second", &second.to_string(), "ch_dup", 4_900);
    decide(&mut decider, incoming(paid), &mut appending).await;
    let disputed = stripe(
        "evt_dp_dup",
        "charge.dispute.created",
        T0 + 300,
        serde_json::json!({"id": "dp_dup", "object": "dispute", "amount": 4_900,
                           "currency": "usd", "charge": "ch_dup", "status": "needs_response"}),
    );
    decide(&mut decider, vec![disputed], &mut appending).await;
    unblock.await.expect("the unlocking task");
    finish(&mut decider, &mut appending).await;
    let last = |types: Vec<String>| types.last().cloned().unwrap_or_default();
    assert_eq!(last(event_types(&decider, first).await), "dispute_opened");
    assert_eq!(
        last(event_types(&decider, second).await),
        "payment_succeeded"
    );
}
