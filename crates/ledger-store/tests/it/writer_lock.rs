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
    assert_eq!(database.terminate_lock_holders().await, 1);
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

/// A step of the writer's pass over older events (migration V15) runs on the lock's
/// connection: a writer that lost the lock records nothing of it, and the one holding the lock
/// records it (found by the try-it pass: a pool connection let a writer whose lock another
/// writer held commit its step in flight, and end the pass).
#[tokio::test]
async fn a_writer_that_lost_its_lock_records_no_step_of_the_pass() {
    let (database, store) = store().await;
    assert_eq!(
        store.provider_objects_fill_from().await.expect("the pass"),
        Some(1),
        "a migrated store's pass starts at the first event"
    );
    let first = store.writer().await.expect("first writer");
    let held = [("paypal:subscription:I-LOCK".to_owned(), Uuid::now_v7())];
    assert_eq!(database.terminate_lock_holders().await, 1);
    assert!(
        first.fill_provider_objects(&held, None).await.is_err(),
        "a writer that lost its lock cannot record a step"
    );
    assert_eq!(
        store.provider_objects_fill_from().await.expect("the pass"),
        Some(1)
    );
    assert_eq!(
        store
            .object_holder("paypal:subscription:I-LOCK")
            .await
            .expect("holder"),
        None
    );

    let second = store.writer().await.expect("second writer");
    assert_eq!(
        second
            .fill_provider_objects(&held, Some(7))
            .await
            .expect("a step"),
        1
    );
    assert_eq!(
        second
            .fill_provider_objects(&held, Some(3))
            .await
            .expect("a step"),
        0,
        "held already"
    );
    assert_eq!(
        store.provider_objects_fill_from().await.expect("the pass"),
        Some(7),
        "never moved back"
    );
    second
        .fill_provider_objects(&[], None)
        .await
        .expect("the last step");
    assert_eq!(
        store.provider_objects_fill_from().await.expect("the pass"),
        None
    );
    assert_eq!(
        store
            .object_holder("paypal:subscription:I-LOCK")
            .await
            .expect("holder"),
        Some(held[0].1)
    );
}
