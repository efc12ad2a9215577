//! PayPal's offline webhook verification: an RSA signature over the transmission id, time,
//! webhook id and the CRC32 of the raw body, checked with the public key of PayPal's
//! certificate (as PayPal's SDKs do it, e.g. PayPal-Python-SDK `WebhookEvent.verify`).
//!
//! The certificate is named by the delivery itself (`PAYPAL-CERT-URL`), so an attacker can
//! name their own: [`certificate_url_allowed`] accepts only `https://` URLs of PayPal's API
//! hosts under `/v1/notifications/certs/`, and the webhook-path helper fetches nothing else.
//! The certificate chain it serves is then checked as a TLS client checks a server's, with
//! rustls-webpki: the leaf is issued to [`CERTIFICATE_NAME`] (its subject alternative name),
//! valid at the delivery's check time, and chains through the served intermediates to one of
//! the trusted roots ([`CertificateTrust`]); only then is its key trusted with the signature.

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use crate::{Headers, ProviderMessage, VerifyError};

/// The name PayPal's webhook-signing certificate is issued to (`CN` and DNS subject
/// alternative name of the certificates under `/v1/notifications/certs/`, live and sandbox).
pub const CERTIFICATE_NAME: &str = "messageverificationcerts.paypal.com";

/// The root certificates a PayPal webhook certificate must chain to: in production the
/// system's or Mozilla's roots (PayPal's chain ends at a DigiCert root), in tests a root made
/// for the test.
#[derive(Debug, Clone)]
pub struct CertificateTrust {
    anchors: Vec<TrustAnchor<'static>>,
}

impl CertificateTrust {
    /// Trusts the given DER root certificates.
    ///
    /// # Errors
    /// [`VerifyError::Signature`] when one is not a certificate usable as a trust anchor.
    pub fn from_roots_der<R: AsRef<[u8]>>(roots: &[R]) -> Result<CertificateTrust, VerifyError> {
        let anchors = roots
            .iter()
            .map(|root| {
                let der = CertificateDer::from(root.as_ref());
                webpki::anchor_from_trusted_cert(&der)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|error| {
                        VerifyError::Signature(format!("a trusted root is unusable: {error}"))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(CertificateTrust { anchors })
    }
}

/// Accepts any extended key usage: PayPal's signing certificate is a TLS certificate (its
/// EKUs are TLS ones), used here to sign messages; the name and the chain identify PayPal.
#[derive(Debug, Clone, Copy)]
struct AnyKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyKeyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

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

/// Checks, before anything costly, that a delivery's transmission headers could be PayPal's:
/// `PAYPAL-AUTH-ALGO` is `SHA256withRSA` (the only algorithm PayPal signs webhooks with),
/// `PAYPAL-CERT-URL` is a PayPal certificate URL ([`certificate_url_allowed`]), and
/// `PAYPAL-TRANSMISSION-ID` and `PAYPAL-TRANSMISSION-SIG` are present. Ingest refuses a
/// delivery that fails this without calling PayPal's verification API, so forged
/// deliveries cannot make it spend PayPal API calls.
///
/// # Errors
/// [`VerifyError::Signature`] naming the first implausible header.
pub fn plausible_transmission(headers: &impl Headers) -> Result<(), VerifyError> {
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
    header(headers, "paypal-transmission-id")?;
    header(headers, "paypal-transmission-sig")?;
    Ok(())
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

/// Verifies a delivery offline against `certificate_chain`, the DER certificates the
/// webhook-path helper fetched from the delivery's `PAYPAL-CERT-URL` (only after
/// [`certificate_url_allowed`] said yes), leaf first, then the intermediates PayPal serves
/// with it, for the webhook `webhook_id`; then parses it.
///
/// Checks: the transmission headers are plausible ([`plausible_transmission`]); the leaf is
/// valid at `now_unix_seconds`, issued to [`CERTIFICATE_NAME`] and chains to a root of
/// `trust` (rustls-webpki, as for a TLS server); `PAYPAL-TRANSMISSION-SIG` (base64) is the
/// leaf key's RSA PKCS#1 v1.5 SHA-256 signature (2048 to 8192 bits) of [`signed_string`].
///
/// # Errors
/// [`VerifyError::Signature`] when any check fails; [`VerifyError::Malformed`] when the
/// genuine body is not a PayPal event ([`super::parse`]).
pub fn verify_offline<C: AsRef<[u8]>>(
    headers: &impl Headers,
    raw: &[u8],
    webhook_id: &str,
    certificate_chain: &[C],
    trust: &CertificateTrust,
    now_unix_seconds: i64,
) -> Result<ProviderMessage, VerifyError> {
    plausible_transmission(headers)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(header(headers, "paypal-transmission-sig")?)
        .map_err(|error| {
            VerifyError::Signature(format!("PAYPAL-TRANSMISSION-SIG is not base64: {error}"))
        })?;
    let refused = |what: &str, error: webpki::Error| {
        VerifyError::Signature(format!("the PayPal certificate {what}: {error}"))
    };
    let (leaf, intermediates) = certificate_chain
        .split_first()
        .ok_or_else(|| VerifyError::Signature("no PayPal certificate".to_owned()))?;
    let leaf = CertificateDer::from(leaf.as_ref());
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|intermediate| CertificateDer::from(intermediate.as_ref()))
        .collect();
    let certificate = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|error| refused("is not a DER X.509 certificate", error))?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now_unix_seconds).unwrap_or(0),
    ));
    certificate
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust.anchors,
            &intermediates,
            now,
            AnyKeyUsage,
            None,
            None,
        )
        .map_err(|error| {
            refused(
                "is not valid now or does not chain to a trusted root",
                error,
            )
        })?;
    let name = ServerName::try_from(CERTIFICATE_NAME)
        .map_err(|error| VerifyError::Signature(error.to_string()))?;
    certificate
        .verify_is_valid_for_subject_name(&name)
        .map_err(|error| refused(&format!("is not issued to {CERTIFICATE_NAME}"), error))?;
    let signed = signed_string(headers, raw, webhook_id)?;
    certificate
        .verify_signature(
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        )
        .map_err(|_| {
            VerifyError::Signature(format!(
                "PAYPAL-TRANSMISSION-SIG does not match the certificate's key for webhook \
                 {webhook_id}"
            ))
        })?;
    super::parse(raw)
}

fn header<'a>(headers: &'a impl Headers, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .header(name)
        .ok_or_else(|| VerifyError::Signature(format!("no {name} header")))
}
