//! Event store tests against a real PostgreSQL: each test gets its own database.

mod append;
mod integrity;
mod writer_lock;

use bytes::Bytes;
use ledger_domain::{EventStatus, Issuer, Provider, UniqueKeyChanges, proto};
use ledger_store::{AppendRequest, ExpectedVersion, NewEvent, RequestFingerprint, Store};
use ledger_testkit::TestDb;
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

/// A fresh, migrated database and a store on it.
async fn store() -> (TestDb, Store) {
    let database = TestDb::new().await;
    let store = Store::connect(database.url()).expect("connect the store");
    (database, store)
}

/// A realistic event: a payment of `amount_minor` cents.
fn payment(amount_minor: i64) -> NewEvent {
    let payload = proto::Event {
        kind: Some(proto::event::Kind::PaymentSucceeded(
            proto::PaymentSucceeded {
                payment_id: format!("py_{}", Uuid::now_v7().simple()),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: Some(proto::Money {
                    amount_minor,
                    currency: "USD".to_owned(),
                }),
            },
        )),
    };
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "payment_succeeded".to_owned(),
        account_id: "cus_123".to_owned(),
        payment_provider_type: Provider::Stripe,
        status: EventStatus::Complete,
        issuer: Issuer::PaymentProvider,
        // Nanoseconds on purpose: the store keeps microseconds, and hashes what it keeps.
        occurred_at: OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789)
            .expect("valid time"),
        correlation_id: Some(Uuid::now_v7()),
        causation_id: None,
        schema_version: 1,
        payload: Bytes::from(payload.encode_to_vec()),
    }
}

fn request(
    stream_id: Uuid,
    expected_version: ExpectedVersion,
    idempotency_key: &str,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        stream_id,
        expected_version,
        idempotency_key: idempotency_key.to_owned(),
        // One request everywhere: tests of reused keys set another fingerprint.
        request_fingerprint: RequestFingerprint([1; 32]),
        events,
        unique_keys: UniqueKeyChanges::default(),
        provider_objects: Vec::new(),
    }
}

/// A migration that fails says why, in the server's words, not only "db error" (found by a
/// try-it pass: an upgrade to V14 on a database missing the index it drops printed
/// `` `error applying migration V14__provider_objects`, `db error` `` and nothing else).
#[tokio::test]
async fn a_failed_migration_names_the_servers_reason() {
    let database = TestDb::new().await;
    let mut client = database.client().await;
    client
        .batch_execute(
            "DROP TABLE provider_objects_fill; DROP TABLE provider_objects; \
             DELETE FROM refinery_schema_history WHERE version >= 14;",
        )
        .await
        .expect("V14 and what follows undone but for V14's index");
    let error = ledger_store::migrate(&mut client)
        .await
        .expect_err("V14 drops an index that is gone");
    let text = error.to_string();
    assert!(
        text.contains("V14__provider_objects")
            && text.contains(r#"index "provider_inbox_payment" does not exist"#),
        "{text}"
    );
}

/// A statement on a table the database lacks (a ledger started before its `ledger migrate`)
/// says to run the migrations.
#[tokio::test]
async fn a_missing_table_says_to_run_the_migrations() {
    let (database, store) = store().await;
    database
        .client()
        .await
        .batch_execute("DROP TABLE provider_objects")
        .await
        .expect("V14's table gone");
    let error = store
        .object_holder("paypal:subscription:I-1")
        .await
        .expect_err("no table");
    let text = error.to_string();
    assert!(
        text.contains(r#"relation "provider_objects" does not exist"#)
            && text.contains("run `ledger migrate`"),
        "{text}"
    );
}
