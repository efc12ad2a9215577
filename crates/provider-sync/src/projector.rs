//! The `provider_sync` projector: which provider holds each subscription, and the calls the
//! ledger owes the providers, written into the outbox in the batch's transaction.

use std::collections::BTreeMap;

use ledger_domain::{Event, Issuer, Provider, proto};
use ledger_projector::{Projected, Projector, ProjectorError};
use prost::Message;
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::outbox::{Action, call_id};

/// A payment and where it was collected.
#[derive(Debug, Clone)]
struct Collected {
    provider: Provider,
    account_id: String,
    invoice_id: String,
}

/// The `provider_sync` projector. It reads nothing but its own schema and the events the
/// runtime hands it.
#[derive(Debug, Default)]
pub struct ProviderSyncProjector;

/// A subscription and where it is held.
#[derive(Debug, Clone)]
struct Holder {
    provider: Provider,
    account_id: String,
}

/// One call for the outbox.
#[derive(Debug)]
struct NewCall {
    call_id: Uuid,
    provider: Provider,
    action: Action,
    customer_id: Uuid,
    /// Empty for a refund.
    subscription_id: String,
    refund: Option<RefundCall>,
    /// The request of a pause, resume or plan change.
    update: Option<proto::SubscriptionUpdateRequested>,
    account_id: String,
    reason: String,
    request_event_id: Uuid,
    request_position: i64,
    request_occurred_at: OffsetDateTime,
    correlation_id: Option<Uuid>,
}

/// What a refund call asks for.
#[derive(Debug)]
struct RefundCall {
    refund_request_id: String,
    payment_id: String,
    invoice_id: String,
    amount_minor: i64,
    currency: String,
}

/// What an answer in the ledger settles: a subscription's calls of the given actions, or one
/// refund request.
#[derive(Debug)]
enum Settled {
    Subscription(String, &'static [Action]),
    RefundRequest(String),
}

/// The calls a cancellation's answer (or a reactivation) settles.
const CANCELLATIONS: &[Action] = &[Action::CancelNow, Action::CancelAtPeriodEnd];
/// The calls an update's failure settles.
const UPDATES: &[Action] = &[Action::Pause, Action::Resume, Action::ChangePlan];
/// The calls a subscription's cancellation settles: every one about it.
const SUBSCRIPTION_CALLS: &[Action] = &[
    Action::CancelNow,
    Action::CancelAtPeriodEnd,
    Action::Pause,
    Action::Resume,
    Action::ChangePlan,
];

/// A request answered in the ledger: settles the calls of earlier requests still pending.
#[derive(Debug)]
struct Settle {
    customer_id: Uuid,
    settled: Settled,
    global_position: i64,
    event_type: &'static str,
}

impl Projector for ProviderSyncProjector {
    fn name(&self) -> &'static str {
        "provider_sync"
    }

    fn schema_version(&self) -> i32 {
        // 2: where each payment was collected (refunds).
        2
    }

    /// What it holds is provider-sync's own business.
    fn readable_by_query(&self) -> bool {
        false
    }

    fn schema_sql(&self) -> String {
        include_str!("schema.sql").to_owned()
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> Result<(), ProjectorError> {
        let mut started: BTreeMap<(Uuid, String), Holder> = BTreeMap::new();
        let mut collected: BTreeMap<(Uuid, String), Collected> = BTreeMap::new();
        let mut calls = Vec::new();
        let mut settles = Vec::new();
        for projected in events {
            let recorded = &projected.recorded;
            let customer_id = recorded.stream_id;
            let global_position = i64::try_from(recorded.global_position).unwrap_or(i64::MAX);
            match &projected.event {
                Event::SubscriptionStarted(started_event) => {
                    started
                        .entry((customer_id, started_event.subscription_id.clone()))
                        .or_insert(Holder {
                            provider: recorded.event.payment_provider_type,
                            account_id: recorded.event.account_id.clone(),
                        });
                }
                Event::CancellationRequested(request)
                    if recorded.event.issuer == Issuer::Internal =>
                {
                    let key = (customer_id, request.subscription_id.clone());
                    let holder = match started.get(&key) {
                        Some(holder) => Some(holder.clone()),
                        None => holder(transaction, customer_id, &request.subscription_id).await?,
                    };
                    let Some(holder) =
                        holder.filter(|holder| holder.provider != Provider::Internal)
                    else {
                        continue;
                    };
                    let action = if request.at_period_end {
                        Action::CancelAtPeriodEnd
                    } else {
                        Action::CancelNow
                    };
                    calls.push(NewCall {
                        call_id: call_id(recorded.event.event_id),
                        provider: holder.provider,
                        action,
                        customer_id,
                        subscription_id: request.subscription_id.clone(),
                        refund: None,
                        update: None,
                        account_id: holder.account_id,
                        reason: request.reason.clone(),
                        request_event_id: recorded.event.event_id,
                        request_position: global_position,
                        request_occurred_at: recorded.event.occurred_at,
                        correlation_id: recorded.event.correlation_id,
                    });
                }
                Event::PaymentSucceeded(payment) => {
                    collected
                        .entry((customer_id, payment.payment_id.clone()))
                        .or_insert(Collected {
                            provider: recorded.event.payment_provider_type,
                            account_id: recorded.event.account_id.clone(),
                            invoice_id: payment.invoice_id.clone(),
                        });
                }
                Event::RefundRequested(request) if recorded.event.issuer == Issuer::Internal => {
                    let key = (customer_id, request.payment_id.clone());
                    let payment = match collected.get(&key) {
                        Some(payment) => Some(payment.clone()),
                        None => payment(transaction, customer_id, &request.payment_id).await?,
                    };
                    let (Some(payment), Some(amount)) = (
                        payment.filter(|payment| payment.provider != Provider::Internal),
                        request.amount.as_ref(),
                    ) else {
                        continue;
                    };
                    calls.push(NewCall {
                        call_id: call_id(recorded.event.event_id),
                        provider: payment.provider,
                        action: Action::Refund,
                        customer_id,
                        subscription_id: String::new(),
                        update: None,
                        refund: Some(RefundCall {
                            refund_request_id: request.refund_request_id.clone(),
                            payment_id: request.payment_id.clone(),
                            invoice_id: payment.invoice_id,
                            amount_minor: amount.amount_minor,
                            currency: amount.currency.clone(),
                        }),
                        account_id: payment.account_id,
                        reason: request.reason.clone(),
                        request_event_id: recorded.event.event_id,
                        request_position: global_position,
                        request_occurred_at: recorded.event.occurred_at,
                        correlation_id: recorded.event.correlation_id,
                    });
                }
                Event::SubscriptionUpdateRequested(request)
                    if recorded.event.issuer == Issuer::Internal =>
                {
                    let key = (customer_id, request.subscription_id.clone());
                    let holder = match started.get(&key) {
                        Some(holder) => Some(holder.clone()),
                        None => holder(transaction, customer_id, &request.subscription_id).await?,
                    };
                    let (Some(holder), Some(action)) = (
                        holder.filter(|holder| holder.provider != Provider::Internal),
                        Action::of_update(request),
                    ) else {
                        continue;
                    };
                    calls.push(NewCall {
                        call_id: call_id(recorded.event.event_id),
                        provider: holder.provider,
                        action,
                        customer_id,
                        subscription_id: request.subscription_id.clone(),
                        refund: None,
                        update: Some(request.clone()),
                        account_id: holder.account_id,
                        reason: request.reason.clone(),
                        request_event_id: recorded.event.event_id,
                        request_position: global_position,
                        request_occurred_at: recorded.event.occurred_at,
                        correlation_id: recorded.event.correlation_id,
                    });
                }
                Event::PaymentRefunded(answer) if !answer.refund_request_id.is_empty() => {
                    settles.push(Settle {
                        customer_id,
                        settled: Settled::RefundRequest(answer.refund_request_id.clone()),
                        global_position,
                        event_type: "payment_refunded",
                    });
                }
                Event::RefundFailed(answer) => settles.push(Settle {
                    customer_id,
                    settled: Settled::RefundRequest(answer.refund_request_id.clone()),
                    global_position,
                    event_type: "refund_failed",
                }),
                event => {
                    if let Some((subscription_id, actions)) = settled_calls(event) {
                        settles.push(Settle {
                            customer_id,
                            settled: Settled::Subscription(subscription_id.to_owned(), actions),
                            global_position,
                            event_type: ledger_domain::event_type(event),
                        });
                    }
                }
            }
        }
        write_holders(transaction, &started).await?;
        write_payments(transaction, &collected).await?;
        write_calls(transaction, &calls).await?;
        for settle in &settles {
            let (column, id, actions) = match &settle.settled {
                Settled::Subscription(id, actions) => ("subscription_id", id, *actions),
                Settled::RefundRequest(id) => ("refund_request_id", id, &[Action::Refund][..]),
            };
            let actions: Vec<&str> = actions.iter().map(|action| action.as_str()).collect();
            transaction
                .execute(
                    &format!(
                        "UPDATE provider_sync_outbox.calls SET status = 'settled', \
                           done_at = now(), leased_until = NULL, \
                           result = 'answered in the ledger before the call: ' || $4 || ' at ' \
                             || $3 \
                         WHERE customer_id = $1 AND {column} = $2 AND status = 'pending' \
                           AND request_position < $3 AND action = ANY($5)"
                    ),
                    &[
                        &settle.customer_id,
                        id,
                        &settle.global_position,
                        &settle.event_type,
                        &actions,
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

/// The subscription, and the actions of its calls, that an answer in the ledger settles: a
/// cancellation settles every call about the subscription, a cancellation's failure or a
/// reactivation the cancellations, a change the requests of its kind, an update's failure the
/// updates.
fn settled_calls(event: &Event) -> Option<(&str, &'static [Action])> {
    Some(match event {
        Event::SubscriptionCancelled(answer) => (&answer.subscription_id, SUBSCRIPTION_CALLS),
        Event::CancellationFailed(answer) => (&answer.subscription_id, CANCELLATIONS),
        Event::SubscriptionReactivated(answer) => (&answer.subscription_id, CANCELLATIONS),
        Event::SubscriptionPaused(answer) => (&answer.subscription_id, &[Action::Pause]),
        Event::SubscriptionResumed(answer) => (&answer.subscription_id, &[Action::Resume]),
        Event::PlanChanged(answer) => (&answer.subscription_id, &[Action::ChangePlan]),
        Event::SubscriptionUpdateFailed(answer) => (&answer.subscription_id, UPDATES),
        _ => return None,
    })
}

/// The provider holding a subscription started in an earlier batch.
async fn holder(
    transaction: &Transaction<'_>,
    customer_id: Uuid,
    subscription_id: &str,
) -> Result<Option<Holder>, ProjectorError> {
    let row = transaction
        .query_opt(
            "SELECT provider, account_id FROM provider_sync.subscriptions \
             WHERE customer_id = $1 AND subscription_id = $2",
            &[&customer_id, &subscription_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Holder {
        provider: provider_of(&row, || {
            format!("subscription {subscription_id} of {customer_id}")
        })?,
        account_id: row.try_get(1)?,
    }))
}

/// The provider in column 0 of a look-up `row` about `what` (a subscription, a payment).
fn provider_of(
    row: &tokio_postgres::Row,
    what: impl FnOnce() -> String,
) -> Result<Provider, ProjectorError> {
    let provider: &str = row.try_get(0)?;
    provider.parse().map_err(|error| ProjectorError::Apply {
        projector: "provider_sync",
        reason: format!("{}: {error}", what()),
    })
}

/// A payment collected in an earlier batch.
async fn payment(
    transaction: &Transaction<'_>,
    customer_id: Uuid,
    payment_id: &str,
) -> Result<Option<Collected>, ProjectorError> {
    let row = transaction
        .query_opt(
            "SELECT provider, account_id, invoice_id FROM provider_sync.payments \
             WHERE customer_id = $1 AND payment_id = $2",
            &[&customer_id, &payment_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Collected {
        provider: provider_of(&row, || format!("payment {payment_id} of {customer_id}"))?,
        account_id: row.try_get(1)?,
        invoice_id: row.try_get(2)?,
    }))
}

async fn write_payments(
    transaction: &Transaction<'_>,
    collected: &BTreeMap<(Uuid, String), Collected>,
) -> Result<(), ProjectorError> {
    if collected.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = collected.keys().map(|(customer, _)| *customer).collect();
    let payments: Vec<&str> = collected.keys().map(|(_, id)| id.as_str()).collect();
    let providers: Vec<&str> = collected.values().map(|c| c.provider.as_str()).collect();
    let accounts: Vec<&str> = collected.values().map(|c| c.account_id.as_str()).collect();
    let invoices: Vec<&str> = collected.values().map(|c| c.invoice_id.as_str()).collect();
    transaction
        .execute(
            "INSERT INTO provider_sync.payments (customer_id, payment_id, provider, account_id, \
               invoice_id) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT DO NOTHING",
            &[&customers, &payments, &providers, &accounts, &invoices],
        )
        .await?;
    Ok(())
}

async fn write_holders(
    transaction: &Transaction<'_>,
    started: &BTreeMap<(Uuid, String), Holder>,
) -> Result<(), ProjectorError> {
    if started.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = started.keys().map(|(customer, _)| *customer).collect();
    let subscriptions: Vec<&str> = started.keys().map(|(_, id)| id.as_str()).collect();
    let providers: Vec<&str> = started.values().map(|h| h.provider.as_str()).collect();
    let accounts: Vec<&str> = started.values().map(|h| h.account_id.as_str()).collect();
    transaction
        .execute(
            "INSERT INTO provider_sync.subscriptions (customer_id, subscription_id, provider, \
               account_id) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT DO NOTHING",
            &[&customers, &subscriptions, &providers, &accounts],
        )
        .await?;
    Ok(())
}

/// Inserts the batch's calls; ids already in the outbox (decided before a rebuild) are
/// skipped.
async fn write_calls(
    transaction: &Transaction<'_>,
    calls: &[NewCall],
) -> Result<(), ProjectorError> {
    for call in calls {
        let refund = call.refund.as_ref();
        transaction
            .execute(
                "INSERT INTO provider_sync_outbox.calls (call_id, provider, action, customer_id, \
                   subscription_id, account_id, reason, request_event_id, request_position, \
                   request_occurred_at, correlation_id, refund_request_id, payment_id, \
                   invoice_id, amount_minor, currency, update_request) \
                 VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7, $8, $9, $10, $11, $12, $13, \
                   NULLIF($14, ''), $15, $16, $17) \
                 ON CONFLICT (call_id) DO NOTHING",
                &[
                    &call.call_id,
                    &call.provider.as_str(),
                    &call.action.as_str(),
                    &call.customer_id,
                    &call.subscription_id,
                    &call.account_id,
                    &call.reason,
                    &call.request_event_id,
                    &call.request_position,
                    &call.request_occurred_at,
                    &call.correlation_id,
                    &refund.map(|refund| refund.refund_request_id.as_str()),
                    &refund.map(|refund| refund.payment_id.as_str()),
                    &refund.map(|refund| refund.invoice_id.as_str()),
                    &refund.map(|refund| refund.amount_minor),
                    &refund.map(|refund| refund.currency.as_str()),
                    &call.update.as_ref().map(Message::encode_to_vec),
                ],
            )
            .await?;
    }
    Ok(())
}
