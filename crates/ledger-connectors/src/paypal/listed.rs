//! Objects read from PayPal's APIs for a backfill, wrapped as the webhook events PayPal sends
//! for them, so they go through the same parse and normalize path as a webhook
//! (docs/connectors.md, "Backfill"):
//!
//! - a subscription (`GET /v1/billing/subscriptions/{id}?fields=plan`,
//!   <https://developer.paypal.com/docs/api/subscriptions/v1/#subscriptions_get>) as the
//!   `BILLING.SUBSCRIPTION.*` event of its `status` ([`subscription_event_type`]), dated by its
//!   `status_update_time` (else `update_time`, `create_time`);
//! - a transaction of Transaction Search (`GET /v1/reporting/transactions`,
//!   <https://developer.paypal.com/docs/api/transaction-search/v1/>): a payment (event code
//!   `T00xx`) as `PAYMENT.SALE.COMPLETED` of the sale `transaction_id`, paying the subscription
//!   `paypal_reference_id` when its type is `SUB`; a payment refund (`T1107`, referring to the
//!   sale by `paypal_reference_id` of type `TXN`) as `PAYMENT.SALE.REFUNDED`. Dated by
//!   `transaction_initiation_date`. Other transactions (fees, transfers, holds) are not
//!   imported.
//!
//! Every event's id is `sync_<object id>_<hash>` (as Stripe's listed objects): PayPal's own
//! event ids (`WH-...`) cannot be known from its APIs, so a webhook arriving after a backfill
//! is a new inbox row that the normalize path finds already applied (the sale, refund or
//! subscription state the ledger holds) and appends nothing.

use serde_json::{Value, json};

use crate::json_text::{optional_text, text};

/// The event PayPal sends for a subscription in `status`: `CREATED` (approval pending or
/// approved), `ACTIVATED`, `SUSPENDED`, `CANCELLED`, `EXPIRED`; `None` for another status.
pub fn subscription_event_type(status: &str) -> Option<&'static str> {
    Some(match status {
        "APPROVAL_PENDING" | "APPROVED" => "BILLING.SUBSCRIPTION.CREATED",
        "ACTIVE" => "BILLING.SUBSCRIPTION.ACTIVATED",
        "SUSPENDED" => "BILLING.SUBSCRIPTION.SUSPENDED",
        "CANCELLED" => "BILLING.SUBSCRIPTION.CANCELLED",
        "EXPIRED" => "BILLING.SUBSCRIPTION.EXPIRED",
        _ => return None,
    })
}

/// A subscription read from PayPal, as `(event id, event body)`.
///
/// # Errors
/// A sentence naming the subscription when it has no id, an unknown status or no valid time.
pub fn listed_subscription(subscription: &Value) -> Result<(String, Vec<u8>), String> {
    let id =
        text(subscription, "/id").map_err(|error| format!("a PayPal subscription: {error}"))?;
    let status = text(subscription, "/status")
        .map_err(|error| format!("PayPal subscription {id}: {error}"))?;
    let event_type = subscription_event_type(&status)
        .ok_or_else(|| format!("PayPal subscription {id} has an unknown status {status:?}"))?;
    let time = ["/status_update_time", "/update_time", "/create_time"]
        .iter()
        .find_map(|pointer| optional_text(subscription, pointer))
        .ok_or_else(|| format!("PayPal subscription {id} has no time"))?;
    envelope(
        subscription,
        &id,
        (event_type, "subscription"),
        &time,
        subscription.clone(),
    )
}

/// The subscriptions the transactions of a Transaction Search page pay
/// (`transaction_info.paypal_reference_id` of type `SUB`), each once, in order.
pub fn subscriptions_paid(transactions: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for transaction in transactions {
        let info = transaction.get("transaction_info").unwrap_or(&Value::Null);
        if optional_text(info, "/paypal_reference_id_type").as_deref() == Some("SUB")
            && let Some(id) = optional_text(info, "/paypal_reference_id")
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    ids
}

/// A transaction of Transaction Search (`transaction_details[]`: `transaction_info`), as
/// `(event id, event body)`; `Ok(None)` for a transaction the ledger does not import (not a
/// payment or a payment refund, a refund not yet successful).
///
/// # Errors
/// A sentence naming the transaction when it has no id, amount or valid time.
pub fn listed_transaction(transaction: &Value) -> Result<Option<(String, Vec<u8>)>, String> {
    let info = transaction.get("transaction_info").unwrap_or(&Value::Null);
    let id =
        text(info, "/transaction_id").map_err(|error| format!("a PayPal transaction: {error}"))?;
    let code = optional_text(info, "/transaction_event_code").unwrap_or_default();
    let status = optional_text(info, "/transaction_status").unwrap_or_default();
    let field = |pointer: &str| {
        text(info, pointer).map_err(|error| format!("PayPal transaction {id}: {error}"))
    };
    let reference = |kind: &str| {
        (optional_text(info, "/paypal_reference_id_type").as_deref() == Some(kind))
            .then(|| optional_text(info, "/paypal_reference_id"))
            .flatten()
    };
    let time = rfc3339(&field("/transaction_initiation_date")?)
        .map_err(|error| format!("PayPal transaction {id}: {error}"))?;
    // Refunds are negative amounts: the event carries what was returned.
    let amount = json!({
        "total": field("/transaction_amount/value")?.trim_start_matches('-'),
        "currency": field("/transaction_amount/currency_code")?,
    });
    let (event_type, resource_type, resource) = if code.starts_with("T00") {
        // Reversed (`V`): paid, then refunded by a transaction of its own.
        let state = match status.as_str() {
            "S" | "V" => "completed",
            "P" => "pending",
            "D" => "denied",
            _ => "unknown",
        };
        let mut sale = json!({"id": id, "state": state, "amount": amount, "create_time": time});
        if let Some(subscription_id) = reference("SUB") {
            sale["billing_agreement_id"] = Value::from(subscription_id);
        }
        ("PAYMENT.SALE.COMPLETED", "sale", sale)
    } else if code == "T1107" && status == "S" {
        let Some(sale_id) = reference("TXN") else {
            return Ok(None);
        };
        let refund = json!({"id": id, "sale_id": sale_id, "state": "completed",
                            "amount": amount, "create_time": time});
        ("PAYMENT.SALE.REFUNDED", "refund", refund)
    } else {
        return Ok(None);
    };
    envelope(
        transaction,
        &id,
        (event_type, resource_type),
        &time,
        resource,
    )
    .map(Some)
}

/// `{"id": "sync_...", "event_type", "create_time", "resource_type", "resource"}`; the id is
/// derived from `listed`, the whole object as PayPal answered it.
fn envelope(
    listed: &Value,
    object_id: &str,
    (event_type, resource_type): (&str, &str),
    time: &str,
    resource: Value,
) -> Result<(String, Vec<u8>), String> {
    let event_id = crate::listed::event_id(object_id, listed)?;
    let body = json!({
        "id": event_id,
        "event_type": event_type,
        "create_time": time,
        "resource_type": resource_type,
        "resource": resource,
    });
    Ok((event_id, serde_json::to_vec(&body).unwrap_or_default()))
}

/// PayPal's time as RFC 3339: Transaction Search writes the offset without a colon
/// (`2024-01-05T10:00:00+0000`).
fn rfc3339(time: &str) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(time, &Rfc3339).is_ok() {
        return Ok(time.to_owned());
    }
    let compact = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    time::OffsetDateTime::parse(time, compact)
        .ok()
        .and_then(|parsed| parsed.format(&Rfc3339).ok())
        .ok_or_else(|| format!("time {time:?} is not RFC 3339"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RelatedObject;

    fn transaction(code: &str, status: &str, reference: (&str, &str), value: &str) -> Value {
        json!({"transaction_info": {
            "transaction_id": "5TY05013RG002845M", "transaction_event_code": code,
            "transaction_status": status, "paypal_reference_id": reference.0,
            "paypal_reference_id_type": reference.1,
            "transaction_initiation_date": "2025-11-01T10:00:00+0000",
            "transaction_amount": {"currency_code": "USD", "value": value},
        }})
    }

    #[test]
    fn a_subscription_payment_is_the_sale_its_webhook_names() {
        let listed = transaction("T0002", "S", ("I-BW452GLLEP1G", "SUB"), "10.00");
        let (id, body) = listed_transaction(&listed)
            .expect("readable")
            .expect("a sale");
        let message = crate::paypal::parse(&body).expect("a PayPal event");
        assert_eq!(message.event_id, id);
        assert!(id.starts_with("sync_5TY05013RG002845M_"), "{id}");
        assert_eq!(message.event_type, "PAYMENT.SALE.COMPLETED");
        assert_eq!(message.created_at_unix_micros, 1_761_991_200_000_000);
        assert_eq!(
            crate::paypal::related_object(&message),
            Some(RelatedObject::Subscription("I-BW452GLLEP1G"))
        );
        // The same transaction listed again: the same id.
        assert_eq!(
            listed_transaction(&listed)
                .expect("readable")
                .expect("a sale")
                .0,
            id
        );
    }

    #[test]
    fn a_refund_returns_its_sale_and_other_transactions_are_not_imported() {
        let refund = transaction("T1107", "S", ("5TY05013RG002845M", "TXN"), "-4.00");
        let (_, body) = listed_transaction(&refund)
            .expect("readable")
            .expect("a refund");
        let message = crate::paypal::parse(&body).expect("a PayPal event");
        assert_eq!(message.event_type, "PAYMENT.SALE.REFUNDED");
        assert_eq!(message.body["resource"]["amount"]["total"], "4.00");
        assert_eq!(message.body["resource"]["sale_id"], "5TY05013RG002845M");
        let fee = transaction("T0400", "S", ("", ""), "-1.00");
        assert_eq!(listed_transaction(&fee), Ok(None));
        let pending_refund = transaction("T1107", "P", ("5TY05013RG002845M", "TXN"), "-4.00");
        assert_eq!(listed_transaction(&pending_refund), Ok(None));
        let no_time =
            json!({"transaction_info": {"transaction_id": "X", "transaction_event_code": "T0002"}});
        assert!(listed_transaction(&no_time).is_err());
    }

    #[test]
    fn a_subscription_is_the_event_of_its_status_dated_by_its_status_change() {
        let subscription = json!({
            "id": "I-BW452GLLEP1G", "status": "CANCELLED", "plan_id": "P-1",
            "create_time": "2025-10-01T09:59:00Z",
            "status_update_time": "2025-12-24T10:00:00Z",
            "subscriber": {"payer_id": "PAYER1", "email_address": "one@example.com"},
        });
        let (id, body) = listed_subscription(&subscription).expect("a subscription");
        let message = crate::paypal::parse(&body).expect("a PayPal event");
        assert_eq!(message.event_id, id);
        assert_eq!(message.event_type, "BILLING.SUBSCRIPTION.CANCELLED");
        assert_eq!(message.account_id.as_deref(), Some("PAYER1"));
        assert_eq!(message.created_at_unix_micros, 1_766_570_400_000_000);
        let unknown =
            json!({"id": "I-1", "status": "PAUSED", "create_time": "2025-10-01T09:59:00Z"});
        assert!(listed_subscription(&unknown).is_err());
        assert_eq!(
            subscriptions_paid(&[
                transaction("T0002", "S", ("I-1", "SUB"), "1.00"),
                transaction("T0002", "S", ("I-1", "SUB"), "1.00"),
                transaction("T1107", "S", ("S1", "TXN"), "-1.00"),
            ]),
            vec!["I-1".to_owned()]
        );
    }
}
