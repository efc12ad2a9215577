//! Each channel's message on the wire, the retry schedule, the dead letter and `notify test`.

use std::time::Duration;

use ledger_devenv::receivers::HttpReceiver;
use ledger_domain::proto::{self, integration_registered::Target};
use ledger_testkit::ledger::{TestLedger, eventually};
use ledger_testkit::smtp::SmtpServer;
use projector_notify::signature::{SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, verify};

use crate::{
    SECRET, WAIT_MS, Worker, attempt_log, delivery_states, failed_payment, fast_delivery,
    recovered_payment, register_integration, start_projector, webhook,
};

#[tokio::test]
async fn a_webhook_gets_a_signed_json_body_that_verifies() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    let integration = register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    let customer = failed_payment(&ledger, "ada").await;

    assert!(
        eventually(WAIT_MS, || async {
            delivery_states(&ledger).await
                == [("payment_failed".to_owned(), "delivered".to_owned(), 1)]
        })
        .await
    );
    assert_eq!(receiver.requests().len(), 1);
    let request = &receiver.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hooks/ledger")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let header = request.header(SIGNATURE_HEADER).expect("signed");
    let timestamp: i64 = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("t=<unix>");
    assert_eq!(
        verify(
            SECRET,
            header,
            &request.body,
            timestamp + 10,
            SIGNATURE_TOLERANCE_SECONDS
        ),
        Ok(())
    );
    assert!(verify("another secret!!", header, &request.body, timestamp, 300).is_err());
    let body = request.json();
    let delivery_id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body["type"], "payment_failed");
    assert!(body["created"].as_i64().is_some());
    let data = &body["data"];
    assert_eq!(data["customer_id"], customer.as_str());
    assert_eq!(data["customer_email"], "ada@example.com");
    assert_eq!(data["subscription_id"], "sub_1");
    assert_eq!(data["amount"]["amount_minor"], 4_900);
    assert_eq!(data["amount"]["currency"], "USD");
    assert_eq!(data["amount"]["display"], "49.00 USD");
    assert_eq!(data["details"]["failure_code"], "card_declined");
    assert_eq!(data["provider"], "stripe");

    let rows = projector_notify::deliveries(&ledger.database().client().await, false, 10)
        .await
        .expect("deliveries");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].delivery_id.to_string(), delivery_id);
    assert_eq!(rows[0].integration_id, integration);
    assert_eq!(rows[0].status, "delivered");
    assert_eq!(rows[0].last_status_code, Some(200));
    assert!(rows[0].last_latency_ms.is_some());

    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn slack_gets_block_kit_paced_per_webhook() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    register_integration(
        &ledger,
        "slack",
        Target::Slack(proto::SlackTarget {
            webhook_url: format!("{}/services/T000/B000/XXXX", receiver.url),
        }),
    )
    .await;
    let customer = failed_payment(&ledger, "bob").await;
    recovered_payment(&ledger, "bob", &customer).await;

    assert!(eventually(WAIT_MS, || async { receiver.requests().len() == 2 }).await);
    let requests = receiver.requests();
    let message = requests[0].json();
    assert_eq!(
        message["text"],
        "Payment failed: Payment of 49.00 USD failed for bob@example.com: card_declined"
    );
    let blocks = message["blocks"].as_array().expect("blocks");
    let types: Vec<&str> = blocks
        .iter()
        .map(|block| block["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["header", "section", "section", "context"]);
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "Payment failed");
    assert_eq!(
        blocks[2]["fields"][0]["text"],
        "*Customer*\nbob@example.com"
    );
    assert_eq!(
        requests[1].json()["blocks"][0]["text"]["text"],
        "Payment recovered"
    );
    // In order, and no faster than the webhook's pace.
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(gap >= Duration::from_millis(250), "{gap:?}");

    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn retries_follow_the_schedule_until_the_receiver_recovers() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    receiver.answer_next(&[500, 503]);
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    failed_payment(&ledger, "carol").await;

    assert!(
        eventually(WAIT_MS, || async {
            delivery_states(&ledger).await
                == [("payment_failed".to_owned(), "delivered".to_owned(), 3)]
        })
        .await
    );
    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [500, 503, 200]);
    let ids: Vec<String> = requests
        .iter()
        .map(|request| request.json()["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id to dedupe on");
    // The schedule: 200 ms after the first failure, 400 ms after the second.
    let first_gap = requests[1].received_at - requests[0].received_at;
    let second_gap = requests[2].received_at - requests[1].received_at;
    assert!(first_gap >= Duration::from_millis(200), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(400), "{second_gap:?}");
    assert_eq!(
        attempt_log(&ledger).await,
        [
            ("retry".to_owned(), Some(500)),
            ("retry".to_owned(), Some(503)),
            ("delivered".to_owned(), Some(200)),
        ]
    );
    // The log's start times follow the schedule: each pause is the configured delay (no
    // jitter in this configuration) plus at most a poll interval and a send.
    let started: Vec<time::OffsetDateTime> = ledger
        .database()
        .client()
        .await
        .query(
            "SELECT started_at FROM notify_delivery.attempts ORDER BY attempt_id",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (pause, delay_ms) in started.windows(2).zip([200, 400]) {
        let pause = pause[1] - pause[0];
        assert!(
            pause >= time::Duration::milliseconds(delay_ms)
                && pause < time::Duration::milliseconds(delay_ms + 400),
            "{pause} after a {delay_ms} ms delay"
        );
    }
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn the_last_failure_is_a_dead_letter_that_retry_sends_again() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    receiver.answer_next(&[500, 500, 500]);
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    failed_payment(&ledger, "dave").await;

    assert!(
        eventually(WAIT_MS, || async {
            delivery_states(&ledger).await == [("payment_failed".to_owned(), "dead".to_owned(), 3)]
        })
        .await
    );
    let client = ledger.database().client().await;
    let failed = projector_notify::deliveries(&client, true, 10)
        .await
        .expect("deliveries");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_status_code, Some(500));
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.starts_with("HTTP 500"))
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.requests().len(), 3, "no attempt after the last");

    assert!(
        projector_notify::retry(&client, failed[0].delivery_id)
            .await
            .expect("retry")
    );
    assert!(
        eventually(WAIT_MS, || async {
            delivery_states(&ledger).await
                == [("payment_failed".to_owned(), "delivered".to_owned(), 1)]
        })
        .await
    );
    assert_eq!(receiver.requests().len(), 4);
    assert!(
        projector_notify::deliveries(&client, true, 10)
            .await
            .expect("deliveries")
            .is_empty()
    );
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_as_text_and_html() {
    let smtp = SmtpServer::start();
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let mut config = fast_delivery();
    config.egress.smtp_ports.push(smtp.port);
    let worker = Worker::start(&ledger, config);
    register_integration(
        &ledger,
        "mail",
        Target::Email(proto::EmailTarget {
            to: vec!["ops@example.com".to_owned(), "cfo@example.com".to_owned()],
            from: "ledger@example.com".to_owned(),
            smtp_host: "127.0.0.1".to_owned(),
            smtp_port: u32::from(smtp.port),
            smtp_tls: proto::SmtpTls::None as i32,
            smtp_username: String::new(),
            smtp_password: String::new(),
        }),
    )
    .await;
    failed_payment(&ledger, "erin").await;

    assert!(eventually(WAIT_MS, || async { smtp.messages().len() == 1 }).await);
    let message = &smtp.messages()[0];
    let delivery_id = &projector_notify::deliveries(&ledger.database().client().await, false, 1)
        .await
        .expect("deliveries")[0]
        .delivery_id;
    assert!(
        message.contains("Subject: [ledger] Payment failed: erin@example.com"),
        "{message}"
    );
    assert!(message.contains("From: ledger@example.com"), "{message}");
    assert!(message.contains("ops@example.com"), "{message}");
    assert!(message.contains("cfo@example.com"), "{message}");
    assert!(
        message.contains(&format!("Message-ID: <{delivery_id}@ledger>")),
        "{message}"
    );
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(message.contains("Content-Type: text/plain"), "{message}");
    assert!(message.contains("Content-Type: text/html"), "{message}");
    assert!(message.contains("49.00 USD"), "{message}");
    assert_eq!(
        delivery_states(&ledger).await,
        [("payment_failed".to_owned(), "delivered".to_owned(), 1)]
    );
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn notify_test_sends_a_sample_through_the_integration() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let integration = register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    assert!(ledger.projector_caught_up("notify").await);

    let mut client = ledger.database().client().await;
    let listed = projector_notify::integrations(&client)
        .await
        .expect("integrations");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].integration_id, integration);
    assert_eq!(listed[0].status, "active");
    assert!(!listed[0].target.contains(SECRET), "{}", listed[0].target);

    let outcome = projector_notify::send_test(&mut client, integration, &fast_delivery())
        .await
        .expect("sent");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.status_code, Some(200));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let body = requests[0].json();
    assert_eq!(body["id"], outcome.delivery_id.to_string());
    assert_eq!(body["type"], "payment_failed");
    assert_eq!(body["data"]["event_type"], "test");
    let header = requests[0].header(SIGNATURE_HEADER).expect("signed");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(
        verify(
            SECRET,
            header,
            &requests[0].body,
            now,
            SIGNATURE_TOLERANCE_SECONDS
        ),
        Ok(())
    );
    assert!(matches!(
        projector_notify::send_test(&mut client, uuid::Uuid::nil(), &fast_delivery()).await,
        Err(projector_notify::NotifyError::UnknownIntegration(_))
    ));
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn a_paused_integration_hears_nothing_until_resumed() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let worker = Worker::start(&ledger, fast_delivery());
    let integration = register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    let change = |key: &str, kind: proto::command::Kind| {
        let mut metadata = ledger_testkit::commands::metadata(key, &integration.to_string());
        metadata.payment_provider = proto::PaymentProvider::Internal as i32;
        proto::Command {
            metadata: Some(metadata),
            kind: Some(kind),
        }
    };
    let client = ledger.client();
    client
        .send(&change(
            "pause",
            proto::command::Kind::PauseIntegration(proto::IntegrationPaused {
                reason: "maintenance".to_owned(),
            }),
        ))
        .await
        .expect("paused");
    failed_payment(&ledger, "paused").await;
    assert!(ledger.projector_caught_up("notify").await);
    assert!(delivery_states(&ledger).await.is_empty());
    let listed = projector_notify::integrations(&ledger.database().client().await)
        .await
        .expect("integrations");
    assert_eq!(listed[0].status, "paused");

    client
        .send(&change(
            "resume",
            proto::command::Kind::ResumeIntegration(proto::IntegrationResumed {}),
        ))
        .await
        .expect("resumed");
    failed_payment(&ledger, "resumed").await;
    assert!(eventually(WAIT_MS, || async { receiver.requests().len() == 1 }).await);
    assert_eq!(
        receiver.requests()[0].json()["data"]["customer_email"],
        "resumed@example.com"
    );
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}
