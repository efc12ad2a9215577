use futures_util::TryStreamExt;
use ledger_store::{CopyVerdict, ExpectedVersion, GENESIS_HASH, HeadCopy, Store, TableHead};
use ledger_testkit::TestDb;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::{payment, request, store};

async fn append_ten(store: &Store) {
    let writer = store.writer().await.expect("writer");
    let stream = Uuid::now_v7();
    let batch = (0..10)
        .map(|n| {
            request(
                stream,
                ExpectedVersion::Any,
                &format!("k{n}"),
                vec![payment(n)],
            )
        })
        .collect();
    for outcome in writer.append(batch).await.expect("append") {
        outcome.expect("accepted");
    }
}

#[tokio::test]
async fn update_delete_and_truncate_are_refused_even_for_a_superuser() {
    let (database, store) = store().await;
    append_ten(&store).await;
    let client = database.client().await;
    for statement in [
        "UPDATE customer_payment_events SET account_id = 'x' WHERE global_position = 1",
        "DELETE FROM customer_payment_events WHERE global_position = 1",
        "TRUNCATE customer_payment_events",
    ] {
        let error = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            error.code(),
            Some(&SqlState::RESTRICT_VIOLATION),
            "{statement}: {error}"
        );
    }
    assert_eq!(store.last_position().await.expect("last"), 10);
}

#[tokio::test]
async fn the_writer_role_may_only_insert_and_select() {
    let (database, store) = store().await;
    append_ten(&store).await;
    let client = database.client().await;
    client
        .batch_execute("SET ROLE ledger_writer")
        .await
        .expect("set role");
    let count: i64 = client
        .query_one("SELECT count(*) FROM customer_payment_events", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(count, 10);
    for statement in [
        "UPDATE customer_payment_events SET account_id = 'x'",
        "DELETE FROM customer_payment_events",
        "TRUNCATE customer_payment_events",
        "UPDATE customer_unique_keys SET stream_id = gen_random_uuid()",
    ] {
        let error = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {error}"
        );
    }
}

/// An attacker with full database access disables the trigger and edits history.
async fn tamper(database: &TestDb, statement: &str) {
    database
        .client()
        .await
        .batch_execute(&format!(
            "ALTER TABLE customer_payment_events DISABLE TRIGGER customer_payment_events_append_only_rows; \
             {statement}; \
             ALTER TABLE customer_payment_events ENABLE TRIGGER customer_payment_events_append_only_rows;"
        ))
        .await
        .expect("tamper");
}

#[tokio::test]
async fn verify_chain_names_the_position_of_a_flipped_payload_byte() {
    let (database, store) = store().await;
    append_ten(&store).await;
    let intact = store.verify_chain(1, 10, |_| ()).await.expect("verify");
    assert_eq!((intact.verified_events, intact.first_break), (10, None));

    tamper(
        &database,
        "UPDATE customer_payment_events \
         SET payload = set_byte(payload, 5, get_byte(payload, 5) # 1) WHERE global_position = 7",
    )
    .await;
    let verification = store.verify_chain(1, 10, |_| ()).await.expect("verify");
    assert_eq!(verification.verified_events, 6);
    assert_eq!(
        verification.first_break.expect("a break").global_position,
        7
    );
    // Verifying a range that starts after the change does not see it.
    let later = store.verify_chain(8, 10, |_| ()).await.expect("verify");
    assert_eq!(later.first_break, None);
}

#[tokio::test]
async fn verify_chain_names_a_deleted_position_and_a_rewritten_amount_column() {
    let (database, store) = store().await;
    append_ten(&store).await;
    tamper(
        &database,
        "DELETE FROM customer_payment_events WHERE global_position = 4",
    )
    .await;
    let verification = store.verify_chain(1, 10, |_| ()).await.expect("verify");
    assert_eq!(
        verification.first_break.expect("a break").global_position,
        4
    );

    let (database, store) = crate::store().await;
    append_ten(&store).await;
    // Rehashing the changed row is not enough: its successor's prev_hash no longer matches.
    tamper(
        &database,
        "UPDATE customer_payment_events SET status = 'failed', \
         hash = sha256(hash) WHERE global_position = 3",
    )
    .await;
    let verification = store.verify_chain(1, 10, |_| ()).await.expect("verify");
    assert_eq!(
        verification.first_break.expect("a break").global_position,
        3
    );
}

/// Issue 11, item 7: a deleted tail leaves a valid chain; the copies that saw the tail show it.
#[tokio::test]
async fn a_copy_of_the_head_shows_a_deleted_tail_that_the_chain_cannot() {
    let (database, store) = store().await;
    append_ten(&store).await;
    let events: Vec<_> = store.read_all(1, 10).try_collect().await.expect("read");
    let copy = |global_position: u64, hash| HeadCopy {
        name: "stream TEST".to_owned(),
        global_position,
        hash,
    };
    let head = store.head().await.expect("head");
    assert_eq!(
        head,
        TableHead {
            global_position: 10,
            hash: events[9].hash
        }
    );
    let verdict = |copy: HeadCopy| {
        let store = store.clone();
        async move {
            store
                .compare_head_copy(&head, &copy)
                .await
                .expect("compare")
        }
    };
    assert_eq!(verdict(copy(10, events[9].hash)).await, CopyVerdict::Level);
    assert_eq!(
        verdict(copy(7, events[6].hash)).await,
        CopyVerdict::Behind { events: 3 }
    );
    assert_eq!(
        verdict(copy(0, GENESIS_HASH)).await,
        CopyVerdict::Behind { events: 10 }
    );
    assert_eq!(
        verdict(copy(7, events[5].hash)).await,
        CopyVerdict::HashMismatch
    );
    assert_eq!(
        verdict(copy(10, events[8].hash)).await,
        CopyVerdict::HashMismatch
    );

    tamper(
        &database,
        "DELETE FROM customer_payment_events WHERE global_position = 10",
    )
    .await;
    let intact = store.verify_chain(1, 9, |_| ()).await.expect("verify");
    assert_eq!((intact.verified_events, intact.first_break), (9, None));
    let head = store.head().await.expect("head");
    assert_eq!(head.global_position, 9);
    let ahead = store
        .compare_head_copy(&head, &copy(10, events[9].hash))
        .await
        .expect("compare");
    assert_eq!(ahead, CopyVerdict::Ahead { events: 1 });
    assert!(ahead.is_evidence_of_tampering());
    assert!(!CopyVerdict::Behind { events: 1 }.is_evidence_of_tampering());
}
