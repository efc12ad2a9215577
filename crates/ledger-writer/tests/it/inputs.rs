use async_nats::HeaderMap;
use ledger_bus::{COMMAND_BYTES_MAX, CONTENT_TYPE_HEADER, Encoding, decode_reply, encode_command};
use ledger_domain::proto::{self, RejectionKind};

use ledger_testkit::commands::{register, start_subscription};
use ledger_testkit::ledger::TestLedger;

/// Sends raw bytes as a command and returns the rejection kind and code.
async fn send_raw(
    ledger: &TestLedger,
    command_name: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (RejectionKind, String) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, content_type);
    let message = ledger
        .nats
        .request_with_headers(
            ledger.bus.command_subject(command_name),
            headers,
            body.into(),
        )
        .await
        .expect("answered");
    let encoding = Encoding::from_content_type(Some(content_type)).unwrap_or(Encoding::Protobuf);
    match decode_reply(encoding, &message.payload)
        .expect("reply")
        .result
    {
        Some(proto::command_reply::Result::Rejected(rejected)) => (rejected.kind(), rejected.code),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_gets_a_typed_rejection_and_appends_nothing() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    // The typed client retries until the writer has subscribed; raw requests below do not.
    let customer = client
        .send(&register("k-ok", "ada@example.com"))
        .await
        .expect("accepted")
        .customer_id;
    let protobuf = ledger_bus::CONTENT_TYPE_PROTOBUF;
    let json = ledger_bus::CONTENT_TYPE_JSON;

    let cases: Vec<(&str, &str, Vec<u8>, RejectionKind, &str)> = vec![
        (
            "register_customer",
            protobuf,
            vec![0xff, 0xff, 0xff],
            RejectionKind::Malformed,
            "malformed",
        ),
        (
            "register_customer",
            json,
            b"{\"metadata\": ".to_vec(),
            RejectionKind::Malformed,
            "malformed",
        ),
        (
            "register_customer",
            json,
            b"{\"frobnicate\": {}}".to_vec(),
            RejectionKind::Malformed,
            "malformed",
        ),
        (
            "frobnicate",
            protobuf,
            encode_command(Encoding::Protobuf, &register("k", "a@example.com")).to_vec(),
            RejectionKind::Malformed,
            "subject_mismatch",
        ),
        (
            "register_customer",
            protobuf,
            Vec::new(),
            RejectionKind::Malformed,
            "missing_command",
        ),
        (
            "register_customer",
            protobuf,
            vec![0; COMMAND_BYTES_MAX + 1],
            RejectionKind::TooLarge,
            "too_large",
        ),
        (
            "register_customer",
            "text/plain",
            b"hello".to_vec(),
            RejectionKind::Malformed,
            "unsupported_content_type",
        ),
    ];
    for (name, content_type, body, kind, code) in cases {
        let (got_kind, got_code) = send_raw(&ledger, name, content_type, body).await;
        assert_eq!(
            (got_kind, got_code.as_str()),
            (kind, code),
            "{name} {content_type}"
        );
    }

    let invalid_currency = client
        .send(&start_subscription("k-usd", &customer, "sub_1", "usd"))
        .await
        .expect_err("rejected");
    assert_eq!(
        invalid_currency.rejection_kind(),
        Some(RejectionKind::Invalid)
    );
    let unknown_customer = client
        .send(&start_subscription(
            "k-nobody",
            "0190f5c2-0000-7000-8000-000000000000",
            "sub_1",
            "USD",
        ))
        .await
        .expect_err("rejected");
    assert_eq!(
        unknown_customer.rejection_kind(),
        Some(RejectionKind::NotFound)
    );
    let taken = client
        .send(&register("k-again", "ADA@example.com "))
        .await
        .expect_err("the email belongs to another customer");
    assert_eq!(taken.rejection_kind(), Some(RejectionKind::Invalid));

    assert_eq!(ledger.last_position().await, 1, "only the valid command");
    assert_eq!(ledger.assert_stream_matches_table().await, 1);
    writer.stop().await.expect("clean stop");
}

/// The rejection code of a refused command.
fn rejection_code(error: &ledger_bus::SendError) -> &str {
    match error {
        ledger_bus::SendError::Rejected(rejected) => &rejected.code,
        other => panic!("expected a rejection, got {other}"),
    }
}

/// Issue 11, item 8: lookalikes of a customer's email register no second customer.
#[tokio::test]
async fn lookalike_emails_of_a_customer_register_no_second_customer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("k-cafe", "caf\u{e9}@example.com"))
        .await
        .expect("accepted");
    let lookalikes = [
        // e + U+0301 COMBINING ACUTE ACCENT.
        (
            "k-decomposed",
            "cafe\u{301}@example.com",
            "unique_key_taken",
        ),
        // U+FF41 FULLWIDTH LATIN SMALL LETTER A.
        (
            "k-fullwidth",
            "c\u{ff41}f\u{e9}@example.com",
            "unique_key_taken",
        ),
        // U+200B ZERO WIDTH SPACE.
        (
            "k-zero-width",
            "caf\u{200b}\u{e9}@example.com",
            "email_character_not_allowed",
        ),
    ];
    for (key, email, code) in lookalikes {
        let refused = client
            .send(&register(key, email))
            .await
            .expect_err("a lookalike of a taken email");
        assert_eq!(
            refused.rejection_kind(),
            Some(RejectionKind::Invalid),
            "{email:?}"
        );
        assert_eq!(rejection_code(&refused), code, "{email:?}");
    }
    assert_eq!(ledger.last_position().await, 1, "one customer only");
    writer.stop().await.expect("clean stop");
}

/// PostgreSQL text cannot hold NUL: a command whose idempotency key holds one is refused like
/// any other bad key, and the writer goes on answering (it looked the key up for the answer of
/// the refused command, and the failed query restarted it at every retry).
#[tokio::test]
async fn an_idempotency_key_holding_nul_is_refused_and_the_writer_goes_on() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let refused = client
        .send(&register("k-\u{0}", "ada@example.com"))
        .await
        .expect_err("a key with NUL");
    assert_eq!(refused.rejection_kind(), Some(RejectionKind::Invalid));
    client
        .send(&register("k-after", "ada@example.com"))
        .await
        .expect("the writer still answers");
    assert_eq!(ledger.last_position().await, 1);
    writer.stop().await.expect("clean stop");
}
