use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use ledger_testkit::commands::register;
use ledger_testkit::ledger::TestLedger;

#[tokio::test]
async fn a_test_ledger_runs_a_writer_and_deletes_its_stream_on_drop() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let accepted = ledger
        .client()
        .send(&register("k1", "ada@example.com"))
        .await
        .expect("accepted");
    assert_eq!(accepted.events[0].global_position, 1);
    assert_eq!(ledger.assert_stream_matches_table().await, 1);
    assert_eq!(ledger.last_position().await, 1);
    writer.stop().await.expect("the writer stops cleanly");

    let jetstream = ledger.jetstream();
    let stream_name = ledger.bus.stream_name.clone();
    jetstream.get_stream(&stream_name).await.expect("stream");
    drop(ledger);
    let error = jetstream
        .get_stream(&stream_name)
        .await
        .expect_err("the stream is deleted on drop");
    assert!(
        matches!(
            error.kind(),
            GetStreamErrorKind::JetStream(error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND
        ),
        "{error}"
    );
}

#[tokio::test]
async fn dropping_a_test_ledger_without_a_stream_is_quiet() {
    // No writer ran, so there is no stream to delete: Drop must not panic or hang.
    drop(TestLedger::new().await);
}
