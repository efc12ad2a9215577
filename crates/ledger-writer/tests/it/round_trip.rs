use std::collections::BTreeSet;
use std::sync::Arc;

use ledger_bus::{Encoding, SendError};
use ledger_domain::proto::RejectionKind;

use ledger_testkit::commands::{
    record_payment, register, start_subscription, with_expected_version,
};
use ledger_testkit::ledger::TestLedger;

#[tokio::test]
async fn a_command_round_trip_appends_publishes_and_answers_with_the_position() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let accepted = client
        .send(&register("k-register", "ada@example.com"))
        .await
        .expect("accepted");
    assert!(!accepted.duplicate);
    assert_eq!(accepted.events.len(), 1);
    assert_eq!(accepted.events[0].global_position, 1);
    assert_eq!(accepted.events[0].stream_version, 1);
    assert_eq!(accepted.events[0].event_type, "customer_registered");

    // A later command for the same customer, sent as JSON, sees the first one's event.
    let json = client.clone().with_encoding(Encoding::Json);
    let subscribed = json
        .send(&start_subscription(
            "k-sub",
            &accepted.customer_id,
            "sub_1",
            "USD",
        ))
        .await
        .expect("accepted");
    assert_eq!(subscribed.events[0].global_position, 2);
    assert_eq!(subscribed.events[0].stream_version, 2);
    assert_eq!(subscribed.customer_id, accepted.customer_id);

    assert_eq!(ledger.assert_stream_matches_table().await, 2);
    let table = ledger.table_events().await;
    assert_eq!(
        table[0].event.event_id.to_string(),
        accepted.events[0].event_id
    );
    writer.stop().await.expect("clean stop");
}

#[tokio::test]
async fn thirty_two_clients_sending_ten_thousand_commands_leave_table_and_stream_identical() {
    const CLIENTS: usize = 32;
    const COMMANDS_PER_CLIENT: usize = 313;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            let client = ledger.client();
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for n in 0..COMMANDS_PER_CLIENT {
                    let key = format!("c{client_index}-{n}");
                    let email = format!("c{client_index}-{n}@example.com");
                    let accepted = client
                        .send(&register(&key, &email))
                        .await
                        .expect("accepted");
                    positions.push(accepted.events[0].global_position);
                }
                positions
            })
        })
        .collect();
    let mut positions = BTreeSet::new();
    for task in tasks {
        for position in task.await.expect("client") {
            assert!(
                positions.insert(position),
                "position {position} answered twice"
            );
        }
    }
    let total = (CLIENTS * COMMANDS_PER_CLIENT) as u64;
    assert_eq!(positions, (1..=total).collect::<BTreeSet<_>>());
    assert_eq!(ledger.assert_stream_matches_table().await as u64, total);
    writer.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_repeated_idempotency_key_appends_nothing_and_returns_the_original_result() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let first = client
        .send(&register("stripe:evt_1", "ada@example.com"))
        .await
        .expect("accepted");
    // The retry is rejected by today's state (the email is taken by the customer the first
    // attempt created), yet it is answered with the first attempt's result.
    let retry = client
        .send(&register("stripe:evt_1", "ada@example.com"))
        .await
        .expect("answered from the log");
    assert!(retry.duplicate);
    assert_eq!(retry.events, first.events);
    assert_eq!(retry.customer_id, first.customer_id);

    let subscription = start_subscription("stripe:evt_2", &first.customer_id, "sub_1", "USD");
    let started = client.send(&subscription).await.expect("accepted");
    let started_again = client.send(&subscription).await.expect("duplicate");
    assert!(started_again.duplicate);
    assert_eq!(started_again.events, started.events);

    assert_eq!(ledger.last_position().await, 2);
    assert_eq!(ledger.assert_stream_matches_table().await, 2);
    writer.stop().await.expect("clean stop");
}

#[tokio::test]
async fn commands_racing_on_the_same_expected_version_have_exactly_one_winner() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = Arc::new(ledger.client());
    let customer = client
        .send(&register("k0", "ada@example.com"))
        .await
        .expect("registered")
        .customer_id;
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let client = Arc::clone(&client);
            let command = with_expected_version(
                start_subscription(&format!("race-{n}"), &customer, &format!("sub_{n}"), "USD"),
                1,
            );
            tokio::spawn(async move { client.send(&command).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await.expect("task") {
            Ok(accepted) => {
                winners += 1;
                assert_eq!(accepted.events[0].stream_version, 2);
            }
            Err(error) => assert_eq!(
                error.rejection_kind(),
                Some(RejectionKind::Conflict),
                "{error}"
            ),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(ledger.assert_stream_matches_table().await, 2);
    writer.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let ledger = TestLedger::new().await;
    let mut config = ledger.writer_config();
    config.queue_commands_max = 1;
    config.batch_commands_max = 1;
    let writer = ledger.start_writer_with(config);
    let client = ledger.client();
    // Wait until the writer answers before flooding it.
    client
        .send(&register("warm-up", "warm@example.com"))
        .await
        .expect("accepted");
    let requests: Vec<_> = (0..300)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .send(&register(&format!("k{n}"), &format!("{n}@example.com")))
                    .await
            })
        })
        .collect();
    let (mut accepted, mut busy) = (0u64, 0u64);
    for request in requests {
        match request.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(SendError::Rejected(rejected)) if rejected.kind() == RejectionKind::Busy => {
                busy += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "a queue of one must overflow under 300 concurrent commands"
    );
    assert_eq!(accepted + busy, 300);
    assert_eq!(ledger.last_position().await, accepted + 1);
    assert_eq!(
        ledger.assert_stream_matches_table().await as u64,
        accepted + 1
    );
    writer.stop().await.expect("clean stop");
}

/// The reply shapes a shell client sees for JSON.
#[test]
fn json_commands_use_the_proto_field_names() {
    let command = register("k", "ada@example.com");
    let json = String::from_utf8(ledger_bus::encode_command(Encoding::Json, &command).to_vec())
        .expect("utf-8");
    assert!(json.contains("\"register_customer\""), "{json}");
    assert!(json.contains("\"idempotency_key\":\"k\""), "{json}");
    let decoded = ledger_bus::decode_command(Encoding::Json, json.as_bytes()).expect("decode");
    assert_eq!(decoded, command);
    let camel = json.replace("idempotency_key", "idempotencyKey");
    assert_eq!(
        ledger_bus::decode_command(Encoding::Json, camel.as_bytes()).expect("decode"),
        command
    );
}

/// Issue 11, item 2: a payment for customer B sent with the key of customer A's payment is
/// refused (`idempotency_key_reused`) without naming A, and B's payment is not recorded; a
/// true repeat of A's payment, even with another expected version, gets the original answer.
#[tokio::test]
async fn an_idempotency_key_reused_for_another_customer_is_refused_without_naming_the_first() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let mut customers = Vec::new();
    for name in ["a", "b"] {
        let customer_id = client
            .send(&register(
                &format!("signup:{name}"),
                &format!("{name}@example.com"),
            ))
            .await
            .expect("registered")
            .customer_id;
        client
            .send(&start_subscription(
                &format!("sub:{name}"),
                &customer_id,
                "sub_1",
                "USD",
            ))
            .await
            .expect("started");
        customers.push(customer_id);
    }
    let (customer_a, customer_b) = (customers[0].as_str(), customers[1].as_str());
    let paid = client
        .send(&record_payment("stripe:evt_pay", customer_a, "py_a", 4_900))
        .await
        .expect("accepted");
    assert_eq!(paid.events[0].global_position, 5);

    let refusal = |command| {
        let client = client.clone();
        async move {
            match client.send(&command).await {
                Err(SendError::Rejected(rejected)) => rejected,
                other => panic!("expected a rejection, got {other:?}"),
            }
        }
    };
    // Decided for B, refused by the store's fingerprint check.
    let for_b = refusal(record_payment("stripe:evt_pay", customer_b, "py_b", 4_900)).await;
    // Refused by the rules too (no such customer): the reused key is what is answered.
    let for_nobody = refusal(record_payment(
        "stripe:evt_pay",
        "0190f5c2-0000-7000-8000-000000000000",
        "py_b",
        4_900,
    ))
    .await;
    for rejected in [&for_b, &for_nobody] {
        assert_eq!(
            (
                rejected.kind(),
                rejected.code.as_str(),
                rejected.message.as_str()
            ),
            (
                RejectionKind::Invalid,
                "idempotency_key_reused",
                "idempotency key \"stripe:evt_pay\" was already used for a different request: \
                 send a new request with a new key"
            )
        );
    }

    let repeat = client
        .send(&with_expected_version(
            record_payment("stripe:evt_pay", customer_a, "py_a", 4_900),
            2,
        ))
        .await
        .expect("the same request");
    assert!(repeat.duplicate);
    assert_eq!(
        (repeat.customer_id.as_str(), repeat.events),
        (customer_a, paid.events)
    );

    // Two customers' payments with one key at once, in one batch or two: one is recorded.
    let race_a = record_payment("stripe:evt_race", customer_a, "py_a2", 100);
    let race_b = record_payment("stripe:evt_race", customer_b, "py_b2", 100);
    let (first, second) = tokio::join!(client.send(&race_a), client.send(&race_b));
    let codes: Vec<&str> = [&first, &second]
        .iter()
        .map(|outcome| match outcome {
            Ok(accepted) if !accepted.duplicate => "accepted",
            Err(SendError::Rejected(rejected)) => rejected.code.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(
        codes == ["accepted", "idempotency_key_reused"]
            || codes == ["idempotency_key_reused", "accepted"],
        "{codes:?}"
    );

    assert_eq!(ledger.last_position().await, 6);
    let customer_b_events = ledger
        .store
        .read_stream(customer_b.parse().expect("a UUID"), 1)
        .await
        .expect("read");
    // Registration and subscription, plus B's racing payment if it won; never py_b.
    assert_eq!(
        customer_b_events.len(),
        2 + usize::from(codes[1] == "accepted")
    );
    assert_eq!(ledger.assert_stream_matches_table().await, 6);
    writer.stop().await.expect("clean stop");
}
