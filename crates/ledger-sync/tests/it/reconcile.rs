//! Reconciliation against localstripe: three subscriptions imported by the backfill, then one
//! cancelled and one grown to quantity 3 directly at localstripe. The check reports exactly
//! those two drifts; the repair imports them (inbox source `repair`); a second check is clean.

use std::time::Duration;

use ledger_connectors::reconcile::{Difference, Drift};
use ledger_domain::{Provider, SubscriptionStatus};
use ledger_projector::ProjectorConfig;
use ledger_sync::{ApiSecret, ImportOptions, StripeApi, StripeReader};
use ledger_testkit::ledger::TestLedger;
use ledger_testkit::localstripe::LocalStripe;
use serde_json::Value;

const CARD_PAYS: &str = "4242424242424242";

fn id(object: &Value) -> String {
    object["id"].as_str().expect("an id").to_owned()
}

/// The drifts a check finds now, after the read model caught up.
async fn check(ledger: &TestLedger, reader: &StripeReader) -> (usize, Vec<Drift>) {
    let database = ledger.database().client().await;
    ledger_sync::wait_for_read_model(&database)
        .await
        .expect("the read model catches up");
    let held = ledger_sync::ledger_subscriptions(&database, Provider::Stripe)
        .await
        .expect("the read model");
    let mut printed = Vec::new();
    let mut on_drift = |drift: &Drift| printed.push(drift.to_string());
    let check = ledger_sync::check_stripe(reader, held, &mut on_drift)
        .await
        .expect("a check");
    assert_eq!(printed.len(), check.found.len());
    assert_eq!(check.unreadable, 0);
    (
        check.compared,
        check.found.into_iter().map(|found| found.drift).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reports_the_drift_made_at_stripe_and_a_repair_removes_it() {
    let stripe = LocalStripe::start().await;
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let _customers = ledger
        .start_projector(
            projector_customers::CustomersProjector::new(ledger.store.clone()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    stripe.create_plan("basic", 1_500, "usd", "month").await;
    let mut subscriptions = Vec::new();
    for index in 0..3 {
        let customer = stripe
            .create_customer(
                &format!("drift{index}@example.com"),
                &format!("Drift {index}"),
            )
            .await;
        stripe.use_card(&customer, CARD_PAYS).await;
        let subscription = stripe
            .create_subscription(&customer, "basic", 1, None)
            .await;
        assert_eq!(subscription["status"], "active", "{subscription}");
        subscriptions.push((customer, subscription));
    }
    let reader = StripeReader::new(
        StripeApi {
            api_base: stripe.url.clone(),
            api_key: ApiSecret::new("sk_test_reconcile".to_owned()),
        },
        Duration::from_secs(10),
    )
    .expect("a reader");
    let client = ledger.client();
    let options = ImportOptions {
        events: false,
        ..ImportOptions::default()
    };
    ledger_sync::import_stripe(&reader, &ledger.store, &client, &options, &mut |_| {})
        .await
        .expect("the backfill");

    assert_eq!(check(&ledger, &reader).await, (3, Vec::new()));

    let (canceled_customer, canceled) = &subscriptions[0];
    let (grown_customer, grown) = &subscriptions[1];
    stripe.cancel(&id(canceled)).await;
    stripe.change_plan(grown, "basic", 3).await;

    let (compared, mut drifts) = check(&ledger, &reader).await;
    drifts.sort_by_key(|drift| drift.to_string());
    let mut expected = vec![
        Drift::Different {
            subscription_id: id(canceled),
            account_id: canceled_customer.clone(),
            differences: vec![Difference::Status {
                ledger: SubscriptionStatus::Active,
                provider: SubscriptionStatus::Canceled,
            }],
        },
        Drift::Different {
            subscription_id: id(grown),
            account_id: grown_customer.clone(),
            differences: vec![Difference::Quantity {
                ledger: 1,
                provider: 3,
            }],
        },
    ];
    expected.sort_by_key(|drift| drift.to_string());
    assert_eq!((compared, drifts), (3, expected));

    // The check's findings, with the provider's objects, are what the repair imports.
    let database = ledger.database().client().await;
    let held = ledger_sync::ledger_subscriptions(&database, Provider::Stripe)
        .await
        .expect("the read model");
    let found = ledger_sync::check_stripe(&reader, held, &mut |_| {})
        .await
        .expect("a check")
        .found;
    let repair = ledger_sync::repair_stripe(&reader, &client, &found)
        .await
        .expect("a repair");
    assert_eq!(repair.changes.counts.appended, 2, "{repair:?}");
    assert_eq!(repair.not_repairable, Vec::new());
    assert_eq!(check(&ledger, &reader).await, (3, Vec::new()));

    let repaired: Vec<(String, String, String)> = database
        .query(
            "SELECT provider_event_id, event_type, outcome FROM provider_inbox \
             WHERE source = 'repair' ORDER BY recorded_at, provider_event_id",
            &[],
        )
        .await
        .expect("the inbox")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let appended: Vec<&str> = repaired
        .iter()
        .filter(|(_, _, outcome)| outcome == "appended")
        .map(|(_, event_type, _)| event_type.as_str())
        .collect();
    assert_eq!(appended.len(), 2, "{repaired:?}");
    assert!(
        appended.contains(&"customer.subscription.deleted"),
        "{repaired:?}"
    );
    assert!(
        appended.contains(&"customer.subscription.updated"),
        "{repaired:?}"
    );
    let rows: Vec<(String, String, i32)> = database
        .query(
            "SELECT subscription_id, status, quantity FROM customers.subscriptions \
             WHERE subscription_id = ANY($1) ORDER BY status",
            &[&vec![id(canceled), id(grown)]],
        )
        .await
        .expect("the read model")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (id(grown), "active".to_owned(), 3),
            (id(canceled), "canceled".to_owned(), 1),
        ]
    );
    // A second repair of the same findings appends nothing more.
    let again = ledger_sync::repair_stripe(&reader, &client, &found)
        .await
        .expect("a repair");
    assert_eq!(again.changes.counts.appended, 0, "{again:?}");
    assert_eq!(again.changes.global_positions, Vec::<u64>::new());
}

/// Decision 0032: the ledger's subscriptions a check compares with a provider are those it
/// holds, the provider their `subscription_started` came through
/// (`customers.subscriptions.payment_provider_type`), whatever the customer registered
/// through and whichever provider later events about them came through. `ledger_query`, the
/// role that reads the customers schema, may read them.
#[tokio::test]
async fn the_ledgers_subscriptions_of_a_provider_are_those_it_holds() {
    use Provider::{Internal, Paypal, Stripe};
    use SubscriptionStatus::{Active, Paused};
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let _customers = ledger
        .start_projector(
            projector_customers::CustomersProjector::new(ledger.store.clone()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    ledger.send_subscriptions_held_elsewhere().await;
    let database = ledger.database().client().await;
    ledger_sync::wait_for_read_model(&database)
        .await
        .expect("the read model catches up");
    database
        .batch_execute("SET ROLE ledger_query")
        .await
        .expect("the query role");
    let mut held = Vec::new();
    for provider in Provider::ALL.iter().copied() {
        let subscriptions = ledger_sync::ledger_subscriptions(&database, provider)
            .await
            .expect("the read model");
        held.extend(subscriptions.into_iter().map(|subscription| {
            (
                provider,
                subscription.subscription_id,
                subscription.status,
                subscription.account_id,
            )
        }));
    }
    held.sort_by_key(|(provider, subscription_id, ..)| {
        (provider.as_str(), subscription_id.clone())
    });
    // (None of the customers has an account linked at the provider.)
    let held_as = |provider, subscription_id: &str, status| {
        (provider, subscription_id.to_owned(), status, String::new())
    };
    assert_eq!(
        held,
        vec![
            held_as(Internal, "sub_own", Paused),
            held_as(Paypal, "sub_paypal", Active),
            held_as(Stripe, "sub_stripe", Paused),
        ]
    );
}
