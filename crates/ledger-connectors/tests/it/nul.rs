//! A body with NUL (`\u0000`) in a string or a key is malformed for every provider's `parse`,
//! which verification (ingest) and `ledger_connectors::parse` (the writer) both end with:
//! PostgreSQL text cannot hold NUL, and the writer looked such ids and emails up before any
//! other check.

use ledger_connectors::{VerifyError, paypal, stripe, xendit};
use serde_json::{Value, json};

/// `body` with `"\u0000"` put into the string at `pointer`.
fn with_nul(body: &Value, pointer: &str) -> Vec<u8> {
    let mut body = body.clone();
    let text = body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}"));
    *text = format!("{}\u{0}", text.as_str().expect("a string")).into();
    serde_json::to_vec(&body).expect("JSON")
}

fn refused(parsed: Result<ledger_connectors::ProviderMessage, VerifyError>) -> bool {
    matches!(parsed, Err(VerifyError::Malformed(reason)) if reason.contains("NUL"))
}

#[test]
fn every_providers_parse_refuses_a_string_or_key_holding_nul() {
    let stripe_body = json!({
        "id": "evt_1", "object": "event", "type": "customer.created", "created": 1_764_000_000,
        "data": {"object": {"id": "cus_1", "object": "customer", "email": "a@example.com",
                            "metadata": {"note": "x"}}}
    });
    let plain = serde_json::to_vec(&stripe_body).expect("JSON");
    assert!(stripe::parse(&plain).is_ok());
    for pointer in [
        "/id",
        "/data/object/id",
        "/data/object/email",
        "/data/object/metadata/note",
    ] {
        assert!(
            refused(stripe::parse(&with_nul(&stripe_body, pointer))),
            "{pointer}"
        );
    }
    let key = serde_json::to_vec(&json!({
        "id": "evt_2", "object": "event", "type": "customer.created", "created": 1_764_000_000,
        "data": {"object": {"id": "cus_2", "object": "customer", "metadata": {"a\u{0}": "x"}}}
    }))
    .expect("JSON");
    assert!(refused(stripe::parse(&key)), "a key");

    let xendit_body = json!({
        "id": "inv_1", "status": "PAID", "paid_at": "2026-01-01T00:00:00Z",
        "payer_email": "a@example.com", "amount": 100, "currency": "IDR"
    });
    let plain = serde_json::to_vec(&xendit_body).expect("JSON");
    assert!(xendit::parse(&plain).is_ok());
    assert!(refused(xendit::parse(&with_nul(
        &xendit_body,
        "/payer_email"
    ))));

    let paypal_body = json!({
        "id": "WH-1", "event_type": "SOMETHING.ELSE", "create_time": "2026-01-01T00:00:00Z",
        "resource": {"id": "X-1"}
    });
    let plain = serde_json::to_vec(&paypal_body).expect("JSON");
    assert!(paypal::parse(&plain).is_ok());
    assert!(refused(paypal::parse(&with_nul(
        &paypal_body,
        "/resource/id"
    ))));
}
