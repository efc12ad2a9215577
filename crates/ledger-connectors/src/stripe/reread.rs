//! An object re-read from Stripe now (a reconciliation's repair, an on-demand sync), wrapped as
//! a Stripe event dated at the moment of the read.
//!
//! [`super::listed`] dates an object by the latest time it records of itself. Most changes of
//! a subscription leave no time on it (a quantity, a price, `cancel_at_period_end`), so a
//! changed object dated that way can be older than the ledger's latest change of it and is
//! normalized as stale. What the provider answered is its state at the moment of the read:
//! [`listed_at`] dates it then, so the writer applies whatever differs.

use serde_json::Value;

use super::listed::{ListedError, ListedKind, listed};

/// The longest provider event id the inbox keeps, in bytes.
const EVENT_ID_BYTES_MAX: usize = 255;

/// Wraps `object` as [`listed`] does, but dated `read_at_unix_seconds` (when it was read),
/// with the id `sync_<object id>_<hash>_<read_at_unix_seconds>` (another read, another id: a
/// repeated read is normalized again, and appends nothing when the ledger already agrees), and
/// `note` kept in the envelope as `ledger_note` (a repair's reason: the inbox keeps the body
/// verbatim).
///
/// # Errors
/// As [`listed`], and [`ListedError::NotThatKind`] when the id grows past 255 bytes.
pub fn listed_at(
    kind: ListedKind,
    object: &Value,
    read_at_unix_seconds: i64,
    note: &str,
) -> Result<Vec<u8>, ListedError> {
    let (id, body) = listed(kind, object)?;
    let mut event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = format!("{id}_{read_at_unix_seconds}");
    if id.len() > EVENT_ID_BYTES_MAX {
        return Err(ListedError::NotThatKind {
            kind: kind.as_str(),
            reason: format!(
                "an event id of {} bytes, more than {EVENT_ID_BYTES_MAX}",
                id.len()
            ),
        });
    }
    event["id"] = Value::from(id);
    event["created"] = Value::from(read_at_unix_seconds);
    if !note.is_empty() {
        event["ledger_note"] = Value::from(note);
    }
    Ok(serde_json::to_vec(&event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stripe::parse;

    fn subscription(quantity: i64) -> Value {
        json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "created": 1_700_000_000, "current_period_end": 1_705_270_400,
            "items": {"data": [{"price": {"id": "price_1", "unit_amount": 1500,
                "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": quantity}]},
        })
    }

    #[test]
    fn a_reread_object_is_dated_at_the_read_with_its_own_id_and_note() {
        let body = listed_at(
            ListedKind::Subscription,
            &subscription(3),
            1_764_561_600,
            "repair: quantity 1 -> 3",
        )
        .unwrap();
        let message = parse(&body).unwrap();
        assert_eq!(message.created_at_unix_micros, 1_764_561_600_000_000);
        assert_eq!(message.event_type, "customer.subscription.updated");
        assert_eq!(message.account_id.as_deref(), Some("cus_1"));
        assert_eq!(message.body["ledger_note"], "repair: quantity 1 -> 3");
        let (listed_id, _) = listed(ListedKind::Subscription, &subscription(3)).unwrap();
        assert_eq!(message.event_id, format!("{listed_id}_1764561600"));
        let later = parse(
            &listed_at(
                ListedKind::Subscription,
                &subscription(3),
                1_764_561_601,
                "",
            )
            .unwrap(),
        )
        .unwrap();
        assert_ne!(later.event_id, message.event_id);
        assert_eq!(later.body.get("ledger_note"), None);
    }

    #[test]
    fn an_id_too_long_for_the_inbox_is_refused() {
        let mut object = subscription(1);
        object["id"] = Value::from("s".repeat(crate::stripe::LISTED_OBJECT_ID_BYTES_MAX));
        assert!(matches!(
            listed_at(ListedKind::Subscription, &object, 1_764_561_600, ""),
            Err(ListedError::NotThatKind { .. })
        ));
    }
}
