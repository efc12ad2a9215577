//! PayPal's offline webhook verification: an RSA signature over the transmission id, time,
//! webhook id and the CRC32 of the raw body, checked with the public key of PayPal's
//! certificate (as PayPal's SDKs do it, e.g. PayPal-Python-SDK `WebhookEvent.verify`).
//!
//! The certificate is named by the delivery itself (`PAYPAL-CERT-URL`), so an attacker can
//! name their own: [`certificate_url_allowed`] accepts only `https://` URLs of PayPal's API
//! hosts under `/v1/notifications/certs/`, and the webhook-path helper fetches nothing else.
//! The trust in the key comes from that TLS fetch from PayPal's own host.

use base64::Engine as _;
use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::spki::ObjectIdentifier;

use crate::{Headers, ProviderMessage, VerifyError};

/// The hosts PayPal serves its webhook certificates from (live and sandbox, both API domains).
const CERTIFICATE_HOSTS: [&str; 4] = [
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];

/// The path under which PayPal serves webhook certificates
/// (`/v1/notifications/certs/CERT-...`).
const CERTIFICATE_PATH_PREFIX: &str = "/v1/notifications/certs/";

/// The only signature algorithm PayPal uses for webhooks (`PAYPAL-AUTH-ALGO`).
const AUTH_ALGORITHM: &str = "SHA256withRSA";

/// `rsaEncryption` (RFC 8017): the only key type the signature can be checked with.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// True when `url` may be fetched as the certificate of a PayPal delivery: `https`, one of
/// PayPal's API hosts (`api.paypal.com`, `api-m.paypal.com`, `api.sandbox.paypal.com`,
/// `api-m.sandbox.paypal.com`), the default port, no user info, a path under
/// `/v1/notifications/certs/`. Anything else is never fetched.
pub fn certificate_url_allowed(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    parsed.scheme() == "https"
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed
            .host_str()
            .is_some_and(|host| CERTIFICATE_HOSTS.contains(&host))
        && parsed.path().starts_with(CERTIFICATE_PATH_PREFIX)
}

/// The string PayPal signs for a delivery:
/// `<PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook id>|<CRC32 of the raw body>`,
/// the CRC32 (IEEE, as zlib) as an unsigned decimal.
///
/// # Errors
/// [`VerifyError::Signature`] when a transmission header is missing.
pub fn signed_string(
    headers: &impl Headers,
    raw: &[u8],
    webhook_id: &str,
) -> Result<String, VerifyError> {
    let transmission_id = header(headers, "paypal-transmission-id")?;
    let transmission_time = header(headers, "paypal-transmission-time")?;
    let crc = crc32fast::hash(raw);
    Ok(format!(
        "{transmission_id}|{transmission_time}|{webhook_id}|{crc}"
    ))
}

/// Verifies a delivery offline against `certificate_der`, the DER X.509 certificate the
/// webhook-path helper fetched from the delivery's `PAYPAL-CERT-URL` (only after
/// [`certificate_url_allowed`] said yes), for the webhook `webhook_id`, then parses it.
///
/// Checks: `PAYPAL-AUTH-ALGO` is `SHA256withRSA`; `PAYPAL-CERT-URL` is allowed; the
/// certificate is valid at `now_unix_seconds` and holds an RSA key (2048 to 8192 bits);
/// `PAYPAL-TRANSMISSION-SIG` (base64) is its RSA PKCS#1 v1.5 SHA-256 signature of
/// [`signed_string`].
///
/// # Errors
/// [`VerifyError::Signature`] when any check fails; [`VerifyError::Malformed`] when the
/// genuine body is not a PayPal event ([`super::parse`]).
pub fn verify_offline(
    headers: &impl Headers,
    raw: &[u8],
    webhook_id: &str,
    certificate_der: &[u8],
    now_unix_seconds: i64,
) -> Result<ProviderMessage, VerifyError> {
    let algorithm = header(headers, "paypal-auth-algo")?;
    if algorithm != AUTH_ALGORITHM {
        return Err(VerifyError::Signature(format!(
            "PAYPAL-AUTH-ALGO is {algorithm:?}, expected {AUTH_ALGORITHM}"
        )));
    }
    let certificate_url = header(headers, "paypal-cert-url")?;
    if !certificate_url_allowed(certificate_url) {
        return Err(VerifyError::Signature(format!(
            "PAYPAL-CERT-URL {certificate_url:?} is not a PayPal certificate URL"
        )));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(header(headers, "paypal-transmission-sig")?)
        .map_err(|error| {
            VerifyError::Signature(format!("PAYPAL-TRANSMISSION-SIG is not base64: {error}"))
        })?;
    let public_key = rsa_public_key(certificate_der, now_unix_seconds)?;
    let signed = signed_string(headers, raw, webhook_id)?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &signature)
    .map_err(|_| {
        VerifyError::Signature(format!(
            "PAYPAL-TRANSMISSION-SIG does not match the certificate's key for webhook \
             {webhook_id}"
        ))
    })?;
    super::parse(raw)
}

/// The RSA public key (PKCS#1 `RSAPublicKey` DER, what ring verifies with) of a certificate
/// valid at `now_unix_seconds`.
fn rsa_public_key(certificate_der: &[u8], now_unix_seconds: i64) -> Result<Vec<u8>, VerifyError> {
    let certificate = Certificate::from_der(certificate_der).map_err(|error| {
        VerifyError::Signature(format!("the PayPal certificate is not DER X.509: {error}"))
    })?;
    let tbs = &certificate.tbs_certificate;
    let seconds = |time: x509_cert::time::Time| {
        i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let not_before = seconds(tbs.validity.not_before);
    let not_after = seconds(tbs.validity.not_after);
    if !(not_before..=not_after).contains(&now_unix_seconds) {
        return Err(VerifyError::Signature(format!(
            "the PayPal certificate is valid from {not_before} to {not_after} (Unix seconds), \
             not at {now_unix_seconds}"
        )));
    }
    let key_info = &tbs.subject_public_key_info;
    if key_info.algorithm.oid != RSA_ENCRYPTION {
        return Err(VerifyError::Signature(format!(
            "the PayPal certificate's key is {}, not RSA",
            key_info.algorithm.oid
        )));
    }
    key_info
        .subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            VerifyError::Signature("the PayPal certificate's key is not whole bytes".to_owned())
        })
}

fn header<'a>(headers: &'a impl Headers, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .header(name)
        .ok_or_else(|| VerifyError::Signature(format!("no {name} header")))
}
