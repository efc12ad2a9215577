//! The projector runtime against real PostgreSQL and NATS, with a projector that records every
//! event it applies under a primary key on its position: applying one twice fails loudly.

use std::time::Duration;

use ledger_projector::{Projected, Projector, ProjectorConfig, ProjectorError};
use ledger_testkit::commands::register;
use ledger_testkit::ledger::{RunningProjector, TestLedger};
use ledger_testkit::projector_faults;
use tokio_postgres::Transaction;

/// Every applied event, once, and a count per type.
struct Audit;

impl Projector for Audit {
    fn name(&self) -> &'static str {
        "test_audit"
    }

    fn schema_version(&self) -> i32 {
        1
    }

    fn readable_by_query(&self) -> bool {
        false
    }

    fn schema_sql(&self) -> String {
        "CREATE TABLE applied (global_position bigint PRIMARY KEY, event_type text NOT NULL, \
           stream_id uuid NOT NULL); \
         CREATE TABLE counts (event_type text PRIMARY KEY, events bigint NOT NULL);"
            .to_owned()
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        for projected in events {
            let recorded = &projected.recorded;
            let position = i64::try_from(recorded.global_position).unwrap_or(i64::MAX);
            transaction
                .execute(
                    "INSERT INTO test_audit.applied VALUES ($1, $2, $3)",
                    &[&position, &recorded.event.event_type, &recorded.stream_id],
                )
                .await?;
            transaction
                .execute(
                    "INSERT INTO test_audit.counts VALUES ($1, 1) ON CONFLICT (event_type) \
                     DO UPDATE SET events = counts.events + 1",
                    &[&ledger_domain::event_type(&projected.event)],
                )
                .await?;
        }
        Ok(())
    }
}

fn config(ledger: &TestLedger) -> ProjectorConfig {
    ProjectorConfig {
        bus: ledger.bus.clone(),
        // Small pages, so that tests with a few hundred events exercise the table catch-up.
        table_page_events: 40,
        live_batch_events_max: 100,
        ..ProjectorConfig::default()
    }
}

async fn start(ledger: &TestLedger, replay: bool) -> RunningProjector {
    ledger.start_projector(Audit, config(ledger), replay).await
}

async fn caught_up(ledger: &TestLedger) -> bool {
    ledger.projector_caught_up("test_audit").await
}

async fn applied_positions(ledger: &TestLedger) -> Vec<i64> {
    let client = ledger.database().client().await;
    client
        .query(
            "SELECT global_position FROM test_audit.applied ORDER BY 1",
            &[],
        )
        .await
        .expect("applied")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn send_registrations(ledger: &TestLedger, prefix: &str, count: usize) {
    let client = ledger.client();
    for n in 0..count {
        client
            .send(&register(
                &format!("{prefix}-{n}"),
                &format!("{prefix}-{n}@example.com"),
            ))
            .await
            .expect("accepted");
    }
}

#[tokio::test]
async fn a_live_projection_applies_every_event_once_and_announces_its_position() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let mut announcements = ledger
        .nats
        .subscribe(ledger.bus.projection_subject("test_audit"))
        .await
        .expect("subscribe");
    let projector = start(&ledger, false).await;
    send_registrations(&ledger, "a", 30).await;
    assert!(caught_up(&ledger).await);
    assert_eq!(
        applied_positions(&ledger).await,
        (1..=30).collect::<Vec<_>>()
    );
    let mut last_announced = 0;
    while let Ok(Some(message)) = tokio::time::timeout(
        Duration::from_millis(200),
        futures_util::StreamExt::next(&mut announcements),
    )
    .await
    {
        last_announced = String::from_utf8_lossy(&message.payload)
            .parse()
            .unwrap_or(0);
    }
    assert_eq!(
        last_announced, 30,
        "the last announcement is the checkpoint"
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// A message deleted from the stream before the projector starts leaves no hole: the start-up
/// catch-up reads the table. (Holes met while live are filled by `apply_from_stream`, tested
/// in `runtime.rs`.)
#[tokio::test]
async fn a_message_missing_from_the_stream_leaves_no_hole_in_the_projection() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    send_registrations(&ledger, "a", 5).await;
    let stream = ledger
        .jetstream()
        .get_stream(&ledger.bus.stream_name)
        .await
        .expect("stream");
    stream.delete_message(3).await.expect("delete message 3");
    let projector = start(&ledger, false).await;
    assert!(caught_up(&ledger).await);
    assert_eq!(applied_positions(&ledger).await, vec![1, 2, 3, 4, 5]);
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn a_stream_from_another_event_table_is_refused() {
    let ours = TestLedger::new().await;
    let theirs = TestLedger::new().await;
    let our_writer = ours.start_writer();
    let their_writer = theirs.start_writer();
    send_registrations(&ours, "ours", 3).await;
    send_registrations(&theirs, "theirs", 5).await;

    // Our table, their stream: positions 4 and 5 arrive, but do not continue our chain.
    let database_url = ours.database().url().to_owned();
    let config = ProjectorConfig {
        bus: theirs.bus.clone(),
        ..ProjectorConfig::default()
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        ledger_projector::run(
            Audit,
            &database_url,
            ours.nats.clone(),
            &config,
            std::future::pending(),
            |_| {},
        ),
    )
    .await
    .expect("the projector stops by itself");
    assert!(
        matches!(
            outcome,
            Err(ProjectorError::ChainMismatch {
                global_position: 4,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        applied_positions(&ours).await,
        vec![1, 2, 3],
        "nothing foreign applied"
    );
    our_writer.stop().await.expect("writer");
    their_writer.stop().await.expect("writer");
}

/// A shutdown that completes while the projector catches up from the table stops it: the
/// runtime once polled the completed shutdown future again ("`async fn` resumed after
/// completion"), which `ledger run provider-sync` hit when its worker stopped at start.
#[tokio::test]
async fn a_shutdown_during_the_table_catch_up_stops_the_projector() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    send_registrations(&ledger, "early", 3).await;
    writer.stop().await.expect("writer");

    let database_url = ledger.database().url().to_owned();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        ledger_projector::run(
            Audit,
            &database_url,
            ledger.nats.clone(),
            &config(&ledger),
            async {},
            |_| {},
        ),
    )
    .await
    .expect("the projector stops at once");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        applied_positions(&ledger).await,
        Vec::<i64>::new(),
        "stopped before the first page"
    );
}

#[tokio::test]
async fn a_projector_killed_mid_stream_resumes_to_the_same_tables_as_a_fresh_rebuild() {
    projector_faults::killed_mid_stream_resumes_to_a_fresh_rebuild(|_| Audit).await;
}

#[tokio::test]
async fn redelivered_messages_change_nothing() {
    projector_faults::redelivered_messages_change_nothing(|_| Audit).await;
}

#[tokio::test]
async fn a_rebuild_while_the_writer_keeps_appending_ends_identical_to_a_fresh_rebuild() {
    projector_faults::rebuild_while_appending_ends_as_a_fresh_rebuild(|_| Audit).await;
}

/// A rebuild started as soon as the running projector has stopped is not refused as running
/// next to it: the projector frees its lock before it returns. (Dropping the lock's connection
/// freed it only once PostgreSQL noticed the session end; CI once saw the rebuild refused.)
#[tokio::test]
async fn a_projector_that_has_stopped_holds_its_lock_no_more() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    send_registrations(&ledger, "a", 1).await;
    let client = ledger.database().client().await;
    for _ in 0..5 {
        let projector = start(&ledger, false).await;
        assert!(caught_up(&ledger).await);
        projector.stop().await;
        // The projectors' lock namespace ("LEDP") and key, as `ledger-store` takes them.
        let free: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(1279607888, hashtext('test_audit'))",
                &[],
            )
            .await
            .expect("lock")
            .get(0);
        assert!(free, "the stopped projector still holds its lock");
        client
            .execute(
                "SELECT pg_advisory_unlock(1279607888, hashtext('test_audit'))",
                &[],
            )
            .await
            .expect("unlock");
    }
    writer.stop().await.expect("writer");
}
