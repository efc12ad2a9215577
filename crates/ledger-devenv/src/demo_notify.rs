//! The demo's monitoring notifications: a sample webhook integration registered through NATS
//! before the history (to a receiver on loopback); once the history is projected, the demo
//! waits until the notify worker has sent every delivery and prints what went out.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::receivers::HttpReceiver;
use anyhow::Context;
use ledger_domain::proto::{self, command::Kind};

/// How long the demo waits for the worker to send every delivery.
const DELIVERIES_WAIT_MS: u64 = 60_000;

/// Signing secret of the sample integration (the demo's receiver does not check it).
const SAMPLE_SIGNING_SECRET: &str = "whsec_demo_0123456789abcdef";

/// The demo's key ring for integration secrets (one key, id `demo`): a demo database is
/// recreated on every run, so a fixed key protects nothing real; deployments bring their own
/// (`LEDGER_SECRETS_KEYS`).
const DEMO_SECRETS_KEYS: &str = "demo:ZGVtby1vbmx5LWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=";

/// [`DEMO_SECRETS_KEYS`], for the demo's writer and worker and the notify bench.
pub fn demo_secret_keys() -> anyhow::Result<std::sync::Arc<ledger_secrets::SecretKeys>> {
    Ok(std::sync::Arc::new(ledger_secrets::SecretKeys::parse(
        DEMO_SECRETS_KEYS,
    )?))
}

/// The delivery worker's settings for a receiver on loopback (the demo's and the notify
/// bench's): `http://` and `127.0.0.1` allowed explicitly, as an operator would allow an
/// internal receiver (`--notify-allow-http --notify-allow-internal 127.0.0.1`), and the demo
/// keys.
pub fn loopback_delivery_config() -> anyhow::Result<projector_notify::DeliveryConfig> {
    Ok(projector_notify::DeliveryConfig {
        egress: projector_notify::EgressPolicy {
            allow_http: true,
            allowlist: vec![projector_notify::AllowedTarget::Network(
                std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST).into(),
            )],
            ..projector_notify::EgressPolicy::default()
        },
        secrets: Some(demo_secret_keys()?),
        ..projector_notify::DeliveryConfig::default()
    })
}

/// The sample integration and its receiver.
#[derive(Debug)]
pub struct SampleWebhook {
    integration_id: String,
    receiver: HttpReceiver,
}

/// Starts a receiver on loopback and sends `register_integration` for a webhook to it that
/// wants every notification kind.
pub async fn register(
    client: &ledger_bus::Client,
    occurred_at_unix_micros: i64,
) -> anyhow::Result<SampleWebhook> {
    let receiver = HttpReceiver::start().await;
    let command = register_sample_webhook(
        &format!("{}/demo-webhook", receiver.url),
        occurred_at_unix_micros,
    );
    let accepted = client
        .send(&command)
        .await
        .context("registering the demo's sample integration")?;
    Ok(SampleWebhook {
        integration_id: accepted.customer_id,
        receiver,
    })
}

/// `register_integration` (issuer `internal`) of the sample webhook to `url`, wanting every
/// notification kind: the demo's, and the notify benchmark's.
pub fn register_sample_webhook(url: &str, occurred_at_unix_micros: i64) -> proto::Command {
    proto::Command {
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
                    url: url.to_owned(),
                    signing_secret: SAMPLE_SIGNING_SECRET.to_owned(),
                },
            )),
            kinds: projector_notify::NotificationKind::ALL
                .iter()
                .map(|kind| kind.to_proto() as i32)
                .collect(),
            filter: None,
        })),
    }
}

/// Waits until the notify projector has applied `last_position` and no delivery is pending,
/// then prints the deliveries by kind and status.
pub async fn report(
    sample: &SampleWebhook,
    database_url: &str,
    last_position: u64,
) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let last_position = i64::try_from(last_position)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DELIVERIES_WAIT_MS);
    while tokio::time::Instant::now() < deadline {
        let outstanding: bool = client
            .query_one(
                "SELECT (SELECT global_position FROM notify.projector_checkpoint) < $1 \
                     OR EXISTS (SELECT 1 FROM notify_delivery.deliveries WHERE status = 'pending')",
                &[&last_position],
            )
            .await
            .map_or(true, |row| row.get(0));
        if !outstanding {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        "notify: sample webhook integration {} received {} notifications (a receiver inside the demo)",
        sample.integration_id,
        sample.receiver.requests().len(),
    );
    for ((kind, status), count) in by_kind {
        println!("  {kind:<28} {status:<10} {count:>6}");
    }
    Ok(())
}
