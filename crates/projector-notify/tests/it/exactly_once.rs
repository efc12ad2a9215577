//! A crash between the outbox write and the send sends once; a rebuild sends nothing again.

use std::time::Duration;

use ledger_devenv::receivers::HttpReceiver;
use ledger_testkit::ledger::{TestLedger, eventually};

use crate::{
    WAIT_MS, Worker, delivery_states, failed_payment, fast_delivery, register_integration,
    start_projector, webhook,
};

#[tokio::test]
async fn a_crash_between_the_outbox_and_the_send_sends_exactly_once() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    // The projector decides and commits the delivery with its checkpoint; no worker runs.
    let projector = start_projector(&ledger, false).await;
    register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    failed_payment(&ledger, "ada").await;
    assert!(ledger.projector_caught_up("notify").await);
    // A worker leased it and died before recording the send.
    let client = ledger.database().client().await;
    let leased = client
        .execute(
            "UPDATE notify_delivery.deliveries SET leased_until = now() + interval '300 ms'",
            &[],
        )
        .await
        .expect("lease");
    assert_eq!(leased, 1);
    projector.stop().await;
    // Restarted: the projector resumes after its checkpoint and decides nothing again; a new
    // worker waits out the dead worker's lease and sends once.
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    assert!(eventually(WAIT_MS, || async { receiver.requests().len() == 1 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(
        delivery_states(&ledger).await,
        [("payment_failed".to_owned(), "delivered".to_owned(), 1)]
    );
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn a_rebuild_of_the_projection_resends_nothing() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    failed_payment(&ledger, "bob").await;
    assert!(eventually(WAIT_MS, || async { receiver.requests().len() == 1 }).await);
    projector.stop().await;

    let rebuilt = start_projector(&ledger, true).await;
    assert!(ledger.projector_caught_up("notify").await);
    // New events after the rebuild are still notified, once.
    failed_payment(&ledger, "carol").await;
    assert!(eventually(WAIT_MS, || async { receiver.requests().len() == 2 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 2);
    let emails: Vec<String> = receiver
        .requests()
        .iter()
        .map(|request| {
            request.json()["data"]["customer_email"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(emails, ["bob@example.com", "carol@example.com"]);
    assert_eq!(delivery_states(&ledger).await.len(), 2);
    worker.stop().await;
    rebuilt.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn two_workers_send_each_delivery_once_and_in_order() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    let customers = ["c1", "c2", "c3", "c4", "c5"];
    for customer in customers {
        failed_payment(&ledger, customer).await;
    }
    // All five are in the outbox before any worker runs.
    let projector = start_projector(&ledger, false).await;
    assert!(ledger.projector_caught_up("notify").await);
    let first = Worker::start(&ledger, fast_delivery());
    let second = Worker::start(&ledger, fast_delivery());
    assert!(eventually(WAIT_MS, || async { receiver.requests().len() >= 5 }).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let emails: Vec<String> = receiver
        .requests()
        .iter()
        .map(|request| {
            request.json()["data"]["customer_email"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = customers
        .iter()
        .map(|customer| format!("{customer}@example.com"))
        .collect();
    assert_eq!(emails, expected, "once each, in event order");
    first.stop().await;
    second.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}
