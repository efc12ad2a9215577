//! The writer's pipeline (decision 0036) under concurrent clients: batches decided while the
//! one before is being appended give what deciding them one after the other would.

use std::collections::{BTreeMap, HashMap};

use ledger_bus::SendError;
use ledger_domain::proto;
use ledger_testkit::commands::{register, start_subscription};
use ledger_testkit::ledger::TestLedger;

/// What one request was answered: its key, and the events accepted (`None`: rejected, with
/// the code).
#[derive(Debug)]
struct Answer {
    key: String,
    accepted: Result<proto::Accepted, String>,
}

#[tokio::test]
async fn concurrent_clients_racing_on_customers_emails_and_keys_get_sequential_answers() {
    race(true).await;
}

#[tokio::test]
async fn without_group_commit_racing_clients_get_sequential_answers_too() {
    race(false).await;
}

/// Clients sending at once registrations racing on a few emails, the same registrations and
/// subscriptions under shared keys, and subscriptions of their own on shared customers; then
/// checks every answer against the table, as deciding them one after the other would give.
async fn race(group_commit: bool) {
    const CLIENTS: usize = 12;
    const REQUESTS_PER_CLIENT: usize = 24;
    const CUSTOMERS: usize = 4;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer_with(ledger_writer::WriterConfig {
        group_commit,
        ..ledger.writer_config()
    });
    let client = ledger.client();
    let mut customers = Vec::new();
    for n in 0..CUSTOMERS {
        let accepted = client
            .send(&register(
                &format!("pre-{n}"),
                &format!("pre{n}@example.com"),
            ))
            .await
            .expect("registered");
        customers.push(accepted.customer_id);
    }

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            let client = ledger.client();
            let customers = customers.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..REQUESTS_PER_CLIENT {
                    let pick = (client_index * 7 + n * 3) % CUSTOMERS;
                    let customer = &customers[pick];
                    let command = match (client_index + n) % 4 {
                        // Registrations racing on a few emails, each with a key of its own.
                        0 => register(
                            &format!("race-{client_index}-{n}"),
                            &format!("race{}@example.com", n % 3),
                        ),
                        // One registration sent by every client under the same key.
                        1 => register(
                            &format!("shared-register-{}", n % 3),
                            &format!("shared{}@example.com", n % 3),
                        ),
                        // A subscription of its own on a customer the others change too.
                        2 => start_subscription(
                            &format!("sub-{client_index}-{n}"),
                            customer,
                            &format!("sub_{client_index}_{n}"),
                            "USD",
                        ),
                        // One subscription sent by every client under the same key.
                        _ => start_subscription(
                            &format!("shared-sub-{pick}"),
                            customer,
                            &format!("sub_shared_{pick}"),
                            "USD",
                        ),
                    };
                    let key = command
                        .metadata
                        .as_ref()
                        .map(|metadata| metadata.idempotency_key.clone())
                        .unwrap_or_default();
                    let accepted = match client.send(&command).await {
                        Ok(accepted) => Ok(accepted),
                        Err(SendError::Rejected(rejected)) => Err(rejected.code),
                        Err(error) => panic!("{key}: no answer: {error}"),
                    };
                    answers.push(Answer { key, accepted });
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("a client"));
    }
    writer.stop().await.expect("the writer stops");
    let table = stopped_table(&ledger).await;
    let by_position = by_position(&table);
    // Every stream's versions follow each other from 1, in position order.
    let mut versions: HashMap<uuid::Uuid, u64> = HashMap::new();
    for event in &table {
        let version = versions.entry(event.stream_id).or_default();
        *version += 1;
        assert_eq!(event.stream_version, *version, "{event:?}");
    }

    // Each key: one answer that appended, every other one a duplicate of it (or, for a key
    // of its own that lost an email race, a rejection), and its events in the table.
    let mut appended_by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut answered_by_key: BTreeMap<&str, Vec<&Answer>> = BTreeMap::new();
    for answer in &answers {
        answered_by_key.entry(&answer.key).or_default().push(answer);
        let Ok(accepted) = &answer.accepted else {
            assert!(
                answer.key.starts_with("race-")
                    && answer.accepted == Err("unique_key_taken".into()),
                "{answer:?}"
            );
            continue;
        };
        let positions: Vec<u64> = accepted
            .events
            .iter()
            .map(|event| event.global_position)
            .collect();
        for event in &accepted.events {
            let stored = by_position
                .get(&event.global_position)
                .unwrap_or_else(|| panic!("{answer:?}: position not in the table"));
            assert_eq!(
                stored.event.event_id.to_string(),
                event.event_id,
                "{answer:?}"
            );
            assert_eq!(stored.stream_version, event.stream_version, "{answer:?}");
            assert_eq!(stored.idempotency_key, answer.key, "{answer:?}");
        }
        if !accepted.duplicate {
            assert!(
                appended_by_key.insert(&answer.key, positions).is_none(),
                "{}: appended twice",
                answer.key
            );
        }
    }
    for (key, answered) in &answered_by_key {
        if key.starts_with("race-") {
            continue;
        }
        let appended = appended_by_key
            .get(key)
            .unwrap_or_else(|| panic!("{key}: never appended: {answered:?}"));
        for answer in answered {
            let positions: Vec<u64> = answer
                .accepted
                .as_ref()
                .unwrap_or_else(|code| panic!("{key}: rejected ({code}): {answered:?}"))
                .events
                .iter()
                .map(|event| event.global_position)
                .collect();
            assert_eq!(&positions, appended, "{key}: {answered:?}");
        }
    }
    // Each raced email was registered once.
    for email in 0..3 {
        let registered = answers
            .iter()
            .filter(|answer| {
                answer.key.starts_with("race-")
                    && answer.accepted.is_ok()
                    && answer
                        .key
                        .rsplit('-')
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some_and(|n| n % 3 == email)
            })
            .count();
        assert_eq!(registered, 1, "race{email}@example.com");
    }
    // Nothing in the table that no answer accounts for.
    let answered_events: usize = appended_by_key.values().map(Vec::len).sum::<usize>() + CUSTOMERS;
    assert_eq!(table.len(), answered_events);
}

#[tokio::test]
async fn a_batch_being_appended_when_the_next_one_fails_to_be_decided_is_still_answered() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("first", "first@example.com"))
        .await
        .expect("registered");
    // Holds the next batch's insert, so that it is being appended when the one after it is
    // decided; that one's look-ups fail (as when a read of the store fails).
    let admin = ledger.database().lock_the_event_table().await;
    let registering = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&register("held", "held@example.com")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let failing = ledger.database().client().await;
    failing
        .batch_execute("REVOKE SELECT ON provider_inbox FROM ledger_writer")
        .await
        .expect("the inbox unreadable");
    let body = serde_json::json!({
        "id": "evt_1", "object": "event", "type": "customer.created", "created": 1_764_000_000,
        "data": {"object": {"id": "cus_1", "object": "customer", "email": "ada@example.com"}}
    });
    let delivery = proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: serde_json::to_vec(&body).expect("JSON").into(),
        received_at_unix_micros: 1_764_000_000_000_000,
        ..proto::ProviderDelivery::default()
    };
    let delivering = {
        let client = client.clone();
        tokio::spawn(async move { client.deliver(&delivery).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    admin.batch_execute("COMMIT").await.expect("unlocked");

    let held = registering
        .await
        .expect("the registering task")
        .expect("the registration appended before the failure is answered");
    assert_eq!(held.events[0].global_position, 2);
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), writer.task)
        .await
        .expect("the writer stops")
        .expect("the writer's task");
    assert!(stopped.is_err(), "{stopped:?}");
    assert_eq!(ledger.assert_stream_matches_table().await, 2);
    delivering.abort();
}

/// A Stripe `customer.*` event for the account `account` with `email`, as ingest sends it.
fn stripe_customer(
    event_id: &str,
    event_type: &str,
    account: &str,
    email: &str,
) -> proto::ProviderDelivery {
    let created = 1_764_000_000;
    let body = serde_json::json!({
        "id": event_id, "object": "event", "type": event_type, "created": created,
        "data": {"object": {"id": account, "object": "customer", "email": email}}
    });
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: serde_json::to_vec(&body).expect("JSON").into(),
        received_at_unix_micros: created * 1_000_000,
        ..proto::ProviderDelivery::default()
    }
}

#[tokio::test]
async fn deliveries_racing_with_registrations_on_the_same_emails_are_recorded_as_appended_only_when_appended()
 {
    const CLIENTS: usize = 10;
    const REQUESTS_PER_CLIENT: usize = 20;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            let client = ledger.client();
            tokio::spawn(async move {
                let mut recorded = Vec::new();
                for n in 0..REQUESTS_PER_CLIENT {
                    let email = format!("race{}@example.com", (client_index + n) % 4);
                    match n % 4 {
                        // Registrations by command, racing on the emails, retried by others.
                        0 => {
                            let _ = client
                                .send(&register(
                                    &format!("register-{}", (client_index + n) % 6),
                                    &email,
                                ))
                                .await;
                        }
                        // Each client's own event for a few accounts.
                        1 | 2 => {
                            let delivery = stripe_customer(
                                &format!("evt_{client_index}_{n}"),
                                if n % 4 == 1 {
                                    "customer.created"
                                } else {
                                    "customer.updated"
                                },
                                &format!("cus_{}", (client_index * 3 + n) % 5),
                                &email,
                            );
                            let answer = client.deliver(&delivery).await.expect("recorded");
                            recorded.push((format!("evt_{client_index}_{n}"), answer));
                        }
                        // An event every client redelivers.
                        _ => {
                            let delivery = stripe_customer(
                                &format!("evt_shared_{}", n % 3),
                                "customer.created",
                                &format!("cus_shared_{}", n % 3),
                                &format!("shared{}@example.com", n % 3),
                            );
                            let answer = client.deliver(&delivery).await.expect("recorded");
                            recorded.push((format!("evt_shared_{}", n % 3), answer));
                        }
                    }
                }
                recorded
            })
        })
        .collect();
    let mut recorded = Vec::new();
    for task in tasks {
        recorded.extend(task.await.expect("a client"));
    }
    writer.stop().await.expect("the writer stops");
    let table = stopped_table(&ledger).await;
    let by_position = by_position(&table);
    let mut appended_rows = 0;
    for (_, delivery) in &recorded {
        if delivery.outcome() != proto::DeliveryOutcome::Appended {
            assert!(delivery.global_positions.is_empty(), "{delivery:?}");
            continue;
        }
        appended_rows += 1;
        assert!(!delivery.global_positions.is_empty(), "{delivery:?}");
        for position in &delivery.global_positions {
            let event = by_position
                .get(position)
                .unwrap_or_else(|| panic!("{delivery:?}: position not in the table"));
            assert_eq!(
                event.event.causation_id.map(|id| id.to_string()),
                Some(delivery.inbox_id.clone()),
                "{delivery:?}"
            );
            assert_eq!(
                event.stream_id.to_string(),
                delivery.customer_id,
                "{delivery:?}"
            );
        }
    }
    assert!(appended_rows > 0);
    // Each event recorded once, its redeliveries duplicates.
    let mut first_records: HashMap<&str, usize> = HashMap::new();
    for (event_id, delivery) in &recorded {
        if delivery.outcome() != proto::DeliveryOutcome::Duplicate {
            *first_records.entry(event_id).or_default() += 1;
        }
    }
    for shared in 0..3 {
        assert_eq!(
            first_records.get(format!("evt_shared_{shared}").as_str()),
            Some(&1)
        );
    }
    assert!(
        first_records.values().all(|records| *records == 1),
        "{first_records:?}"
    );
    // Every event a delivery caused is accounted for by an answer that said appended.
    let answered: std::collections::HashSet<String> = recorded
        .iter()
        .filter(|(_, delivery)| delivery.outcome() == proto::DeliveryOutcome::Appended)
        .map(|(_, delivery)| delivery.inbox_id.clone())
        .collect();
    for event in &table {
        if let Some(cause) = event.event.causation_id {
            assert!(answered.contains(&cause.to_string()), "{event:?}");
        }
    }
}

#[tokio::test]
async fn a_writer_stopped_while_a_batch_is_being_appended_answers_it_and_the_one_decided_meanwhile()
{
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("first", "first@example.com"))
        .await
        .expect("registered");
    let admin = ledger.database().lock_the_event_table().await;
    let send = |key: &'static str, email: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.send(&register(key, email)).await })
    };
    let held = send("held", "held@example.com");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let next = send("next", "next@example.com");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopping = tokio::spawn(writer.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    admin.batch_execute("COMMIT").await.expect("unlocked");

    let held = held
        .await
        .expect("a client")
        .expect("the held batch answered");
    let next = next
        .await
        .expect("a client")
        .expect("the next batch answered");
    assert_eq!(held.events[0].global_position, 2);
    assert_eq!(next.events[0].global_position, 3);
    stopping
        .await
        .expect("the stopping task")
        .expect("a clean stop");
    assert_eq!(ledger.assert_stream_matches_table().await, 3);
}

#[tokio::test]
async fn a_leader_losing_its_lock_while_a_batch_is_being_appended_leaves_both_batches_to_the_standby()
 {
    let ledger = TestLedger::new().await;
    let leader = ledger.start_writer();
    let client = ledger.client();
    client
        .send(&register("first", "first@example.com"))
        .await
        .expect("registered");
    let standby = ledger.start_writer();
    let admin = ledger.database().lock_the_event_table().await;
    let send = |key: &'static str, email: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.send(&register(key, email)).await })
    };
    let held = send("held", "held@example.com");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let next = send("next", "next@example.com");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The leader's connection (the one holding the writer lock, waiting for the table) ends.
    assert_eq!(ledger.database().terminate_lock_holders().await, 1);
    admin.batch_execute("COMMIT").await.expect("unlocked");

    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), leader.task)
        .await
        .expect("the leader stops")
        .expect("the leader's task");
    assert!(
        matches!(ended, Err(ledger_writer::WriterError::LockLost)),
        "{ended:?}"
    );
    // The clients' retries are answered by the standby, each appended once.
    let held = held
        .await
        .expect("a client")
        .expect("the held request answered");
    let next = next
        .await
        .expect("a client")
        .expect("the next request answered");
    let mut positions = vec![
        held.events[0].global_position,
        next.events[0].global_position,
    ];
    positions.sort_unstable();
    assert_eq!(positions, [2, 3]);
    assert_eq!(ledger.assert_stream_matches_table().await, 3);
    standby.stop().await.expect("clean stop");
}

/// The table's events once the writer has stopped, checked equal to the stream's.
async fn stopped_table(ledger: &TestLedger) -> Vec<ledger_store::RecordedEvent> {
    ledger.assert_stream_matches_table().await;
    ledger.table_events().await
}

/// The events by global position.
fn by_position(
    table: &[ledger_store::RecordedEvent],
) -> HashMap<u64, &ledger_store::RecordedEvent> {
    table
        .iter()
        .map(|event| (event.global_position, event))
        .collect()
}
