//! Fault scenarios every projector's tests run against real PostgreSQL and NATS, with a random
//! valid history sent through a real writer:
//!
//! - [`killed_mid_stream_resumes_to_a_fresh_rebuild`]: the projector's task is aborted while it
//!   applies (the open transaction dies with its connection); restarted, it ends with tables
//!   identical to a rebuild from scratch;
//! - [`redelivered_messages_change_nothing`]: the durable consumer is rewound to the first
//!   message and everything is delivered again;
//! - [`rebuild_while_appending_ends_as_a_fresh_rebuild`]: `replay` runs while commands keep
//!   arriving, then goes live; the tables equal those of a second, quiet rebuild.
//!
//! Tables are compared by [`TestLedger::schema_checksum`].

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use ledger_projector::{Projector, ProjectorConfig};

use crate::ledger::{RunningProjector, TestLedger, eventually};
use ledger_devenv::history::{self, Rng, Shape};

/// The scenarios' histories.
const HISTORY: Shape = Shape {
    customers: 30,
    steps: 24,
    late_percent: 15,
};
/// How long a projector may take to get through what the scenario expects of it.
const PROGRESS_TIMEOUT_MS: u64 = 20_000;

fn config() -> ProjectorConfig {
    ProjectorConfig {
        // Small pages and batches, so that a few hundred events make many transactions.
        table_page_events: 40,
        live_batch_events_max: 50,
        ..ProjectorConfig::default()
    }
}

async fn start<P: Projector>(ledger: &TestLedger, projector: P, replay: bool) -> RunningProjector {
    ledger.start_projector(projector, config(), replay).await
}

/// Sends a history's commands through the ledger's writer, one after the other.
async fn send_history(ledger: &TestLedger, seed: u64) -> usize {
    let client = ledger.client();
    let generated = history::generate(&mut Rng::new(seed), HISTORY);
    for one in &generated {
        client.send(&one.command).await.expect("accepted");
    }
    generated.len()
}

/// # Panics
///
/// If the resumed projection differs from a fresh rebuild.
pub async fn killed_mid_stream_resumes_to_a_fresh_rebuild<P: Projector>(
    make: impl Fn(&TestLedger) -> P,
) {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let name = make(&ledger).name();
    let first = start(&ledger, make(&ledger), false).await;
    let load = {
        let ledger_client = ledger.client();
        let generated = history::generate(&mut Rng::new(1), HISTORY);
        tokio::spawn(async move {
            for one in &generated {
                ledger_client.send(&one.command).await.expect("accepted");
            }
        })
    };
    assert!(
        eventually(PROGRESS_TIMEOUT_MS, || async {
            ledger.projector_checkpoint(name).await >= 100
        })
        .await,
        "the projector made progress"
    );
    first.task.abort();
    let _ = first.task.await;
    let second = start(&ledger, make(&ledger), false).await;
    load.await.expect("load");
    assert!(
        ledger.projector_caught_up(name).await,
        "resumed and caught up"
    );
    let resumed = ledger.schema_checksum(name).await;
    second.stop().await;
    assert!(
        resumed.iter().any(|(_, rows, _)| *rows > 0),
        "the projection holds rows: {resumed:?}"
    );

    let rebuilt = start(&ledger, make(&ledger), true).await;
    assert!(ledger.projector_caught_up(name).await, "rebuilt");
    assert_eq!(
        ledger.schema_checksum(name).await,
        resumed,
        "identical to a fresh rebuild"
    );
    rebuilt.stop().await;
    writer.stop().await.expect("writer");
}

/// # Panics
///
/// If delivering every message again changes the projection.
pub async fn redelivered_messages_change_nothing<P: Projector>(make: impl Fn(&TestLedger) -> P) {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let name = make(&ledger).name();
    let projector = start(&ledger, make(&ledger), false).await;
    send_history(&ledger, 2).await;
    assert!(ledger.projector_caught_up(name).await);
    projector.stop().await;
    let before = ledger.schema_checksum(name).await;

    // The durable consumer is rewound to the first message: everything is delivered again.
    let durable_name = format!("projector_{name}");
    let stream = ledger
        .jetstream()
        .get_stream(&ledger.bus.stream_name)
        .await
        .expect("stream");
    stream
        .delete_consumer(&durable_name)
        .await
        .expect("delete consumer");
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable_name.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            ..Default::default()
        })
        .await
        .expect("rewound consumer");
    let last = ledger.last_position().await;
    let projector = start(&ledger, make(&ledger), false).await;
    assert!(
        eventually(PROGRESS_TIMEOUT_MS, || async {
            stream
                .consumer_info(&durable_name)
                .await
                .is_ok_and(|info| info.ack_floor.stream_sequence == last)
        })
        .await,
        "every message was delivered again and acknowledged"
    );
    assert_eq!(
        ledger.schema_checksum(name).await,
        before,
        "redelivery changed nothing"
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// # Panics
///
/// If a rebuild run while commands arrive ends differently from a quiet rebuild.
pub async fn rebuild_while_appending_ends_as_a_fresh_rebuild<P: Projector>(
    make: impl Fn(&TestLedger) -> P,
) {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let name = make(&ledger).name();
    send_history(&ledger, 3).await;
    let load = {
        let client = ledger.client();
        let generated = history::generate(&mut Rng::new(4), HISTORY);
        tokio::spawn(async move {
            for one in &generated {
                client.send(&one.command).await.expect("accepted");
            }
        })
    };
    // Rebuilds from position 1 through the table while commands keep arriving, then goes live.
    let rebuilding = start(&ledger, make(&ledger), true).await;
    load.await.expect("load");
    assert!(ledger.projector_caught_up(name).await);
    let live = ledger.schema_checksum(name).await;
    rebuilding.stop().await;

    let fresh = start(&ledger, make(&ledger), true).await;
    assert!(ledger.projector_caught_up(name).await);
    assert_eq!(ledger.schema_checksum(name).await, live);
    fresh.stop().await;
    writer.stop().await.expect("writer");
}
