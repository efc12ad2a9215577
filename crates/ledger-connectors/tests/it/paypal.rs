//! PayPal: the shared fixtures (legacy Billing Agreements / Payments v1) and this crate's own
//! Subscriptions v1 test data parse, normalize to the expected commands and apply to a customer
//! in memory; out-of-order and duplicate deliveries end in the in-order state; offline
//! verification (CRC32 + certificate) and the certificate URL rule.

use crate::provider_support::{
    HeaderList, bytes, command_names, comparable, data, ends_as_in_order, fixture, names,
    with_deliveries,
};
use crate::support::{Ledger, Outcome, fixtures_dir};
use ledger_connectors::{VerifyError, paypal};
use ledger_domain::{
    BillingInterval, Currency, Money, PaymentStatus, Provider, SubscriptionStatus,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const PAYPAL: Provider = Provider::Paypal;

fn usd(cents: i64) -> Money {
    Money::new(cents, Currency::parse("USD").unwrap())
}

#[test]
fn every_paypal_fixture_parses_with_its_event_id_type_time_and_payer() {
    let folder = fixtures_dir().join("paypal");
    let mut seen = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "signature-verification.json" {
            continue;
        }
        let message = paypal::parse(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(message.event_id.starts_with("WH-"), "{name}");
        assert!(name.starts_with(&message.event_type), "{name}");
        assert!(
            message.created_at_unix_micros > 1_400_000_000_000_000,
            "{name}"
        );
        if message.event_type.starts_with("BILLING.") {
            assert_eq!(
                message.account_id.as_deref(),
                Some("XLHKRXRA4H7QY"),
                "{name}"
            );
            assert_eq!(
                message.email.as_deref(),
                Some("coolbuyer@example.com"),
                "{name}"
            );
        } else {
            assert_eq!(message.account_id, None, "{name}");
        }
        seen += 1;
    }
    assert_eq!(seen, 7, "the shared PayPal fixtures changed");
    let created = paypal::parse(&fixture("paypal/BILLING.SUBSCRIPTION.CREATED.json")).unwrap();
    // 2016-04-28T11:29:31Z
    assert_eq!(created.created_at_unix_micros, 1_461_842_971_000_000);
    let sale = paypal::parse(&fixture(
        "paypal/PAYMENT.SALE.COMPLETED.from-subscription.json",
    ))
    .unwrap();
    // 2017-08-25T17:55:42.135Z
    assert_eq!(sale.created_at_unix_micros, 1_503_683_742_135_000);
    assert_eq!(
        ledger_connectors::related_objects(&sale),
        [ledger_connectors::RelatedObject::Subscription(
            "I-W0Y05RHBK9VG"
        )]
    );
}

const AGREEMENT_FIXTURES: [&str; 4] = [
    "paypal/BILLING.SUBSCRIPTION.CREATED.json",
    "paypal/BILLING.SUBSCRIPTION.SUSPENDED.json",
    "paypal/BILLING.SUBSCRIPTION.RE-ACTIVATED.json",
    "paypal/BILLING.SUBSCRIPTION.CANCELLED.json",
];

#[test]
fn the_agreement_fixtures_in_time_order_register_start_suspend_reactivate_and_cancel() {
    let mut ledger = Ledger::default();
    let outcomes: Vec<Vec<String>> = AGREEMENT_FIXTURES
        .iter()
        .map(|path| names(&ledger.deliver_body(PAYPAL, &fixture(path))))
        .collect();
    assert_eq!(
        outcomes,
        [
            vec![
                "ignored: subscription I-PE7JWXKGVN0R is not active yet (awaiting approval); it \
                 starts with its activation"
            ],
            vec![
                "register_customer",
                "start_subscription",
                "pause_subscription"
            ],
            vec!["resume_subscription"],
            vec!["confirm_cancellation"],
        ]
    );
    let customer = ledger.only_customer();
    let profile = customer.profile.as_ref().unwrap();
    assert_eq!(profile.email, "coolbuyer@example.com");
    assert_eq!(profile.name, "Cool Buyer");
    let subscription = &customer.subscriptions["I-PE7JWXKGVN0R"];
    assert_eq!(subscription.status, SubscriptionStatus::Canceled);
    assert_eq!(subscription.plan.plan_id, "I-PE7JWXKGVN0R");
    assert_eq!(subscription.plan.unit_price, usd(1000));
    assert_eq!(subscription.plan.interval, BillingInterval::Month);
    assert_eq!(subscription.plan.interval_count, 1);
    assert_eq!(subscription.quantity, 1);
    // A redelivery of any of them changes nothing.
    for path in AGREEMENT_FIXTURES {
        let again = ledger.deliver_body(PAYPAL, &fixture(path));
        assert!(!matches!(again, Outcome::Appended(_)), "{path}: {again:?}");
    }
}

#[test]
fn the_agreement_fixtures_in_every_order_with_duplicates_end_as_in_order() {
    let mut in_order = Ledger::default();
    for path in AGREEMENT_FIXTURES {
        in_order.deliver_body(PAYPAL, &fixture(path));
    }
    let expected = comparable(&in_order);
    for order in permutations(4) {
        let mut ledger = Ledger::default();
        for index in order.iter().chain(order.iter().rev()) {
            ledger.deliver_body(PAYPAL, &fixture(AGREEMENT_FIXTURES[*index]));
        }
        assert_eq!(comparable(&ledger), expected, "order {order:?}");
    }
}

fn permutations(count: usize) -> Vec<Vec<usize>> {
    if count == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(count - 1) {
        for at in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(at, count - 1);
            all.push(order);
        }
    }
    all
}

#[test]
fn a_sale_of_a_known_subscription_is_a_payment_and_its_refund_returns_part_of_it() {
    let mut ledger = Ledger::default();
    let sale = fixture("paypal/PAYMENT.SALE.COMPLETED.from-subscription.json");
    let unknown = ledger.deliver_body(PAYPAL, &sale);
    assert!(
        names(&unknown)[0].starts_with("waiting for paypal:subscription:I-W0Y05RHBK9VG: "),
        "{unknown:?}"
    );
    // The activation starts the subscription, and the sale waiting for it is applied.
    assert_eq!(
        names(&ledger.deliver_body(
            PAYPAL,
            &data("paypal/BILLING.SUBSCRIPTION.ACTIVATED.v2.json")
        )),
        ["register_customer", "start_subscription"]
    );
    assert!(!ledger.has_waiting());
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &sale)),
        ["ignored: already applied"]
    );
    let payment = &ledger.only_customer().payments["7D51924877811803R"];
    assert_eq!(payment.amount, usd(499));
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.subscription_id.as_deref(), Some("I-W0Y05RHBK9VG"));

    // The shared refund returns a sale the ledger does not hold.
    let refund = fixture("paypal/PAYMENT.SALE.REFUNDED.json");
    let not_held = ledger.deliver_body(PAYPAL, &refund);
    assert!(
        names(&not_held)[0].starts_with("waiting for paypal:payment:9T0916710M1105906: "),
        "{not_held:?}"
    );
    // The same refund of the sale the ledger holds.
    let mut body: Value = serde_json::from_slice(&refund).unwrap();
    body["resource"]["sale_id"] = json!("7D51924877811803R");
    let refund = serde_json::to_vec(&body).unwrap();
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &refund)),
        ["refund_payment"]
    );
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &refund)),
        ["ignored: already applied"]
    );
    let customer = ledger.only_customer();
    assert_eq!(customer.payments["7D51924877811803R"].refunded, usd(2));
    assert_eq!(
        customer.refunds["6YX43824R4443062K"].payment_id,
        "7D51924877811803R"
    );
}

#[test]
fn a_one_off_sale_is_ignored_with_the_reason() {
    let mut ledger = Ledger::default();
    let outcome = ledger.deliver_body(PAYPAL, &fixture("paypal/PAYMENT.SALE.COMPLETED.json"));
    assert!(
        names(&outcome)[0].contains("pays no subscription"),
        "{outcome:?}"
    );
    assert!(ledger.customers.is_empty());
}

#[test]
fn a_failed_payment_records_it_and_moves_the_subscription_past_due() {
    let mut ledger = Ledger::default();
    let failed = data("paypal/BILLING.SUBSCRIPTION.PAYMENT.FAILED.v2.json");
    // Before the activation: the failure names no price, so the subscription cannot start,
    // and nothing is appended (not even the payer: the message is about the payment). It
    // waits for the subscription, and is applied once the activation starts it.
    let early = ledger.deliver_body(PAYPAL, &failed);
    assert!(
        names(&early)[0].starts_with("waiting for paypal:subscription:I-W0Y05RHBK9VG: ")
            && names(&early)[0].contains("carries no price"),
        "{early:?}"
    );
    assert!(ledger.customers.is_empty());
    ledger.deliver_body(
        PAYPAL,
        &data("paypal/BILLING.SUBSCRIPTION.ACTIVATED.v2.json"),
    );
    assert!(!ledger.has_waiting());
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &failed)),
        ["ignored: already applied"]
    );
    let customer = ledger.only_customer();
    let payment = &customer.payments["I-W0Y05RHBK9VG:failed:2026-03-01T10:04:00Z"];
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(payment.amount, usd(499));
    assert_eq!(
        customer.subscriptions["I-W0Y05RHBK9VG"].status,
        SubscriptionStatus::PastDue
    );
}

/// A Subscriptions v1 (`resource_version` 2.0) event of subscription `I-LEDGERTEST02`, at
/// `minute` minutes after 2026-02-01T09:00:00Z, written from PayPal's documented format.
fn v2_event(event_type: &str, minute: i64, status: &str, quantity: u32, price: &str) -> Value {
    let time = |minutes: i64| {
        let at = 1_769_936_400 + minutes * 60;
        time::OffsetDateTime::from_unix_timestamp(at)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    json!({
        "id": format!("WH-LEDGERTEST{minute:06}-{event_type}"),
        "event_version": "1.0",
        "create_time": time(minute),
        "resource_type": "subscription",
        "resource_version": "2.0",
        "event_type": event_type,
        "resource": {
            "id": "I-LEDGERTEST02",
            "plan_id": "P-LEDGERTEST02",
            "status": status,
            "quantity": quantity.to_string(),
            "plan": {"billing_cycles": [{
                "frequency": {"interval_unit": "MONTH", "interval_count": 1},
                "tenure_type": "REGULAR", "sequence": 1, "total_cycles": 0,
                "pricing_scheme": {"fixed_price": {"currency_code": "EUR", "value": price}}
            }]},
            "subscriber": {
                "email_address": "linus@example.com", "payer_id": "LEDGERPAYER03",
                "name": {"given_name": "Linus", "surname": "Pauling"}
            },
            "billing_info": {"next_billing_time": time(minute + 43_200)},
            "start_time": time(0),
            "status_update_time": time(minute)
        }
    })
}

#[test]
fn subscriptions_v1_an_update_before_the_activation_creates_the_subscription() {
    let mut ledger = Ledger::default();
    let created = v2_event(
        "BILLING.SUBSCRIPTION.CREATED",
        0,
        "APPROVAL_PENDING",
        1,
        "9.00",
    );
    let activated = v2_event("BILLING.SUBSCRIPTION.ACTIVATED", 1, "ACTIVE", 1, "9.00");
    let updated = v2_event("BILLING.SUBSCRIPTION.UPDATED", 2, "ACTIVE", 3, "12.50");
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &bytes(&updated))),
        ["register_customer", "start_subscription"]
    );
    let stale = ledger.deliver_body(PAYPAL, &bytes(&activated));
    assert!(matches!(stale, Outcome::Stale(_)), "{stale:?}");
    let pending = ledger.deliver_body(PAYPAL, &bytes(&created));
    assert!(matches!(pending, Outcome::Stale(_)), "{pending:?}");
    let subscription = &ledger.only_customer().subscriptions["I-LEDGERTEST02"];
    assert_eq!(subscription.quantity, 3);
    assert_eq!(
        subscription.plan.unit_price,
        Money::new(1250, Currency::parse("EUR").unwrap())
    );
    assert_eq!(subscription.plan.plan_id, "P-LEDGERTEST02");
    assert_eq!(subscription.status, SubscriptionStatus::Active);
}

#[test]
fn subscriptions_v1_in_order_created_activated_updated_suspended_expired() {
    let mut ledger = Ledger::default();
    let steps = [
        (
            v2_event(
                "BILLING.SUBSCRIPTION.CREATED",
                0,
                "APPROVAL_PENDING",
                1,
                "9.00",
            ),
            vec![
                "ignored: subscription I-LEDGERTEST02 is not active yet (awaiting approval); it \
                 starts with its activation",
            ],
        ),
        (
            v2_event("BILLING.SUBSCRIPTION.ACTIVATED", 1, "ACTIVE", 1, "9.00"),
            vec!["register_customer", "start_subscription"],
        ),
        (
            v2_event("BILLING.SUBSCRIPTION.UPDATED", 2, "ACTIVE", 2, "9.00"),
            vec!["change_plan"],
        ),
        (
            v2_event("BILLING.SUBSCRIPTION.SUSPENDED", 3, "SUSPENDED", 2, "9.00"),
            vec!["pause_subscription"],
        ),
        (
            v2_event("BILLING.SUBSCRIPTION.RE-ACTIVATED", 4, "ACTIVE", 2, "9.00"),
            vec!["resume_subscription"],
        ),
        (
            v2_event("BILLING.SUBSCRIPTION.EXPIRED", 5, "EXPIRED", 2, "9.00"),
            vec!["confirm_cancellation"],
        ),
    ];
    for (event, expected) in steps {
        assert_eq!(
            names(&ledger.deliver_body(PAYPAL, &bytes(&event))),
            expected,
            "{event}"
        );
    }
    let subscription = &ledger.only_customer().subscriptions["I-LEDGERTEST02"];
    assert_eq!(subscription.status, SubscriptionStatus::Canceled);
    assert_eq!(subscription.quantity, 2);
}

#[test]
fn subscriptions_v1_a_free_trial_starts_trialing_and_converts() {
    let mut ledger = Ledger::default();
    let mut trialing = v2_event("BILLING.SUBSCRIPTION.ACTIVATED", 1, "ACTIVE", 1, "9.00");
    trialing["resource"]["billing_info"]["cycle_executions"] = json!([
        {"tenure_type": "TRIAL", "sequence": 1, "cycles_completed": 0, "cycles_remaining": 1, "total_cycles": 1},
        {"tenure_type": "REGULAR", "sequence": 2, "cycles_completed": 0, "cycles_remaining": 0, "total_cycles": 0}
    ]);
    trialing["resource"]["billing_info"]["next_billing_time"] = json!("2026-02-15T09:00:00Z");
    ledger.deliver_body(PAYPAL, &bytes(&trialing));
    let subscription = &ledger.only_customer().subscriptions["I-LEDGERTEST02"];
    assert_eq!(subscription.status, SubscriptionStatus::Trialing);
    assert_eq!(subscription.trial_end_unix_seconds, Some(1_771_146_000));
    let converted = v2_event("BILLING.SUBSCRIPTION.UPDATED", 20_160, "ACTIVE", 1, "9.00");
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &bytes(&converted))),
        ["convert_trial"]
    );
}

#[test]
fn subscriptions_v1_without_an_inline_plan_cannot_start_but_moves_a_known_subscription() {
    let mut ledger = Ledger::default();
    let mut activated = v2_event("BILLING.SUBSCRIPTION.ACTIVATED", 1, "ACTIVE", 1, "9.00");
    let plan = activated["resource"]
        .as_object_mut()
        .unwrap()
        .remove("plan");
    let outcome = ledger.deliver_body(PAYPAL, &bytes(&activated));
    assert!(
        names(&outcome)[0].contains("carries no price"),
        "{outcome:?}"
    );
    activated["resource"]["plan"] = plan.unwrap();
    ledger.deliver_body(PAYPAL, &bytes(&activated));
    let mut suspended = v2_event("BILLING.SUBSCRIPTION.SUSPENDED", 2, "SUSPENDED", 1, "9.00");
    suspended["resource"]
        .as_object_mut()
        .unwrap()
        .remove("plan");
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &bytes(&suspended))),
        ["pause_subscription"]
    );
}

#[test]
fn amounts_are_exact_and_refused_with_more_decimals_than_the_currency_has() {
    let sale = |total: &str, currency: &str| {
        let mut body: Value = serde_json::from_slice(&fixture(
            "paypal/PAYMENT.SALE.COMPLETED.from-subscription.json",
        ))
        .unwrap();
        body["resource"]["amount"] = json!({"total": total, "currency": currency});
        paypal::parse(&serde_json::to_vec(&body).unwrap())
    };
    assert!(sale("4.99", "USD").is_ok());
    assert!(sale("500", "JPY").is_ok());
    for (total, currency) in [
        ("4.999", "USD"),
        ("1.5", "JPY"),
        ("-4.99", "USD"),
        ("4,99", "USD"),
    ] {
        let error = sale(total, currency).unwrap_err();
        assert!(
            matches!(error, VerifyError::Malformed(_)),
            "{total} {currency}: {error}"
        );
    }
    let not_json = paypal::parse(b"{not json").unwrap_err();
    assert!(matches!(not_json, VerifyError::Malformed(_)));
    let mut unknown_status = v2_event("BILLING.SUBSCRIPTION.UPDATED", 1, "ACTIVE", 1, "9.00");
    unknown_status["resource"]["status"] = json!("WHATEVER");
    assert!(paypal::parse(&bytes(&unknown_status)).is_err());
}

#[test]
fn an_event_the_ledger_does_not_use_is_ignored() {
    let mut body: Value =
        serde_json::from_slice(&fixture("paypal/PAYMENT.SALE.COMPLETED.json")).unwrap();
    body["event_type"] = json!("CATALOG.PRODUCT.CREATED");
    let outcome = Ledger::default().deliver_body(PAYPAL, &serde_json::to_vec(&body).unwrap());
    assert_eq!(
        names(&outcome),
        ["ignored: the ledger does not use PayPal's CATALOG.PRODUCT.CREATED events"]
    );
}

/// Deliveries of a generated Subscriptions v1 lifecycle: statuses and plan changes at
/// increasing times, ending at the first cancellation.
fn lifecycle() -> impl Strategy<Value = Vec<Value>> {
    let step = (
        prop_oneof![Just("ACTIVE"), Just("SUSPENDED"), Just("CANCELLED")],
        1u32..4,
        prop_oneof![Just("9.00"), Just("12.50")],
    );
    (any::<bool>(), proptest::collection::vec(step, 1..7)).prop_map(|(pending_first, steps)| {
        let mut events = Vec::new();
        if pending_first {
            events.push(v2_event(
                "BILLING.SUBSCRIPTION.CREATED",
                0,
                "APPROVAL_PENDING",
                1,
                "9.00",
            ));
        }
        // CANCELLED is final at PayPal: nothing follows it.
        let last = steps
            .iter()
            .position(|(status, _, _)| *status == "CANCELLED")
            .map_or(steps.len(), |at| at + 1);
        for (at, (status, quantity, price)) in steps.into_iter().take(last).enumerate() {
            let event_type = match status {
                "SUSPENDED" => "BILLING.SUBSCRIPTION.SUSPENDED",
                "CANCELLED" => "BILLING.SUBSCRIPTION.CANCELLED",
                _ => "BILLING.SUBSCRIPTION.UPDATED",
            };
            let minute = i64::try_from(at).unwrap() + 1;
            events.push(v2_event(event_type, minute, status, quantity, price));
        }
        events
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_of_a_lifecycle_with_duplicates_ends_as_in_order(
        (events, order) in with_deliveries(lifecycle())
    ) {
        ends_as_in_order(PAYPAL, &events, &order)?;
    }
}

fn offline_headers(certificate_url: &str) -> HeaderList {
    HeaderList(vec![
        (
            "PAYPAL-TRANSMISSION-ID",
            "0b1e9a40-f7c1-11f0-9c6e-000000000001".to_owned(),
        ),
        (
            "PAYPAL-TRANSMISSION-TIME",
            "2026-03-02T10:00:05Z".to_owned(),
        ),
        (
            "PAYPAL-TRANSMISSION-SIG",
            String::from_utf8(data("paypal/chain/signature.b64"))
                .unwrap()
                .trim()
                .to_owned(),
        ),
        ("PAYPAL-CERT-URL", certificate_url.to_owned()),
        ("PAYPAL-AUTH-ALGO", "SHA256withRSA".to_owned()),
    ])
}

const CERTIFICATE_URL: &str =
    "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-ad47cb8d";
const WEBHOOK_ID: &str = "8LEDGERWEBHOOK01";
/// 2027-01-15, inside the test certificate's validity.
const NOW: i64 = 1_800_000_000;

/// PayPal's certificate and the intermediate it is served with
/// (`tests/data/paypal/chain/make.sh`).
fn chain(leaf: &str) -> Vec<Vec<u8>> {
    vec![
        data(&format!("paypal/chain/{leaf}.der")),
        data("paypal/chain/intermediate.der"),
    ]
}

fn trusted_root() -> paypal::CertificateTrust {
    paypal::CertificateTrust::from_roots_der(&[data("paypal/chain/root.der")]).unwrap()
}

#[test]
fn offline_verification_accepts_a_paypal_certificate_chaining_to_a_trusted_root() {
    let body = data("paypal/offline-body.json");
    let message = paypal::verify_offline(
        &offline_headers(CERTIFICATE_URL),
        &body,
        WEBHOOK_ID,
        &chain("leaf"),
        &trusted_root(),
        NOW,
    )
    .unwrap();
    assert_eq!(message.event_type, "BILLING.SUBSCRIPTION.CANCELLED");
    assert_eq!(message.account_id.as_deref(), Some("LEDGERPAYER01"));
}

#[test]
fn offline_verification_refuses_a_changed_body_webhook_certificate_time_or_header() {
    let body = data("paypal/offline-body.json");
    let certificates = chain("leaf");
    let trust = trusted_root();
    let headers = offline_headers(CERTIFICATE_URL);
    let refused = |result: Result<ledger_connectors::ProviderMessage, VerifyError>| {
        matches!(result, Err(VerifyError::Signature(_)))
    };
    let verify = |headers: &HeaderList, body: &[u8], webhook_id: &str, chain: &[Vec<u8>], now| {
        paypal::verify_offline(headers, body, webhook_id, chain, &trust, now)
    };
    let mut changed = body.clone();
    changed[10] ^= 1;
    assert!(refused(verify(
        &headers,
        &changed,
        WEBHOOK_ID,
        &certificates,
        NOW
    )));
    assert!(refused(verify(
        &headers,
        &body,
        "OTHERWEBHOOK",
        &certificates,
        NOW
    )));
    assert!(refused(verify(
        &headers,
        &body,
        WEBHOOK_ID,
        &[b"not a certificate".to_vec()],
        NOW
    )));
    assert!(refused(verify(&headers, &body, WEBHOOK_ID, &[], NOW)));
    // Before the chain's validity (made for this test on 2026-11-30), and after it (2036).
    assert!(refused(verify(
        &headers,
        &body,
        WEBHOOK_ID,
        &certificates,
        1_700_000_000
    )));
    assert!(refused(verify(
        &headers,
        &body,
        WEBHOOK_ID,
        &certificates,
        2_200_000_000
    )));
    let elsewhere = offline_headers("https://attacker.example/v1/notifications/certs/CERT-1");
    assert!(refused(verify(
        &elsewhere,
        &body,
        WEBHOOK_ID,
        &certificates,
        NOW
    )));
    let mut other_algorithm = offline_headers(CERTIFICATE_URL);
    other_algorithm.0[4].1 = "SHA1withRSA".to_owned();
    assert!(refused(verify(
        &other_algorithm,
        &body,
        WEBHOOK_ID,
        &certificates,
        NOW
    )));
    let mut missing = offline_headers(CERTIFICATE_URL);
    missing.0.remove(0);
    assert!(refused(verify(
        &missing,
        &body,
        WEBHOOK_ID,
        &certificates,
        NOW
    )));
}

/// The signature is right in each case (the same key signed it): the certificate is what is
/// refused.
#[test]
fn offline_verification_refuses_certificates_not_issued_to_paypal_by_a_trusted_root() {
    let body = data("paypal/offline-body.json");
    let headers = offline_headers(CERTIFICATE_URL);
    let refused = |certificates: &[Vec<u8>], trust: &paypal::CertificateTrust| {
        let result = paypal::verify_offline(&headers, &body, WEBHOOK_ID, certificates, trust, NOW);
        matches!(result, Err(VerifyError::Signature(_)))
    };
    let trust = trusted_root();
    // The same key in a self-signed certificate for PayPal's name.
    assert!(refused(&[data("paypal/chain/self-signed.der")], &trust));
    // A genuine chain for another name.
    assert!(refused(&chain("wrong-subject"), &trust));
    // The leaf without the intermediate it needs.
    assert!(refused(&chain("leaf")[..1], &trust));
    // A chain to a root that is not trusted.
    let other_root =
        paypal::CertificateTrust::from_roots_der(&[data("paypal/chain/self-signed.der")]).unwrap();
    assert!(refused(&chain("leaf"), &other_root));
    assert!(paypal::CertificateTrust::from_roots_der(&[b"not a certificate".to_vec()]).is_err());
}

#[test]
fn the_signed_string_is_transmission_id_time_webhook_id_and_the_unsigned_crc32() {
    let vectors: Value =
        serde_json::from_slice(&fixture("paypal/signature-verification.json")).unwrap();
    assert_eq!(
        vectors["route_2_offline_crc32_cert"]["signed_string"],
        "<transmission_id>|<transmission_time>|<webhook_id>|<crc32>"
    );
    let headers = HeaderList(vec![
        (
            "paypal-transmission-id",
            "dfb3be50-fd74-11e4-8bf3-77339302725b".to_owned(),
        ),
        (
            "paypal-transmission-time",
            "2015-05-18T15:45:13Z".to_owned(),
        ),
    ]);
    // CRC-32 (IEEE) check value: "123456789" -> 0xCBF43926, written unsigned.
    assert_eq!(
        paypal::signed_string(&headers, b"123456789", "4JH86294D6297924G").unwrap(),
        "dfb3be50-fd74-11e4-8bf3-77339302725b|2015-05-18T15:45:13Z|4JH86294D6297924G|3421780262"
    );
    assert!(paypal::signed_string(&HeaderList(Vec::new()), b"{}", "id").is_err());
}

#[test]
fn only_https_certificate_urls_on_paypal_api_hosts_may_be_fetched() {
    for allowed in [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
    ] {
        assert!(paypal::certificate_url_allowed(allowed), "{allowed}");
    }
    for refused in [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.attacker.example/v1/notifications/certs/CERT-1",
        "https://attacker.example/v1/notifications/certs/CERT-1",
        "https://paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://127.0.0.1/v1/notifications/certs/CERT-1",
        "file:///etc/passwd",
        "not a url",
    ] {
        assert!(!paypal::certificate_url_allowed(refused), "{refused}");
    }
}

#[test]
fn a_snapshot_older_than_the_latest_seen_is_stale_even_when_the_latest_changed_nothing() {
    let active = v2_event("BILLING.SUBSCRIPTION.ACTIVATED", 1, "ACTIVE", 1, "9.00");
    let suspended = v2_event("BILLING.SUBSCRIPTION.SUSPENDED", 2, "SUSPENDED", 1, "9.00");
    let reactivated = v2_event("BILLING.SUBSCRIPTION.RE-ACTIVATED", 3, "ACTIVE", 1, "9.00");
    let mut ledger = Ledger::default();
    ledger.deliver_body(PAYPAL, &bytes(&active));
    assert_eq!(
        names(&ledger.deliver_body(PAYPAL, &bytes(&reactivated))),
        ["ignored: already applied: subscription I-LEDGERTEST02 is active"]
    );
    let late = ledger.deliver_body(PAYPAL, &bytes(&suspended));
    assert!(matches!(late, Outcome::Stale(_)), "{late:?}");
    assert_eq!(
        ledger.only_customer().subscriptions["I-LEDGERTEST02"].status,
        SubscriptionStatus::Active
    );
    // Without the latest time seen (plain `normalize`), only the subscription's own latest
    // change dates it, and the late suspension would be applied.
    let message = paypal::parse(&bytes(&suspended)).unwrap();
    let customer = ledger.only_customer();
    let view = ledger_connectors::View {
        customer: Some(ledger_connectors::KnownCustomer {
            customer_id: *ledger.customers.keys().next().unwrap(),
            state: customer,
            account_linked: true,
        }),
    };
    assert_eq!(
        command_names(&ledger_connectors::normalize(&message, &view)),
        ["pause_subscription"]
    );
}
