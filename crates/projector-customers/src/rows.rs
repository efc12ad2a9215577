//! The rows a batch writes, collected from its events and derived from the final aggregates.

use std::collections::{BTreeMap, BTreeSet};

use ledger_domain::{
    Customer, Event, MonthlyRecurringRevenue, PaymentStatus, SubscriptionStatus, event_type, proto,
};
use ledger_projector::{Projected, ProjectorError};
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// Summary status of a customer: its liveliest subscription's, in this order.
const STATUS_PRIORITY: [SubscriptionStatus; 6] = [
    SubscriptionStatus::Active,
    SubscriptionStatus::PastDue,
    SubscriptionStatus::Trialing,
    SubscriptionStatus::CancelPending,
    SubscriptionStatus::Paused,
    SubscriptionStatus::Canceled,
];

struct Registration {
    customer_id: Uuid,
    account_id: String,
    payment_provider_type: &'static str,
    created_at: OffsetDateTime,
    email: String,
    name: String,
}

struct TimelineRow {
    customer_id: Uuid,
    global_position: i64,
    occurred_at: OffsetDateTime,
    event_type: &'static str,
    status: &'static str,
    issuer: &'static str,
    payment_provider_type: &'static str,
    amount_minor: Option<i64>,
    currency: Option<String>,
}

/// What a batch's events say directly (the rest is derived from the aggregates).
#[derive(Default)]
pub(crate) struct Rows {
    registrations: Vec<Registration>,
    last_payments: BTreeMap<Uuid, (&'static str, OffsetDateTime)>,
    last_events: BTreeMap<Uuid, (i64, OffsetDateTime)>,
    timeline: Vec<TimelineRow>,
}

impl Rows {
    pub(crate) fn record_event(&mut self, projected: &Projected) {
        let recorded = &projected.recorded;
        let envelope = &recorded.event;
        let customer_id = recorded.stream_id;
        let global_position = i64::try_from(recorded.global_position).unwrap_or(i64::MAX);
        match &projected.event {
            Event::CustomerRegistered(registered) => self.registrations.push(Registration {
                customer_id,
                account_id: envelope.account_id.clone(),
                payment_provider_type: envelope.payment_provider_type.as_str(),
                created_at: envelope.occurred_at,
                email: registered.email.clone(),
                name: registered.name.clone(),
            }),
            Event::PaymentSucceeded(_) => {
                self.last_payments.insert(
                    customer_id,
                    (PaymentStatus::Succeeded.as_str(), envelope.occurred_at),
                );
            }
            Event::PaymentFailed(_) => {
                self.last_payments.insert(
                    customer_id,
                    (PaymentStatus::Failed.as_str(), envelope.occurred_at),
                );
            }
            _ => {}
        }
        self.last_events
            .insert(customer_id, (global_position, envelope.occurred_at));
        let amount = event_amount(&projected.event);
        self.timeline.push(TimelineRow {
            customer_id,
            global_position,
            occurred_at: envelope.occurred_at,
            event_type: event_type(&projected.event),
            status: envelope.status.as_str(),
            issuer: envelope.issuer.as_str(),
            payment_provider_type: envelope.payment_provider_type.as_str(),
            amount_minor: amount.map(|money| money.amount_minor),
            currency: amount.map(|money| money.currency.clone()),
        });
    }

    /// Writes the batch: new customers, then every touched customer's derived row,
    /// subscriptions, totals and accounts, and the timeline.
    pub(crate) async fn write(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        self.write_registrations(transaction).await?;
        self.write_customers(transaction, states).await?;
        write_subscriptions(transaction, states).await?;
        write_totals(transaction, states).await?;
        write_accounts(transaction, states).await?;
        self.write_timeline(transaction).await
    }

    async fn write_registrations(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<(), ProjectorError> {
        if self.registrations.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.registrations.iter().map(|r| r.customer_id).collect();
        let accounts: Vec<&str> = self
            .registrations
            .iter()
            .map(|r| r.account_id.as_str())
            .collect();
        let providers: Vec<&str> = self
            .registrations
            .iter()
            .map(|r| r.payment_provider_type)
            .collect();
        let created: Vec<OffsetDateTime> =
            self.registrations.iter().map(|r| r.created_at).collect();
        let emails: Vec<&str> = self
            .registrations
            .iter()
            .map(|r| r.email.as_str())
            .collect();
        let names: Vec<&str> = self.registrations.iter().map(|r| r.name.as_str()).collect();
        transaction
            .execute(
                "INSERT INTO customers.customers (customer_id, account_id, payment_provider_type, \
                   created_at, email, name, status, last_global_position, last_event_at) \
                 SELECT id, account, provider, created, email, name, 'none', 0, created \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
                   $6::text[]) AS t(id, account, provider, created, email, name) \
                 ON CONFLICT (customer_id) DO NOTHING",
                &[&ids, &accounts, &providers, &created, &emails, &names],
            )
            .await?;
        Ok(())
    }

    async fn write_customers(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let mut ids = Vec::new();
        let mut emails = Vec::new();
        let mut names = Vec::new();
        let mut statuses = Vec::new();
        let mut mrr_minor = Vec::new();
        let mut mrr_currency = Vec::new();
        let mut payment_statuses = Vec::new();
        let mut payment_times = Vec::new();
        let mut positions = Vec::new();
        let mut event_times = Vec::new();
        for (customer_id, state) in states {
            let Some(&(position, event_time)) = self.last_events.get(customer_id) else {
                continue;
            };
            let (email, name) = state.profile.as_ref().map_or(("", ""), |profile| {
                (profile.email.as_str(), profile.name.as_str())
            });
            let mrr = customer_mrr(state);
            ids.push(*customer_id);
            emails.push(email);
            names.push(name);
            statuses.push(summary_status(state));
            mrr_minor.push(mrr.map(|mrr| mrr.rounded_minor()));
            mrr_currency.push(mrr.map(|mrr| mrr.currency.code()));
            let last_payment = self.last_payments.get(customer_id);
            payment_statuses.push(last_payment.map(|(status, _)| *status));
            payment_times.push(last_payment.map(|(_, at)| *at));
            positions.push(position);
            event_times.push(event_time);
        }
        transaction
            .execute(
                "UPDATE customers.customers c SET email = u.email, name = u.name, \
                   status = u.status, mrr_minor = u.mrr_minor, mrr_currency = u.mrr_currency, \
                   last_payment_status = coalesce(u.payment_status, c.last_payment_status), \
                   last_payment_at = coalesce(u.payment_at, c.last_payment_at), \
                   last_global_position = u.position, last_event_at = u.event_at \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                   $6::text[], $7::text[], $8::timestamptz[], $9::int8[], $10::timestamptz[]) \
                   AS u(id, email, name, status, mrr_minor, mrr_currency, payment_status, \
                        payment_at, position, event_at) \
                 WHERE c.customer_id = u.id",
                &[
                    &ids,
                    &emails,
                    &names,
                    &statuses,
                    &mrr_minor,
                    &mrr_currency,
                    &payment_statuses,
                    &payment_times,
                    &positions,
                    &event_times,
                ],
            )
            .await?;
        Ok(())
    }

    async fn write_timeline(&self, transaction: &Transaction<'_>) -> Result<(), ProjectorError> {
        let rows = &self.timeline;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.customer_id).collect();
        let positions: Vec<i64> = rows.iter().map(|r| r.global_position).collect();
        let times: Vec<OffsetDateTime> = rows.iter().map(|r| r.occurred_at).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
        let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
        let issuers: Vec<&str> = rows.iter().map(|r| r.issuer).collect();
        let providers: Vec<&str> = rows.iter().map(|r| r.payment_provider_type).collect();
        let amounts: Vec<Option<i64>> = rows.iter().map(|r| r.amount_minor).collect();
        let currencies: Vec<Option<&str>> = rows.iter().map(|r| r.currency.as_deref()).collect();
        transaction
            .execute(
                "INSERT INTO customers.timeline SELECT * FROM unnest($1::uuid[], $2::int8[], \
                   $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], \
                   $8::int8[], $9::text[])",
                &[
                    &ids,
                    &positions,
                    &times,
                    &types,
                    &statuses,
                    &issuers,
                    &providers,
                    &amounts,
                    &currencies,
                ],
            )
            .await?;
        Ok(())
    }
}

/// Upserts every subscription of the batch's customers (a customer's subscriptions and its
/// currencies of payments are never removed from the aggregate), writing only changed rows.
async fn write_subscriptions(
    transaction: &Transaction<'_>,
    states: &BTreeMap<Uuid, Customer>,
) -> Result<(), ProjectorError> {
    let mut ids = Vec::new();
    let mut subscription_ids = Vec::new();
    let mut statuses = Vec::new();
    let mut plans = Vec::new();
    let mut intervals = Vec::new();
    let mut counts = Vec::new();
    let mut quantities = Vec::new();
    let mut amounts = Vec::new();
    let mut currencies = Vec::new();
    let mut mrr = Vec::new();
    let mut trial_ends = Vec::new();
    let mut period_ends = Vec::new();
    let mut cancel_at_period_end = Vec::new();
    for (customer_id, state) in states {
        for (subscription_id, subscription) in &state.subscriptions {
            ids.push(*customer_id);
            subscription_ids.push(subscription_id.as_str());
            statuses.push(subscription.status.as_str());
            plans.push(subscription.plan.plan_id.as_str());
            intervals.push(subscription.plan.interval.as_str());
            counts.push(i32::try_from(subscription.plan.interval_count).unwrap_or(i32::MAX));
            quantities.push(i32::try_from(subscription.quantity).unwrap_or(i32::MAX));
            amounts.push(subscription.plan.unit_price.amount_minor);
            currencies.push(subscription.currency().code());
            mrr.push(subscription.monthly_recurring_revenue().rounded_minor());
            trial_ends.push(subscription.trial_end_unix_seconds.and_then(unix_time));
            period_ends.push(
                unix_time(subscription.current_period_end_unix_seconds)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            );
            cancel_at_period_end.push(subscription.cancel_at_period_end());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            "INSERT INTO customers.subscriptions AS s SELECT * FROM unnest($1::uuid[], \
               $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], \
               $8::int8[], $9::text[], $10::int8[], $11::timestamptz[], $12::timestamptz[], \
               $13::bool[]) \
             ON CONFLICT (customer_id, subscription_id) DO UPDATE SET status = excluded.status, \
               plan_id = excluded.plan_id, billing_interval = excluded.billing_interval, \
               interval_count = excluded.interval_count, quantity = excluded.quantity, \
               unit_amount_minor = excluded.unit_amount_minor, currency = excluded.currency, \
               mrr_minor = excluded.mrr_minor, trial_end = excluded.trial_end, \
               current_period_end = excluded.current_period_end, \
               cancel_at_period_end = excluded.cancel_at_period_end \
             WHERE s IS DISTINCT FROM excluded",
            &[
                &ids,
                &subscription_ids,
                &statuses,
                &plans,
                &intervals,
                &counts,
                &quantities,
                &amounts,
                &currencies,
                &mrr,
                &trial_ends,
                &period_ends,
                &cancel_at_period_end,
            ],
        )
        .await?;
    Ok(())
}

/// Upserts the lifetime totals of the batch's customers, writing only changed rows.
async fn write_totals(
    transaction: &Transaction<'_>,
    states: &BTreeMap<Uuid, Customer>,
) -> Result<(), ProjectorError> {
    let mut ids = Vec::new();
    let mut currencies = Vec::new();
    let mut paid = Vec::new();
    let mut refunded = Vec::new();
    for (customer_id, state) in states {
        let mut by_currency: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new();
        for payment in state.payments.values() {
            if payment.status != PaymentStatus::Succeeded {
                continue;
            }
            let entry = by_currency
                .entry(payment.amount.currency.code())
                .or_default();
            entry.0 = entry.0.saturating_add(payment.amount.amount_minor);
            entry.1 = entry.1.saturating_add(payment.refunded.amount_minor);
        }
        for (currency, (paid_minor, refunded_minor)) in by_currency {
            ids.push(*customer_id);
            currencies.push(currency);
            paid.push(paid_minor);
            refunded.push(refunded_minor);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            "INSERT INTO customers.totals AS t SELECT * FROM unnest($1::uuid[], $2::text[], \
               $3::int8[], $4::int8[]) \
             ON CONFLICT (customer_id, currency) DO UPDATE SET paid_minor = excluded.paid_minor, \
               refunded_minor = excluded.refunded_minor \
             WHERE t IS DISTINCT FROM excluded",
            &[&ids, &currencies, &paid, &refunded],
        )
        .await?;
    Ok(())
}

async fn write_accounts(
    transaction: &Transaction<'_>,
    states: &BTreeMap<Uuid, Customer>,
) -> Result<(), ProjectorError> {
    let mut ids = Vec::new();
    let mut providers = Vec::new();
    let mut accounts = Vec::new();
    for (customer_id, state) in states {
        for account in &state.provider_accounts {
            ids.push(*customer_id);
            providers.push(account.provider.as_str());
            accounts.push(account.account_id.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            "INSERT INTO customers.provider_accounts (provider, account_id, customer_id) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[]) ON CONFLICT DO NOTHING",
            &[&providers, &accounts, &ids],
        )
        .await?;
    Ok(())
}

fn summary_status(state: &Customer) -> &'static str {
    let statuses: BTreeSet<&'static str> = state
        .subscriptions
        .values()
        .map(|subscription| subscription.status.as_str())
        .collect();
    STATUS_PRIORITY
        .iter()
        .map(|status| status.as_str())
        .find(|status| statuses.contains(status))
        .unwrap_or("none")
}

/// The customer's MRR when all its subscriptions share one currency.
fn customer_mrr(state: &Customer) -> Option<MonthlyRecurringRevenue> {
    let mut subscriptions = state.subscriptions.values();
    let first = subscriptions.next()?.monthly_recurring_revenue();
    subscriptions.try_fold(first, |sum, subscription| {
        let mrr = subscription.monthly_recurring_revenue();
        (mrr.currency == sum.currency).then(|| MonthlyRecurringRevenue {
            currency: sum.currency,
            numerator: sum.numerator * mrr.denominator + mrr.numerator * sum.denominator,
            denominator: sum.denominator * mrr.denominator,
        })
    })
}

/// The money an event is about, if any.
fn event_amount(event: &Event) -> Option<&proto::Money> {
    match event {
        Event::InvoiceIssued(invoice) => invoice.amount_due.as_ref(),
        Event::PaymentSucceeded(payment) => payment.amount.as_ref(),
        Event::PaymentFailed(payment) => payment.amount.as_ref(),
        Event::PaymentRefunded(refund) => refund.amount.as_ref(),
        Event::DisputeOpened(dispute) => dispute.amount.as_ref(),
        _ => None,
    }
}

fn unix_time(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}
