//! The rows a batch writes, collected from its events and derived from the final aggregates.
//!
//! A batch writes only what it changed: each touched customer's derived rows (subscriptions,
//! totals, accounts) are compared with those of its aggregate before the batch, a new customer's
//! row is inserted once with its final values, and the timeline is appended with binary COPY.
//! During a rebuild that keeps PostgreSQL's work close to one write per changed row.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;

use ledger_domain::{
    Currency, Customer, Event, Payment, PaymentStatus, ProviderAccount, Subscription,
    SubscriptionStatus, event_type, minor_of_units, proto,
};
use ledger_projector::{Projected, ProjectorError};
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
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
    account_id: String,
    payment_provider_type: &'static str,
    created_at: OffsetDateTime,
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
    /// The event's cause: for a provider's, the inbox row of the webhook delivery.
    causation_id: Option<Uuid>,
    subscription_id: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

/// Paid and refunded minor units of succeeded payments, by currency: exact sums (`i128` here,
/// `numeric` in the table), which many payments cannot overflow.
type Totals = BTreeMap<&'static str, (i128, i128)>;

/// The derived rows of a customer before the batch.
struct Before {
    registered: bool,
    subscriptions: BTreeMap<String, Subscription>,
    totals: Totals,
    accounts: BTreeSet<ProviderAccount>,
}

impl Before {
    fn of(state: &Customer) -> Before {
        Before {
            registered: state.is_registered(),
            subscriptions: state.subscriptions.clone(),
            totals: totals(state),
            accounts: state.provider_accounts.clone(),
        }
    }
}

/// What a batch's events say directly (the rest is derived from the aggregates).
#[derive(Default)]
pub(crate) struct Rows {
    before: BTreeMap<Uuid, Before>,
    registrations: BTreeMap<Uuid, Registration>,
    last_payments: BTreeMap<Uuid, (&'static str, OffsetDateTime)>,
    last_events: BTreeMap<Uuid, (i64, OffsetDateTime)>,
    /// The payments the batch's events are about, with their business time when the batch
    /// records them (a new row) and `None` when it changes their refunds (an existing row).
    payments: BTreeMap<(Uuid, String), Option<OffsetDateTime>>,
    /// The provider holding each subscription the batch started: its `subscription_started`'s
    /// envelope provider (provider-sync's rule: where a request about it is carried out).
    holders: BTreeMap<(Uuid, String), &'static str>,
    timeline: Vec<TimelineRow>,
}

impl Rows {
    /// Records `projected`, `state` being its customer's aggregate just before it.
    pub(crate) fn record_event(&mut self, projected: &Projected, state: &Customer) {
        let recorded = &projected.recorded;
        let envelope = &recorded.event;
        let customer_id = recorded.stream_id;
        let global_position = i64::try_from(recorded.global_position).unwrap_or(i64::MAX);
        self.before
            .entry(customer_id)
            .or_insert_with(|| Before::of(state));
        match &projected.event {
            Event::CustomerRegistered(_) => {
                self.registrations.insert(
                    customer_id,
                    Registration {
                        account_id: envelope.account_id.clone(),
                        payment_provider_type: envelope.payment_provider_type.as_str(),
                        created_at: envelope.occurred_at,
                    },
                );
            }
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
            // The start that adds the subscription to the aggregate, the last one while it is
            // not there (`evolve` ignores a start of an id it holds): the same start whatever
            // the batches, live or in a rebuild.
            Event::SubscriptionStarted(started)
                if !state.subscriptions.contains_key(&started.subscription_id) =>
            {
                self.holders.insert(
                    (customer_id, started.subscription_id.clone()),
                    envelope.payment_provider_type.as_str(),
                );
            }
            _ => {}
        }
        if let Some(payment_id) = event_payment(&projected.event, state) {
            let created_at = match &projected.event {
                Event::PaymentSucceeded(_) | Event::PaymentFailed(_)
                    if !state.payments.contains_key(payment_id) =>
                {
                    Some(envelope.occurred_at)
                }
                _ => None,
            };
            let touched = self
                .payments
                .entry((customer_id, payment_id.to_owned()))
                .or_default();
            *touched = touched.or(created_at);
        }
        self.last_events
            .insert(customer_id, (global_position, envelope.occurred_at));
        let amount = event_amount(&projected.event);
        let failure = event_failure(&projected.event);
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
            causation_id: envelope.causation_id,
            subscription_id: event_subscription(&projected.event).map(str::to_owned),
            failure_code: failure.map(|(code, _)| code.to_owned()),
            failure_message: failure.map(|(_, message)| message.to_owned()),
        });
    }

    /// Writes the batch: every touched customer's row (inserted for a new customer), the
    /// subscriptions, totals and accounts that changed, and the timeline.
    pub(crate) async fn write(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        self.write_customers(transaction, states).await?;
        self.write_subscriptions(transaction, states).await?;
        self.write_totals(transaction, states).await?;
        self.write_accounts(transaction, states).await?;
        self.write_payments(transaction, states).await?;
        self.write_timeline(transaction).await
    }

    /// The batch's customers with their aggregate before and after it.
    fn changes<'a>(
        &'a self,
        states: &'a BTreeMap<Uuid, Customer>,
    ) -> impl Iterator<Item = (Uuid, &'a Before, &'a Customer)> {
        self.before.iter().filter_map(|(customer_id, before)| {
            states
                .get(customer_id)
                .map(|after| (*customer_id, before, after))
        })
    }

    async fn write_customers(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let (mut inserted, mut updated) = (CustomerColumns::default(), CustomerColumns::default());
        let mut registrations = Vec::new();
        for (customer_id, before, after) in self.changes(states) {
            let Some(&last_event) = self.last_events.get(&customer_id) else {
                continue;
            };
            let last_payment = self.last_payments.get(&customer_id).copied();
            match self.registrations.get(&customer_id) {
                Some(registration) if !before.registered => {
                    inserted.push(customer_id, after, last_event, last_payment);
                    registrations.push(registration);
                }
                _ => updated.push(customer_id, after, last_event, last_payment),
            }
        }
        if !inserted.ids.is_empty() {
            let accounts: Vec<&str> = registrations
                .iter()
                .map(|r| r.account_id.as_str())
                .collect();
            let providers: Vec<&str> = registrations
                .iter()
                .map(|r| r.payment_provider_type)
                .collect();
            let created: Vec<OffsetDateTime> = registrations.iter().map(|r| r.created_at).collect();
            let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&accounts, &providers, &created];
            parameters.extend(inserted.parameters());
            transaction
                .execute(
                    "INSERT INTO customers.customers (account_id, payment_provider_type, \
                       created_at, customer_id, email, name, status, mrr_minor, mrr_currency, \
                       last_payment_status, last_payment_at, last_global_position, \
                       last_event_at) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], \
                       $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[]::numeric[], \
                       $9::text[], $10::text[], $11::timestamptz[], $12::int8[], $13::timestamptz[])",
                    &parameters,
                )
                .await?;
        }
        if !updated.ids.is_empty() {
            transaction
                .execute(
                    "UPDATE customers.customers c SET email = u.email, name = u.name, \
                       status = u.status, mrr_minor = u.mrr_minor, \
                       mrr_currency = u.mrr_currency, \
                       last_payment_status = coalesce(u.payment_status, c.last_payment_status), \
                       last_payment_at = coalesce(u.payment_at, c.last_payment_at), \
                       last_global_position = u.position, last_event_at = u.event_at \
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                       $5::text[]::numeric[], \
                       $6::text[], $7::text[], $8::timestamptz[], $9::int8[], \
                       $10::timestamptz[]) \
                       AS u(id, email, name, status, mrr_minor, mrr_currency, payment_status, \
                            payment_at, position, event_at) \
                     WHERE c.customer_id = u.id",
                    &updated.parameters(),
                )
                .await?;
        }
        Ok(())
    }

    /// Inserts the subscriptions the batch started, with their holder, and updates those that
    /// differ from before the batch (a customer's subscriptions are never removed from the
    /// aggregate, and their holder never changes).
    async fn write_subscriptions(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let (mut inserted, mut updated) = (
            SubscriptionColumns::default(),
            SubscriptionColumns::default(),
        );
        let mut holders = Vec::new();
        for (customer_id, before, after) in self.changes(states) {
            for (subscription_id, subscription) in &after.subscriptions {
                match before.subscriptions.get(subscription_id) {
                    Some(earlier) if earlier == subscription => {}
                    Some(_) => updated.push(customer_id, subscription_id, subscription),
                    None => {
                        // Only a start adds a subscription to the aggregate.
                        let key = (customer_id, subscription_id.clone());
                        let Some(holder) = self.holders.get(&key) else {
                            return Err(ProjectorError::Apply {
                                projector: "customers",
                                reason: format!(
                                    "subscription {subscription_id} of {customer_id} appeared \
                                     without a subscription_started"
                                ),
                            });
                        };
                        inserted.push(customer_id, subscription_id, subscription);
                        holders.push(*holder);
                    }
                }
            }
        }
        if !inserted.ids.is_empty() {
            let mut parameters = Vec::from(inserted.parameters());
            parameters.push(&holders);
            transaction
                .execute(
                    "INSERT INTO customers.subscriptions (customer_id, subscription_id, status, \
                       plan_id, billing_interval, interval_count, quantity, unit_amount_minor, \
                       currency, mrr_minor, trial_end, current_period_end, \
                       cancel_at_period_end, payment_provider_type) \
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                       $5::text[], $6::int4[], $7::int4[], $8::int8[], $9::text[], $10::int8[], \
                       $11::timestamptz[], $12::timestamptz[], $13::bool[], $14::text[])",
                    &parameters,
                )
                .await?;
        }
        if !updated.ids.is_empty() {
            transaction
                .execute(
                    "UPDATE customers.subscriptions s SET status = u.status, \
                       plan_id = u.plan_id, billing_interval = u.billing_interval, \
                       interval_count = u.interval_count, quantity = u.quantity, \
                       unit_amount_minor = u.unit_amount_minor, currency = u.currency, \
                       mrr_minor = u.mrr_minor, trial_end = u.trial_end, \
                       current_period_end = u.current_period_end, \
                       cancel_at_period_end = u.cancel_at_period_end \
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                       $6::int4[], $7::int4[], $8::int8[], $9::text[], $10::int8[], \
                       $11::timestamptz[], $12::timestamptz[], $13::bool[]) \
                       AS u(customer_id, subscription_id, status, plan_id, billing_interval, \
                            interval_count, quantity, unit_amount_minor, currency, mrr_minor, \
                            trial_end, current_period_end, cancel_at_period_end) \
                     WHERE s.customer_id = u.customer_id \
                       AND s.subscription_id = u.subscription_id",
                    &updated.parameters(),
                )
                .await?;
        }
        Ok(())
    }

    /// Upserts the lifetime totals that differ from before the batch.
    async fn write_totals(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let mut ids = Vec::new();
        let mut currencies = Vec::new();
        let mut paid = Vec::new();
        let mut refunded = Vec::new();
        for (customer_id, before, after) in self.changes(states) {
            for (currency, amounts) in totals(after) {
                if before.totals.get(currency) == Some(&amounts) {
                    continue;
                }
                ids.push(customer_id);
                currencies.push(currency);
                paid.push(amounts.0.to_string());
                refunded.push(amounts.1.to_string());
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        transaction
            .execute(
                "INSERT INTO customers.totals SELECT * FROM unnest($1::uuid[], $2::text[], \
                   $3::text[]::numeric[], $4::text[]::numeric[]) \
                 ON CONFLICT (customer_id, currency) DO UPDATE SET \
                   paid_minor = excluded.paid_minor, refunded_minor = excluded.refunded_minor",
                &[&ids, &currencies, &paid, &refunded],
            )
            .await?;
        Ok(())
    }

    /// Inserts the provider accounts linked in the batch.
    async fn write_accounts(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let mut ids = Vec::new();
        let mut providers = Vec::new();
        let mut accounts = Vec::new();
        for (customer_id, before, after) in self.changes(states) {
            for account in after.provider_accounts.difference(&before.accounts) {
                ids.push(customer_id);
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

    /// Inserts the payments the batch recorded and updates the refunds of the others it
    /// touched, from the final aggregates.
    async fn write_payments(
        &self,
        transaction: &Transaction<'_>,
        states: &BTreeMap<Uuid, Customer>,
    ) -> Result<(), ProjectorError> {
        let (mut inserted, mut updated) = (PaymentColumns::default(), PaymentColumns::default());
        for ((customer_id, payment_id), created_at) in &self.payments {
            let Some(state) = states.get(customer_id) else {
                continue;
            };
            // A payment event `evolve` ignored has no payment.
            let Some(payment) = state.payments.get(payment_id) else {
                continue;
            };
            let columns = if created_at.is_some() {
                &mut inserted
            } else {
                &mut updated
            };
            columns.push(*customer_id, payment_id, payment, state, *created_at);
        }
        if !inserted.ids.is_empty() {
            transaction
                .execute(
                    "INSERT INTO customers.payments (customer_id, payment_id, refunded_minor, \
                       refund_requested_minor, occurred_at, status, amount_minor, currency) \
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[], \
                       $5::timestamptz[], $6::text[], $7::int8[], $8::text[])",
                    &[
                        &inserted.ids,
                        &inserted.payment_ids,
                        &inserted.refunded,
                        &inserted.requested,
                        &inserted.created_at,
                        &inserted.statuses,
                        &inserted.amounts,
                        &inserted.currencies,
                    ],
                )
                .await?;
        }
        if !updated.ids.is_empty() {
            transaction
                .execute(
                    "UPDATE customers.payments p SET refunded_minor = u.refunded, \
                       refund_requested_minor = u.requested \
                     FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[]) \
                       AS u(id, payment_id, refunded, requested) \
                     WHERE p.customer_id = u.id AND p.payment_id = u.payment_id",
                    &[
                        &updated.ids,
                        &updated.payment_ids,
                        &updated.refunded,
                        &updated.requested,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// Appends the batch's events to the timeline with binary COPY.
    async fn write_timeline(&self, transaction: &Transaction<'_>) -> Result<(), ProjectorError> {
        let sink = transaction
            .copy_in(
                "COPY customers.timeline (customer_id, global_position, occurred_at, event_type, \
                   status, issuer, payment_provider_type, amount_minor, currency, causation_id, \
                   subscription_id, failure_code, failure_message) \
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        let mut writer = pin!(BinaryCopyInWriter::new(
            sink,
            &[
                Type::UUID,
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::UUID,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
        ));
        for row in &self.timeline {
            writer
                .as_mut()
                .write(&[
                    &row.customer_id,
                    &row.global_position,
                    &row.occurred_at,
                    &row.event_type,
                    &row.status,
                    &row.issuer,
                    &row.payment_provider_type,
                    &row.amount_minor,
                    &row.currency,
                    &row.causation_id,
                    &row.subscription_id,
                    &row.failure_code,
                    &row.failure_message,
                ])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }
}

/// The `customers` columns derived from a customer's aggregate and the batch's events.
#[derive(Default)]
struct CustomerColumns<'a> {
    ids: Vec<Uuid>,
    emails: Vec<&'a str>,
    names: Vec<&'a str>,
    statuses: Vec<&'static str>,
    /// Exact minor units as text, for a `numeric` column.
    mrr_minor: Vec<Option<String>>,
    mrr_currency: Vec<Option<&'static str>>,
    payment_statuses: Vec<Option<&'static str>>,
    payment_times: Vec<Option<OffsetDateTime>>,
    positions: Vec<i64>,
    event_times: Vec<OffsetDateTime>,
}

impl<'a> CustomerColumns<'a> {
    /// The columns as statement parameters, in the order of the fields.
    fn parameters(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.ids,
            &self.emails,
            &self.names,
            &self.statuses,
            &self.mrr_minor,
            &self.mrr_currency,
            &self.payment_statuses,
            &self.payment_times,
            &self.positions,
            &self.event_times,
        ]
    }

    fn push(
        &mut self,
        customer_id: Uuid,
        state: &'a Customer,
        (position, event_time): (i64, OffsetDateTime),
        last_payment: Option<(&'static str, OffsetDateTime)>,
    ) {
        let (email, name) = state.profile.as_ref().map_or(("", ""), |profile| {
            (profile.email.as_str(), profile.name.as_str())
        });
        let mrr = customer_mrr(state);
        self.ids.push(customer_id);
        self.emails.push(email);
        self.names.push(name);
        self.statuses.push(summary_status(state));
        self.mrr_minor
            .push(mrr.map(|(_, units)| minor_of_units(units).to_string()));
        self.mrr_currency
            .push(mrr.map(|(currency, _)| currency.code()));
        self.payment_statuses
            .push(last_payment.map(|(status, _)| status));
        self.payment_times.push(last_payment.map(|(_, at)| at));
        self.positions.push(position);
        self.event_times.push(event_time);
    }
}

/// The `subscriptions` columns derived from the aggregate's subscriptions.
#[derive(Default)]
struct SubscriptionColumns<'a> {
    ids: Vec<Uuid>,
    subscription_ids: Vec<&'a str>,
    statuses: Vec<&'static str>,
    plans: Vec<&'a str>,
    intervals: Vec<&'static str>,
    interval_counts: Vec<i32>,
    quantities: Vec<i32>,
    amounts: Vec<i64>,
    currencies: Vec<&'static str>,
    mrr: Vec<i64>,
    trial_ends: Vec<Option<OffsetDateTime>>,
    period_ends: Vec<OffsetDateTime>,
    cancel_at_period_end: Vec<bool>,
}

impl<'a> SubscriptionColumns<'a> {
    /// The columns as statement parameters, in the order of the fields (the table's).
    fn parameters(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.ids,
            &self.subscription_ids,
            &self.statuses,
            &self.plans,
            &self.intervals,
            &self.interval_counts,
            &self.quantities,
            &self.amounts,
            &self.currencies,
            &self.mrr,
            &self.trial_ends,
            &self.period_ends,
            &self.cancel_at_period_end,
        ]
    }

    fn push(
        &mut self,
        customer_id: Uuid,
        subscription_id: &'a str,
        subscription: &'a Subscription,
    ) {
        self.ids.push(customer_id);
        self.subscription_ids.push(subscription_id);
        self.statuses.push(subscription.status.as_str());
        self.plans.push(subscription.plan.plan_id.as_str());
        self.intervals.push(subscription.plan.interval.as_str());
        self.interval_counts
            .push(i32::try_from(subscription.plan.interval_count).unwrap_or(i32::MAX));
        self.quantities
            .push(i32::try_from(subscription.quantity).unwrap_or(i32::MAX));
        self.amounts.push(subscription.plan.unit_price.amount_minor);
        self.currencies.push(subscription.currency().code());
        self.mrr
            .push(subscription.monthly_recurring_revenue().rounded_minor());
        self.trial_ends
            .push(subscription.trial_end_unix_seconds.and_then(unix_time));
        self.period_ends.push(
            unix_time(subscription.current_period_end_unix_seconds)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        );
        self.cancel_at_period_end
            .push(subscription.cancel_at_period_end());
    }
}

/// The `payments` columns of the payments a batch writes.
#[derive(Default)]
struct PaymentColumns<'a> {
    ids: Vec<Uuid>,
    payment_ids: Vec<&'a str>,
    refunded: Vec<i64>,
    requested: Vec<i64>,
    /// Only for new rows.
    created_at: Vec<OffsetDateTime>,
    statuses: Vec<&'static str>,
    amounts: Vec<i64>,
    currencies: Vec<&'static str>,
}

impl<'a> PaymentColumns<'a> {
    fn push(
        &mut self,
        customer_id: Uuid,
        payment_id: &'a str,
        payment: &Payment,
        state: &Customer,
        created_at: Option<OffsetDateTime>,
    ) {
        let currency = payment.amount.currency;
        self.ids.push(customer_id);
        self.payment_ids.push(payment_id);
        self.refunded.push(payment.refunded.amount_minor);
        // `decide` keeps the requests within the payment, so their sum cannot overflow; if it
        // did, the whole amount would show as asked for (nothing left to refund).
        self.requested.push(
            state
                .refund_requested(payment_id, currency)
                .map_or(payment.amount.amount_minor, |money| money.amount_minor),
        );
        if let Some(created_at) = created_at {
            self.created_at.push(created_at);
            self.statuses.push(payment.status.as_str());
            self.amounts.push(payment.amount.amount_minor);
            self.currencies.push(currency.code());
        }
    }
}

fn totals(state: &Customer) -> Totals {
    let mut by_currency = Totals::new();
    for payment in state.payments.values() {
        if payment.status != PaymentStatus::Succeeded {
            continue;
        }
        let entry = by_currency
            .entry(payment.amount.currency.code())
            .or_default();
        entry.0 += i128::from(payment.amount.amount_minor);
        entry.1 += i128::from(payment.refunded.amount_minor);
    }
    by_currency
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

/// The customer's MRR in [`MRR_UNITS_PER_MINOR`](ledger_domain::MRR_UNITS_PER_MINOR) units
/// when all its subscriptions share one currency: a sum of units, exact however many
/// subscriptions there are (a sum of fractions would multiply their denominators).
fn customer_mrr(state: &Customer) -> Option<(Currency, i128)> {
    let mut subscriptions = state.subscriptions.values();
    let first = subscriptions.next()?.currency();
    subscriptions
        .clone()
        .all(|subscription| subscription.currency() == first)
        .then(|| {
            let units = state
                .subscriptions
                .values()
                .map(|subscription| subscription.monthly_recurring_revenue().units())
                .sum();
            (first, units)
        })
}

/// The money an event is about, if any.
fn event_amount(event: &Event) -> Option<&proto::Money> {
    match event {
        Event::InvoiceIssued(invoice) => invoice.amount_due.as_ref(),
        Event::PaymentSucceeded(payment) => payment.amount.as_ref(),
        Event::PaymentFailed(payment) => payment.amount.as_ref(),
        Event::PaymentRefunded(refund) => refund.amount.as_ref(),
        Event::RefundRequested(request) => request.amount.as_ref(),
        Event::DisputeOpened(dispute) => dispute.amount.as_ref(),
        _ => None,
    }
}

/// The subscription an event is about, if any.
fn event_subscription(event: &Event) -> Option<&str> {
    let id = match event {
        Event::SubscriptionStarted(body) => &body.subscription_id,
        Event::TrialConverted(body) => &body.subscription_id,
        Event::PlanChanged(body) => &body.subscription_id,
        Event::CancellationRequested(body) => &body.subscription_id,
        Event::SubscriptionCancelled(body) => &body.subscription_id,
        Event::CancellationFailed(body) => &body.subscription_id,
        Event::SubscriptionPaused(body) => &body.subscription_id,
        Event::SubscriptionResumed(body) => &body.subscription_id,
        Event::SubscriptionReactivated(body) => &body.subscription_id,
        Event::SubscriptionUpdateRequested(body) => &body.subscription_id,
        Event::SubscriptionUpdateFailed(body) => &body.subscription_id,
        Event::InvoiceIssued(body) => &body.subscription_id,
        Event::PaymentSucceeded(body) => &body.subscription_id,
        Event::PaymentFailed(body) => &body.subscription_id,
        _ => return None,
    };
    Some(id.as_str()).filter(|id| !id.is_empty())
}

/// The payment an event records or changes the refunds of, if any; `state` is its customer
/// before it (a refund failure names only its request).
fn event_payment<'a>(event: &'a Event, state: &'a Customer) -> Option<&'a str> {
    let id = match event {
        Event::PaymentSucceeded(body) => &body.payment_id,
        Event::PaymentFailed(body) => &body.payment_id,
        Event::PaymentRefunded(body) => &body.payment_id,
        Event::RefundRequested(body) => &body.payment_id,
        Event::RefundFailed(body) => {
            &state
                .refund_requests
                .get(&body.refund_request_id)?
                .payment_id
        }
        _ => return None,
    };
    Some(id.as_str())
}

/// A failed event's code and message, as the provider gave them.
fn event_failure(event: &Event) -> Option<(&str, &str)> {
    match event {
        Event::CancellationFailed(body) => Some((&body.failure_code, &body.failure_message)),
        Event::PaymentFailed(body) => Some((&body.failure_code, &body.failure_message)),
        Event::RefundFailed(body) => Some((&body.failure_code, &body.failure_message)),
        Event::SubscriptionUpdateFailed(body) => Some((&body.failure_code, &body.failure_message)),
        _ => None,
    }
}

fn unix_time(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}
