//! Xendit: the shared invoice fixture and this crate's own invoice and Subscriptions test data
//! (written from Xendit's documented formats) parse, normalize to the expected commands and
//! apply to a customer in memory; the callback token rule; out-of-order and duplicate
//! deliveries of a plan end in the in-order state.

use crate::provider_support::{
    HeaderList, bytes, data, ends_as_in_order, fixture, names, with_deliveries,
};
use crate::support::{Ledger, Outcome};
use ledger_connectors::VerifyError;
use ledger_connectors::xendit::{self, CallbackTokens};
use ledger_domain::{
    BillingInterval, Currency, InvoiceStatus, Money, PaymentStatus, Provider, SubscriptionStatus,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const XENDIT: Provider = Provider::Xendit;

fn money(minor: i64, currency: &str) -> Money {
    Money::new(minor, Currency::parse(currency).unwrap())
}

#[test]
fn the_paid_invoice_fixture_registers_the_payer_issues_the_invoice_and_records_the_payment() {
    let paid = fixture("xendit/invoice-callback.PAID.json");
    let message = xendit::parse(&paid).unwrap();
    assert_eq!(message.event_id, "593f4ed1c3d3bb7f39733d83:PAID");
    assert_eq!(message.event_type, "invoice.PAID");
    // paid_at 2020-01-14T02:32:50.912Z
    assert_eq!(message.created_at_unix_micros, 1_578_969_170_912_000);
    assert_eq!(message.account_id.as_deref(), Some("test@xendit.co"));
    assert_eq!(message.email.as_deref(), Some("test@xendit.co"));

    let mut ledger = Ledger::default();
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &paid)),
        [
            "register_customer",
            "issue_invoice",
            "record_payment_succeeded"
        ]
    );
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &paid)),
        ["ignored: already applied: invoice 593f4ed1c3d3bb7f39733d83 is paid"]
    );
    let customer = ledger.only_customer();
    let invoice = &customer.invoices["593f4ed1c3d3bb7f39733d83"];
    // IDR 2,000,000 in major units is 200,000,000 minor units (ISO 4217: two decimals).
    assert_eq!(invoice.amount_due, money(200_000_000, "IDR"));
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    let payment = &customer.payments["593f4ed1c3d3bb7f39733d83"];
    assert_eq!(payment.amount, money(200_000_000, "IDR"));
    assert_eq!(payment.status, PaymentStatus::Succeeded);

    // SETTLED follows PAID for the same invoice: nothing new.
    let mut settled: Value = serde_json::from_slice(&paid).unwrap();
    settled["status"] = json!("SETTLED");
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &bytes(&settled))),
        ["ignored: already applied: invoice 593f4ed1c3d3bb7f39733d83 is paid"]
    );
}

#[test]
fn an_expired_invoice_is_a_failed_payment_of_the_payer_found_by_email() {
    let mut ledger = Ledger::default();
    ledger.deliver_body(XENDIT, &fixture("xendit/invoice-callback.PAID.json"));
    let mut expired: Value =
        serde_json::from_slice(&data("xendit/invoice-callback.EXPIRED.json")).unwrap();
    // The same payer, written differently: found by email, and this account linked.
    expired["payer_email"] = json!(" Test@Xendit.co ");
    let message = xendit::parse(&bytes(&expired)).unwrap();
    assert_eq!(message.event_id, "65f0c0ffee0000000000e001:EXPIRED");
    assert_eq!(message.account_id.as_deref(), Some("test@xendit.co"));
    let outcome = ledger.deliver_body(XENDIT, &bytes(&expired));
    assert_eq!(names(&outcome), ["issue_invoice", "record_payment_failed"]);
    let customer = ledger.only_customer();
    let failed = &customer.payments["65f0c0ffee0000000000e001:expired"];
    assert_eq!(failed.status, PaymentStatus::Failed);
    // 150000.5 IDR in major units.
    assert_eq!(failed.amount, money(15_000_050, "IDR"));

    // An unknown payer: a new customer with the email as the account.
    let mut ledger = Ledger::default();
    let outcome = ledger.deliver_body(XENDIT, &data("xendit/invoice-callback.EXPIRED.json"));
    assert_eq!(
        names(&outcome),
        [
            "register_customer",
            "issue_invoice",
            "record_payment_failed"
        ]
    );
    let customer = ledger.only_customer();
    assert!(
        customer
            .provider_accounts
            .iter()
            .any(|account| account.account_id == "budi@example.com")
    );
}

#[test]
fn invoice_amounts_with_more_decimals_than_the_currency_has_are_refused() {
    let mut paid: Value =
        serde_json::from_slice(&fixture("xendit/invoice-callback.PAID.json")).unwrap();
    paid["amount"] = json!(10.001);
    assert!(matches!(
        xendit::parse(&bytes(&paid)),
        Err(VerifyError::Malformed(_))
    ));
    paid["amount"] = json!(-5);
    assert!(matches!(
        xendit::parse(&bytes(&paid)),
        Err(VerifyError::Malformed(_))
    ));
    paid["amount"] = json!(500);
    paid["paid_amount"] = json!(500);
    paid["currency"] = json!("JPY");
    assert!(xendit::parse(&bytes(&paid)).is_ok());
    assert!(matches!(
        xendit::parse(b"[1, 2"),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        xendit::parse(b"{}"),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn a_pending_invoice_callback_is_ignored() {
    let mut pending: Value =
        serde_json::from_slice(&fixture("xendit/invoice-callback.PAID.json")).unwrap();
    pending["status"] = json!("PENDING");
    let outcome = Ledger::default().deliver_body(XENDIT, &bytes(&pending));
    assert_eq!(
        names(&outcome),
        ["ignored: the ledger does not use Xendit's invoice.PENDING callbacks"]
    );
}

#[test]
fn the_callback_token_must_match_one_of_the_configured_tokens() {
    let rule: Value =
        serde_json::from_slice(&fixture("xendit/callback-verification.json")).unwrap();
    assert!(
        rule["header"]
            .as_str()
            .unwrap()
            .starts_with("x-callback-token")
    );
    let tokens = CallbackTokens::new(&["old-token", "new-token"]);
    let paid = fixture("xendit/invoice-callback.PAID.json");
    let with = |token: &str| HeaderList(vec![("X-CALLBACK-TOKEN", token.to_owned())]);
    assert!(xendit::verify(&with("new-token"), &paid, &tokens).is_ok());
    assert!(xendit::verify(&with("old-token"), &paid, &tokens).is_ok());
    for wrong in ["", "new-toke", "new-token ", "other"] {
        assert!(
            matches!(
                xendit::verify(&with(wrong), &paid, &tokens),
                Err(VerifyError::Signature(_))
            ),
            "{wrong:?}"
        );
    }
    assert!(matches!(
        xendit::verify(&HeaderList(Vec::new()), &paid, &tokens),
        Err(VerifyError::Signature(_))
    ));
}

#[test]
fn a_plan_activation_starts_the_subscription_and_cycles_record_its_payments() {
    let activated = data("xendit/recurring.plan.activated.json");
    let message = xendit::parse(&activated).unwrap();
    assert_eq!(
        message.event_id,
        "repl_0ledger0-0000-4000-8000-000000000001:recurring.plan.activated:2026-02-01T03:00:01.000Z"
    );
    assert_eq!(
        message.account_id.as_deref(),
        Some("cust-0ledger0-0000-4000-8000-000000000001")
    );
    let succeeded = data("xendit/recurring.cycle.succeeded.json");
    let mut ledger = Ledger::default();
    let early = ledger.deliver_body(XENDIT, &succeeded);
    assert!(
        names(&early)[0].starts_with(
            "waiting for xendit:customer_account:cust-0ledger0-0000-4000-8000-000000000001: "
        ),
        "{early:?}"
    );
    // The activation registers the customer; the cycle waiting for them is applied.
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &activated)),
        ["register_customer", "start_subscription"]
    );
    assert!(!ledger.has_waiting());
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &succeeded)),
        ["ignored: already applied"]
    );
    let customer = ledger.only_customer();
    assert_eq!(customer.profile.as_ref().unwrap().name, "Siti");
    let subscription = &customer.subscriptions["repl_0ledger0-0000-4000-8000-000000000001"];
    assert_eq!(subscription.plan.plan_id, "pro-monthly");
    assert_eq!(subscription.plan.unit_price, money(49_950, "PHP"));
    assert_eq!(subscription.plan.interval, BillingInterval::Month);
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    assert!(subscription.ever_paid);
    let payment = &customer.payments["recy_0ledger0-0000-4000-8000-000000000001"];
    assert_eq!(payment.amount, money(49_950, "PHP"));

    // A retrying cycle: a failed attempt, the subscription past due.
    let mut retrying: Value = serde_json::from_slice(&succeeded).unwrap();
    retrying["event"] = json!("recurring.cycle.retrying");
    retrying["data"]["id"] = json!("recy_0ledger0-0000-4000-8000-000000000002");
    retrying["data"]["status"] = json!("RETRYING");
    retrying["data"]["failure_code"] = json!("INSUFFICIENT_BALANCE");
    retrying["data"]["updated"] = json!("2026-04-01T03:00:08.000Z");
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &bytes(&retrying))),
        ["record_payment_failed"]
    );
    let customer = ledger.only_customer();
    assert_eq!(
        customer.subscriptions["repl_0ledger0-0000-4000-8000-000000000001"].status,
        SubscriptionStatus::PastDue
    );
    // A scheduled cycle is nothing yet.
    retrying["event"] = json!("recurring.cycle.created");
    let created = ledger.deliver_body(XENDIT, &bytes(&retrying));
    assert_eq!(
        names(&created),
        ["ignored: the ledger does not use Xendit's recurring.cycle.created callbacks"]
    );
}

/// A plan webhook of plan `repl_lifecycle`, `minute` minutes after 2026-02-01T03:00:00Z.
fn plan_event(event: &str, minute: i64) -> Value {
    let mut body: Value =
        serde_json::from_slice(&data("xendit/recurring.plan.activated.json")).unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(1_769_914_800 + minute * 60)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    body["event"] = json!(event);
    body["created"] = json!(at);
    body["data"]["id"] = json!("repl_lifecycle");
    body["data"]["updated"] = json!(at);
    body
}

#[test]
fn an_inactivation_before_the_activation_creates_and_cancels_and_the_activation_is_stale() {
    let mut ledger = Ledger::default();
    let activated = plan_event("recurring.plan.activated", 0);
    let inactivated = plan_event("recurring.plan.inactivated", 5);
    assert_eq!(
        names(&ledger.deliver_body(XENDIT, &bytes(&inactivated))),
        [
            "register_customer",
            "start_subscription",
            "confirm_cancellation"
        ]
    );
    let stale = ledger.deliver_body(XENDIT, &bytes(&activated));
    assert!(matches!(stale, Outcome::Stale(_)), "{stale:?}");
    assert_eq!(
        ledger.only_customer().subscriptions["repl_lifecycle"].status,
        SubscriptionStatus::Canceled
    );
}

/// A generated plan lifecycle: activations and inactivations a minute apart.
fn plan_lifecycle() -> impl Strategy<Value = Vec<Value>> {
    proptest::collection::vec(any::<bool>(), 1..6).prop_map(|activations| {
        activations
            .into_iter()
            .enumerate()
            .map(|(at, active)| {
                let event = if active {
                    "recurring.plan.activated"
                } else {
                    "recurring.plan.inactivated"
                };
                plan_event(event, i64::try_from(at).unwrap())
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn any_order_of_a_plan_lifecycle_with_duplicates_ends_as_in_order(
        (events, order) in with_deliveries(plan_lifecycle())
    ) {
        ends_as_in_order(XENDIT, &events, &order)?;
    }
}
