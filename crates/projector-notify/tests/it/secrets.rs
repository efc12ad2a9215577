//! Integration secrets are sealed by the writer before they are recorded: the event table and
//! the `notify` read model hold ciphertext only, `ledger notify list` names the key, and only a
//! worker with the key sends; a ciphertext moved to another integration does not open.

use ledger_devenv::receivers::HttpReceiver;
use ledger_domain::proto::{self, integration_registered::Target};
use ledger_testkit::ledger::{TestLedger, eventually};

use crate::{SECRET, WAIT_MS, fast_delivery, register_integration, start_projector, webhook};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn secrets_are_sealed_in_events_and_the_read_model_and_open_only_in_the_worker() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    let slack_token = "XXXXSLACKTOKEN";
    let hook = register_integration(&ledger, "hook", webhook(&receiver.url)).await;
    let slack = register_integration(
        &ledger,
        "slack",
        Target::Slack(proto::SlackTarget {
            webhook_url: format!("{}/services/T000/B000/{slack_token}", receiver.url),
        }),
    )
    .await;

    let mut client = ledger.database().client().await;
    let payloads: Vec<Vec<u8>> = client
        .query(
            "SELECT payload FROM customer_payment_events WHERE stream_id = ANY($1)",
            &[&vec![hook, slack]],
        )
        .await
        .expect("events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(payloads.len(), 2);
    for payload in &payloads {
        assert!(
            !contains(payload, SECRET),
            "a clear signing secret in an event"
        );
        assert!(
            !contains(payload, slack_token),
            "a clear Slack URL in an event"
        );
        assert!(
            contains(payload, "sealed:v1:test:"),
            "sealed with key `test`"
        );
    }
    assert!(
        eventually(WAIT_MS, || async {
            projector_notify::integrations(&client)
                .await
                .is_ok_and(|rows| rows.len() == 2)
        })
        .await
    );
    let configs: Vec<Vec<u8>> = client
        .query("SELECT config FROM notify.integrations", &[])
        .await
        .expect("read model")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for config in &configs {
        assert!(!contains(config, SECRET) && !contains(config, slack_token));
    }
    let mut shown: Vec<String> = projector_notify::integrations(&client)
        .await
        .expect("integrations")
        .into_iter()
        .map(|row| row.target)
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            "Slack webhook URL sealed with key test".to_owned(),
            format!(
                "{}/hooks/ledger (signing secret sealed with key test)",
                receiver.url
            ),
        ]
    );

    let mut keyless = fast_delivery();
    keyless.secrets = None;
    let outcome = projector_notify::send_test(&mut client, hook, &keyless)
        .await
        .expect("sent");
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            "the integration's secrets are sealed and the worker has no key: start it with LEDGER_SECRETS_KEYS or LEDGER_SECRETS_KEY_FILE"
        )
    );
    assert_eq!(receiver.requests().len(), 0);
    let outcome = projector_notify::send_test(&mut client, hook, &fast_delivery())
        .await
        .expect("sent");
    assert_eq!(outcome.error, None);
    assert_eq!(receiver.requests().len(), 1);

    // An attacker who reads the event table copies the sealed secret into an integration of
    // their own: it is recorded as it is, and never opens there.
    let row = client
        .query_one(
            "SELECT payload FROM customer_payment_events WHERE stream_id = $1",
            &[&hook],
        )
        .await
        .expect("the registration");
    let event = ledger_domain::decode_event(row.get(0)).expect("an event");
    let ledger_domain::Event::IntegrationRegistered(proto::IntegrationRegistered {
        target: Some(Target::Webhook(recorded)),
        ..
    }) = event
    else {
        panic!("the webhook's registration: {event:?}");
    };
    let copied = recorded.signing_secret;
    let thief = register_integration(
        &ledger,
        "thief",
        Target::Webhook(proto::WebhookTarget {
            url: format!("{}/stolen", receiver.url),
            signing_secret: copied,
        }),
    )
    .await;
    assert!(
        eventually(WAIT_MS, || async {
            projector_notify::integrations(&client)
                .await
                .is_ok_and(|rows| rows.len() == 3)
        })
        .await
    );
    let outcome = projector_notify::send_test(&mut client, thief, &fast_delivery())
        .await
        .expect("sent");
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            "`webhook.signing_secret` does not open: tampered with, or sealed for another integration or field"
        )
    );
    assert_eq!(receiver.requests().len(), 1, "nothing more arrived");
    projector.stop().await;
    writer.stop().await.expect("writer");
}

#[tokio::test]
async fn a_writer_without_keys_refuses_integrations_rather_than_record_clear_secrets() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer_with(ledger_writer::WriterConfig {
        secrets: None,
        ..ledger.writer_config()
    });
    let refused = ledger
        .client()
        .send(&crate::integration_command(
            "hook",
            webhook("https://hooks.example.com"),
        ))
        .await
        .expect_err("refused");
    let ledger_bus::SendError::Rejected(rejected) = refused else {
        panic!("a rejection: {refused:?}");
    };
    assert_eq!(rejected.code, "invalid_field");
    assert_eq!(
        rejected.message,
        "invalid field `target`: the writer cannot seal its secrets: start it with LEDGER_SECRETS_KEYS or LEDGER_SECRETS_KEY_FILE"
    );
    assert_eq!(ledger.last_position().await, 0, "nothing recorded");
    writer.stop().await.expect("writer");
}
