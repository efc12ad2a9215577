//! The demo's monitoring notifications: a sample webhook integration registered before the
//! history (to a receiver on loopback), then the notify projector and its worker run over the
//! demo's database until every delivery is out.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{Stream, UniqueKeyChanges};
use ledger_store::{ExpectedVersion, Store, Writer};
use ledger_testkit::receivers::HttpReceiver;
use uuid::Uuid;

/// How long the demo waits for the worker to send every delivery.
const DELIVERIES_WAIT_MS: u64 = 60_000;

/// Signing secret of the sample integration (the demo's receiver does not check it).
const SAMPLE_SIGNING_SECRET: &str = "whsec_demo_0123456789abcdef";

/// The sample integration and its receiver.
pub(crate) struct SampleWebhook {
    pub(crate) integration_id: Uuid,
    receiver: HttpReceiver,
}

/// Starts a receiver on loopback and appends `register_integration` for a webhook to it that
/// wants every notification kind.
pub(crate) async fn register(
    writer: &Writer,
    occurred_at_unix_micros: i64,
) -> anyhow::Result<SampleWebhook> {
    let receiver = HttpReceiver::start().await;
    let command = proto::Command {
        metadata: Some(proto::CommandMetadata {
            idempotency_key: "demo:sample-webhook".to_owned(),
            customer_id: String::new(),
            expected_version: None,
            occurred_at_unix_micros,
            issuer: proto::Issuer::Internal as i32,
            payment_provider: proto::PaymentProvider::Internal as i32,
            account_id: String::new(),
            correlation_id: String::new(),
            causation_id: String::new(),
        }),
        kind: Some(Kind::RegisterIntegration(proto::IntegrationRegistered {
            name: "Demo webhook".to_owned(),
            target: Some(proto::integration_registered::Target::Webhook(
                proto::WebhookTarget {
                    url: format!("{}/demo-webhook", receiver.url),
                    signing_secret: SAMPLE_SIGNING_SECRET.to_owned(),
                },
            )),
            kinds: projector_notify::NotificationKind::ALL
                .iter()
                .map(|kind| kind.to_proto() as i32)
                .collect(),
            filter: None,
        })),
    };
    let events = Stream::Empty
        .decide(&command)
        .context("the demo's sample integration was rejected")?;
    let integration_id = Uuid::now_v7();
    let request = ledger_writer::append_request(
        integration_id,
        &command,
        UniqueKeyChanges::default(),
        events,
        ExpectedVersion::Exact(0),
    )?;
    for outcome in writer.append(vec![request]).await? {
        outcome?;
    }
    Ok(SampleWebhook {
        integration_id,
        receiver,
    })
}

/// Runs the notify projector and worker until the projection has caught up with the table
/// and no delivery is pending, then prints what was delivered.
pub(crate) async fn deliver(
    sample: &SampleWebhook,
    store: Store,
    database_url: &str,
    nats_url: &str,
) -> anyhow::Result<()> {
    let last = store.last_position().await?;
    let nats = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {nats_url}"))?;
    // Stream names of its own: the demo's events are not on any ledger's stream.
    let bus = ledger_bus::BusConfig {
        subject_prefix: ledger_testkit::unique_name("demo").to_lowercase(),
        stream_name: ledger_testkit::unique_name("DEMO_EVENTS"),
        ..ledger_bus::BusConfig::default()
    };
    let config = ledger_projector::ProjectorConfig {
        bus: bus.clone(),
        ..ledger_projector::ProjectorConfig::default()
    };
    let (progressed, mut progress_seen) = tokio::sync::watch::channel(0u64);
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let done = async {
        let _ = progress_seen.wait_for(|position| *position >= last).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(DELIVERIES_WAIT_MS);
        while tokio::time::Instant::now() < deadline {
            let pending: i64 = client
                .query_one(
                    "SELECT count(*) FROM notify_delivery.deliveries WHERE status = 'pending'",
                    &[],
                )
                .await
                .map_or(1, |row| row.get(0));
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    projector_notify::run(
        store,
        database_url,
        nats.clone(),
        &config,
        projector_notify::DeliveryConfig::default(),
        projector_notify::Rules::default(),
        false,
        done,
        |position| {
            let _ = progressed.send(position);
        },
    )
    .await?;
    if let Err(error) = async_nats::jetstream::new(nats)
        .delete_stream(&bus.stream_name)
        .await
    {
        tracing::debug!(%error, stream = bus.stream_name, "no demo stream to delete");
    }

    let rows =
        projector_notify::deliveries(&client, false, projector_notify::DELIVERY_ROWS_MAX).await?;
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &rows {
        *by_kind
            .entry((row.kind.clone(), row.status.clone()))
            .or_default() += 1;
    }
    println!(
        "notify: sample webhook integration {} received {} notifications at {}/demo-webhook",
        sample.integration_id,
        sample.receiver.requests().len(),
        sample.receiver.url
    );
    for ((kind, status), count) in by_kind {
        println!("  {kind:<28} {status:<10} {count:>6}");
    }
    println!("  see them: DATABASE_URL={database_url} ledger notify deliveries");
    Ok(())
}
