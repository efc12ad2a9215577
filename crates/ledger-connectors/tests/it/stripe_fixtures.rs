//! Every Stripe fixture of `$LEDGER_PROVIDER_FIXTURES/stripe` (the top level, `alt/` and the
//! OpenAPI objects wrapped in an event) parses, normalizes to the expected commands and
//! applies cleanly to a customer in memory (`Ledger::deliver` panics when `decide` refuses a
//! command normalization returned).

use ledger_domain::{InvoiceStatus, PaymentStatus, SubscriptionStatus};
use serde_json::{Value, json};

use crate::support::{self, Ledger, Outcome};

/// A fixture's bytes. The stripe-ruby-mock fixtures carry zeroed event ids
/// (`evt_000...`), which would make them one delivery: those get an id of their own.
fn raw(path: &str) -> Vec<u8> {
    let file = support::fixtures_dir().join("stripe").join(path);
    let bytes = std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    let mut body: Value = serde_json::from_slice(&bytes).expect("JSON");
    let zeroed = body["id"].as_str().is_some_and(|id| {
        id.trim_start_matches("evt_")
            .bytes()
            .all(|byte| byte == b'0')
    });
    if zeroed {
        body["id"] = json!(format!("evt_{}", path.replace(['/', '.'], "_")));
        return serde_json::to_vec(&body).expect("JSON");
    }
    bytes
}

/// A fixture's body with its `data.object` changed by `change` (the zeroed fixtures name no
/// customer on charges and disputes).
fn changed(path: &str, change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&raw(path)).expect("JSON");
    change(&mut body["data"]["object"]);
    serde_json::to_vec(&body).expect("JSON")
}

fn appended(names: &[&'static str]) -> Outcome {
    Outcome::Appended(names.to_vec())
}

fn waiting_for(outcome: &Outcome, object_key: &str) {
    assert!(
        matches!(outcome, Outcome::Waiting(key, _) if key == object_key),
        "expected Waiting for {object_key:?}, got {outcome:?}"
    );
}

fn ignored_with(outcome: &Outcome, words: &str) {
    assert!(
        matches!(outcome, Outcome::Ignored(reason) if reason.contains(words)),
        "expected Ignored containing {words:?}, got {outcome:?}"
    );
}

const SRM: &str = "cus_00000000000000";

/// A ledger where Stripe account `account_id` belongs to a registered customer.
fn customer_with(account_id: &str) -> Ledger {
    let mut ledger = Ledger::default();
    let created = support::event(
        &format!("evt_register_{account_id}"),
        "customer.created",
        1_600_000_000,
        support::customer(
            account_id,
            Some("ada@example.com"),
            "Ada Lovelace",
            1_600_000_000,
        ),
        None,
    );
    assert_eq!(
        ledger.deliver_raw(&created),
        appended(&["register_customer"])
    );
    ledger
}

#[test]
fn customer_created_without_email_waits_for_one_and_is_already_applied_when_linked() {
    let mut empty = Ledger::default();
    ignored_with(
        &empty.deliver_raw(&raw("customer.created.json")),
        "has no email",
    );
    assert!(empty.customers.is_empty());
    let mut linked = customer_with(SRM);
    assert_eq!(
        linked.deliver_raw(&raw("customer.created.json")),
        Outcome::Ignored("already applied".to_owned())
    );
}

#[test]
fn subscription_created_then_invoice_created_then_an_older_deletion_is_stale() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&raw("customer.subscription.created.json")),
        appended(&["start_subscription"])
    );
    let subscription =
        &ledger.customer(SRM).expect("customer").subscriptions["sub_000000000000000000000000"];
    assert_eq!(subscription.plan.plan_id, "price_000000000000000000000000");
    assert_eq!(subscription.plan.unit_price.amount_minor, 1500);
    assert_eq!(subscription.plan.unit_price.currency.code(), "USD");
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    assert_eq!(subscription.current_period_end_unix_seconds, 1_650_998_510);
    assert_eq!(
        ledger.deliver_raw(&raw("invoice.created.json")),
        appended(&["issue_invoice"])
    );
    let invoice = &ledger.customer(SRM).expect("customer").invoices["in_000000000000000000000000"];
    assert_eq!(invoice.status, InvoiceStatus::Open);
    assert_eq!(invoice.amount_due.amount_minor, 1500);
    assert_eq!(
        invoice.subscription_id.as_deref(),
        Some("sub_000000000000000000000000")
    );
    // The deletion fixture's event (1648320097) is older than the creation (1648320110).
    assert!(matches!(
        ledger.deliver_raw(&raw("customer.subscription.deleted.json")),
        Outcome::Stale(_)
    ));
    // Redelivered: nothing new.
    assert_eq!(
        ledger.deliver_raw(&raw("customer.subscription.created.json")),
        Outcome::Ignored("already applied".to_owned())
    );
}

#[test]
fn a_deletion_first_starts_and_cancels_the_subscription() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&raw("customer.subscription.deleted.json")),
        appended(&["start_subscription", "confirm_cancellation"])
    );
    let subscription =
        &ledger.customer(SRM).expect("customer").subscriptions["sub_000000000000000000000000"];
    assert_eq!(subscription.status, SubscriptionStatus::Canceled);
    // Started when Stripe created it, not when the deletion was sent.
    let metadata_time = 1_648_320_097_000_000;
    assert_eq!(subscription.changed_at_unix_micros, metadata_time);
}

/// The stripe-ruby-mock subscriptions bill a USD item and a EUR item, which Stripe does not
/// allow and the ledger cannot sum into one plan: refused with the reason. With the USD item
/// only, they map.
fn first_item_only(path: &str) -> Vec<u8> {
    let mut ledger = customer_with(SRM);
    ignored_with(
        &ledger.deliver_raw(&raw(path)),
        "its items are billed in different currencies or intervals",
    );
    changed(path, |object| {
        let first = object["items"]["data"][0].clone();
        object["items"]["data"] = json!([first]);
    })
}

#[test]
fn a_legacy_plan_change_starts_with_the_previous_plan_then_changes_it() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&first_item_only(
            "customer.subscription.updated.plan-change.json"
        )),
        appended(&["start_subscription", "change_plan"])
    );
    let subscription = &ledger.customer(SRM).expect("customer").subscriptions["su_00000000000000"];
    assert_eq!(subscription.plan.plan_id, "fkx0AFo_00000000000000");
    assert_eq!(subscription.plan.unit_price.amount_minor, 100);
}

#[test]
fn a_legacy_trial_will_end_starts_a_trialing_subscription() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&first_item_only(
            "customer.subscription.trial_will_end.json"
        )),
        appended(&["start_subscription"])
    );
    let subscription = &ledger.customer(SRM).expect("customer").subscriptions["su_00000000000000"];
    assert_eq!(subscription.status, SubscriptionStatus::Trialing);
    assert_eq!(subscription.trial_end_unix_seconds, Some(1_381_280_730));
}

#[test]
fn invoice_paid_and_payment_succeeded_record_one_payment_and_a_refund_follows() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&raw("invoice.paid.json")),
        appended(&[
            "issue_invoice",
            "finalize_invoice",
            "record_payment_succeeded"
        ])
    );
    let succeeded = changed("invoice.paid.json", |_| {});
    let mut as_succeeded: Value = serde_json::from_slice(&succeeded).expect("JSON");
    as_succeeded["id"] = json!("evt_payment_succeeded");
    as_succeeded["type"] = json!("invoice.payment_succeeded");
    assert_eq!(
        ledger.deliver_raw(&serde_json::to_vec(&as_succeeded).expect("JSON")),
        Outcome::Ignored("already applied".to_owned())
    );
    // The finalized fixture of stripe-ruby-mock carries the paid snapshot: already applied.
    assert_eq!(
        ledger.deliver_raw(&raw("alt/stripe-ruby-mock/invoice.finalized.json")),
        Outcome::Ignored("already applied".to_owned())
    );
    let customer = ledger.customer(SRM).expect("customer");
    assert_eq!(customer.payments.len(), 1);
    let payment = &customer.payments["ch_000000000000000000000000"];
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.amount.amount_minor, 2000);
    assert_eq!(
        customer.invoices["in_000000000000000000000000"].status,
        InvoiceStatus::Paid
    );
    // The zeroed charge names no customer: nothing to route it by.
    ignored_with(
        &ledger.deliver_raw(&raw("charge.refunded.json")),
        "names no Stripe customer",
    );
    let refunded = changed("charge.refunded.json", |charge| {
        charge["customer"] = json!(SRM)
    });
    assert_eq!(ledger.deliver_raw(&refunded), appended(&["refund_payment"]));
    assert_eq!(
        ledger.deliver_raw(&refunded),
        Outcome::Ignored("already applied".to_owned())
    );
    let customer = ledger.customer(SRM).expect("customer");
    assert_eq!(
        customer.refunds["re_000000000000000000000000"]
            .amount
            .amount_minor,
        100
    );
    assert_eq!(
        customer.payments["ch_000000000000000000000000"]
            .refunded
            .amount_minor,
        100
    );
}

#[test]
fn invoice_payment_failed_records_the_failed_attempt() {
    let mut ledger = customer_with(SRM);
    assert_eq!(
        ledger.deliver_raw(&raw("invoice.payment_failed.json")),
        appended(&["issue_invoice", "finalize_invoice", "record_payment_failed"])
    );
    let customer = ledger.customer(SRM).expect("customer");
    let payment = &customer.payments["ch_000000000000000000000000"];
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(payment.amount.amount_minor, 2000);
    assert_eq!(
        customer.invoices["in_000000000000000000000000"].status,
        InvoiceStatus::Finalized
    );
}

#[test]
fn a_dispute_opens_against_the_paid_charge_when_the_event_names_the_customer() {
    let mut ledger = customer_with(SRM);
    // The dispute names only its charge: it waits for the charge's payment.
    waiting_for(
        &ledger.deliver_raw(&raw("charge.dispute.created.json")),
        "stripe:payment:ch_000000000000000000000000",
    );
    let expanded = changed("charge.dispute.created.json", |dispute| {
        dispute["charge"] = json!({ "id": "ch_000000000000000000000000", "customer": SRM });
    });
    waiting_for(
        &ledger.deliver_raw(&expanded),
        "stripe:payment:ch_000000000000000000000000",
    );
    // The payment of the charge releases both: the first opens the dispute, the second finds
    // it open.
    ledger.deliver_raw(&raw("invoice.paid.json"));
    assert!(!ledger.has_waiting());
    assert_eq!(
        ledger.deliver_raw(&expanded),
        Outcome::Ignored("already applied".to_owned())
    );
    let customer = ledger.customer(SRM).expect("customer");
    assert_eq!(
        customer.disputes["dp_000000000000000000000000"]
            .amount
            .amount_minor,
        100
    );
    let mut closed: Value = serde_json::from_slice(&expanded).expect("JSON");
    closed["id"] = json!("evt_dispute_closed");
    closed["type"] = json!("charge.dispute.closed");
    closed["data"]["object"]["status"] = json!("lost");
    assert_eq!(
        ledger.deliver_raw(&serde_json::to_vec(&closed).expect("JSON")),
        appended(&["close_dispute"])
    );
    assert_eq!(
        ledger.customer(SRM).expect("customer").disputes["dp_000000000000000000000000"].status,
        ledger_domain::DisputeStatus::Lost
    );
}

#[test]
fn the_stripe_sync_engine_subscription_lifecycle_applies() {
    let account = "cus_IhGfebO16cMIGN";
    let mut ledger = customer_with(account);
    assert_eq!(
        ledger.deliver_raw(&raw(
            "alt/stripe-sync-engine/customer.subscription.created.json"
        )),
        appended(&["start_subscription"])
    );
    // A metadata change of another subscription creates it from its snapshot.
    assert_eq!(
        ledger.deliver_raw(&raw(
            "alt/stripe-sync-engine/customer.subscription.updated.metadata-change.json"
        )),
        appended(&["start_subscription"])
    );
    // Created with two items of one price, deleted with one: the plan (both items together)
    // changed before the cancellation.
    assert_eq!(
        ledger.deliver_raw(&raw(
            "alt/stripe-sync-engine/customer.subscription.deleted.json"
        )),
        appended(&["change_plan", "confirm_cancellation"])
    );
    let customer = ledger.customer(account).expect("customer");
    assert_eq!(
        customer.subscriptions["sub_JdIzvfy6o5GZRd"].plan.plan_id,
        "price_1IDQm5JDPojXS6LNM31hxKzp"
    );
    assert_eq!(
        customer.subscriptions["sub_JdIzvfy6o5GZRd"].status,
        SubscriptionStatus::Canceled
    );
    assert_eq!(
        customer.subscriptions["sub_JLEPMp81LApOJl"].status,
        SubscriptionStatus::Active
    );
    // A schedule attached changes nothing the ledger keeps.
    let mut srm = customer_with(SRM);
    assert_eq!(
        srm.deliver_raw(&raw(
            "alt/stripe-ruby-mock/customer.subscription.updated.schedule-attached.json"
        )),
        appended(&["start_subscription"])
    );
}

#[test]
fn deliveries_naming_objects_the_ledger_has_not_seen_wait_for_them() {
    let mut ledger = customer_with("cus_J7Mkgr8mvbl1eK");
    let finalized = ledger.deliver_raw(&raw("invoice.finalized.json"));
    assert!(
        matches!(&finalized, Outcome::Waiting(key, _) if key.starts_with("stripe:subscription:")),
        "{finalized:?}"
    );
    waiting_for(
        &ledger.deliver_raw(&raw("alt/stripe-sync-engine/charge.refunded.json")),
        "stripe:invoice:in_1KJdKkJDPojXS6LNSwSWkZSN",
    );
    let mut paid = customer_with("cus_JsuO3bmrj0QlAw");
    waiting_for(
        &paid.deliver_raw(&raw("alt/stripe-sync-engine/invoice.paid.json")),
        "stripe:subscription:sub_JsuPyCPhXWfZar",
    );
    let dispute =
        Ledger::default().deliver_raw(&raw("alt/stripe-sync-engine/charge.dispute.created.json"));
    assert!(
        matches!(&dispute, Outcome::Waiting(key, _) if key.starts_with("stripe:payment:")),
        "{dispute:?}"
    );
}

#[test]
fn the_openapi_objects_normalize_in_the_current_shape() {
    let object = |file: &str| -> Value {
        serde_json::from_slice(&raw(&format!("openapi-fixtures/{file}"))).expect("JSON")
    };
    let account = "cus_QXg1o8vcGmoR32";
    let mut ledger = customer_with(account);
    let subscription = support::event(
        "evt_openapi_sub",
        "customer.subscription.created",
        1_800_000_000,
        object("subscription.json"),
        None,
    );
    // Billing period on the item, pause_collection and cancel_at_period_end set.
    assert_eq!(
        ledger.deliver_raw(&subscription),
        appended(&[
            "start_subscription",
            "pause_subscription",
            "request_cancellation"
        ])
    );
    let held =
        &ledger.customer(account).expect("customer").subscriptions["sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"];
    assert_eq!(held.plan.plan_id, "price_1PgafmB7WZ01zgkW6dKueIc5");
    assert_eq!(held.current_period_end_unix_seconds, 976_287_773);
    // The invoice names its subscription under parent (a placeholder id here).
    let invoice = support::event(
        "evt_openapi_in",
        "invoice.finalized",
        1_800_000_000,
        object("invoice.json"),
        None,
    );
    waiting_for(
        &ledger.deliver_raw(&invoice),
        "stripe:subscription:subscription",
    );
    assert_eq!(
        ledger.deliver_raw(&support::event(
            "evt_openapi_cus",
            "customer.updated",
            1_800_000_000,
            object("customer.json"),
            None
        )),
        Outcome::Ignored("already applied".to_owned())
    );
    let charge = support::event(
        "evt_openapi",
        "charge.refunded",
        1_800_000_000,
        object("charge.json"),
        None,
    );
    ignored_with(&ledger.deliver_raw(&charge), "names no Stripe customer");
    // A dispute names its charge, not its customer: it waits for the charge's payment.
    let dispute = support::event(
        "evt_openapi_dp",
        "charge.dispute.created",
        1_800_000_000,
        object("dispute.json"),
        None,
    );
    waiting_for(
        &ledger.deliver_raw(&dispute),
        "stripe:payment:ch_1PgafuB7WZ01zgkWXYmPNZs8",
    );
    ignored_with(
        &ledger.deliver_raw(&raw("openapi-fixtures/event.json")),
        "does not use Stripe's plan.created",
    );
}
