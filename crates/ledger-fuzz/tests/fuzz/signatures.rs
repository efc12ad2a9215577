//! Webhook authentication as ingest runs it on untrusted headers and bodies: Stripe's
//! `Stripe-Signature` (parsing and HMAC check), PayPal's transmission headers (the postback
//! request and verdict, the certificate URL check, offline verification) and Xendit's
//! callback token.
//!
//! Properties: no panic; nothing is accepted without the secret (a Stripe delivery only with a
//! `v1` computed with a configured secret, a Xendit callback only with a configured token,
//! never a PayPal one offline without a trusted certificate); a genuine delivery reads exactly
//! as `parse` reads its body (`Malformed`, 400, only then), anything else is a signature error
//! (401); the postback request embeds the body as received and the headers as given.

use ledger_connectors::paypal::{
    CertificateTrust, certificate_url_allowed, plausible_transmission, postback_request,
    postback_verdict, verify_offline,
};
use ledger_connectors::{Headers, ProviderMessage, VerifyError, stripe, xendit};
use ledger_domain::Provider;
use ledger_fuzz::{cases, corpus, json_corpus, mutated_bytes, mutated_json};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

/// Headers as (name, value) pairs; names compared case-insensitively.
#[derive(Debug, Clone)]
struct HeaderList(Vec<(String, String)>);

impl Headers for HeaderList {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What `parse` makes of a body, to compare with what verification makes of it.
fn parsed(provider: Provider, body: &[u8]) -> Result<ProviderMessage, VerifyError> {
    ledger_connectors::parse(provider, body)
}

/// A verification result that let the body through must equal `parse`'s reading of it.
fn reads_as_parse(
    verified: &Result<ProviderMessage, VerifyError>,
    provider: Provider,
    body: &[u8],
) -> Result<(), TestCaseError> {
    match (verified, parsed(provider, body)) {
        (Ok(message), Ok(expected)) => prop_assert_eq!(message, &expected),
        (Err(VerifyError::Malformed(_)), Err(VerifyError::Malformed(_))) => {}
        (verified, expected) => {
            return Err(TestCaseError::fail(format!(
                "verification gave {verified:?}, parse {expected:?}"
            )));
        }
    }
    Ok(())
}

const NOW: i64 = 1_767_225_600;
const STRIPE_SECRETS: [&str; 2] = ["whsec_fuzz_current", "whsec_fuzz_previous"];

fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    ring::hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One part of a generated `Stripe-Signature`.
#[derive(Debug, Clone)]
enum Part {
    /// `v1=` signed with configured secret `secret` (index) over the generated time.
    Genuine { secret: usize, upper: bool },
    /// `v1=` signed with a secret that is not configured.
    Foreign,
    /// `v1=` of random hex bytes.
    RandomHex(Vec<u8>),
    /// Any `name=value` text.
    Other(String, String),
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        3 => (0usize..2, any::<bool>()).prop_map(|(secret, upper)| Part::Genuine { secret, upper }),
        1 => Just(Part::Foreign),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Part::RandomHex),
        2 => ("(t|v1|v0|T|V1| t|)", "\\PC{0,20}").prop_map(|(name, value)| Part::Other(name, value)),
    ]
}

/// A `Stripe-Signature` header: `t=` at an offset from now (inside, at and outside the
/// tolerance, and at the ends of `i64`), then parts, then a few byte edits.
fn stripe_header() -> impl Strategy<Value = (i64, Vec<Part>, Vec<u8>)> {
    let offset = prop_oneof![
        proptest::sample::select(vec![0i64, 1, -1, 299, 300, 301, -300, -301, 86_400]),
        Just(i64::MIN),
        Just(i64::MAX),
        any::<i64>(),
    ];
    (
        offset,
        proptest::collection::vec(part(), 0..10),
        proptest::collection::vec(any::<u8>(), 0..3),
    )
}

fn stripe_case(
    (offset, parts, noise): &(i64, Vec<Part>, Vec<u8>),
    body: &[u8],
) -> Result<(), TestCaseError> {
    let timestamp = NOW.wrapping_add(*offset);
    let genuine: Vec<String> = STRIPE_SECRETS
        .iter()
        .map(|secret| stripe_signature(secret, timestamp, body))
        .collect();
    let mut header = format!("t={timestamp}");
    for part in parts {
        let text = match part {
            Part::Genuine {
                secret,
                upper: false,
            } => format!("v1={}", genuine[*secret]),
            Part::Genuine {
                secret,
                upper: true,
            } => {
                format!("v1={}", genuine[*secret].to_ascii_uppercase())
            }
            Part::Foreign => format!("v1={}", stripe_signature("whsec_other", timestamp, body)),
            Part::RandomHex(bytes) => {
                let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
                format!("v1={hex}")
            }
            Part::Other(name, value) => format!("{name}={value}"),
        };
        header.push(',');
        header.push_str(&text);
    }
    // A few stray bytes at the end (a truncated or padded header).
    header.push_str(&String::from_utf8_lossy(noise));
    let headers = HeaderList(vec![("Stripe-Signature".to_owned(), header.clone())]);
    let secrets = stripe::WebhookSecrets::new(&STRIPE_SECRETS, stripe::TOLERANCE_SECONDS_DEFAULT);
    let verified = stripe::verify(&headers, body, &secrets, NOW);
    if let Err(VerifyError::Signature(_)) = verified {
        return Ok(());
    }
    let lower = header.to_ascii_lowercase();
    prop_assert!(
        genuine
            .iter()
            .any(|signature| lower.contains(signature.as_str())),
        "accepted without a genuine signature: {header}"
    );
    prop_assert!(
        offset.unsigned_abs() <= stripe::TOLERANCE_SECONDS_DEFAULT.unsigned_abs(),
        "accepted outside the tolerance: {header}"
    );
    reads_as_parse(&verified, Provider::Stripe, body)
}

#[test]
fn stripe_signed_corpus_reads_as_parse_and_tampered_is_refused() {
    let secrets = stripe::WebhookSecrets::new(&STRIPE_SECRETS, stripe::TOLERANCE_SECONDS_DEFAULT);
    for entry in corpus("stripe") {
        for secret in STRIPE_SECRETS {
            let signature = stripe_signature(secret, NOW, &entry.bytes);
            let headers = HeaderList(vec![(
                "stripe-signature".to_owned(),
                format!("t={NOW},v1={signature}"),
            )]);
            let verified = stripe::verify(&headers, &entry.bytes, &secrets, NOW);
            assert!(verified.is_ok(), "{}: {verified:?}", entry.name);
            reads_as_parse(&verified, Provider::Stripe, &entry.bytes)
                .unwrap_or_else(|error| panic!("{}: {error}", entry.name));
            let mut tampered = entry.bytes.clone();
            tampered.push(b' ');
            assert!(matches!(
                stripe::verify(&headers, &tampered, &secrets, NOW),
                Err(VerifyError::Signature(_))
            ));
        }
    }
}

/// PayPal's transmission headers, by their field names in the postback request (PayPal's
/// "Verify webhook signature" API).
const TRANSMISSION_HEADERS: [(&str, &str); 5] = [
    ("auth_algo", "paypal-auth-algo"),
    ("cert_url", "paypal-cert-url"),
    ("transmission_id", "paypal-transmission-id"),
    ("transmission_sig", "paypal-transmission-sig"),
    ("transmission_time", "paypal-transmission-time"),
];

/// The PayPal transmission headers, each present or not, with generated values.
fn paypal_headers() -> impl Strategy<Value = HeaderList> {
    let value = prop_oneof![
        proptest::sample::select(vec![
            "SHA256withRSA".to_owned(),
            "sha256withrsa".to_owned(),
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
                .to_owned(),
            "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1".to_owned(),
            "8e6b4a40-1b1c-11f0-9f8e-0b1e7f0a1c2d".to_owned(),
            "2026-01-01T10:00:00Z".to_owned(),
            "bm90IGEgc2lnbmF0dXJl".to_owned(),
            String::new(),
        ]),
        "\\PC{0,40}",
    ];
    proptest::collection::vec(proptest::option::weighted(0.9, value), 5).prop_map(|values| {
        HeaderList(
            TRANSMISSION_HEADERS
                .iter()
                .zip(values)
                .filter_map(|((_, name), value)| Some(((*name).to_owned(), value?)))
                .collect(),
        )
    })
}

/// The postback request carries the body as received and the headers as given. The request
/// is JSON exactly when the body is (serde_json's `Value` refuses some texts, lone surrogates,
/// that its `RawValue` lets through; PayPal judges those).
fn postback_carries(
    headers: &HeaderList,
    body: &[u8],
    webhook_id: &str,
    request: &[u8],
) -> Result<(), TestCaseError> {
    let (Ok(request), Ok(event)) = (
        serde_json::from_slice::<Value>(request),
        serde_json::from_slice::<Value>(body),
    ) else {
        prop_assert_eq!(
            serde_json::from_slice::<Value>(request).is_ok(),
            serde_json::from_slice::<Value>(body).is_ok()
        );
        return Ok(());
    };
    prop_assert_eq!(&request["webhook_event"], &event);
    prop_assert_eq!(&request["webhook_id"], &Value::from(webhook_id));
    for (field, header) in TRANSMISSION_HEADERS {
        prop_assert_eq!(&request[field], &Value::from(headers.header(header)));
    }
    Ok(())
}

fn paypal_case(headers: &HeaderList, body: &[u8], webhook_id: &str) -> Result<(), TestCaseError> {
    let all_present = TRANSMISSION_HEADERS
        .iter()
        .all(|(_, name)| headers.header(name).is_some());
    let body_json = serde_json::from_slice::<&serde_json::value::RawValue>(body).ok();
    match postback_request(headers, body, webhook_id) {
        Ok(request) => {
            prop_assert!(all_present && body_json.is_some());
            postback_carries(headers, body, webhook_id, &request)?;
        }
        Err(VerifyError::Malformed(_)) => prop_assert!(body_json.is_none()),
        Err(VerifyError::Signature(_)) => prop_assert!(!all_present),
    }
    if plausible_transmission(headers).is_ok() {
        let url = headers.header("paypal-cert-url").unwrap_or_default();
        prop_assert!(certificate_url_allowed(url));
        prop_assert_eq!(headers.header("paypal-auth-algo"), Some("SHA256withRSA"));
    }
    // No trusted root: nothing verifies offline, whatever the certificate bytes.
    let trust = CertificateTrust::from_roots_der::<&[u8]>(&[])
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    let chain: [&[u8]; 2] = [body, b"\x30\x03\x02\x01\x00"];
    let offline = verify_offline(headers, body, webhook_id, &chain, &trust, NOW);
    prop_assert!(
        matches!(offline, Err(VerifyError::Signature(_))),
        "offline verification without a trusted root gave {:?}",
        offline
    );
    Ok(())
}

/// Certificate URLs: PayPal's, and ones an attacker would try (other hosts, ports, user
/// info, path tricks, look-alike hosts), then byte edits.
fn certificate_url_seeds() -> Vec<Vec<u8>> {
    [
        "https://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-2",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/../../../evil",
        "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com%2F@evil.example/v1/notifications/certs/",
    ]
    .iter()
    .map(|url| url.as_bytes().to_vec())
    .collect()
}

const PAYPAL_HOSTS: [&str; 4] = [
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];

fn certificate_url_case(url: &str) -> Result<(), TestCaseError> {
    if !certificate_url_allowed(url) {
        return Ok(());
    }
    let parsed = url::Url::parse(url)
        .map_err(|error| TestCaseError::fail(format!("allowed but not a URL: {error}")))?;
    let host = parsed.host_str().unwrap_or_default();
    prop_assert!(PAYPAL_HOSTS.contains(&host), "allowed host {host:?}");
    prop_assert_eq!(parsed.scheme(), "https");
    prop_assert_eq!(parsed.port_or_known_default(), Some(443));
    prop_assert!(
        parsed
            .as_str()
            .starts_with(&format!("https://{host}/v1/notifications/certs/")),
        "allowed {}",
        parsed.as_str()
    );
    Ok(())
}

fn verdict_case(response: &[u8]) -> Result<(), TestCaseError> {
    let success = serde_json::from_slice::<Value>(response)
        .ok()
        .is_some_and(|answer| answer["verification_status"] == "SUCCESS");
    match postback_verdict(response) {
        Ok(()) => prop_assert!(success),
        Err(VerifyError::Signature(_)) => prop_assert!(!success),
        Err(other) => return Err(TestCaseError::fail(format!("verdict gave {other:?}"))),
    }
    Ok(())
}

const XENDIT_TOKENS: [&str; 2] = ["xnd_token_current", "xnd_token_previous"];

fn xendit_case(token: Option<&str>, body: &[u8]) -> Result<(), TestCaseError> {
    let headers = HeaderList(
        token
            .map(|token| ("X-CALLBACK-TOKEN".to_owned(), token.to_owned()))
            .into_iter()
            .collect(),
    );
    let verified = xendit::verify(&headers, body, &xendit::CallbackTokens::new(&XENDIT_TOKENS));
    if token.is_some_and(|token| XENDIT_TOKENS.contains(&token)) {
        reads_as_parse(&verified, Provider::Xendit, body)
    } else {
        prop_assert!(
            matches!(verified, Err(VerifyError::Signature(_))),
            "token {:?} gave {:?}",
            token,
            verified
        );
        Ok(())
    }
}

fn xendit_token() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.95,
        prop_oneof![
            proptest::sample::select(XENDIT_TOKENS.to_vec()).prop_map(str::to_owned),
            proptest::sample::select(XENDIT_TOKENS.to_vec())
                .prop_flat_map(|token| (Just(token), 0..token.len()))
                .prop_map(|(token, cut)| token[..cut].to_owned()),
            Just("XND_TOKEN_CURRENT".to_owned()),
            Just("xnd_token_current ".to_owned()),
            "\\PC{0,24}",
        ],
    )
}

#[test]
fn authentication_corpora_replay() {
    for entry in corpus("paypal") {
        let headers = HeaderList(vec![
            ("paypal-auth-algo".to_owned(), "SHA256withRSA".to_owned()),
            (
                "paypal-cert-url".to_owned(),
                "https://api.paypal.com/v1/notifications/certs/CERT-1".to_owned(),
            ),
            ("paypal-transmission-id".to_owned(), "id-1".to_owned()),
            ("paypal-transmission-sig".to_owned(), "c2ln".to_owned()),
            (
                "paypal-transmission-time".to_owned(),
                "2026-01-01T10:00:00Z".to_owned(),
            ),
        ]);
        paypal_case(&headers, &entry.bytes, "WH-HOOK-1")
            .unwrap_or_else(|error| panic!("paypal/{}: {error}", entry.name));
    }
    for url in certificate_url_seeds() {
        certificate_url_case(&String::from_utf8_lossy(&url))
            .unwrap_or_else(|error| panic!("{}: {error}", String::from_utf8_lossy(&url)));
    }
    for entry in corpus("xendit") {
        for token in XENDIT_TOKENS {
            xendit_case(Some(token), &entry.bytes)
                .unwrap_or_else(|error| panic!("xendit/{}: {error}", entry.name));
        }
        xendit_case(None, &entry.bytes).unwrap_or_else(|error| panic!("{error}"));
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn fuzz_stripe_signature(
        header in stripe_header(),
        body in mutated_json(json_corpus("stripe")),
    ) {
        stripe_case(&header, &body)?;
    }

    #[test]
    fn fuzz_paypal_transmission(
        headers in paypal_headers(),
        body in mutated_bytes(corpus("paypal").into_iter().map(|entry| entry.bytes).collect()),
        webhook_id in "\\PC{0,12}",
    ) {
        paypal_case(&headers, &body, &webhook_id)?;
    }

    #[test]
    fn fuzz_paypal_certificate_url(url in mutated_bytes(certificate_url_seeds())) {
        certificate_url_case(&String::from_utf8_lossy(&url))?;
    }

    #[test]
    fn fuzz_paypal_verdict(
        response in mutated_bytes(vec![
            br#"{"verification_status":"SUCCESS"}"#.to_vec(),
            br#"{"verification_status":"FAILURE"}"#.to_vec(),
        ]),
    ) {
        verdict_case(&response)?;
    }

    #[test]
    fn fuzz_xendit_token(
        token in xendit_token(),
        body in mutated_json(json_corpus("xendit")),
    ) {
        xendit_case(token.as_deref(), &body)?;
    }
}
