//! Stripe: webhook signatures and the mapping of Stripe events to the ledger's commands.
//!
//! Signature scheme (Stripe, "Verify webhook signatures manually",
//! <https://docs.stripe.com/webhooks#verify-manually>): header `Stripe-Signature:
//! t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`; each `v1` is HMAC-SHA256 keyed with the
//! endpoint's secret (`whsec_...`, the whole string as key bytes) over `"{t}.{raw body}"`. A
//! delivery is genuine when any `v1` matches under any configured secret (rotation) and `t` is
//! within the tolerance of now.

use ledger_domain::{Provider, proto};

use crate::{Headers, Normalized, ProviderMessage, VerifyError, View};

/// Stripe's default tolerance between the signature's timestamp and now, in seconds.
pub const TOLERANCE_SECONDS_DEFAULT: i64 = 300;

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
/// [`VerifyError::Signature`] for a missing or malformed header, no matching `v1` under any
/// secret, or a timestamp more than the tolerance away from `now_unix_seconds`;
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
    let mut signatures = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(decode_hex(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| {
        VerifyError::Signature("Stripe-Signature has no valid timestamp t=".to_owned())
    })?;
    if signatures.is_empty() {
        return Err(VerifyError::Signature(
            "Stripe-Signature has no v1 signature".to_owned(),
        ));
    }
    let mut signed = Vec::with_capacity(raw.len() + 12);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(raw);
    let genuine = secrets.keys.iter().any(|key| {
        signatures
            .iter()
            .any(|signature| ring::hmac::verify(key, &signed, signature).is_ok())
    });
    if !genuine {
        return Err(VerifyError::Signature(
            "no v1 signature matches a configured secret".to_owned(),
        ));
    }
    if (now_unix_seconds - timestamp).abs() > secrets.tolerance_seconds {
        return Err(VerifyError::Signature(format!(
            "timestamp {timestamp} is more than {} s from now ({now_unix_seconds})",
            secrets.tolerance_seconds
        )));
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

/// Parses a Stripe event envelope (`{"id": "evt_...", "type": ..., "created": ..., "data":
/// {"object": ...}}`).
///
/// # Errors
/// [`VerifyError::Malformed`] when the body is not JSON or lacks the id, type or time.
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
    let object = body.pointer("/data/object");
    let object_type = object
        .and_then(|object| object.get("object"))
        .and_then(serde_json::Value::as_str);
    let account_id = match object_type {
        Some("customer") => object.and_then(|object| object.get("id")),
        _ => object.and_then(|object| object.get("customer")),
    }
    .and_then(serde_json::Value::as_str)
    .map(str::to_owned);
    let email = object
        .and_then(|object| object.get("email"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(ProviderMessage {
        provider: Provider::Stripe,
        event_id,
        event_type,
        created_at_unix_micros: created * 1_000_000,
        account_id,
        email,
        body,
    })
}

/// Maps a Stripe event to commands (the table is in docs/connectors.md).
pub fn normalize(message: &ProviderMessage, view: &View<'_>) -> Normalized {
    let Some(account_id) = message.account_id.as_deref() else {
        return Normalized::Ignored {
            reason: format!("{} names no customer", message.event_type),
        };
    };
    match message.event_type.as_str() {
        "customer.created" | "customer.updated" => {
            let profile = proto::CustomerRegistered {
                email: message.email.clone().unwrap_or_default(),
                name: message
                    .body
                    .pointer("/data/object/name")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                provider_account: Some(proto::ProviderAccount {
                    provider: proto::PaymentProvider::Stripe as i32,
                    account_id: account_id.to_owned(),
                }),
            };
            match view.customer {
                None => crate::commands_for(
                    message,
                    crate::customer_id_for_account(Provider::Stripe, account_id),
                    vec![proto::command::Kind::RegisterCustomer(profile)],
                ),
                Some(known) if !known.account_linked => crate::commands_for(
                    message,
                    known.customer_id,
                    vec![proto::command::Kind::LinkProviderAccount(
                        proto::ProviderAccountLinked {
                            provider_account: profile.provider_account,
                        },
                    )],
                ),
                Some(_) => Normalized::Ignored {
                    reason: "the customer is already registered with this account".to_owned(),
                },
            }
        }
        other => Normalized::Ignored {
            reason: format!("the ledger does not use Stripe's {other} events"),
        },
    }
}
