use std::time::Duration;

use ledger_store::ExpectedVersion;
use uuid::Uuid;

use crate::{payment, request, store};

/// How long a blocked writer is watched to prove it waits.
const BLOCKED_CHECK_MS: u64 = 500;
/// How long a waiting writer may take to get the lock once it is free.
const TAKEOVER_MS_MAX: u64 = 5_000;

#[tokio::test]
async fn a_second_writer_waits_until_the_first_is_dropped() {
    let (_database, store) = store().await;
    let first = store.writer().await.expect("first writer");
    let second_store = store.clone();
    let mut second = tokio::spawn(async move { second_store.writer().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(BLOCKED_CHECK_MS), &mut second)
            .await
            .is_err(),
        "the second writer must wait while the first holds the lock"
    );
    first
        .append_one(request(
            Uuid::now_v7(),
            ExpectedVersion::Any,
            "k1",
            vec![payment(1)],
        ))
        .await
        .expect("the first writer appends");
    drop(first);
    let second = tokio::time::timeout(Duration::from_millis(TAKEOVER_MS_MAX), second)
        .await
        .expect("the second writer takes over")
        .expect("task")
        .expect("second writer");
    let appended = second
        .append_one(request(
            Uuid::now_v7(),
            ExpectedVersion::Any,
            "k2",
            vec![payment(2)],
        ))
        .await
        .expect("the second writer appends");
    assert_eq!(
        appended.events[0].global_position, 2,
        "continues the first writer's log"
    );
}

#[tokio::test]
async fn a_second_writer_takes_over_when_the_first_ones_connection_dies() {
    let (database, store) = store().await;
    let first = store.writer().await.expect("first writer");
    let second_store = store.clone();
    let mut second = tokio::spawn(async move { second_store.writer().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(BLOCKED_CHECK_MS), &mut second)
            .await
            .is_err()
    );
    // The first writer's process dies: its backend goes away without a goodbye.
    database
        .client()
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND database = \
               (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
        .expect("terminate the first writer's connection");
    let second = tokio::time::timeout(Duration::from_millis(TAKEOVER_MS_MAX), second)
        .await
        .expect("the second writer takes over")
        .expect("task")
        .expect("second writer");
    let failed = first
        .append_one(request(
            Uuid::now_v7(),
            ExpectedVersion::Any,
            "k1",
            vec![payment(1)],
        ))
        .await;
    assert!(failed.is_err(), "a writer that lost its lock cannot append");
    let appended = second
        .append_one(request(
            Uuid::now_v7(),
            ExpectedVersion::Any,
            "k2",
            vec![payment(2)],
        ))
        .await
        .expect("append");
    assert_eq!(appended.events[0].global_position, 1);
}
