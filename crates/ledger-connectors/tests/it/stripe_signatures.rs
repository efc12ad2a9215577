//! Stripe-Signature verification against the shared signature vectors
//! (`$LEDGER_PROVIDER_FIXTURES/stripe/signature-vectors.json`) and the scheme's edge cases.

use ledger_connectors::stripe::{TOLERANCE_SECONDS_DEFAULT, WebhookSecrets, verify};
use ledger_connectors::{Headers, VerifyError};
use serde_json::Value;

use crate::support;

struct Header(Option<String>);

impl Headers for Header {
    fn header(&self, name: &str) -> Option<&str> {
        name.eq_ignore_ascii_case("stripe-signature")
            .then_some(self.0.as_deref())
            .flatten()
    }
}

fn signed(value: &str) -> Header {
    Header(Some(value.to_owned()))
}

fn vectors() -> (Value, std::path::PathBuf) {
    let dir = support::fixtures_dir().join("stripe");
    let text = std::fs::read_to_string(dir.join("signature-vectors.json")).expect("vectors");
    (serde_json::from_str(&text).expect("JSON"), dir)
}

fn vector<'a>(vectors: &'a Value, name: &str) -> &'a Value {
    vectors["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|vector| vector["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn payload(vector: &Value, dir: &std::path::Path) -> Vec<u8> {
    match vector["payload_file"].as_str() {
        Some(file) => std::fs::read(dir.join(file)).expect("payload file"),
        None => vector["payload"]
            .as_str()
            .expect("payload")
            .as_bytes()
            .to_vec(),
    }
}

fn secrets(names: &[&str], tolerance: i64) -> WebhookSecrets {
    WebhookSecrets::new(names, tolerance)
}

#[test]
fn the_stripe_dotnet_vector_passes_within_and_fails_outside_its_tolerance() {
    let (vectors, dir) = vectors();
    let fixed = vector(&vectors, "stripe-dotnet EventUtilityTest");
    let raw = payload(fixed, &dir);
    assert_eq!(
        raw.len() as u64,
        fixed["payload_length_bytes"].as_u64().expect("length")
    );
    let header = signed(fixed["header"].as_str().expect("header"));
    let secret = fixed["secret"].as_str().expect("secret");
    for case in fixed["tolerance_cases_from_source"]
        .as_array()
        .expect("cases")
    {
        let now = case["now"].as_i64().expect("now");
        let tolerance = case["tolerance"].as_i64().expect("tolerance");
        let result = verify(&header, &raw, &secrets(&[secret], tolerance), now);
        if case["expect"] == "accept" {
            let message = result.expect("accepted");
            assert_eq!(message.event_id, "evt_123");
            assert_eq!(message.account_id.as_deref(), Some("cus_123"));
            assert_eq!(message.email.as_deref(), Some("test@stripe.com"));
        } else {
            assert!(
                matches!(&result, Err(VerifyError::Signature(reason)) if reason.contains("timestamp")),
                "{result:?}"
            );
        }
    }
    // RejectIncorrectSignature: the payload changed after signing.
    let mut changed = raw.clone();
    changed.extend_from_slice(b"this_changes_the_json");
    let result = verify(&header, &changed, &secrets(&[secret], 300), 1_533_204_620);
    assert!(
        matches!(result, Err(VerifyError::Signature(_))),
        "{result:?}"
    );
    // ValidateSignatureHandlesIncorrectHeaderValues: an empty t=.
    let empty_t = signed(
        &fixed["header"]
            .as_str()
            .expect("header")
            .replace("t=1533204620", "t="),
    );
    let result = verify(&empty_t, &raw, &secrets(&[secret], 300), 1_533_204_620);
    assert!(
        matches!(result, Err(VerifyError::Signature(_))),
        "{result:?}"
    );
}

#[test]
fn the_raw_bytes_are_verified_not_their_json() {
    let (vectors, dir) = vectors();
    let fixed = vector(&vectors, "stripe-dotnet EventUtilityTest");
    let raw = payload(fixed, &dir);
    let stripped = &raw[..raw.len() - 1];
    let header = signed(fixed["header"].as_str().expect("header"));
    let result = verify(
        &header,
        stripped,
        &secrets(&["webhook_secret"], 300),
        1_533_204_620,
    );
    assert!(
        matches!(result, Err(VerifyError::Signature(_))),
        "{result:?}"
    );
    let own = vector(&vectors, "raw-bytes sensitivity");
    let v1 = own["v1_for_stripped_payload"].as_str().expect("v1");
    let header = signed(&format!("t=1533204620,v1={v1}"));
    verify(
        &header,
        stripped,
        &secrets(&["webhook_secret"], 300),
        1_533_204_620,
    )
    .expect("the stripped payload with its own signature");
}

#[test]
fn any_of_several_v1_signatures_under_any_of_several_secrets_passes() {
    let (vectors, dir) = vectors();
    let rotation = vector(&vectors, "multiple v1 signatures");
    let raw = payload(rotation, &dir);
    let header = signed(rotation["header"].as_str().expect("header"));
    for secret in ["webhook_secret", "webhook_secret_rolled"] {
        verify(&header, &raw, &secrets(&[secret], 300), 1_533_204_620)
            .unwrap_or_else(|error| panic!("{secret}: {error}"));
    }
    // Several configured secrets: one of them signed it.
    verify(
        &header,
        &raw,
        &secrets(&["whsec_other", "webhook_secret_rolled"], 300),
        1_533_204_620,
    )
    .expect("the second secret matches");
    let result = verify(
        &header,
        &raw,
        &secrets(&["whsec_other"], 300),
        1_533_204_620,
    );
    assert!(
        matches!(result, Err(VerifyError::Signature(_))),
        "{result:?}"
    );
}

#[test]
fn the_empty_object_vector_passes_and_is_then_refused_as_no_event() {
    let (vectors, dir) = vectors();
    let empty = vector(&vectors, "empty JSON object");
    let raw = payload(empty, &dir);
    let header = signed(empty["header"].as_str().expect("header"));
    // Genuine signature, but "{}" is not a Stripe event: 400, not 401.
    let result = verify(
        &header,
        &raw,
        &secrets(&["test_secret"], 300),
        1_700_000_000,
    );
    assert!(
        matches!(result, Err(VerifyError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn a_missing_header_no_v1_or_only_v0_is_refused() {
    let raw = b"{}";
    let keys = secrets(&["test_secret"], TOLERANCE_SECONDS_DEFAULT);
    for header in [
        Header(None),
        signed("t=1700000000"),
        signed("t=1700000000,v0=c561c5814cba8a0cd366ee43292d205cf59c9635ad120894be1ef80c0af72b76"),
        signed("v1=c561c5814cba8a0cd366ee43292d205cf59c9635ad120894be1ef80c0af72b76"),
        signed("garbage"),
    ] {
        let result = verify(&header, raw, &keys, 1_700_000_000);
        assert!(
            matches!(result, Err(VerifyError::Signature(_))),
            "{:?}: {result:?}",
            header.0
        );
    }
}

#[test]
fn each_refusal_names_its_reason() {
    let raw = b"{}";
    let keys = secrets(&["test_secret"], TOLERANCE_SECONDS_DEFAULT);
    let genuine = "c561c5814cba8a0cd366ee43292d205cf59c9635ad120894be1ef80c0af72b76";
    for (header, reason) in [
        ("t=1700000000".to_owned(), "no v1 signature"),
        ("t=1700000000,v1=not-hex".to_owned(), "not hexadecimal"),
        (format!("v1={genuine}"), "no valid timestamp"),
        (
            format!("t=1700000000,v1={}", "ab".repeat(32)),
            "no v1 signature matches",
        ),
    ] {
        let result = verify(&signed(&header), raw, &keys, 1_700_000_000);
        assert!(
            matches!(&result, Err(VerifyError::Signature(text)) if text.contains(reason)),
            "{header}: {result:?}"
        );
    }
    // A value that is not hex beside the genuine one is ignored, as Stripe's libraries do.
    let result = verify(
        &signed(&format!("t=1700000000,v1=zz,v1={genuine}")),
        raw,
        &keys,
        1_700_000_000,
    );
    assert!(
        matches!(result, Err(VerifyError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn the_tolerance_applies_to_old_and_future_timestamps() {
    let raw = b"{}";
    let header =
        signed("t=1700000000,v1=c561c5814cba8a0cd366ee43292d205cf59c9635ad120894be1ef80c0af72b76");
    let keys = secrets(&["test_secret"], 300);
    for (now, accepted) in [
        (1_700_000_300, true),
        (1_699_999_700, true),
        (1_700_000_301, false),
        (1_699_999_699, false),
    ] {
        let result = verify(&header, raw, &keys, now);
        let signature_ok = !matches!(result, Err(VerifyError::Signature(_)));
        assert_eq!(signature_ok, accepted, "now {now}: {result:?}");
    }
}

#[test]
fn more_v1_values_than_stripe_sends_are_refused_even_with_the_right_one_among_them() {
    let raw = b"{}";
    let genuine = "v1=c561c5814cba8a0cd366ee43292d205cf59c9635ad120894be1ef80c0af72b76";
    let keys = secrets(&["test_secret"], 300);
    let forged = format!("v1={}", "ab".repeat(32));
    let header = |forgeries: usize| {
        let mut values = vec![forged.as_str(); forgeries];
        values.push(genuine);
        signed(&format!("t=1700000000,{}", values.join(",")))
    };
    // Up to SIGNATURES_MAX values, the genuine one among them passes (a body that is no event
    // is then malformed, not a bad signature).
    let within = verify(
        &header(ledger_connectors::stripe::SIGNATURES_MAX - 1),
        raw,
        &keys,
        1_700_000_000,
    );
    assert!(
        matches!(within, Err(VerifyError::Malformed(_))),
        "{within:?}"
    );
    for forgeries in [ledger_connectors::stripe::SIGNATURES_MAX, 5_000] {
        let result = verify(&header(forgeries), raw, &keys, 1_700_000_000);
        assert!(
            matches!(&result, Err(VerifyError::Signature(reason)) if reason.contains("more than")),
            "{forgeries}: {result:?}"
        );
    }
}

#[test]
fn extreme_timestamps_are_refused_without_overflow() {
    let raw = b"{}";
    let keys = secrets(&["test_secret"], 300);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test_secret");
    for t in [i64::MIN, i64::MAX, -1] {
        // Genuinely signed: only the timestamp can refuse it.
        let tag = ring::hmac::sign(&key, format!("{t}.{{}}").as_bytes());
        let hex: String = tag
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let header = signed(&format!("t={t},v1={hex}"));
        for now in [0, 1_700_000_000, i64::MAX, i64::MIN]
            .into_iter()
            .filter(|now| now.abs_diff(t) > 300)
        {
            let result = verify(&header, raw, &keys, now);
            assert!(
                matches!(result, Err(VerifyError::Signature(_))),
                "t={t} now={now}: {result:?}"
            );
        }
    }
}
