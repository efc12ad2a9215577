use std::sync::Arc;

use futures_util::TryStreamExt;
use ledger_domain::{UniqueKey, UniqueKeyChanges};
use ledger_store::{
    AppendRejection, AppendRequest, ExpectedVersion, GENESIS_HASH, RequestFingerprint, StoreError,
    StoredRequest,
};
use uuid::Uuid;

use crate::{payment, request, store};

#[tokio::test]
async fn appended_events_read_back_identical_with_gap_free_positions_and_versions() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let outcomes = writer
        .append(vec![
            request(
                alice,
                ExpectedVersion::Exact(0),
                "k1",
                vec![payment(100), payment(200)],
            ),
            request(bob, ExpectedVersion::Exact(0), "k2", vec![payment(300)]),
            request(alice, ExpectedVersion::Exact(2), "k3", vec![payment(400)]),
        ])
        .await
        .expect("append");
    let committed: Vec<_> = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("accepted"))
        .flat_map(|committed| committed.events)
        .collect();
    let positions: Vec<u64> = committed.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    let versions: Vec<(Uuid, u64)> = committed
        .iter()
        .map(|e| (e.stream_id, e.stream_version))
        .collect();
    assert_eq!(versions, [(alice, 1), (alice, 2), (bob, 1), (alice, 3)]);
    assert_eq!(committed[0].prev_hash, GENESIS_HASH);
    assert_eq!(committed[1].prev_hash, committed[0].hash);
    assert_eq!(
        committed[0].event.occurred_at.unix_timestamp_nanos() % 1_000,
        0,
        "stored with microsecond precision"
    );

    let read_back: Vec<_> = store
        .read_all(1, 100)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(read_back, committed);
    let alice_stream = store.read_stream(alice, 2).await.expect("read_stream");
    assert_eq!(
        alice_stream,
        vec![committed[1].clone(), committed[3].clone()]
    );
    assert_eq!(store.last_position().await.expect("last"), 4);
    let from_three: Vec<_> = store.read_all(3, 1).try_collect().await.expect("read_all");
    assert_eq!(from_three, vec![committed[2].clone()]);
    // Several streams as of a position, stream by stream in version order.
    let before_four = store
        .read_streams_before(&[bob, alice, Uuid::now_v7()], 4)
        .await
        .expect("read_streams_before");
    let mut expected = vec![
        committed[0].clone(),
        committed[1].clone(),
        committed[2].clone(),
    ];
    expected.sort_by_key(|event| (event.stream_id, event.stream_version));
    assert_eq!(before_four, expected);
    assert!(
        store
            .read_streams_before(&[], 4)
            .await
            .expect("no streams")
            .is_empty()
    );
}

#[tokio::test]
async fn read_all_pages_through_more_events_than_one_page() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let stream = Uuid::now_v7();
    for page in 0..3 {
        let batch = (0..5_000)
            .map(|n| {
                request(
                    stream,
                    ExpectedVersion::Any,
                    &format!("k{page}-{n}"),
                    vec![payment(n)],
                )
            })
            .collect();
        for outcome in writer.append(batch).await.expect("append") {
            outcome.expect("accepted");
        }
    }
    let positions: Vec<u64> = store
        .read_all(1, u64::MAX)
        .map_ok(|event| event.global_position)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(positions, (1..=15_000).collect::<Vec<_>>());
    let limited = store
        .read_all(14_990, 5)
        .try_collect::<Vec<_>>()
        .await
        .expect("read");
    assert_eq!(limited.len(), 5);
}

#[tokio::test]
async fn sixteen_writers_racing_on_one_stream_get_exactly_one_winner_per_version() {
    const TASKS: u64 = 16;
    const VERSIONS: u64 = 25;
    let (_database, store) = store().await;
    let writer = Arc::new(store.writer().await.expect("writer"));
    let stream = Uuid::now_v7();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                let mut won = Vec::new();
                for version in 0..VERSIONS {
                    let key = format!("task{task}-v{version}");
                    let attempt = request(
                        stream,
                        ExpectedVersion::Exact(version),
                        &key,
                        vec![payment(1)],
                    );
                    match writer.append_one(attempt).await {
                        Ok(committed) => {
                            won.push((version + 1, committed.events[0].event.event_id))
                        }
                        Err(ledger_store::AppendError::Rejected(AppendRejection::Conflict {
                            expected,
                            actual,
                            ..
                        })) => {
                            assert_eq!(expected, ExpectedVersion::Exact(version));
                            assert!(actual > version, "conflict means the stream moved on");
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.expect("task"));
    }
    winners.sort();
    let versions: Vec<u64> = winners.iter().map(|(version, _)| *version).collect();
    assert_eq!(
        versions,
        (1..=VERSIONS).collect::<Vec<_>>(),
        "one winner per version"
    );

    let stored = store.read_stream(stream, 1).await.expect("read");
    let stored_ids: Vec<_> = stored
        .iter()
        .map(|e| (e.stream_version, e.event.event_id))
        .collect();
    assert_eq!(stored_ids, winners);
    let positions: Vec<u64> = stored.iter().map(|e| e.global_position).collect();
    assert_eq!(
        positions,
        (1..=VERSIONS).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_events_and_appends_nothing() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let stream = Uuid::now_v7();
    let first = writer
        .append_one(request(
            stream,
            ExpectedVersion::Exact(0),
            "stripe:evt_1",
            vec![payment(10)],
        ))
        .await
        .expect("first");
    assert!(!first.duplicate);
    // A retry, even with a stale expected version and other content, is answered from the log.
    let retry = writer
        .append_one(request(
            stream,
            ExpectedVersion::Exact(0),
            "stripe:evt_1",
            vec![payment(99)],
        ))
        .await
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.events, first.events);
    // The same key twice in one batch: the second is a duplicate of the first.
    let outcomes = writer
        .append(vec![
            request(
                stream,
                ExpectedVersion::Any,
                "stripe:evt_2",
                vec![payment(20)],
            ),
            request(
                stream,
                ExpectedVersion::Any,
                "stripe:evt_2",
                vec![payment(20)],
            ),
        ])
        .await
        .expect("batch");
    let first_of_batch = outcomes[0].clone().expect("accepted");
    let second_of_batch = outcomes[1].clone().expect("duplicate");
    assert!(second_of_batch.duplicate);
    assert_eq!(second_of_batch.events, first_of_batch.events);
    assert_eq!(store.last_position().await.expect("last"), 2);
    let found = store
        .find_by_idempotency_key("stripe:evt_1")
        .await
        .expect("find");
    assert_eq!(found.map(|stored| stored.events), Some(first.events));
    assert_eq!(
        store
            .find_by_idempotency_key("stripe:evt_3")
            .await
            .expect("find"),
        None
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict_and_the_rest_of_the_batch_lands() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let (stream, other) = (Uuid::now_v7(), Uuid::now_v7());
    let outcomes = writer
        .append(vec![
            request(stream, ExpectedVersion::Exact(5), "a", vec![payment(1)]),
            request(other, ExpectedVersion::Exact(0), "b", vec![payment(1)]),
        ])
        .await
        .expect("batch");
    assert_eq!(
        outcomes[0],
        Err(AppendRejection::Conflict {
            stream_id: stream,
            expected: ExpectedVersion::Exact(5),
            actual: 0
        })
    );
    assert_eq!(
        outcomes[1].as_ref().expect("accepted").events[0].global_position,
        1
    );
    assert_eq!(store.last_position().await.expect("last"), 1);
}

#[tokio::test]
async fn malformed_requests_are_rejected_and_change_nothing() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let stream = Uuid::now_v7();
    let mut nul = payment(1);
    nul.account_id = "cus\0evil".to_owned();
    let mut long_type = payment(1);
    long_type.event_type = "x".repeat(300);
    let outcomes = writer
        .append(vec![
            request(stream, ExpectedVersion::Any, "a", vec![nul]),
            request(stream, ExpectedVersion::Any, "b", vec![long_type]),
            request(stream, ExpectedVersion::Any, "c", vec![]),
            request(stream, ExpectedVersion::Any, "", vec![payment(1)]),
        ])
        .await
        .expect("batch");
    for outcome in outcomes {
        assert!(
            matches!(outcome, Err(AppendRejection::Invalid { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(store.last_position().await.expect("last"), 0);
}

#[tokio::test]
async fn a_batch_that_fails_in_the_database_rolls_back_and_positions_stay_gap_free() {
    let (database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let stream = Uuid::now_v7();
    writer
        .append_one(request(
            stream,
            ExpectedVersion::Any,
            "before",
            vec![payment(1)],
        ))
        .await
        .expect("first");
    // A failure the store cannot foresee (here: a trigger, as a full disk or a constraint
    // added by an operator would be), in the middle of a batch.
    database
        .client()
        .await
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.account_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; \
             END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON customer_payment_events \
               FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .expect("install the failure");
    let mut poison = payment(2);
    poison.account_id = "poison".to_owned();
    let failed = writer
        .append(vec![
            request(stream, ExpectedVersion::Any, "good", vec![payment(3)]),
            request(stream, ExpectedVersion::Any, "bad", vec![poison]),
        ])
        .await;
    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    assert_eq!(store.last_position().await.expect("last"), 1);
    assert_eq!(
        store.find_by_idempotency_key("good").await.expect("find"),
        None
    );

    let after = writer
        .append_one(request(
            stream,
            ExpectedVersion::Exact(1),
            "after",
            vec![payment(4)],
        ))
        .await
        .expect("append after the failure");
    assert_eq!(after.events[0].global_position, 2);
    assert_eq!(after.events[0].stream_version, 2);
    let verification = store.verify_chain(1, 2, |_| ()).await.expect("verify");
    assert_eq!(verification.first_break, None);
    assert_eq!(verification.verified_events, 2);
}

#[tokio::test]
async fn an_email_or_provider_account_belongs_to_one_customer_only() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
    let email = UniqueKey::Email("alice@example.com".to_owned());
    let account = UniqueKey::ProviderAccount(ledger_domain::Provider::Stripe, "cus_A".to_owned());
    let claiming = |stream, key: &str, claims: Vec<UniqueKey>, releases: Vec<UniqueKey>| {
        let mut append = request(stream, ExpectedVersion::Any, key, vec![payment(1)]);
        append.unique_keys = UniqueKeyChanges { claims, releases };
        append
    };
    writer
        .append_one(claiming(
            alice,
            "a1",
            vec![email.clone(), account.clone()],
            vec![],
        ))
        .await
        .expect("alice registers");
    let taken = writer
        .append(vec![
            claiming(mallory, "m1", vec![email.clone()], vec![]),
            claiming(mallory, "m2", vec![account.clone()], vec![]),
        ])
        .await
        .expect("batch");
    assert_eq!(
        taken,
        vec![
            Err(AppendRejection::UniqueKeyTaken {
                unique_key: "email:alice@example.com".to_owned(),
                owner: alice
            }),
            Err(AppendRejection::UniqueKeyTaken {
                unique_key: "account:stripe:cus_A".to_owned(),
                owner: alice
            }),
        ]
    );
    assert_eq!(
        store.find_stream_by_unique_key(&email).await.expect("find"),
        Some(alice)
    );
    assert_eq!(
        store
            .find_stream_by_unique_key(&account)
            .await
            .expect("find"),
        Some(alice)
    );

    // Alice moves to a new address; in the same batch Mallory takes the old one.
    let new_email = UniqueKey::Email("alice@new.example".to_owned());
    let outcomes = writer
        .append(vec![
            claiming(alice, "a2", vec![new_email.clone()], vec![email.clone()]),
            claiming(mallory, "m3", vec![email.clone()], vec![]),
        ])
        .await
        .expect("batch");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(
        store.find_stream_by_unique_key(&email).await.expect("find"),
        Some(mallory)
    );
    assert_eq!(
        store
            .find_stream_by_unique_key(&new_email)
            .await
            .expect("find"),
        Some(alice)
    );
}

/// Issue 11, item 2: a key reused for another request (another fingerprint) is refused, in the
/// same batch and against the table, and appends nothing; the same request is a duplicate.
#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_refused() {
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let with_fingerprint = |stream_id: Uuid, key: &str, fingerprint: u8| AppendRequest {
        request_fingerprint: RequestFingerprint([fingerprint; 32]),
        ..request(stream_id, ExpectedVersion::Any, key, vec![payment(4_900)])
    };
    let reused = |key: &str| {
        Err(AppendRejection::IdempotencyKeyReused {
            idempotency_key: key.to_owned(),
        })
    };
    let first = writer
        .append_one(with_fingerprint(alice, "stripe:evt_1", 1))
        .await
        .expect("appended");

    // In one batch: against the table, and against an earlier request of the batch.
    let outcomes = writer
        .append(vec![
            with_fingerprint(bob, "stripe:evt_1", 2),
            with_fingerprint(alice, "stripe:evt_1", 1),
            with_fingerprint(alice, "stripe:evt_2", 1),
            with_fingerprint(bob, "stripe:evt_2", 2),
            with_fingerprint(alice, "stripe:evt_2", 1),
        ])
        .await
        .expect("batch");
    assert_eq!(outcomes[0], reused("stripe:evt_1"));
    let repeat = outcomes[1].clone().expect("the same request");
    assert_eq!(
        (repeat.duplicate, repeat.events),
        (true, first.events.clone())
    );
    let second = outcomes[2].clone().expect("appended");
    assert_eq!(second.events[0].global_position, 2);
    assert_eq!(outcomes[3], reused("stripe:evt_2"));
    let repeat_in_batch = outcomes[4].clone().expect("the same request");
    assert_eq!(
        (repeat_in_batch.duplicate, repeat_in_batch.events),
        (true, second.events)
    );
    assert_eq!(store.last_position().await.expect("last"), 2);
    assert!(store.read_stream(bob, 1).await.expect("read").is_empty());
    assert_eq!(
        store
            .find_by_idempotency_key("stripe:evt_1")
            .await
            .expect("find"),
        Some(StoredRequest {
            events: first.events,
            request_fingerprint: Some(RequestFingerprint([1; 32])),
        })
    );
}

/// Events appended before migration V3 have no fingerprint: a repeat of their key is answered
/// with them, whatever the request.
#[tokio::test]
async fn a_key_stored_without_a_fingerprint_answers_any_repeat() {
    let (database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let first = writer
        .append_one(request(
            Uuid::now_v7(),
            ExpectedVersion::Any,
            "before-v3",
            vec![payment(10)],
        ))
        .await
        .expect("appended");
    database
        .client()
        .await
        .batch_execute(
            "ALTER TABLE customer_payment_events DISABLE TRIGGER customer_payment_events_append_only_rows; \
             UPDATE customer_payment_events SET request_fingerprint = NULL; \
             ALTER TABLE customer_payment_events ENABLE TRIGGER customer_payment_events_append_only_rows;",
        )
        .await
        .expect("a row as V2 wrote it");
    let repeat = writer
        .append_one(AppendRequest {
            request_fingerprint: RequestFingerprint([9; 32]),
            ..request(
                Uuid::now_v7(),
                ExpectedVersion::Any,
                "before-v3",
                vec![payment(20)],
            )
        })
        .await
        .expect("answered from the log");
    assert_eq!((repeat.duplicate, repeat.events), (true, first.events));
    assert_eq!(store.last_position().await.expect("last"), 1);
}

/// A delivery whose request the transaction refuses is recorded `failed`, saying so, not
/// `appended` as decided: nothing of it was appended, and its payment, snapshot and provider
/// objects do not count as recorded. A delivery beside it in the batch is recorded as decided,
/// and its objects and its request's as held by its customer.
#[tokio::test]
async fn a_delivery_whose_request_the_store_refuses_is_recorded_failed() {
    use ledger_store::{InboxOutcome, InboxSource, InboxWrite, NewInboxRow};
    let (_database, store) = store().await;
    let writer = store.writer().await.expect("writer");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let row = |event_id: &str, customer_id: Uuid| NewInboxRow {
        id: Uuid::now_v7(),
        provider: ledger_domain::Provider::Stripe,
        provider_event_id: event_id.to_owned(),
        event_type: "charge.succeeded".to_owned(),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        body: bytes::Bytes::from_static(b"{}"),
        outcome: InboxOutcome::Appended,
        reason: String::new(),
        customer_id: Some(customer_id),
        correlation_id: None,
        renormalizes_inbox_id: None,
        snapshot_object: Some("sub_1".to_owned()),
        snapshot_seen_at: Some(time::OffsetDateTime::UNIX_EPOCH),
        awaited_object: None,
        payment_id: Some(format!("ch_{event_id}")),
        source: InboxSource::Webhook,
    };
    let (refused, kept) = (row("evt_refused", alice), row("evt_kept", bob));
    let outcomes = writer
        .append_with_inbox(
            vec![
                // Alice's stream is empty: version 3 is refused.
                AppendRequest {
                    provider_objects: vec!["stripe:payment:ch_alice".to_owned()],
                    ..request(alice, ExpectedVersion::Exact(3), "k1", vec![payment(100)])
                },
                AppendRequest {
                    provider_objects: vec!["stripe:payment:ch_bob".to_owned()],
                    ..request(bob, ExpectedVersion::Exact(0), "k2", vec![payment(200)])
                },
            ],
            vec![
                InboxWrite {
                    row: refused.clone(),
                    requests: vec![0],
                    provider_objects: vec!["paypal:subscription:I-ALICE".to_owned()],
                },
                InboxWrite {
                    row: kept.clone(),
                    requests: vec![1],
                    provider_objects: vec!["paypal:subscription:I-BOB".to_owned()],
                },
            ],
        )
        .await
        .expect("committed");
    assert!(matches!(outcomes[0], Err(AppendRejection::Conflict { .. })));
    let stored = store
        .inbox_row(refused.id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(stored.row.outcome, InboxOutcome::Failed);
    assert!(
        stored
            .row
            .reason
            .starts_with("the store refused its request (stream ")
            && stored
                .row
                .reason
                .ends_with("run ledger connectors renormalize on this row"),
        "{}",
        stored.row.reason
    );
    assert_eq!(stored.global_positions, Vec::<u64>::new());
    assert_eq!(stored.row.payment_id, None);
    assert_eq!(stored.row.snapshot_seen_at, None);
    let stored = store
        .inbox_row(kept.id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(stored.row, kept, "recorded as decided");
    assert_eq!(stored.global_positions, vec![1]);
    let holder = async |key: &str| store.object_holder(key).await.expect("holder");
    assert_eq!(holder("stripe:payment:ch_alice").await, None);
    assert_eq!(holder("paypal:subscription:I-ALICE").await, None);
    assert_eq!(holder("stripe:payment:ch_bob").await, Some(bob));
    assert_eq!(holder("paypal:subscription:I-BOB").await, Some(bob));

    // The first holder keeps an object.
    writer
        .append_one(AppendRequest {
            provider_objects: vec!["stripe:payment:ch_bob".to_owned()],
            ..request(alice, ExpectedVersion::Exact(0), "k3", vec![payment(300)])
        })
        .await
        .expect("appended");
    assert_eq!(holder("stripe:payment:ch_bob").await, Some(bob));
}
