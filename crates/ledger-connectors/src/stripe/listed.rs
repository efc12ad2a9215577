//! Objects read from Stripe's list endpoints (`GET /v1/customers`, `/v1/subscriptions`, ...),
//! wrapped as Stripe events so a backfill goes through the same parse and normalize path as a
//! webhook (docs/connectors.md, "Backfill").
//!
//! The synthetic event:
//! - `id` = `sync_<object id>_<16 hex digits of SHA-256 of the object's JSON>`: the same
//!   unchanged object always gives the same id (a second backfill is a duplicate in the inbox),
//!   a changed object a new one (normalized against the ledger's state: applied, already
//!   applied or stale);
//! - `type` = the event Stripe sends for an object in that state ([`event_type`]);
//! - `created` = the latest time the object itself records ([`object_time`]), so business time
//!   is the provider's, never the time of the import;
//! - `data.object` = the object as Stripe listed it.

use serde_json::{Value, json};

use super::objects;

pub use crate::listed::{LISTED_EVENT_PREFIX, LISTED_OBJECT_ID_BYTES_MAX};

/// A kind of Stripe object read from a list endpoint, in the order a backfill reads them
/// ([`ListedKind::ALL`]): customers first, so the objects naming them find them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListedKind {
    /// `GET /v1/customers`.
    Customer,
    /// `GET /v1/subscriptions?status=all` (Stripe leaves out canceled ones without `all`).
    Subscription,
    /// `GET /v1/invoices`.
    Invoice,
    /// `GET /v1/charges`: refunds are read through their charge (`amount_refunded`, `refunds`).
    Charge,
    /// `GET /v1/disputes`.
    Dispute,
}

impl ListedKind {
    /// Every kind, in the order a backfill reads them.
    pub const ALL: [ListedKind; 5] = [
        ListedKind::Customer,
        ListedKind::Subscription,
        ListedKind::Invoice,
        ListedKind::Charge,
        ListedKind::Dispute,
    ];

    /// Stripe's `object` name: `customer`, `subscription`, `invoice`, `charge`, `dispute`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListedKind::Customer => "customer",
            ListedKind::Subscription => "subscription",
            ListedKind::Invoice => "invoice",
            ListedKind::Charge => "charge",
            ListedKind::Dispute => "dispute",
        }
    }

    /// The list endpoint and the query parameters every page of it needs.
    pub fn list_path(self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        match self {
            ListedKind::Customer => ("/v1/customers", &[]),
            ListedKind::Subscription => ("/v1/subscriptions", &[("status", "all")]),
            ListedKind::Invoice => ("/v1/invoices", &[]),
            ListedKind::Charge => ("/v1/charges", &[]),
            ListedKind::Dispute => ("/v1/disputes", &[]),
        }
    }
}

/// Why a listed object cannot be wrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListedError {
    /// Not an object of the list's kind (no `id`, another `object`, an id too long).
    #[error("not a Stripe {kind}: {reason}")]
    NotThatKind { kind: &'static str, reason: String },
    /// No time in the object to date it by.
    #[error("Stripe {kind} {id} has no valid \"created\" time")]
    NoTime { kind: &'static str, id: String },
}

/// The event Stripe sends for `object` in its state: `customer.updated`;
/// `customer.subscription.deleted` for a canceled subscription, else
/// `customer.subscription.updated`; `invoice.paid`, `invoice.finalized` (open),
/// `invoice.created` (draft), `invoice.voided`, `invoice.marked_uncollectible`;
/// `charge.refunded` for a charge with a refund, else `charge.succeeded` / `charge.failed` /
/// `charge.pending`; `charge.dispute.closed` for a dispute won, lost or closed with a warning,
/// else `charge.dispute.created`.
pub fn event_type(kind: ListedKind, object: &Value) -> &'static str {
    let status = objects::text(object, "/status").unwrap_or_default();
    match kind {
        ListedKind::Customer => "customer.updated",
        ListedKind::Subscription => match status {
            "canceled" | "incomplete_expired" => "customer.subscription.deleted",
            _ => "customer.subscription.updated",
        },
        ListedKind::Invoice => match status {
            "paid" => "invoice.paid",
            "draft" => "invoice.created",
            "void" => "invoice.voided",
            "uncollectible" => "invoice.marked_uncollectible",
            _ => "invoice.finalized",
        },
        ListedKind::Charge => {
            let refunded = objects::integer(object, "/amount_refunded").unwrap_or(0) > 0
                || object.get("refunded").and_then(Value::as_bool) == Some(true);
            match status {
                _ if refunded => "charge.refunded",
                "failed" => "charge.failed",
                "pending" => "charge.pending",
                _ => "charge.succeeded",
            }
        }
        ListedKind::Dispute => match status {
            "won" | "lost" | "warning_closed" => "charge.dispute.closed",
            _ => "charge.dispute.created",
        },
    }
}

/// The latest time, in Unix seconds, the object records of its own changes: a customer's
/// `created`; for a subscription the latest of `created`, `start_date`,
/// `current_period_start`, `canceled_at`, `ended_at`; for an invoice the latest of `created`
/// and its `status_transitions` (`finalized_at`, `paid_at`, `voided_at`,
/// `marked_uncollectible_at`); for a charge the latest of `created` and its listed refunds'
/// `created`; a dispute's `created` (Stripe records no closing time on it). Only times in the
/// past are read (never `cancel_at`, `trial_end` or a period's end). `None` without a valid
/// `created`.
pub fn object_time(kind: ListedKind, object: &Value) -> Option<i64> {
    let created = objects::integer(object, "/created")
        .filter(|seconds| (0..=ledger_domain::limits::UNIX_SECONDS_MAX).contains(seconds))?;
    let later: &[&str] = match kind {
        ListedKind::Customer | ListedKind::Dispute => &[],
        ListedKind::Subscription => &[
            "/start_date",
            "/current_period_start",
            "/canceled_at",
            "/ended_at",
        ],
        ListedKind::Invoice => &[
            "/status_transitions/finalized_at",
            "/status_transitions/paid_at",
            "/status_transitions/voided_at",
            "/status_transitions/marked_uncollectible_at",
        ],
        ListedKind::Charge => &[],
    };
    let refunds = match kind {
        ListedKind::Charge => object
            .pointer("/refunds/data")
            .and_then(Value::as_array)
            .map(|refunds| {
                refunds
                    .iter()
                    .filter_map(|refund| objects::integer(refund, "/created"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let latest = later
        .iter()
        .filter_map(|pointer| objects::integer(object, pointer))
        .chain(refunds)
        .filter(|seconds| *seconds <= ledger_domain::limits::UNIX_SECONDS_MAX)
        .fold(created, i64::max);
    Some(latest)
}

/// The synthetic event id of `object` (see the module's documentation).
///
/// # Errors
/// [`ListedError::NotThatKind`] when the object has no `id`, another `object` than `kind`,
/// or an id longer than [`LISTED_OBJECT_ID_BYTES_MAX`].
pub fn listed_event_id(kind: ListedKind, object: &Value) -> Result<String, ListedError> {
    let id = object_id(kind, object)?;
    crate::listed::event_id(id, object).map_err(|reason| not_that_kind(kind, reason))
}

/// The object's `id`, when it is an object of `kind`.
fn object_id(kind: ListedKind, object: &Value) -> Result<&str, ListedError> {
    let id = objects::text(object, "/id").ok_or_else(|| not_that_kind(kind, "no id".into()))?;
    match objects::text(object, "/object") {
        Some(name) if name == kind.as_str() => Ok(id),
        other => Err(not_that_kind(
            kind,
            format!("{id} has \"object\": {}", other.unwrap_or("(none)")),
        )),
    }
}

fn not_that_kind(kind: ListedKind, reason: String) -> ListedError {
    ListedError::NotThatKind {
        kind: kind.as_str(),
        reason,
    }
}

/// Wraps an object read from `kind`'s list endpoint as a Stripe event: its synthetic event id
/// ([`listed_event_id`]) and its body (JSON bytes), ready for [`super::parse`] and the writer's
/// delivery path. The object is serialized once, for its id and its place in the body.
///
/// # Errors
/// [`ListedError`] when the object is not of `kind` or has no valid `created` time.
pub fn listed(kind: ListedKind, object: &Value) -> Result<(String, Vec<u8>), ListedError> {
    let object_json = serde_json::to_vec(object).unwrap_or_default();
    let id = crate::listed::event_id_of_json(object_id(kind, object)?, &object_json)
        .map_err(|reason| not_that_kind(kind, reason))?;
    let created = object_time(kind, object).ok_or_else(|| ListedError::NoTime {
        kind: kind.as_str(),
        id: objects::text(object, "/id").unwrap_or_default().to_owned(),
    })?;
    let envelope = json!({
        "id": id,
        "object": "event",
        "type": event_type(kind, object),
        "created": created,
        "livemode": object.get("livemode").unwrap_or(&Value::Bool(false)),
    });
    // `{...}` of the envelope, reopened for `"data": {"object": <the object's JSON>}`.
    let mut body = serde_json::to_vec(&envelope).unwrap_or_default();
    body.pop();
    body.reserve(object_json.len() + 20);
    body.extend_from_slice(br#","data":{"object":"#);
    body.extend_from_slice(&object_json);
    body.extend_from_slice(b"}}");
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(status: &str, quantity: i64) -> Value {
        json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
            "created": 1_700_000_000, "start_date": 1_700_000_000,
            "current_period_start": 1_702_592_000, "current_period_end": 1_705_270_400,
            "canceled_at": null, "cancel_at": 1_800_000_000,
            "items": {"data": [{"price": {"id": "price_1", "unit_amount": 1500,
                "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": quantity}]},
        })
    }

    #[test]
    fn an_unchanged_object_keeps_its_id_and_a_changed_one_gets_a_new_one() {
        let first = listed_event_id(ListedKind::Subscription, &subscription("active", 1));
        let again = listed_event_id(ListedKind::Subscription, &subscription("active", 1));
        let changed = listed_event_id(ListedKind::Subscription, &subscription("active", 2));
        assert_eq!(first, again);
        let first = first.expect("a subscription");
        assert!(first.starts_with("sync_sub_1_"), "{first}");
        assert_eq!(first.len(), "sync_sub_1_".len() + 16);
        assert!(
            first["sync_sub_1_".len()..]
                .bytes()
                .all(|byte| byte.is_ascii_hexdigit())
        );
        assert_ne!(Ok(first), changed);
    }

    #[test]
    fn the_wrapped_object_parses_as_the_event_stripe_sends_dated_by_the_object() {
        let (id, body) =
            listed(ListedKind::Subscription, &subscription("active", 1)).expect("wrapped");
        let message = super::super::parse(&body).expect("a Stripe event");
        assert_eq!(
            Ok(message.event_id.clone()),
            listed_event_id(ListedKind::Subscription, &subscription("active", 1))
        );
        assert_eq!(message.event_id, id);
        assert_eq!(message.body["data"]["object"], subscription("active", 1));
        assert_eq!(message.event_type, "customer.subscription.updated");
        // current_period_start, the latest past time; not cancel_at (in the future).
        assert_eq!(message.created_at_unix_micros, 1_702_592_000_000_000);
        assert_eq!(message.account_id.as_deref(), Some("cus_1"));
        assert_eq!(
            message.body.pointer("/data/object/items/data/0/quantity"),
            Some(&json!(1))
        );
        let mut canceled = subscription("canceled", 1);
        canceled["canceled_at"] = json!(1_703_000_000);
        let (_, body) = listed(ListedKind::Subscription, &canceled).expect("wrapped");
        let message = super::super::parse(&body).expect("a Stripe event");
        assert_eq!(message.event_type, "customer.subscription.deleted");
        assert_eq!(message.created_at_unix_micros, 1_703_000_000_000_000);
    }

    #[test]
    fn each_kind_is_the_event_of_its_state() {
        let customer = json!({"id": "cus_1", "object": "customer", "created": 1_700_000_000,
            "email": "a@example.com"});
        let message = super::super::parse(&listed(ListedKind::Customer, &customer).expect("ok").1)
            .expect("parsed");
        assert_eq!(message.event_type, "customer.updated");
        assert_eq!(message.email.as_deref(), Some("a@example.com"));
        assert_eq!(message.created_at_unix_micros, 1_700_000_000_000_000);

        let invoice = |status: &str| {
            json!({"id": "in_1", "object": "invoice", "status": status, "created": 100,
                "status_transitions": {"finalized_at": 150, "paid_at": 200}})
        };
        let expected = [
            ("paid", "invoice.paid"),
            ("open", "invoice.finalized"),
            ("draft", "invoice.created"),
            ("void", "invoice.voided"),
            ("uncollectible", "invoice.marked_uncollectible"),
        ];
        for (status, event) in expected {
            assert_eq!(event_type(ListedKind::Invoice, &invoice(status)), event);
        }
        assert_eq!(
            object_time(ListedKind::Invoice, &invoice("paid")),
            Some(200)
        );

        let charge = json!({"id": "ch_1", "object": "charge", "status": "succeeded",
            "created": 100, "amount_refunded": 0});
        assert_eq!(event_type(ListedKind::Charge, &charge), "charge.succeeded");
        let refunded = json!({"id": "ch_1", "object": "charge", "status": "succeeded",
            "created": 100, "amount_refunded": 500,
            "refunds": {"data": [{"id": "re_1", "created": 300}]}});
        assert_eq!(event_type(ListedKind::Charge, &refunded), "charge.refunded");
        assert_eq!(object_time(ListedKind::Charge, &refunded), Some(300));

        let dispute = |status: &str| json!({"id": "dp_1", "object": "dispute", "status": status, "created": 100});
        assert_eq!(
            event_type(ListedKind::Dispute, &dispute("needs_response")),
            "charge.dispute.created"
        );
        assert_eq!(
            event_type(ListedKind::Dispute, &dispute("lost")),
            "charge.dispute.closed"
        );
    }

    #[test]
    fn an_object_of_another_kind_or_without_a_time_is_refused() {
        let customer = json!({"id": "cus_1", "object": "customer", "created": 1});
        assert_eq!(
            listed(ListedKind::Subscription, &customer),
            Err(ListedError::NotThatKind {
                kind: "subscription",
                reason: "cus_1 has \"object\": customer".to_owned()
            })
        );
        assert_eq!(
            listed(
                ListedKind::Customer,
                &json!({"object": "customer", "created": 1})
            ),
            Err(ListedError::NotThatKind {
                kind: "customer",
                reason: "no id".to_owned()
            })
        );
        assert_eq!(
            listed(
                ListedKind::Customer,
                &json!({"id": "cus_1", "object": "customer"})
            ),
            Err(ListedError::NoTime {
                kind: "customer",
                id: "cus_1".to_owned()
            })
        );
        let long = json!({"id": "c".repeat(LISTED_OBJECT_ID_BYTES_MAX + 1),
            "object": "customer", "created": 1});
        assert!(matches!(
            listed(ListedKind::Customer, &long),
            Err(ListedError::NotThatKind { .. })
        ));
        let longest = json!({"id": "c".repeat(LISTED_OBJECT_ID_BYTES_MAX),
            "object": "customer", "created": 1});
        let id = listed_event_id(ListedKind::Customer, &longest).expect("fits");
        assert_eq!(id.len(), 255);
    }
}
