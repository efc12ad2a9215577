//! PayPal: webhook verification and the mapping of PayPal events to the ledger's commands.
//!
//! Verification through PayPal's postback API ("Verify webhook signature",
//! `POST /v1/notifications/verify-webhook-signature`,
//! <https://developer.paypal.com/docs/api/webhooks/v1/#verify-webhook-signature_post>): ingest
//! sends [`postback_request`]'s body for each configured webhook id and accepts the delivery
//! when [`postback_verdict`] says `SUCCESS`. The HTTP call itself (and its OAuth token) is
//! ingest's; this module only builds and reads the bodies.

use crate::{Headers, Normalized, ProviderMessage, VerifyError, View};

/// The transmission headers PayPal signs a delivery with, in the postback request's field names.
const TRANSMISSION_HEADERS: [(&str, &str); 5] = [
    ("auth_algo", "paypal-auth-algo"),
    ("cert_url", "paypal-cert-url"),
    ("transmission_id", "paypal-transmission-id"),
    ("transmission_sig", "paypal-transmission-sig"),
    ("transmission_time", "paypal-transmission-time"),
];

/// The JSON body of a postback verification of `raw` for the webhook `webhook_id`. The event is
/// embedded as the raw bytes received, not re-serialized, so PayPal checks what it sent.
///
/// # Errors
/// [`VerifyError::Signature`] when a transmission header is missing;
/// [`VerifyError::Malformed`] when the body is not a JSON object.
pub fn postback_request(
    headers: &impl Headers,
    raw: &[u8],
    webhook_id: &str,
) -> Result<Vec<u8>, VerifyError> {
    let event: &serde_json::value::RawValue = serde_json::from_slice(raw)
        .map_err(|error| VerifyError::Malformed(format!("not JSON: {error}")))?;
    let mut fields = serde_json::Map::new();
    for (field, header) in TRANSMISSION_HEADERS {
        let value = headers
            .header(header)
            .ok_or_else(|| VerifyError::Signature(format!("no {header} header")))?;
        fields.insert(field.to_owned(), serde_json::Value::from(value));
    }
    fields.insert("webhook_id".to_owned(), serde_json::Value::from(webhook_id));
    let mut body =
        serde_json::to_vec(&fields).map_err(|error| VerifyError::Malformed(error.to_string()))?;
    // `{..fields..}` -> `{..fields..,"webhook_event":<raw>}`
    body.pop();
    body.extend_from_slice(b",\"webhook_event\":");
    body.extend_from_slice(event.get().as_bytes());
    body.push(b'}');
    Ok(body)
}

/// Reads PayPal's answer to a postback verification.
///
/// # Errors
/// [`VerifyError::Signature`] unless the answer is `{"verification_status": "SUCCESS"}`.
pub fn postback_verdict(response: &[u8]) -> Result<(), VerifyError> {
    let answer: serde_json::Value = serde_json::from_slice(response).map_err(|error| {
        VerifyError::Signature(format!("PayPal's verification answer is not JSON: {error}"))
    })?;
    match answer
        .get("verification_status")
        .and_then(serde_json::Value::as_str)
    {
        Some("SUCCESS") => Ok(()),
        other => Err(VerifyError::Signature(format!(
            "PayPal's verification status is {}",
            other.unwrap_or("missing")
        ))),
    }
}

/// Parses a PayPal webhook body.
///
/// # Errors
/// [`VerifyError::Malformed`] always, until the mapping is written.
pub fn parse(_raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    Err(VerifyError::Malformed(
        "PayPal messages are not read yet".to_owned(),
    ))
}

/// Maps a PayPal message to commands.
pub fn normalize(message: &ProviderMessage, _view: &View<'_>) -> Normalized {
    Normalized::Ignored {
        reason: format!("{} is not mapped", message.event_type),
    }
}
