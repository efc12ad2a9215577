use std::time::Duration;

use ledger_domain::UniqueKeyChanges;
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent, RequestFingerprint};
use ledger_writer::WriterError;
use uuid::Uuid;

use ledger_testkit::commands::register;
use ledger_testkit::ledger::{TestLedger, eventually};

#[tokio::test]
async fn events_committed_but_never_published_are_published_by_the_next_writer() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    for n in 0..3 {
        client
            .send(&register(&format!("k{n}"), &format!("{n}@example.com")))
            .await
            .expect("accepted");
    }
    writer.stop().await.expect("clean stop");

    // What a writer killed between COMMIT and publication leaves behind: events in the table
    // that the stream never got.
    let store_writer = ledger.store.writer().await.expect("lock");
    let template = ledger.table_events().await.remove(0).event;
    for n in 0..2 {
        store_writer
            .append_one(AppendRequest {
                stream_id: Uuid::now_v7(),
                expected_version: ExpectedVersion::Exact(0),
                idempotency_key: format!("unpublished-{n}"),
                request_fingerprint: RequestFingerprint([n; 32]),
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    ..template.clone()
                }],
                unique_keys: UniqueKeyChanges::default(),
                provider_objects: Vec::new(),
            })
            .await
            .expect("appended");
    }
    drop(store_writer);
    assert_eq!(ledger.stream_events().await.len(), 3);

    let writer = ledger.start_writer();
    let next = client
        .send(&register("k-after", "after@example.com"))
        .await
        .expect("accepted");
    assert_eq!(next.events[0].global_position, 6);
    assert_eq!(ledger.assert_stream_matches_table().await, 6);
    writer.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_writer_killed_under_load_loses_and_duplicates_nothing() {
    const CLIENTS: usize = 16;
    const COMMANDS_PER_CLIENT: usize = 25;
    let ledger = TestLedger::new().await;
    let first = ledger.start_writer();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            let client = ledger.client();
            tokio::spawn(async move {
                for n in 0..COMMANDS_PER_CLIENT {
                    let key = format!("c{client_index}-{n}");
                    let email = format!("c{client_index}-{n}@example.com");
                    // Retries on timeout reuse the key, so a command that was appended before
                    // the crash is answered from the log, not appended again.
                    client
                        .send(&register(&key, &email))
                        .await
                        .expect("accepted");
                }
            })
        })
        .collect();
    assert!(
        eventually(10_000, || async {
            ledger.store.last_position().await.unwrap_or(0) >= 50
        })
        .await
    );
    first.task.abort();
    let second = ledger.start_writer();
    for client in clients {
        client.await.expect("every command is eventually accepted");
    }
    let total = ledger.assert_stream_matches_table().await;
    assert_eq!(
        total,
        CLIENTS * COMMANDS_PER_CLIENT,
        "each command appended exactly once"
    );
    second.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_standby_writer_takes_over_when_the_leader_dies() {
    let ledger = TestLedger::new().await;
    let leader = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("k1", "one@example.com"))
        .await
        .expect("leader answers");
    let standby = ledger.start_writer();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !standby.task.is_finished(),
        "the standby waits for the lock"
    );
    leader.task.abort();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        client.send(&register("k2", "two@example.com")),
    )
    .await
    .expect("the standby answers within seconds")
    .expect("accepted");
    assert_eq!(answered.events[0].global_position, 2);
    assert_eq!(ledger.assert_stream_matches_table().await, 2);
    standby.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_stream_ahead_of_the_table_makes_the_writer_refuse_to_start() {
    let ledger = TestLedger::new().await;
    let jetstream = ledger.jetstream();
    ledger_bus::ensure_event_stream(&jetstream, &ledger.bus)
        .await
        .expect("stream");
    jetstream
        .publish(
            ledger.bus.event_subject("customer_registered"),
            "foreign".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    let writer = ledger.start_writer();
    let outcome = tokio::time::timeout(Duration::from_secs(10), writer.task)
        .await
        .expect("the writer stops by itself")
        .expect("task");
    assert!(
        matches!(
            outcome,
            Err(WriterError::StreamAhead {
                stream_last: 1,
                table_last: 0,
                ..
            })
        ),
        "{outcome:?}"
    );
}

/// The test writers run with the privileges of `ledger_writer` only (as a deployment's writer
/// logs in with a member of it), so every writer test also checks that the role's grants
/// suffice: without its INSERT on the event table, the writer cannot append.
#[tokio::test]
async fn the_test_writer_has_the_privileges_of_ledger_writer_only() {
    let ledger = TestLedger::new().await;
    ledger
        .database()
        .client()
        .await
        .batch_execute("REVOKE INSERT ON customer_payment_events FROM ledger_writer")
        .await
        .expect("revoke");
    let writer = ledger.start_writer();
    let refused = ledger
        .client()
        .send(&register("k-revoked", "revoked@example.com"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(ledger.last_position().await, 0);
    writer.stop().await.expect("clean stop");
}
