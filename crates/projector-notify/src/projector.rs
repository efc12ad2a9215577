//! The `notify` projector: keeps the integrations, derives notifications from customers'
//! events and writes one delivery per (notification, interested integration) into the outbox,
//! in the batch's transaction.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ledger_domain::{
    Customer, Integration, IntegrationStatus, Money, evolve, evolve_integration,
    is_integration_event, proto,
};
use ledger_projector::{Projected, Projector, ProjectorError, STATES_BYTES_MAX, StreamStates};
use ledger_store::Store;
use prost::Message;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::derive::{Notification, Occurrence, Rules, notifications};
use crate::integration::{channel, wants};

/// Namespace of delivery ids (UUID v5 of the integration id and the notification's key).
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x5d0c_9a4e_6f1b_4c3a_9e8d_2b7a_1c0f_4e6d);

/// The delivery id of `notification` for `integration_id`: the same on every rebuild.
pub(crate) fn delivery_id(integration_id: Uuid, dedupe_key: &str) -> Uuid {
    let mut name = integration_id.as_bytes().to_vec();
    name.extend_from_slice(dedupe_key.as_bytes());
    Uuid::new_v5(&DELIVERY_NAMESPACE, &name)
}

/// The `notify` projector.
#[derive(Debug)]
pub struct NotifyProjector {
    store: Store,
    states: StreamStates<Customer>,
    rules: Rules,
    /// The integrations as of the last applied batch; loaded from the schema on first use.
    integrations: Mutex<Option<BTreeMap<Uuid, Integration>>>,
}

impl NotifyProjector {
    /// `store` is read for the customers whose aggregate is not in memory.
    pub fn new(store: Store, rules: Rules) -> NotifyProjector {
        NotifyProjector {
            store,
            states: StreamStates::new(STATES_BYTES_MAX, Customer::approximate_bytes),
            rules,
            integrations: Mutex::new(None),
        }
    }

    fn cached_integrations(&self) -> Option<BTreeMap<Uuid, Integration>> {
        self.integrations
            .lock()
            .map(|cached| cached.clone())
            .unwrap_or_default()
    }

    fn keep_integrations(&self, integrations: BTreeMap<Uuid, Integration>) {
        if let Ok(mut cached) = self.integrations.lock() {
            *cached = Some(integrations);
        }
    }
}

/// One row for the outbox.
struct NewDelivery {
    delivery_id: Uuid,
    integration_id: Uuid,
    channel: &'static str,
    kind: &'static str,
    customer_id: Uuid,
    event_id: Uuid,
    global_position: i64,
    created_at: OffsetDateTime,
    data: String,
}

impl Projector for NotifyProjector {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn schema_version(&self) -> i32 {
        1
    }

    /// The integrations' configurations are the delivery worker's business only.
    fn readable_by_query(&self) -> bool {
        false
    }

    fn bound_states(&mut self, bytes_max: usize) {
        self.states.set_bytes_max(bytes_max);
    }

    fn schema_sql(&self) -> String {
        concat!(include_str!("schema.sql"), include_str!("delivery.sql")).to_owned()
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        let mut integrations = match self.cached_integrations() {
            Some(integrations) => integrations,
            None => load_integrations(transaction).await?,
        };
        let mut changed: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut states = self
            .states
            .before_batch(
                &self.store,
                events
                    .iter()
                    .filter(|projected| !is_integration_event(&projected.event)),
                |state| state.version,
                |earlier| Customer::from_events(earlier.iter().map(Projected::timed)),
            )
            .await?;
        let mut deliveries = Vec::new();
        for projected in events {
            let recorded = &projected.recorded;
            let stream_id = recorded.stream_id;
            let position = i64::try_from(recorded.global_position).unwrap_or(i64::MAX);
            if is_integration_event(&projected.event) {
                let state = integrations.remove(&stream_id).unwrap_or_default();
                integrations.insert(stream_id, evolve_integration(state, &projected.event));
                changed.insert(stream_id, position);
                continue;
            }
            let before = states.remove(&stream_id).unwrap_or_default();
            let (occurred_at_unix_micros, event) = projected.timed();
            let listening = integrations
                .values()
                .any(|integration| integration.status == IntegrationStatus::Active);
            if !listening {
                states.insert(stream_id, evolve(before, event, occurred_at_unix_micros));
                continue;
            }
            let after = evolve(before.clone(), event, occurred_at_unix_micros);
            let occurrence = Occurrence {
                customer_id: stream_id,
                event_id: recorded.event.event_id,
                occurred_at_unix_seconds: recorded.event.occurred_at.unix_timestamp(),
            };
            for notification in
                notifications(&self.rules, &before, &after, &projected.event, occurrence)
            {
                address(
                    &integrations,
                    &notification,
                    projected,
                    &after,
                    &mut deliveries,
                );
            }
            states.insert(stream_id, after);
        }
        write_integrations(transaction, &integrations, &changed).await?;
        write_deliveries(transaction, &deliveries).await?;
        self.states.keep(states);
        self.keep_integrations(integrations);
        Ok(())
    }
}

/// Adds a delivery of `notification` for every active integration that wants it.
fn address(
    integrations: &BTreeMap<Uuid, Integration>,
    notification: &Notification,
    projected: &Projected,
    customer: &Customer,
    deliveries: &mut Vec<NewDelivery>,
) {
    let recorded = &projected.recorded;
    let provider = recorded.event.payment_provider_type;
    let mut data = None;
    for (integration_id, integration) in integrations {
        let Some(config) = integration.config.as_ref() else {
            continue;
        };
        if integration.status != IntegrationStatus::Active || !wants(config, notification, provider)
        {
            continue;
        }
        let Some(channel) = config.target.as_ref().map(channel) else {
            continue;
        };
        let data = data
            .get_or_insert_with(|| notification_data(notification, projected, customer))
            .clone();
        deliveries.push(NewDelivery {
            delivery_id: delivery_id(*integration_id, &notification.dedupe_key),
            integration_id: *integration_id,
            channel,
            kind: notification.kind.as_str(),
            customer_id: recorded.stream_id,
            event_id: recorded.event.event_id,
            global_position: i64::try_from(recorded.global_position).unwrap_or(i64::MAX),
            created_at: recorded.recorded_at,
            data,
        });
    }
}

/// The notification's `data` (the webhook's `data` object; Slack and email render it).
fn notification_data(
    notification: &Notification,
    projected: &Projected,
    customer: &Customer,
) -> String {
    let recorded = &projected.recorded;
    let (email, name) = customer.profile.as_ref().map_or(("", ""), |profile| {
        (profile.email.as_str(), profile.name.as_str())
    });
    let details: serde_json::Map<String, Value> = notification
        .details
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
        .collect();
    json!({
        "kind": notification.kind.as_str(),
        "title": notification.kind.title(),
        "summary": notification.summary,
        "customer_id": recorded.stream_id.to_string(),
        "customer_email": email,
        "customer_name": name,
        "subscription_id": notification.subscription_id,
        "amount": notification.amount.map(amount_json),
        "provider": recorded.event.payment_provider_type.as_str(),
        "event_id": recorded.event.event_id.to_string(),
        "event_type": recorded.event.event_type,
        "global_position": recorded.global_position,
        "occurred_at": recorded.event.occurred_at.format(&Rfc3339).unwrap_or_default(),
        "details": details,
    })
    .to_string()
}

pub(crate) fn amount_json(money: Money) -> Value {
    json!({
        "amount_minor": money.amount_minor,
        "currency": money.currency.code(),
        "display": money.to_string(),
    })
}

async fn load_integrations(
    transaction: &Transaction<'_>,
) -> Result<BTreeMap<Uuid, Integration>, ProjectorError> {
    let rows = transaction
        .query(
            "SELECT integration_id, status, config, global_position FROM notify.integrations",
            &[],
        )
        .await?;
    let mut integrations = BTreeMap::new();
    for row in rows {
        let integration_id: Uuid = row.try_get(0)?;
        let status: &str = row.try_get(1)?;
        let config: &[u8] = row.try_get(2)?;
        let corrupt = |reason: String| ProjectorError::Apply {
            projector: "notify",
            reason: format!("integration {integration_id}: {reason}"),
        };
        integrations.insert(
            integration_id,
            Integration {
                // Only the status and configuration are used between batches.
                version: 0,
                config: Some(
                    proto::IntegrationRegistered::decode(config)
                        .map_err(|error| corrupt(error.to_string()))?,
                ),
                status: status
                    .parse()
                    .map_err(|error| corrupt(format!("{error}")))?,
            },
        );
    }
    Ok(integrations)
}

async fn write_integrations(
    transaction: &Transaction<'_>,
    integrations: &BTreeMap<Uuid, Integration>,
    changed: &BTreeMap<Uuid, i64>,
) -> Result<(), ProjectorError> {
    for (integration_id, global_position) in changed {
        let Some(integration) = integrations.get(integration_id) else {
            continue;
        };
        let Some(config) = integration.config.as_ref() else {
            continue;
        };
        let Some(channel) = config.target.as_ref().map(channel) else {
            continue;
        };
        // In the order of `ledger.v1.NotificationKind` (`decide` sorted them).
        let kinds: Vec<&str> = config
            .kinds
            .iter()
            .filter_map(|kind| crate::NotificationKind::from_proto(*kind))
            .map(crate::NotificationKind::as_str)
            .collect();
        transaction
            .execute(
                "INSERT INTO notify.integrations (integration_id, name, channel, status, kinds, \
                   config, global_position, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
                 ON CONFLICT (integration_id) DO UPDATE SET name = $2, channel = $3, \
                   status = $4, kinds = $5, config = $6, global_position = $7, updated_at = now()",
                &[
                    integration_id,
                    &config.name,
                    &channel,
                    &integration.status.as_str(),
                    &kinds,
                    &config.encode_to_vec(),
                    global_position,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Inserts the batch's deliveries; ids already in the outbox (decided before a rebuild) are
/// skipped.
async fn write_deliveries(
    transaction: &Transaction<'_>,
    deliveries: &[NewDelivery],
) -> Result<(), ProjectorError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.delivery_id).collect();
    let integrations: Vec<Uuid> = deliveries.iter().map(|d| d.integration_id).collect();
    let channels: Vec<&str> = deliveries.iter().map(|d| d.channel).collect();
    let kinds: Vec<&str> = deliveries.iter().map(|d| d.kind).collect();
    let customers: Vec<Uuid> = deliveries.iter().map(|d| d.customer_id).collect();
    let events: Vec<Uuid> = deliveries.iter().map(|d| d.event_id).collect();
    let positions: Vec<i64> = deliveries.iter().map(|d| d.global_position).collect();
    let created: Vec<OffsetDateTime> = deliveries.iter().map(|d| d.created_at).collect();
    let data: Vec<&str> = deliveries.iter().map(|d| d.data.as_str()).collect();
    let inserted = transaction
        .execute(
            "INSERT INTO notify_delivery.deliveries (delivery_id, integration_id, channel, kind, \
               customer_id, event_id, global_position, created_at, data) \
             SELECT id, integration, channel, kind, customer, event, position, created, \
               data::jsonb \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], \
               $6::uuid[], $7::int8[], $8::timestamptz[], $9::text[]) \
               AS t(id, integration, channel, kind, customer, event, position, created, data) \
             ON CONFLICT (delivery_id) DO NOTHING",
            &[
                &ids,
                &integrations,
                &channels,
                &kinds,
                &customers,
                &events,
                &positions,
                &created,
                &data,
            ],
        )
        .await?;
    tracing::debug!(
        decided = deliveries.len(),
        inserted,
        "deliveries written to the outbox"
    );
    Ok(())
}
