//! Provider deliveries through the writer: concurrent deliveries about the same customers give
//! the result of one after the other, every delivery is recorded, a rejected command leaves
//! nothing of its delivery behind, and a page of deliveries is decided as its deliveries one
//! after the other.

use std::collections::BTreeMap;

use ledger_domain::{Provider, proto};
use ledger_store::{InboxFilter, InboxOutcome};
use ledger_testkit::commands::register;
use ledger_testkit::ledger::TestLedger;

fn customer_event(event_id: &str, event_type: &str, account_id: &str, email: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": event_id, "object": "event", "type": event_type, "created": 1_764_000_000,
        "data": {"object": {"id": account_id, "object": "customer", "email": email, "name": "N"}}
    }))
    .expect("JSON")
}

/// Every inbox row, newest first.
async fn inbox(ledger: &TestLedger) -> Vec<ledger_store::InboxRow> {
    ledger
        .store
        .inbox_rows(&InboxFilter {
            limit: 1_000,
            ..InboxFilter::default()
        })
        .await
        .expect("inbox")
}

fn delivery(body: Vec<u8>) -> proto::ProviderDelivery {
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: body.into(),
        received_at_unix_micros: 1_764_000_000_000_000,
        ..proto::ProviderDelivery::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_about_the_same_customers_act_as_if_sent_one_after_the_other() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    const ACCOUNTS: usize = 20;
    let mut deliveries = Vec::new();
    for account in 0..ACCOUNTS {
        let account_id = format!("cus_{account}");
        let email = format!("c{account}@example.com");
        let created = customer_event(
            &format!("evt_c{account}"),
            "customer.created",
            &account_id,
            &email,
        );
        let updated = customer_event(
            &format!("evt_u{account}"),
            "customer.updated",
            &account_id,
            &email,
        );
        deliveries.push(delivery(created.clone()));
        deliveries.push(delivery(updated));
        deliveries.push(delivery(created));
    }
    // All at once: they reach the writer's queue together and are decided in batches.
    let answers =
        futures_util::future::join_all(deliveries.iter().map(|delivery| client.deliver(delivery)))
            .await;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for answer in &answers {
        let recorded = answer.as_ref().expect("recorded");
        *outcomes
            .entry(ledger_bus::delivery_outcome_name(recorded.outcome()))
            .or_default() += 1;
    }
    // Per account: one registration; the other delivery of the pair is already applied; the
    // repeated event id is a duplicate.
    assert_eq!(outcomes.get("appended"), Some(&ACCOUNTS), "{outcomes:?}");
    assert_eq!(outcomes.get("ignored"), Some(&ACCOUNTS), "{outcomes:?}");
    assert_eq!(outcomes.get("duplicate"), Some(&ACCOUNTS), "{outcomes:?}");
    assert_eq!(ledger.last_position().await, ACCOUNTS as u64);
    for account in 0..ACCOUNTS {
        let customer_id =
            ledger_connectors::customer_id_for_account(Provider::Stripe, &format!("cus_{account}"));
        let events = ledger
            .store
            .read_stream(customer_id, 1)
            .await
            .expect("read");
        assert_eq!(events.len(), 1, "one customer for cus_{account}");
    }
    let rows = inbox(&ledger).await;
    assert_eq!(rows.len(), 3 * ACCOUNTS, "every delivery is recorded");
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_leaves_nothing_of_its_delivery_and_is_recorded_as_failed() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    // Bob holds the email the Stripe customer will change to.
    client
        .send(&register("signup:bob", "bob@example.com"))
        .await
        .expect("bob");
    let created = customer_event("evt_1", "customer.created", "cus_ada", "ada@example.com");
    let first = client.deliver(&delivery(created)).await.expect("recorded");
    assert_eq!(first.outcome(), proto::DeliveryOutcome::Appended);
    let position = ledger.last_position().await;

    // A new registration for a second account with Bob's email links it to Bob instead (and
    // may update his profile from the snapshot: the delivery's commands, in order).
    let linked = customer_event("evt_2", "customer.created", "cus_bob", "  BOB@example.com");
    let second = client.deliver(&delivery(linked)).await.expect("recorded");
    assert_eq!(second.outcome(), proto::DeliveryOutcome::Appended);
    assert_eq!(second.global_positions.first(), Some(&(position + 1)));
    let bob = ledger
        .store
        .read_stream(second.customer_id.parse().expect("UUID"), 1)
        .await
        .expect("read");
    assert_eq!(
        bob[0].event.event_type, "customer_registered",
        "Bob's own registration"
    );
    assert_eq!(bob[1].event.event_type, "provider_account_linked");
    let position = ledger.last_position().await;
    assert_eq!(second.global_positions.last(), Some(&position));

    // A command that cannot be appended (Ada's account changing her email to Bob's, which he
    // holds): recorded as failed with the reason, nothing appended; its redelivery is a
    // duplicate.
    let bad = customer_event("evt_bad", "customer.updated", "cus_ada", "bob@example.com");
    let failed = client
        .deliver(&delivery(bad.clone()))
        .await
        .expect("recorded");
    assert_eq!(failed.outcome(), proto::DeliveryOutcome::Failed);
    assert!(
        failed
            .reason
            .contains("email:bob@example.com already belongs to customer"),
        "{}",
        failed.reason
    );
    assert!(failed.global_positions.is_empty());
    let again = client.deliver(&delivery(bad)).await.expect("recorded");
    assert_eq!(again.outcome(), proto::DeliveryOutcome::Duplicate);
    assert_eq!(ledger.last_position().await, position);

    // A malformed body is refused, not recorded.
    let refused = client
        .deliver(&delivery(b"{\"id\": 1}".to_vec()))
        .await
        .expect_err("malformed");
    assert_eq!(
        refused.rejection_kind(),
        Some(proto::RejectionKind::Malformed)
    );
    // A delivery with an unreadable re-normalization reference is refused.
    let mut mismatched = delivery(customer_event("evt_3", "customer.created", "x", "x@x.io"));
    mismatched.renormalizes_inbox_id = "not a uuid".to_owned();
    let refused = client.deliver(&mismatched).await.expect_err("malformed");
    assert_eq!(
        refused.rejection_kind(),
        Some(proto::RejectionKind::Malformed)
    );
    let rows = inbox(&ledger).await;
    let outcomes: Vec<InboxOutcome> = rows.iter().map(|row| row.row.outcome).collect();
    assert_eq!(
        outcomes,
        [
            InboxOutcome::Duplicate,
            InboxOutcome::Failed,
            InboxOutcome::Appended,
            InboxOutcome::Appended
        ],
        "newest first; the refused ones are not recorded"
    );
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_deliveries_is_decided_in_order_as_if_each_were_sent_alone() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("signup:bob", "bob@example.com"))
        .await
        .expect("bob");
    let position = ledger.last_position().await;
    let page = vec![
        delivery(customer_event(
            "evt_p0",
            "customer.created",
            "cus_p0",
            "p0@example.com",
        )),
        delivery(customer_event(
            "evt_p1",
            "customer.created",
            "cus_p1",
            "p1@example.com",
        )),
        // Sees the registration before it in the page: already applied.
        delivery(customer_event(
            "evt_p0u",
            "customer.updated",
            "cus_p0",
            "p0@example.com",
        )),
        // Not a Stripe event: refused alone, nothing of it recorded.
        delivery(b"{\"id\": 1}".to_vec()),
        // Bob holds the email: its command is rejected, recorded as failed.
        delivery(customer_event(
            "evt_p1u",
            "customer.updated",
            "cus_p1",
            "bob@example.com",
        )),
        delivery(customer_event(
            "evt_p2",
            "customer.created",
            "cus_p2",
            "p2@example.com",
        )),
    ];
    let outcome_names = |answers: &[Result<proto::DeliveryRecorded, proto::Rejected>]| {
        answers
            .iter()
            .map(|answer| match answer {
                Ok(recorded) => ledger_bus::delivery_outcome_name(recorded.outcome()).to_owned(),
                Err(rejected) => rejected.code.clone(),
            })
            .collect::<Vec<String>>()
    };
    let answers = client
        .deliver_page(Provider::Stripe, page.clone())
        .await
        .expect("the page is answered");
    assert_eq!(
        outcome_names(&answers),
        [
            "appended",
            "appended",
            "ignored",
            "malformed",
            "failed",
            "appended"
        ]
    );
    let Err(refused) = &answers[3] else {
        panic!("the malformed delivery is refused")
    };
    assert_eq!(refused.kind(), proto::RejectionKind::Malformed);
    // Each appended delivery once, in the page's order, in one group commit.
    let positions: Vec<u64> = answers
        .iter()
        .filter_map(|answer| answer.as_ref().ok())
        .flat_map(|recorded| recorded.global_positions.clone())
        .collect();
    assert_eq!(positions, [position + 1, position + 2, position + 3]);
    assert_eq!(ledger.last_position().await, position + 3);
    assert_eq!(inbox(&ledger).await.len(), 5, "all but the malformed one");

    // The same page again (a retry after a lost answer): nothing appended, each a duplicate.
    let again = client
        .deliver_page(Provider::Stripe, page)
        .await
        .expect("the page is answered");
    assert_eq!(
        outcome_names(&again),
        [
            "duplicate",
            "duplicate",
            "duplicate",
            "malformed",
            "duplicate",
            "duplicate"
        ]
    );
    assert_eq!(ledger.last_position().await, position + 3);

    // A page over the bound is refused whole: nothing recorded.
    let rows = inbox(&ledger).await.len();
    let too_many = (0..=ledger_bus::PAGE_DELIVERIES_MAX)
        .map(|n| {
            let account = format!("cus_many{n}");
            let email = format!("many{n}@example.com");
            delivery(customer_event(
                &format!("evt_m{n}"),
                "customer.created",
                &account,
                &email,
            ))
        })
        .collect();
    let refused = client
        .deliver_page(Provider::Stripe, too_many)
        .await
        .expect_err("too many deliveries");
    assert_eq!(
        refused.rejection_kind(),
        Some(proto::RejectionKind::TooLarge)
    );
    assert_eq!(inbox(&ledger).await.len(), rows);
    assert_eq!(ledger.last_position().await, position + 3);
    writer.stop().await.expect("the writer stops");
}

/// A PayPal subscription snapshot (from the connector's own test data) as event `event_id` of
/// type `event_type`, dated `time`, with the subscription in `status`.
fn paypal_snapshot(event_id: &str, event_type: &str, time: &str, status: &str) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_str(include_str!(
        "../../../ledger-connectors/tests/data/paypal/BILLING.SUBSCRIPTION.ACTIVATED.v2.json"
    ))
    .expect("JSON");
    body["id"] = event_id.into();
    body["event_type"] = event_type.into();
    body["create_time"] = time.into();
    body["resource"]["status"] = status.into();
    body["resource"]["status_update_time"] = time.into();
    body["resource"]["update_time"] = time.into();
    serde_json::to_vec(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_after_a_newer_one_that_matched_is_stale() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let paypal = |body: Vec<u8>| proto::ProviderDelivery {
        provider: proto::PaymentProvider::Paypal as i32,
        ..delivery(body)
    };
    // Active at t1, suspended at t2, active at t3: delivered t1, t3, t2.
    let t1 = paypal_snapshot(
        "WH-T1",
        "BILLING.SUBSCRIPTION.ACTIVATED",
        "2026-02-01T09:00:30Z",
        "ACTIVE",
    );
    let t2 = paypal_snapshot(
        "WH-T2",
        "BILLING.SUBSCRIPTION.SUSPENDED",
        "2026-02-02T09:00:30Z",
        "SUSPENDED",
    );
    let t3 = paypal_snapshot(
        "WH-T3",
        "BILLING.SUBSCRIPTION.ACTIVATED",
        "2026-02-03T09:00:30Z",
        "ACTIVE",
    );
    let first = client.deliver(&paypal(t1)).await.expect("recorded");
    assert_eq!(
        first.outcome(),
        proto::DeliveryOutcome::Appended,
        "{}",
        first.reason
    );
    let third = client.deliver(&paypal(t3)).await.expect("recorded");
    assert_eq!(
        third.outcome(),
        proto::DeliveryOutcome::Ignored,
        "{}",
        third.reason
    );
    let position = ledger.last_position().await;
    // The t3 snapshot matched the ledger and appended nothing, yet it was seen: t2 is older.
    let second = client.deliver(&paypal(t2)).await.expect("recorded");
    assert_eq!(
        second.outcome(),
        proto::DeliveryOutcome::Stale,
        "{}",
        second.reason
    );
    assert_eq!(ledger.last_position().await, position, "nothing paused");
    let rows = inbox(&ledger).await;
    assert!(
        rows.iter()
            .all(|row| row.row.snapshot_object.as_deref() == Some("I-W0Y05RHBK9VG"))
    );

    // A sale names no payer, only the subscription it pays: its customer is the one the
    // subscription's snapshots were about.
    let sale = serde_json::json!({
        "id": "WH-SALE-1", "event_version": "1.0", "create_time": "2026-02-04T09:00:00Z",
        "resource_type": "sale", "event_type": "PAYMENT.SALE.COMPLETED",
        "resource": {
            "id": "SALE0000000000001", "state": "completed",
            "amount": {"total": "4.99", "currency": "USD"},
            "billing_agreement_id": "I-W0Y05RHBK9VG", "create_time": "2026-02-04T08:59:59Z"
        }
    });
    let paid = client
        .deliver(&paypal(serde_json::to_vec(&sale).expect("JSON")))
        .await
        .expect("recorded");
    assert_eq!(
        paid.outcome(),
        proto::DeliveryOutcome::Appended,
        "{}",
        paid.reason
    );
    assert_eq!(paid.customer_id, first.customer_id);
    writer.stop().await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_holding_a_nul_character_is_refused_and_the_writer_keeps_deciding() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    // PostgreSQL text cannot hold NUL: each of these names a look-up key (the event id, the
    // account, the email, the charge a dispute contests) that the writer would send to the
    // store before deciding. They are refused as malformed, nothing of them recorded, and the
    // rest of the page is decided as usual.
    let dispute = serde_json::to_vec(&serde_json::json!({
        "id": "evt_dispute", "object": "event", "type": "charge.dispute.created",
        "created": 1_764_000_000,
        "data": {"object": {"id": "du_1", "object": "dispute", "charge": "ch_\u{0}1",
                 "amount": 900, "currency": "eur", "status": "needs_response"}}
    }))
    .expect("JSON");
    let page = vec![
        delivery(customer_event(
            "evt_n0",
            "customer.created",
            "cus_n0",
            "n0@example.com",
        )),
        delivery(customer_event(
            "evt_\u{0}",
            "customer.created",
            "cus_n1",
            "n1@example.com",
        )),
        delivery(customer_event(
            "evt_n2",
            "customer.created",
            "cus_\u{0}n2",
            "n2@example.com",
        )),
        delivery(customer_event(
            "evt_n3",
            "customer.created",
            "cus_n3",
            "n\u{0}3@example.com",
        )),
        delivery(dispute),
        delivery(customer_event(
            "evt_n4",
            "customer.created",
            "cus_n4",
            "n4@example.com",
        )),
    ];
    let answers = client
        .deliver_page(Provider::Stripe, page)
        .await
        .expect("the page is answered");
    let outcomes: Vec<String> = answers
        .iter()
        .map(|answer| match answer {
            Ok(recorded) => ledger_bus::delivery_outcome_name(recorded.outcome()).to_owned(),
            Err(rejected) => format!("{} {}", rejected.code, rejected.message),
        })
        .collect();
    assert_eq!(outcomes[0], "appended", "{outcomes:#?}");
    for refused in &outcomes[1..5] {
        assert!(
            refused.starts_with("malformed") && refused.contains("NUL"),
            "{outcomes:#?}"
        );
    }
    assert_eq!(outcomes[5], "appended", "{outcomes:#?}");
    assert_eq!(ledger.last_position().await, 2);
    assert_eq!(
        inbox(&ledger).await.len(),
        2,
        "the refused ones are not recorded"
    );

    // Alone, as ingest sends a webhook: refused the same way.
    let refused = client
        .deliver(&delivery(customer_event(
            "evt_n5",
            "customer.created",
            "cus_n5",
            "n\u{0}5@example.com",
        )))
        .await
        .expect_err("malformed");
    assert_eq!(
        refused.rejection_kind(),
        Some(proto::RejectionKind::Malformed)
    );
    writer.stop().await.expect("the writer stops");
}

/// The writer does not read the stream of a customer first seen through an account no one
/// owns (a new customer of a backfill): it starts empty. A stored stream of that id that does
/// not own the account (a command registered it under that id, by design or by mistake) makes
/// the store refuse the delivery's registration: recorded `failed` with the store's reason,
/// nothing appended, and the writer keeps deciding the next deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_for_a_stream_the_writer_assumed_new_is_refused_by_the_store() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let stream_id = ledger_connectors::customer_id_for_account(Provider::Stripe, "cus_taken");
    let mut registered = register("signup:taken", "taken@example.com");
    if let Some(metadata) = registered.metadata.as_mut() {
        metadata.customer_id = stream_id.to_string();
    }
    client.send(&registered).await.expect("registered");
    let position = ledger.last_position().await;
    // A writer that has not cached the stream.
    writer.stop().await.expect("the writer stops");
    let writer = ledger.start_writer();

    let created = customer_event("evt_t1", "customer.created", "cus_taken", "t@example.com");
    let refused = client.deliver(&delivery(created)).await.expect("recorded");
    assert_eq!(refused.outcome(), proto::DeliveryOutcome::Failed);
    assert!(
        refused.reason.starts_with("the store refused its request"),
        "{}",
        refused.reason
    );
    assert_eq!(ledger.last_position().await, position);

    let next = customer_event("evt_t2", "customer.created", "cus_next", "n@example.com");
    let appended = client.deliver(&delivery(next)).await.expect("recorded");
    assert_eq!(appended.outcome(), proto::DeliveryOutcome::Appended);
    ledger.assert_stream_matches_table().await;
    writer.stop().await.expect("the writer stops");
}
