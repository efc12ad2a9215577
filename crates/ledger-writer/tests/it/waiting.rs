//! Deliveries waiting for an object the ledger has not seen yet: recorded `waiting`, then
//! decided again by the writer in the batch that makes the object known (a delivery or a
//! command), across restarts; and the look-ups of the customer holding a payment (PayPal
//! refunds, Stripe disputes).

use std::collections::BTreeMap;

use ledger_domain::{Customer, Provider, decode_event, evolve, proto};
use ledger_store::{InboxFilter, InboxOutcome, InboxRow};
use ledger_testkit::commands::{command, money, register, start_subscription, through};
use ledger_testkit::ledger::{TestLedger, eventually};
use serde_json::{Value, json};

/// 2025-11-24T16:00:00Z, the time of the first event; later ones are a minute apart.
const T0: i64 = 1_764_000_000;

fn stripe_event(id: &str, event_type: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": event_type, "created": created,
        "data": {"object": object}
    }))
    .expect("JSON")
}

fn stripe(body: Vec<u8>) -> proto::ProviderDelivery {
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: body.into(),
        received_at_unix_micros: T0 * 1_000_000,
        ..proto::ProviderDelivery::default()
    }
}

fn paypal(body: &Value) -> proto::ProviderDelivery {
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::Paypal as i32,
        ..stripe(serde_json::to_vec(body).expect("JSON"))
    }
}

/// The Stripe deliveries of one customer's life, ids suffixed with `tag`: the customer, a
/// subscription, its first invoice paid by a charge, and the charge refunded in part.
struct StripeLife {
    account: String,
    customer: Vec<u8>,
    subscription: Vec<u8>,
    invoice_paid: Vec<u8>,
    charge_refunded: Vec<u8>,
}

impl StripeLife {
    fn new(tag: &str) -> StripeLife {
        let account = format!("cus_{tag}");
        let subscription_id = format!("sub_{tag}");
        let invoice_id = format!("in_{tag}");
        let charge_id = format!("ch_{tag}");
        let customer = stripe_event(
            &format!("evt_cus_{tag}"),
            "customer.created",
            T0,
            json!({"id": account, "object": "customer", "email": format!("{tag}@example.com"),
                   "name": "Wanda"}),
        );
        let subscription = stripe_event(
            &format!("evt_sub_{tag}"),
            "customer.subscription.created",
            T0 + 60,
            json!({
                "id": subscription_id, "object": "subscription", "customer": account,
                "status": "active", "created": T0 + 60, "cancel_at_period_end": false,
                "items": {"data": [{
                    "quantity": 1, "current_period_end": T0 + 60 + 30 * 86_400,
                    "price": {"id": "price_pro", "unit_amount": 4_900, "currency": "usd",
                              "recurring": {"interval": "month", "interval_count": 1}}
                }]}
            }),
        );
        let invoice_paid = stripe_event(
            &format!("evt_in_{tag}"),
            "invoice.paid",
            T0 + 120,
            json!({
                "id": invoice_id, "object": "invoice", "customer": account,
                "subscription": subscription_id, "status": "paid", "currency": "usd",
                "amount_due": 4_900, "amount_paid": 4_900, "charge": charge_id,
                "lines": {"data": [{"period": {"start": T0 + 60,
                                               "end": T0 + 60 + 30 * 86_400}}]}
            }),
        );
        let charge_refunded = stripe_event(
            &format!("evt_ch_{tag}"),
            "charge.refunded",
            T0 + 180,
            json!({
                "id": charge_id, "object": "charge", "customer": account,
                "invoice": invoice_id, "currency": "usd", "amount": 4_900,
                "amount_refunded": 1_000,
                "refunds": {"data": [{"id": format!("re_{tag}"), "amount": 1_000,
                                      "status": "succeeded", "reason": "requested_by_customer"}]}
            }),
        );
        StripeLife {
            account,
            customer,
            subscription,
            invoice_paid,
            charge_refunded,
        }
    }

    /// The deliveries in the order they happened.
    fn in_order(&self) -> [&Vec<u8>; 4] {
        [
            &self.customer,
            &self.subscription,
            &self.invoice_paid,
            &self.charge_refunded,
        ]
    }
}

async fn deliver(
    client: &ledger_bus::Client,
    delivery: proto::ProviderDelivery,
) -> proto::DeliveryRecorded {
    client.deliver(&delivery).await.expect("recorded")
}

/// Asserts that `recorded` appended events to `customer_id`'s stream.
#[track_caller]
fn appended_to(recorded: &proto::DeliveryRecorded, customer_id: &str) {
    assert_eq!(
        (recorded.outcome(), recorded.customer_id.as_str()),
        (proto::DeliveryOutcome::Appended, customer_id),
        "{}",
        recorded.reason
    );
}

/// Asserts that no delivery waits any more.
async fn nothing_waits(ledger: &TestLedger) {
    let waiting = ledger.store.waiting_deliveries().await.expect("waiting");
    assert!(waiting.is_empty(), "{waiting:?}");
}

/// Every inbox row, oldest first.
async fn inbox(ledger: &TestLedger) -> Vec<InboxRow> {
    ledger
        .store
        .inbox_rows(&InboxFilter {
            limit: 1_000,
            oldest_first: true,
            ..InboxFilter::default()
        })
        .await
        .expect("inbox")
}

/// The customer's state, replayed from the table.
async fn customer(ledger: &TestLedger, customer_id: uuid::Uuid) -> Customer {
    let events = ledger
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("read");
    events.iter().fold(Customer::default(), |state, recorded| {
        let event = decode_event(&recorded.event.payload).expect("event");
        evolve(state, &event, recorded.event.occurred_at_unix_micros())
    })
}

/// The event types of a customer's stream, in order.
async fn event_types(ledger: &TestLedger, customer_id: uuid::Uuid) -> Vec<String> {
    ledger
        .store
        .read_stream(customer_id, 1)
        .await
        .expect("read")
        .into_iter()
        .map(|recorded| recorded.event.event_type)
        .collect()
}

/// What any order of deliveries must agree on: the profile, per subscription its plan,
/// quantity and status, per invoice its status and amount, per payment its amount, status and
/// refunded amount, the refunds and disputes.
fn summary(customer: &Customer) -> String {
    let mut lines = BTreeMap::new();
    if let Some(profile) = &customer.profile {
        lines.insert("profile".to_owned(), profile.email.clone());
    }
    for (id, held) in &customer.subscriptions {
        lines.insert(
            format!("subscription {id}"),
            format!("{} {} x{}", held.status, held.plan.plan_id, held.quantity),
        );
    }
    for (id, held) in &customer.invoices {
        lines.insert(
            format!("invoice {id}"),
            format!("{:?} {:?}", held.status, held.amount_due),
        );
    }
    for (id, held) in &customer.payments {
        lines.insert(
            format!("payment {id}"),
            format!("{:?} {:?} {:?}", held.status, held.amount, held.refunded),
        );
    }
    for (id, held) in &customer.refunds {
        lines.insert(format!("refund {id}"), format!("{:?}", held.amount));
    }
    for (id, held) in &customer.disputes {
        lines.insert(format!("dispute {id}"), format!("{:?}", held.status));
    }
    format!("{lines:#?}")
}

fn stripe_customer_id(account: &str) -> uuid::Uuid {
    ledger_connectors::customer_id_for_account(Provider::Stripe, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_paid_before_its_subscription_is_applied_once_the_subscription_arrives() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let life = StripeLife::new("w1");
    let customer_id = stripe_customer_id(&life.account);
    deliver(&client, stripe(life.customer.clone())).await;
    let waiting = deliver(&client, stripe(life.invoice_paid.clone())).await;
    assert_eq!(
        waiting.outcome(),
        proto::DeliveryOutcome::Waiting,
        "{}",
        waiting.reason
    );
    assert!(
        waiting
            .reason
            .starts_with("waiting for stripe subscription sub_w1"),
        "{}",
        waiting.reason
    );
    assert!(waiting.global_positions.is_empty());
    let listed = ledger
        .store
        .inbox_rows(&InboxFilter {
            outcome: Some(InboxOutcome::Waiting),
            limit: 10,
            ..InboxFilter::default()
        })
        .await
        .expect("inbox");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].row.awaited_object.as_deref(),
        Some("stripe:subscription:sub_w1")
    );

    // The subscription's delivery starts it, and the invoice waiting for it is applied in the
    // same batch, right after: one commit.
    let started = deliver(&client, stripe(life.subscription.clone())).await;
    assert_eq!(started.outcome(), proto::DeliveryOutcome::Appended);
    assert_eq!(
        event_types(&ledger, customer_id).await,
        [
            "customer_registered",
            "subscription_started",
            "invoice_issued",
            "invoice_finalized",
            "payment_succeeded"
        ]
    );
    let rows = inbox(&ledger).await;
    let original = rows
        .iter()
        .find(|row| row.row.outcome == InboxOutcome::Waiting)
        .expect("the waiting row");
    let rerun = rows
        .iter()
        .find(|row| row.row.renormalizes_inbox_id == Some(original.row.id))
        .expect("a re-run row of the waiting delivery");
    assert_eq!(rerun.row.outcome, InboxOutcome::Appended);
    assert_eq!(rerun.row.payment_id.as_deref(), Some("ch_w1"));
    assert_eq!(rerun.row.body, original.row.body);
    let events = ledger.table_events().await;
    let subscription_row = rows
        .iter()
        .find(|row| row.row.provider_event_id == "evt_sub_w1")
        .expect("the subscription's row");
    assert_eq!(
        rerun.recorded_at, subscription_row.recorded_at,
        "one transaction"
    );
    let payment = events
        .iter()
        .find(|event| event.event.event_type == "payment_succeeded")
        .expect("the payment");
    assert_eq!(payment.event.causation_id, Some(rerun.row.id));

    // A redelivery of the invoice and of the subscription change nothing.
    let position = ledger.last_position().await;
    for body in [&life.invoice_paid, &life.subscription] {
        let again = deliver(&client, stripe(body.clone())).await;
        assert_eq!(again.outcome(), proto::DeliveryOutcome::Duplicate);
    }
    assert_eq!(ledger.last_position().await, position);
    ledger.assert_stream_matches_table().await;
    writer.stop().await.expect("the writer stops");
}

/// An invoice waiting for a Stripe subscription that the company's own billing starts under
/// the same id is applied once Stripe reports the subscription (a `plan_changed` of the
/// subscription the customer holds). Found by the mixed-traffic helper: only a
/// `subscription_started` of Stripe released it, so the invoice waited for good, its
/// redelivery a `duplicate`, while a new delivery of it was applied at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_waits_no_more_once_stripe_reports_a_subscription_started_internally() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let life = StripeLife::new("w9");
    let customer_id = stripe_customer_id(&life.account);
    deliver(&client, stripe(life.customer.clone())).await;
    let waiting = deliver(&client, stripe(life.invoice_paid.clone())).await;
    assert_eq!(waiting.outcome(), proto::DeliveryOutcome::Waiting);
    let mut started = through(
        proto::PaymentProvider::Internal,
        "",
        start_subscription("own-start", &customer_id.to_string(), "sub_w9", "USD"),
    );
    if let Some(metadata) = started.metadata.as_mut() {
        metadata.occurred_at_unix_micros = (T0 + 30) * 1_000_000;
    }
    client.send(&started).await.expect("started");
    let reported = deliver(&client, stripe(life.subscription.clone())).await;
    assert_eq!(
        reported.outcome(),
        proto::DeliveryOutcome::Appended,
        "{}",
        reported.reason
    );
    assert_eq!(
        event_types(&ledger, customer_id).await,
        [
            "customer_registered",
            "subscription_started",
            "plan_changed",
            "invoice_issued",
            "invoice_finalized",
            "payment_succeeded"
        ]
    );
    nothing_waits(&ledger).await;
    ledger.assert_stream_matches_table().await;
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_before_its_invoice_before_its_subscription_is_applied_in_a_cascade() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let life = StripeLife::new("w2");
    deliver(&client, stripe(life.customer.clone())).await;
    let refund = deliver(&client, stripe(life.charge_refunded.clone())).await;
    assert_eq!(refund.outcome(), proto::DeliveryOutcome::Waiting);
    assert!(
        refund.reason.contains("stripe invoice in_w2"),
        "{}",
        refund.reason
    );
    let invoice = deliver(&client, stripe(life.invoice_paid.clone())).await;
    assert_eq!(invoice.outcome(), proto::DeliveryOutcome::Waiting);

    // The subscription releases the invoice, whose payment releases the refund.
    deliver(&client, stripe(life.subscription.clone())).await;
    let customer_id = stripe_customer_id(&life.account);
    let held = customer(&ledger, customer_id).await;
    assert_eq!(held.payments["ch_w2"].refunded.amount_minor, 1_000);
    assert!(held.refunds.contains_key("re_w2"));
    let types = event_types(&ledger, customer_id).await;
    assert_eq!(
        types
            .iter()
            .filter(|kind| *kind == "payment_succeeded")
            .count(),
        1
    );
    assert_eq!(types.last().map(String::as_str), Some("payment_refunded"));
    let rows = inbox(&ledger).await;
    for waited in [&refund, &invoice] {
        let reruns: Vec<&InboxRow> = rows
            .iter()
            .filter(|row| {
                row.row.renormalizes_inbox_id.map(|id| id.to_string())
                    == Some(waited.inbox_id.clone())
            })
            .collect();
        assert_eq!(reruns.len(), 1, "one re-run of {}", waited.inbox_id);
        assert_eq!(reruns[0].row.outcome, InboxOutcome::Appended);
    }
    nothing_waits(&ledger).await;
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_started_after_the_waiting_delivery_releases_it() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let life = StripeLife::new("w3");
    deliver(&client, stripe(life.customer.clone())).await;
    let waiting = deliver(&client, stripe(life.invoice_paid.clone())).await;
    assert_eq!(waiting.outcome(), proto::DeliveryOutcome::Waiting);
    writer.stop().await.expect("the writer stops");

    // A new writer (a restart, or a standby taking over) reads what waits from the inbox.
    let writer = ledger.start_writer();
    deliver(&client, stripe(life.subscription.clone())).await;
    let held = customer(&ledger, stripe_customer_id(&life.account)).await;
    assert_eq!(held.payments["ch_w3"].amount.amount_minor, 4_900);
    assert_eq!(held.invoices.len(), 1);
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_order_of_a_stripe_lifecycle_ends_where_in_order_delivery_ends() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    // Indexes into `StripeLife::in_order`: customer, subscription, invoice, refund.
    let orders: [[usize; 4]; 6] = [
        [0, 1, 2, 3],
        [3, 2, 1, 0],
        [2, 3, 0, 1],
        [1, 3, 2, 0],
        [3, 0, 2, 1],
        [1, 0, 3, 2],
    ];
    let mut summaries = Vec::new();
    for (index, order) in orders.iter().enumerate() {
        let life = StripeLife::new(&format!("perm{index}"));
        let deliveries = life.in_order();
        for position in order {
            let recorded = deliver(&client, stripe(deliveries[*position].clone())).await;
            assert_ne!(
                recorded.outcome(),
                proto::DeliveryOutcome::Failed,
                "{}",
                recorded.reason
            );
        }
        let held = customer(&ledger, stripe_customer_id(&life.account)).await;
        summaries.push(summary(&held).replace(&format!("perm{index}"), "TAG"));
    }
    // The same lifecycle with every delivery sent at once: whatever the batches, the end is
    // the same.
    let life = StripeLife::new("together");
    let deliveries: Vec<proto::ProviderDelivery> = life
        .in_order()
        .iter()
        .rev()
        .map(|body| stripe((*body).clone()))
        .collect();
    let answers =
        futures_util::future::join_all(deliveries.iter().map(|delivery| client.deliver(delivery)))
            .await;
    assert!(answers.iter().all(Result::is_ok));
    let held = customer(&ledger, stripe_customer_id(&life.account)).await;
    summaries.push(summary(&held).replace("together", "TAG"));
    assert!(summaries[0].contains("refund re_TAG"), "{}", summaries[0]);
    for (index, summary) in summaries.iter().enumerate() {
        assert_eq!(summary, &summaries[0], "order {index}");
    }
    nothing_waits(&ledger).await;
    writer.stop().await.expect("the writer stops");
}

/// A PayPal subscription snapshot (the connector's own test data), dated `time`.
fn paypal_activation(event_id: &str, time: &str) -> Value {
    let mut body: Value = serde_json::from_str(include_str!(
        "../../../ledger-connectors/tests/data/paypal/BILLING.SUBSCRIPTION.ACTIVATED.v2.json"
    ))
    .expect("JSON");
    body["id"] = event_id.into();
    body["create_time"] = time.into();
    body
}

fn paypal_sale(event_id: &str, sale_id: &str, subscription_id: &str, time: &str) -> Value {
    json!({
        "id": event_id, "event_version": "1.0", "create_time": time,
        "resource_type": "sale", "event_type": "PAYMENT.SALE.COMPLETED",
        "resource": {
            "id": sale_id, "state": "completed",
            "amount": {"total": "4.99", "currency": "USD"},
            "billing_agreement_id": subscription_id, "create_time": time
        }
    })
}

fn paypal_refund(event_id: &str, refund_id: &str, sale_id: &str, time: &str) -> Value {
    json!({
        "id": event_id, "event_version": "1.0", "create_time": time,
        "resource_type": "refund", "event_type": "PAYMENT.SALE.REFUNDED",
        "resource": {
            "id": refund_id, "state": "completed", "sale_id": sale_id,
            "amount": {"total": "1.00", "currency": "USD"}, "create_time": time
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_sales_and_refunds_wait_for_their_subscription_and_sale() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    // A sale before its subscription waits for it.
    let sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-SALE-1",
            "SALE1",
            "I-W0Y05RHBK9VG",
            "2026-02-02T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(
        sale.outcome(),
        proto::DeliveryOutcome::Waiting,
        "{}",
        sale.reason
    );
    // A refund before its sale waits for the sale.
    let early_refund = deliver(
        &client,
        paypal(&paypal_refund(
            "WH-REFUND-2",
            "REFUND2",
            "SALE2",
            "2026-02-03T10:00:00Z",
        )),
    )
    .await;
    assert_eq!(
        early_refund.outcome(),
        proto::DeliveryOutcome::Waiting,
        "{}",
        early_refund.reason
    );
    let activated = deliver(
        &client,
        paypal(&paypal_activation("WH-ACT", "2026-02-01T09:00:30Z")),
    )
    .await;
    assert_eq!(activated.outcome(), proto::DeliveryOutcome::Appended);
    let customer_id: uuid::Uuid = activated.customer_id.parse().expect("UUID");
    assert!(
        customer(&ledger, customer_id)
            .await
            .payments
            .contains_key("SALE1")
    );

    // A refund of a sale the ledger holds: its customer is the one holding the payment.
    let refund = deliver(
        &client,
        paypal(&paypal_refund(
            "WH-REFUND-1",
            "REFUND1",
            "SALE1",
            "2026-02-03T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(
        refund.outcome(),
        proto::DeliveryOutcome::Appended,
        "{}",
        refund.reason
    );
    assert_eq!(refund.customer_id, activated.customer_id);
    // The second sale releases the refund that waited for it.
    let second = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-SALE-2",
            "SALE2",
            "I-W0Y05RHBK9VG",
            "2026-02-03T08:00:00Z",
        )),
    )
    .await;
    assert_eq!(second.outcome(), proto::DeliveryOutcome::Appended);
    let held = customer(&ledger, customer_id).await;
    assert_eq!(held.payments["SALE1"].refunded.amount_minor, 100);
    assert_eq!(held.payments["SALE2"].refunded.amount_minor, 100);
    assert_eq!(held.refunds.len(), 2);

    // A sale of a subscription the company starts itself (a Subscriptions v1 plan without an
    // inline price): released by the company's own start_subscription.
    let company_sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-SALE-3",
            "SALE3",
            "I-COMPANY",
            "2026-02-04T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(company_sale.outcome(), proto::DeliveryOutcome::Waiting);
    let registered = client
        .send(&register("signup:hopper", "hopper@example.com"))
        .await
        .expect("registered");
    let accepted = registered;
    let mut started =
        start_subscription("start:I-COMPANY", &accepted.customer_id, "I-COMPANY", "USD");
    if let Some(metadata) = started.metadata.as_mut() {
        metadata.payment_provider = proto::PaymentProvider::Paypal as i32;
    }
    client.send(&started).await.expect("started");
    let hopper = customer(&ledger, accepted.customer_id.parse().expect("UUID")).await;
    assert_eq!(hopper.payments["SALE3"].amount.amount_minor, 499);
    nothing_waits(&ledger).await;
    writer.stop().await.expect("the writer stops");
}

/// A dispute as Stripe sends it (API 2025-03-31): the charge and payment intent as ids, no
/// customer.
fn stripe_dispute(event_id: &str, event_type: &str, created: i64, status: &str) -> Vec<u8> {
    stripe_event(
        event_id,
        event_type,
        created,
        json!({
            "id": "dp_w5", "object": "dispute", "amount": 4_900, "currency": "usd",
            "charge": "ch_w5", "payment_intent": "pi_w5", "reason": "fraudulent",
            "status": status, "created": created, "livemode": false,
            "is_charge_refundable": false, "balance_transactions": []
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_dispute_finds_its_customer_through_the_disputed_payment() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let life = StripeLife::new("w5");
    for body in [&life.customer, &life.subscription] {
        deliver(&client, stripe(body.clone())).await;
    }
    // Opened before the payment of its charge is known: waits for it.
    let opened = deliver(
        &client,
        stripe(stripe_dispute(
            "evt_dp_created",
            "charge.dispute.created",
            T0 + 300,
            "needs_response",
        )),
    )
    .await;
    assert_eq!(
        opened.outcome(),
        proto::DeliveryOutcome::Waiting,
        "{}",
        opened.reason
    );
    assert!(
        opened.reason.contains("stripe payment ch_w5"),
        "{}",
        opened.reason
    );
    deliver(&client, stripe(life.invoice_paid.clone())).await;
    let customer_id = stripe_customer_id(&life.account);
    let held = customer(&ledger, customer_id).await;
    assert_eq!(
        held.disputes["dp_w5"].status,
        ledger_domain::DisputeStatus::Open
    );
    // Closed, lost: found through the payment, in a later batch.
    let closed = deliver(
        &client,
        stripe(stripe_dispute(
            "evt_dp_closed",
            "charge.dispute.closed",
            T0 + 400,
            "lost",
        )),
    )
    .await;
    assert_eq!(
        closed.outcome(),
        proto::DeliveryOutcome::Appended,
        "{}",
        closed.reason
    );
    assert_eq!(closed.customer_id, customer_id.to_string());
    let types = event_types(&ledger, customer_id).await;
    assert_eq!(types.last().map(String::as_str), Some("dispute_closed"));
    assert_eq!(
        customer(&ledger, customer_id).await.disputes["dp_w5"].status,
        ledger_domain::DisputeStatus::Lost
    );
    // A dispute of a charge the ledger never recorded waits.
    let unknown = deliver(
        &client,
        stripe(stripe_event(
            "evt_dp_unknown",
            "charge.dispute.created",
            T0 + 500,
            json!({"id": "dp_x", "object": "dispute", "amount": 100, "currency": "usd",
                   "charge": "ch_unknown", "status": "needs_response"}),
        )),
    )
    .await;
    assert_eq!(unknown.outcome(), proto::DeliveryOutcome::Waiting);
    writer.stop().await.expect("the writer stops");
}

/// `record_payment_succeeded` of 4.99 USD for `subscription_id`, as the company's own billing
/// records a PayPal sale.
fn paypal_payment_recorded(
    customer_id: &str,
    sale_id: &str,
    subscription_id: &str,
) -> proto::Command {
    through(
        proto::PaymentProvider::Paypal,
        "",
        command(
            &format!("record:{sale_id}"),
            customer_id,
            proto::command::Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: sale_id.to_owned(),
                invoice_id: String::new(),
                subscription_id: subscription_id.to_owned(),
                amount: Some(money(499, "USD")),
            }),
        ),
    )
}

/// Registers `<name>@example.com` and starts for them, as the company's own billing does for a
/// PayPal plan without an inline price, the PayPal subscription `subscription_id`; returns the
/// customer id.
async fn with_paypal_subscription(
    client: &ledger_bus::Client,
    name: &str,
    subscription_id: &str,
) -> String {
    let customer_id = client
        .send(&register(
            &format!("signup:{name}"),
            &format!("{name}@example.com"),
        ))
        .await
        .expect("registered")
        .customer_id;
    let started = through(
        proto::PaymentProvider::Paypal,
        "",
        start_subscription(
            &format!("start:{name}"),
            &customer_id,
            subscription_id,
            "USD",
        ),
    );
    client.send(&started).await.expect("started");
    customer_id
}

/// A PayPal sale of a subscription the company started with its own `start_subscription`, and
/// a refund of a sale it recorded with its own `record_payment_succeeded`, each delivered in a
/// batch after the command's: found through the objects the commands recorded as held
/// (`provider_objects`). Found by the PayPal mixed-traffic helper: both waited for good after
/// a 200, since the customer of a sale was looked up only in the batch and in the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_payments_of_what_commands_recorded_find_their_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = with_paypal_subscription(&client, "lovelace", "I-R2").await;
    client
        .send(&paypal_payment_recorded(&customer_id, "SALE0R2", "I-R2"))
        .await
        .expect("recorded");

    let sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-R2-SALE",
            "SALE1R2",
            "I-R2",
            "2026-02-04T09:00:00Z",
        )),
    )
    .await;
    appended_to(&sale, &customer_id);
    let refund = deliver(
        &client,
        paypal(&paypal_refund(
            "WH-R2-REFUND",
            "REFUNDR2",
            "SALE0R2",
            "2026-02-05T09:00:00Z",
        )),
    )
    .await;
    appended_to(&refund, &customer_id);
    let held = customer(&ledger, customer_id.parse().expect("UUID")).await;
    assert_eq!(held.payments["SALE1R2"].amount.amount_minor, 499);
    assert_eq!(held.payments["SALE0R2"].refunded.amount_minor, 100);
    nothing_waits(&ledger).await;

    // A writer started afresh finds them in the store too.
    writer.stop().await.expect("the writer stops");
    let writer = ledger.start_writer();
    let later = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-R2-SALE-2",
            "SALE2R2",
            "I-R2",
            "2026-03-04T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(later.customer_id, customer_id, "{}", later.reason);
    writer.stop().await.expect("the writer stops");
}

/// A PayPal subscription message about a subscription the company started for a customer goes
/// to that customer, whatever payer it names: its unknown payer account is linked there, and
/// no second customer is registered with the payer's email to hold a copy of the subscription.
/// Found by the PayPal mixed-traffic helper (`I-r5` started on two customers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paypal_subscription_message_goes_to_the_customer_holding_the_subscription() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = with_paypal_subscription(&client, "noether", "I-W0Y05RHBK9VG").await;
    // The fixture's payer: LEDGERPAYER02, grace@example.com, neither known to the ledger.
    let activated = deliver(
        &client,
        paypal(&paypal_activation("WH-ACT-R5", "2026-02-01T09:00:30Z")),
    )
    .await;
    assert_eq!(activated.customer_id, customer_id, "{}", activated.reason);
    let payer = ledger_connectors::customer_id_for_account(Provider::Paypal, "LEDGERPAYER02");
    assert_eq!(event_types(&ledger, payer).await, Vec::<String>::new());
    let held = customer(&ledger, customer_id.parse().expect("UUID")).await;
    assert!(
        held.provider_accounts
            .iter()
            .any(|account| account.account_id == "LEDGERPAYER02"),
        "{:?}",
        held.provider_accounts
    );
    let sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-R5-SALE",
            "SALE-R5",
            "I-W0Y05RHBK9VG",
            "2026-02-02T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(sale.customer_id, customer_id, "{}", sale.reason);
    writer.stop().await.expect("the writer stops");
}

/// The same for a Stripe dispute of a charge the company recorded with its own command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_dispute_of_a_payment_a_command_recorded_finds_its_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = client
        .send(&register("signup:germain", "germain@example.com"))
        .await
        .expect("registered")
        .customer_id;
    client
        .send(&start_subscription(
            "start:sub_g",
            &customer_id,
            "sub_g",
            "USD",
        ))
        .await
        .expect("started");
    let mut recorded = paypal_payment_recorded(&customer_id, "ch_g", "sub_g");
    recorded = through(proto::PaymentProvider::Stripe, "cus_g", recorded);
    client.send(&recorded).await.expect("recorded");
    let opened = deliver(
        &client,
        stripe(stripe_event(
            "evt_dp_g",
            "charge.dispute.created",
            T0 + 300,
            json!({"id": "dp_g", "object": "dispute", "amount": 499, "currency": "usd",
                   "charge": "ch_g", "reason": "fraudulent", "status": "needs_response",
                   "created": T0 + 300}),
        )),
    )
    .await;
    appended_to(&opened, &customer_id);
    writer.stop().await.expect("the writer stops");
}

/// The same when the message's payer account is another customer's: the subscription's
/// messages go to its holder, the account stays with its owner (not linked: it cannot be), and
/// the account's owner gets no copy of the subscription (found by the review of decision 0037:
/// the account was looked up first, so the activation started a copy on its owner and the
/// later suspension paused that copy while the sales went to the holder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paypal_subscription_message_goes_to_the_holder_even_when_its_payer_is_another_customer()
{
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let payer = client
        .send(&register("signup:hahn", "hahn@example.com"))
        .await
        .expect("registered")
        .customer_id;
    let linked = command(
        "link:hahn",
        &payer,
        proto::command::Kind::LinkProviderAccount(proto::ProviderAccountLinked {
            provider_account: Some(proto::ProviderAccount {
                provider: proto::PaymentProvider::Paypal as i32,
                account_id: "LEDGERPAYER02".to_owned(),
            }),
        }),
    );
    client.send(&linked).await.expect("linked");
    let holder = with_paypal_subscription(&client, "meitner", "I-W0Y05RHBK9VG").await;
    let activated = deliver(
        &client,
        paypal(&paypal_activation("WH-ACT-HOLDER", "2026-02-01T09:00:30Z")),
    )
    .await;
    appended_to(&activated, &holder);
    assert_eq!(
        event_types(&ledger, payer.parse().expect("UUID")).await,
        ["customer_registered", "provider_account_linked"]
    );
    writer.stop().await.expect("the writer stops");
}

/// An id of up to 255 bytes, all the domain takes, is held and found: the object's key is
/// longer than the id (found by the review of decision 0037: keys were cut at 255 bytes, so
/// the sale of a 240-byte subscription id was recorded `ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_of_a_subscription_with_a_255_byte_id_finds_its_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let subscription_id = format!("I-{}", "L".repeat(253));
    let customer_id = with_paypal_subscription(&client, "long", &subscription_id).await;
    let sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-LONG-SALE",
            "SALE-LONG",
            &subscription_id,
            "2026-02-04T09:00:00Z",
        )),
    )
    .await;
    appended_to(&sale, &customer_id);
    writer.stop().await.expect("the writer stops");
}

/// The objects of a store upgraded from before the writer kept `provider_objects` (migration
/// V15): the writer that wins the lock first records what the events recorded before show, so
/// a PayPal sale of a subscription the company started then, and a refund of a sale it
/// recorded then, find their customer; a sale already waiting for such a subscription is
/// decided again. The pass resumes where it stopped and runs once. Without it, all of these
/// waited for good (the upgrade gap decision 0037 left open; the waiting sale found by the
/// try-it pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_commands_recorded_before_the_upgrade_find_their_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = with_paypal_subscription(&client, "hopper", "I-F1").await;
    let recorded = client
        .send(&paypal_payment_recorded(&customer_id, "SALE0F1", "I-F1"))
        .await
        .expect("recorded");
    writer.stop().await.expect("the writer stops");
    let owner = ledger.database().client().await;
    let held = || async {
        owner
            .query(
                "SELECT object_key, customer_id::text FROM provider_objects ORDER BY object_key",
                &[],
            )
            .await
            .expect("provider objects")
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let fill_from = || async {
        owner
            .query_opt("SELECT from_position FROM provider_objects_fill", &[])
            .await
            .expect("the pass's row")
            .map(|row| row.get::<_, i64>(0))
    };
    assert_eq!(
        fill_from().await,
        None,
        "a new store's first writer ran the pass"
    );

    // What an upgrade leaves: the objects only commands recorded are not in the table. A pass
    // stopped after the subscription's event resumes with the payment's.
    let upgraded = |from_position: i64| {
        format!(
            "DELETE FROM provider_objects; \
             INSERT INTO provider_objects_fill (from_position) VALUES ({from_position})"
        )
    };
    let payment_position = i64::try_from(recorded.events[0].global_position).expect("a position");
    owner
        .batch_execute(&upgraded(payment_position))
        .await
        .expect("upgraded");
    let writer = ledger.start_writer();
    assert!(
        eventually(10_000, || async { fill_from().await.is_none() }).await,
        "the pass ends"
    );
    assert_eq!(
        held().await,
        [("paypal:payment:SALE0F1".to_owned(), customer_id.clone())]
    );
    // The subscription is not held: its sale waits, as it did before the upgrade.
    let sale = deliver(
        &client,
        paypal(&paypal_sale(
            "WH-F1-SALE",
            "SALE1F1",
            "I-F1",
            "2026-02-04T09:00:00Z",
        )),
    )
    .await;
    assert_eq!(
        sale.outcome(),
        proto::DeliveryOutcome::Waiting,
        "{}",
        sale.reason
    );
    writer.stop().await.expect("the writer stops");

    // An object held since before the sale waited is not news to it (it waits for another
    // reason): a start does not decide it again.
    owner
        .batch_execute(&format!(
            "INSERT INTO provider_objects VALUES \
             ('paypal:subscription:I-F1', '{customer_id}', '2000-01-01T00:00:00Z')"
        ))
        .await
        .expect("held long ago");
    let writer = ledger.start_writer();
    client
        .send(&register("signup:turing", "turing@example.com"))
        .await
        .expect("the writer leads");
    writer.stop().await.expect("the writer stops");
    assert_eq!(
        ledger
            .store
            .waiting_deliveries()
            .await
            .expect("waiting")
            .len(),
        1,
        "the sale still waits"
    );

    // The whole pass: the subscription is recorded, and the sale waiting for it is decided
    // again at once (no batch will make the subscription known again).
    owner.batch_execute(&upgraded(1)).await.expect("upgraded");
    let writer = ledger.start_writer();
    let customer_uuid = customer_id.parse().expect("UUID");
    assert!(
        eventually(10_000, || async {
            customer(&ledger, customer_uuid)
                .await
                .payments
                .contains_key("SALE1F1")
        })
        .await,
        "the waiting sale is applied"
    );
    nothing_waits(&ledger).await;
    let refund = deliver(
        &client,
        paypal(&paypal_refund(
            "WH-F1-REFUND",
            "REFUNDF1",
            "SALE0F1",
            "2026-02-05T09:00:00Z",
        )),
    )
    .await;
    appended_to(&refund, &customer_id);
    assert_eq!(
        held().await,
        [
            ("paypal:payment:SALE0F1".to_owned(), customer_id.clone()),
            ("paypal:payment:SALE1F1".to_owned(), customer_id.clone()),
            ("paypal:subscription:I-F1".to_owned(), customer_id.clone()),
        ]
    );
    writer.stop().await.expect("the writer stops");
}
