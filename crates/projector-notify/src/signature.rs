//! The webhook signature: `Ledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"{t}.{body}"` with the integration's signing secret (Stripe's scheme, so receivers can
//! reuse their verifiers).

use hmac::{KeyInit, Mac};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Ledger-Signature";

/// How far a signature's timestamp may be from the receiver's clock before it is refused as
/// a replay, in seconds (docs/notifications.md).
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header value for `body` sent at `timestamp_unix_seconds`. (HMAC takes keys of any
/// length; `None` would mean the HMAC implementation refused the key.)
pub fn sign(signing_secret: &str, timestamp_unix_seconds: i64, body: &[u8]) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(signing_secret.as_bytes()).ok()?;
    mac.update(format!("{timestamp_unix_seconds}.").as_bytes());
    mac.update(body);
    Some(format!(
        "t={timestamp_unix_seconds},v1={}",
        hex(&mac.finalize().into_bytes())
    ))
}

/// Why a receiver refuses a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Ledger-Signature header is not `t=<unix>,v1=<hex>`")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance: a replay or a wrong clock")]
    OutsideTolerance,
    #[error("no v1 signature matches the body with this secret")]
    Mismatch,
}

/// What a receiver does: checks `header` against `body`, the secret and its clock
/// (`now_unix_seconds`), accepting timestamps within `tolerance_seconds`.
pub fn verify(
    signing_secret: &str,
    header: &str,
    body: &[u8],
    now_unix_seconds: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_unix_seconds.abs_diff(timestamp) > tolerance_seconds.unsigned_abs() {
        return Err(SignatureError::OutsideTolerance);
    }
    for signature in signatures {
        let Some(bytes) = unhex(signature) else {
            continue;
        };
        let mut mac = HmacSha256::new_from_slice(signing_secret.as_bytes())
            .map_err(|_| SignatureError::Mismatch)?;
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        // Constant-time comparison.
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_within_the_tolerance_only() {
        let body = br#"{"id":"x"}"#;
        let header = sign("whsec_0123456789abcdef", 1_767_225_600, body).expect("signed");
        assert!(header.starts_with("t=1767225600,v1="));
        assert_eq!(header.len(), "t=1767225600,v1=".len() + 64);
        let check = |secret: &str, body: &[u8], now: i64| {
            verify(secret, &header, body, now, SIGNATURE_TOLERANCE_SECONDS)
        };
        assert_eq!(
            check("whsec_0123456789abcdef", body, 1_767_225_600 + 300),
            Ok(())
        );
        assert_eq!(
            check("whsec_0123456789abcdef", body, 1_767_225_600 + 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check("another_secret_0123", body, 1_767_225_600),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("whsec_0123456789abcdef", br#"{"id":"y"}"#, 1_767_225_600),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s", "v1=00", body, 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
