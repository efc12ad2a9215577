//! Reconciliation of a Stripe account with the ledger (`ledger sync stripe --check /
//! --repair`, docs/connectors.md, "Reconciliation"): every subscription Stripe holds
//! (`GET /v1/subscriptions?status=all`, paged) compared with the customers read model
//! ([`ledger_connectors::reconcile`]); a repair imports the provider's current objects through
//! the writer with inbox source `repair` ([`crate::resync`]).

use std::time::{Duration, Instant};

use ledger_bus::Client;
use ledger_connectors::reconcile::{Difference, Drift, Reconciliation, SubscriptionState};
use ledger_connectors::stripe::{ListedKind, subscription_state};
use ledger_domain::{Provider, SubscriptionStatus};
use serde_json::Value;
use uuid::Uuid;

use crate::SyncError;
use crate::resync::{Changes, Pages, Resync, now_unix_seconds, reimport, stripe_id};
use crate::stripe_api::StripeReader;

/// How long a check waits for the customers read model to reach the event table's last
/// position before it compares (a repair's events must be in it).
pub const READ_MODEL_WAIT_MAX: Duration = Duration::from_secs(30);

/// The ledger's subscriptions held at `provider`, every status, from the customers read model
/// (schema `customers`; `subscriptions.payment_provider_type` is the provider of each one's
/// `subscription_started`, where provider-sync carries requests out), with the customer's
/// account at that provider.
///
/// # Errors
/// [`SyncError::Store`] when the read model cannot be read (projector-customers never ran, or
/// only a release before its schema version 6, which added the column, did).
pub async fn ledger_subscriptions(
    database: &tokio_postgres::Client,
    provider: Provider,
) -> Result<Vec<SubscriptionState>, SyncError> {
    let rows = database
        .query(
            "SELECT s.subscription_id, \
                    coalesce((SELECT min(p.account_id) FROM customers.provider_accounts p \
                              WHERE p.customer_id = s.customer_id AND p.provider = $1), ''), \
                    s.status, s.plan_id, s.unit_amount_minor, s.currency, s.quantity, \
                    extract(epoch FROM s.current_period_end)::bigint \
             FROM customers.subscriptions s \
             WHERE s.payment_provider_type = $1",
            &[&provider.as_str()],
        )
        .await
        .map_err(|error| SyncError::Store(error.into()))?;
    rows.iter()
        .map(|row| {
            let status: String = row.get(2);
            let quantity: i32 = row.get(6);
            Ok(SubscriptionState {
                subscription_id: row.get(0),
                account_id: row.get(1),
                status: status.parse::<SubscriptionStatus>().map_err(|error| {
                    SyncError::Config(format!("customers.subscriptions: {error}"))
                })?,
                plan_id: row.get(3),
                unit_amount_minor: row.get(4),
                currency: row.get(5),
                quantity: u32::try_from(quantity).unwrap_or_default(),
                current_period_end_unix_seconds: row.get(7),
            })
        })
        .collect()
}

/// Waits until the customers read model has applied every event the table holds, at most
/// [`READ_MODEL_WAIT_MAX`].
///
/// # Errors
/// [`SyncError::Config`] when it does not catch up in time (projector-customers is not
/// running: start it), [`SyncError::Store`] when PostgreSQL fails.
pub async fn wait_for_read_model(database: &tokio_postgres::Client) -> Result<(), SyncError> {
    let started = Instant::now();
    loop {
        let row = database
            .query_one(
                "SELECT coalesce((SELECT max(global_position) FROM customer_payment_events), 0), \
                        coalesce((SELECT global_position FROM customers.projector_checkpoint), 0)",
                &[],
            )
            .await
            .map_err(|error| SyncError::Store(error.into()))?;
        let (table, applied): (i64, i64) = (row.get(0), row.get(1));
        if applied >= table {
            return Ok(());
        }
        if started.elapsed() > READ_MODEL_WAIT_MAX {
            return Err(SyncError::Config(format!(
                "the customers read model is at position {applied}, the event table at {table}: \
                 start `ledger run projector customers` and check again"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One drift found, with the provider's object when it has one (what a repair imports).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub drift: Drift,
    pub object: Option<Value>,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Check {
    /// Provider subscriptions compared.
    pub compared: usize,
    pub found: Vec<Found>,
    /// Provider objects that could not be read (logged with their id).
    pub unreadable: u64,
}

/// Compares every subscription Stripe lists with `ledger` (from [`ledger_subscriptions`]),
/// calling `on_drift` for each drift as it is found.
///
/// # Errors
/// As [`StripeReader::page`].
pub async fn check_stripe(
    reader: &StripeReader,
    ledger: Vec<SubscriptionState>,
    on_drift: &mut (dyn FnMut(&Drift) + Send),
) -> Result<Check, SyncError> {
    let mut reconciliation = Reconciliation::new(ledger);
    let mut check = Check::default();
    let mut pages = Pages::new(ListedKind::Subscription, Vec::new());
    while let Some(objects) = pages.next(reader).await? {
        for object in objects {
            let Some(id) = object.get("id").and_then(Value::as_str).map(str::to_owned) else {
                check.unreadable += 1;
                continue;
            };
            let state = match subscription_state(&object) {
                Ok(state) => state,
                Err(reason) => {
                    tracing::warn!(
                        subscription = id,
                        reason,
                        "a Stripe subscription cannot be read; not compared"
                    );
                    check.unreadable += 1;
                    continue;
                }
            };
            if let Some(drift) = reconciliation.provider(&id, state) {
                on_drift(&drift);
                check.found.push(Found {
                    drift,
                    object: Some(object),
                });
            }
        }
    }
    check.compared = reconciliation.compared();
    for drift in reconciliation.finish() {
        on_drift(&drift);
        check.found.push(Found {
            drift,
            object: None,
        });
    }
    Ok(check)
}

/// What a repair did: the imports' outcomes and positions, and the drifts it could not act on
/// (a subscription the provider does not hold: nothing to import).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repair {
    pub changes: Changes,
    pub not_repairable: Vec<Drift>,
    pub correlation_id: Uuid,
}

/// Brings the ledger to Stripe's state for each drift of `found`: imports the subscription as
/// Stripe holds it now (source `repair`, the drift as its note, e.g. `repair: status active ->
/// canceled`); for one missing in the ledger, its customer first; for a status that differs by
/// `past_due`, its latest invoice too (the ledger moves a subscription to and from `past_due`
/// with the payments it records, not with the subscription's snapshot).
///
/// # Errors
/// As [`StripeReader::object`] and the writer.
pub async fn repair_stripe(
    reader: &StripeReader,
    client: &Client,
    found: &[Found],
) -> Result<Repair, SyncError> {
    let mut repair = Repair {
        correlation_id: Uuid::now_v7(),
        ..Repair::default()
    };
    for Found { drift, object } in found {
        let Some(object) = object else {
            repair.not_repairable.push(drift.clone());
            continue;
        };
        let reason = drift.repair_reason();
        tracing::info!(subscription = drift.subscription_id(), reason, "repairing");
        let mut related = Vec::new();
        match drift {
            Drift::MissingInLedger { provider } if stripe_id(&provider.account_id) => {
                let path = format!("/v1/customers/{}", provider.account_id);
                if let Some(customer) = reader.object(&path).await? {
                    related.push((ListedKind::Customer, customer));
                }
            }
            Drift::Different { differences, .. } if past_due_moves(differences) => {
                if let Some(invoice) = object
                    .get("latest_invoice")
                    .and_then(|invoice| invoice.as_str().or_else(|| invoice.get("id")?.as_str()))
                    .filter(|invoice| stripe_id(invoice))
                {
                    let path = format!("/v1/invoices/{invoice}");
                    if let Some(invoice) = reader.object(&path).await? {
                        related.push((ListedKind::Invoice, invoice));
                    }
                }
            }
            _ => {}
        }
        let read_at = now_unix_seconds();
        let customer_first = related
            .iter()
            .filter(|(kind, _)| *kind == ListedKind::Customer);
        for (kind, related_object) in customer_first {
            repair.changes.add(
                reimport(
                    client,
                    Resync::Repair,
                    *kind,
                    related_object,
                    read_at,
                    &reason,
                    repair.correlation_id,
                )
                .await?,
            );
        }
        repair.changes.add(
            reimport(
                client,
                Resync::Repair,
                ListedKind::Subscription,
                object,
                read_at,
                &reason,
                repair.correlation_id,
            )
            .await?,
        );
        for (kind, related_object) in related
            .iter()
            .filter(|(kind, _)| *kind != ListedKind::Customer)
        {
            repair.changes.add(
                reimport(
                    client,
                    Resync::Repair,
                    *kind,
                    related_object,
                    read_at,
                    &reason,
                    repair.correlation_id,
                )
                .await?,
            );
        }
    }
    Ok(repair)
}

/// Whether a status difference is one the ledger makes with payments (to or from `past_due`).
fn past_due_moves(differences: &[Difference]) -> bool {
    differences.iter().any(|difference| {
        matches!(
            difference,
            Difference::Status { ledger, provider }
                if *ledger == SubscriptionStatus::PastDue || *provider == SubscriptionStatus::PastDue
        )
    })
}
