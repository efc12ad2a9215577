//! Stripe: webhook signatures and the mapping of Stripe events to the ledger's commands.
//!
//! Signature scheme (Stripe, "Verify webhook signatures manually",
//! <https://docs.stripe.com/webhooks#verify-manually>): header `Stripe-Signature:
//! t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`; each `v1` is HMAC-SHA256 keyed with the
//! endpoint's secret (`whsec_...`, the whole string as key bytes) over `"{t}.{raw body}"`. A
//! delivery is genuine when any `v1` matches under any configured secret (rotation) and `t` is
//! within the tolerance of now.

/// The Stripe API version the ledger's own requests ask for (`Stripe-Version`, so a backfill
/// reads the same shapes whatever the account's default): 2025-02-24.acacia, the last before
/// 2025-03-31.basil removed an invoice's `charge` and `payment_intent` and a charge's
/// `invoice`, which this mapping relies on to find the payment of an invoice's charge
/// (docs/connectors.md, "Known limits"; <https://docs.stripe.com/changelog/basil>).
pub const API_VERSION: &str = "2025-02-24.acacia";

mod amounts;
mod listed;
mod normalize;
mod objects;
mod reconcile;
mod reread;

pub use listed::{
    LISTED_EVENT_PREFIX, LISTED_OBJECT_ID_BYTES_MAX, ListedError, ListedKind, event_type, listed,
    listed_event_id, object_time,
};
pub use normalize::normalize;
pub use reconcile::subscription_state;
pub use reread::listed_at;

use ledger_domain::Provider;
use subtle::ConstantTimeEq;

use crate::{Headers, ProviderMessage, RelatedObject, VerifyError};

/// Stripe's default tolerance between the signature's timestamp and now, in seconds.
pub const TOLERANCE_SECONDS_DEFAULT: i64 = 300;
/// The most `v1` values a `Stripe-Signature` may carry. Stripe sends one per secret the
/// endpoint has (two during a rotation's overlap); more is refused before any HMAC, so a
/// header of thousands cannot make ingest compare each against every secret.
pub const SIGNATURES_MAX: usize = 8;

/// The endpoint secrets of the Stripe webhook endpoint(s) pointing at the ledger, and the
/// timestamp tolerance.
#[derive(Clone)]
pub struct WebhookSecrets {
    keys: Vec<ring::hmac::Key>,
    tolerance_seconds: i64,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WebhookSecrets")
            .field("secrets", &self.keys.len())
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

impl WebhookSecrets {
    /// Secrets (`whsec_...`), any of which may have signed a delivery, and the tolerance in
    /// seconds ([`TOLERANCE_SECONDS_DEFAULT`] is Stripe's).
    pub fn new<S: AsRef<str>>(secrets: &[S], tolerance_seconds: i64) -> WebhookSecrets {
        WebhookSecrets {
            keys: secrets
                .iter()
                .map(|secret| {
                    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref().as_bytes())
                })
                .collect(),
            tolerance_seconds,
        }
    }
}

/// Verifies a delivery's `Stripe-Signature` on its raw body, then parses it.
///
/// # Errors
/// [`VerifyError::Signature`] for a missing or malformed header, more than
/// [`SIGNATURES_MAX`] `v1` values, a timestamp more than the tolerance away from
/// `now_unix_seconds` (checked first: no HMAC is computed for it), or no matching `v1` under
/// any secret;
/// [`VerifyError::Malformed`] when the signed body is not a Stripe event.
pub fn verify(
    headers: &impl Headers,
    raw: &[u8],
    secrets: &WebhookSecrets,
    now_unix_seconds: i64,
) -> Result<ProviderMessage, VerifyError> {
    let header = headers
        .header("stripe-signature")
        .ok_or_else(|| VerifyError::Signature("no Stripe-Signature header".to_owned()))?;
    let mut timestamp = None;
    let mut v1_values = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1_values.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| {
        VerifyError::Signature("Stripe-Signature has no valid timestamp t=".to_owned())
    })?;
    if v1_values.is_empty() {
        return Err(VerifyError::Signature(
            "Stripe-Signature has no v1 signature".to_owned(),
        ));
    }
    if v1_values.len() > SIGNATURES_MAX {
        return Err(VerifyError::Signature(format!(
            "Stripe-Signature has {} v1 signatures, more than {SIGNATURES_MAX}",
            v1_values.len()
        )));
    }
    // A value that is not hex matches nothing, as in Stripe's own libraries.
    let signatures: Vec<Vec<u8>> = v1_values
        .iter()
        .filter_map(|value| decode_hex(value))
        .collect();
    if signatures.is_empty() {
        return Err(VerifyError::Signature(
            "the v1 signature of Stripe-Signature is not hexadecimal (Stripe sends the \
             HMAC-SHA256 as 64 hex digits)"
                .to_owned(),
        ));
    }
    if now_unix_seconds.abs_diff(timestamp) > secrets.tolerance_seconds.unsigned_abs() {
        return Err(VerifyError::Signature(format!(
            "timestamp {timestamp} is more than {} s from now ({now_unix_seconds})",
            secrets.tolerance_seconds
        )));
    }
    let mut signed = Vec::with_capacity(raw.len() + 12);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(raw);
    // One HMAC per secret, compared in constant time with each `v1`.
    let genuine = secrets.keys.iter().any(|key| {
        let tag = ring::hmac::sign(key, &signed);
        signatures
            .iter()
            .any(|signature| bool::from(tag.as_ref().ct_eq(signature.as_slice())))
    });
    if !genuine {
        return Err(VerifyError::Signature(
            "no v1 signature matches a configured secret".to_owned(),
        ));
    }
    parse(raw)
}

/// Decodes lowercase or uppercase hex; `None` for anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// The payments a dispute names, for a dispute that names no customer (its `charge` is not
/// expanded): the charge, then its payment intent (an invoice of the current API records its
/// payment under the payment intent). Empty for every other message and for a dispute that
/// names its customer ([`crate::related_objects`]).
pub(crate) fn related_objects(message: &ProviderMessage) -> Vec<RelatedObject<'_>> {
    if message.account_id.is_some() || !message.event_type.starts_with("charge.dispute.") {
        return Vec::new();
    }
    let dispute = message
        .body
        .pointer("/data/object")
        .unwrap_or(&serde_json::Value::Null);
    [
        objects::id(dispute, "/charge"),
        objects::id(dispute, "/payment_intent"),
    ]
    .into_iter()
    .flatten()
    .map(RelatedObject::Payment)
    .collect()
}

/// Parses a Stripe event envelope (`{"id": "evt_...", "type": ..., "created": ..., "data":
/// {"object": ..., "previous_attributes": ...}}`).
///
/// The customer's account is the object's `id` for a customer, else its `customer` (also inside
/// an expanded `charge`, e.g. on a dispute); the email is a customer's `email` or an invoice's
/// `customer_email`.
///
/// # Errors
/// [`VerifyError::Malformed`] when the body is not JSON, lacks the id, type or time, or holds
/// NUL in a string.
pub fn parse(raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    let body: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|error| VerifyError::Malformed(format!("not JSON: {error}")))?;
    let text = |field: &str| {
        body.get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| VerifyError::Malformed(format!("no string field {field:?}")))
    };
    let event_id = text("id")?;
    let event_type = text("type")?;
    let created = body
        .get("created")
        .and_then(serde_json::Value::as_i64)
        .filter(|seconds| (0..=ledger_domain::limits::UNIX_SECONDS_MAX).contains(seconds))
        .ok_or_else(|| VerifyError::Malformed("no valid \"created\" time".to_owned()))?;
    let object = body
        .pointer("/data/object")
        .unwrap_or(&serde_json::Value::Null);
    let account_id = match objects::text(object, "/object") {
        Some("customer") => objects::text(object, "/id"),
        _ => objects::id(object, "/customer").or_else(|| objects::id(object, "/charge/customer")),
    }
    .map(str::to_owned);
    let email = objects::text(object, "/email")
        .or_else(|| objects::text(object, "/customer_email"))
        .map(str::to_owned);
    crate::json_text::without_nul(ProviderMessage {
        provider: Provider::Stripe,
        event_id,
        event_type,
        created_at_unix_micros: created * 1_000_000,
        account_id,
        email,
        body,
    })
}
