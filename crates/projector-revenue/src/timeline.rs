//! A customer's MRR over business days. Pure: no I/O.
//!
//! The customer's MRR at the end of day D is the MRR of the state its events dated D or
//! earlier produce, folded in ledger order (see `docs/metrics.md`). Between events it changes
//! only where a subscription ends by the calendar: a pending cancellation at period end
//! reaching the period end's day, or a past-due subscription reaching the configured number
//! of days.

use std::collections::BTreeMap;

use ledger_domain::{
    Currency, Customer, Event, MrrRules, Subscription, SubscriptionStatus, evolve,
};
use time::{Date, Duration, OffsetDateTime};

/// How the read model defines MRR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevenueSettings {
    /// Which discounts count, when a cancellation stops MRR, whether never-paid past-due
    /// subscriptions count.
    pub rules: MrrRules,
    /// A subscription past due for this many days counts as churned from that day until it
    /// recovers; `None`: past-due subscriptions count until they are cancelled.
    pub past_due_churn_days: Option<u16>,
}

/// MRR units ([`ledger_domain::MRR_UNITS_PER_MINOR`]) per currency; currencies with zero are
/// left out.
pub(crate) type Amounts = BTreeMap<Currency, i128>;

/// A customer's state after some of its events, and the day each of its past-due
/// subscriptions became past due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DayState {
    customer: Customer,
    past_due_since: BTreeMap<String, Date>,
}

impl DayState {
    fn apply(mut self, day: Date, occurred_at_unix_micros: i64, event: &Event) -> DayState {
        self.customer = evolve(self.customer, event, occurred_at_unix_micros);
        let subscriptions = &self.customer.subscriptions;
        self.past_due_since.retain(|id, _| {
            subscriptions
                .get(id)
                .is_some_and(|subscription| subscription.status == SubscriptionStatus::PastDue)
        });
        for (id, subscription) in subscriptions {
            if subscription.status == SubscriptionStatus::PastDue {
                self.past_due_since.entry(id.clone()).or_insert(day);
            }
        }
        self
    }

    /// The day a subscription stops counting by the calendar, if it does: the (UTC) day its
    /// period ends when a cancellation at period end is pending, or the day a past-due one
    /// reaches the settings' number of days, whichever comes first.
    fn ends_from(
        &self,
        subscription_id: &str,
        subscription: &Subscription,
        settings: &RevenueSettings,
    ) -> Option<Date> {
        let period_end = subscription
            .cancel_at_period_end()
            .then(|| {
                OffsetDateTime::from_unix_timestamp(subscription.current_period_end_unix_seconds)
                    .ok()
            })
            .flatten()
            .map(OffsetDateTime::date);
        let past_due_churn = settings.past_due_churn_days.and_then(|days| {
            self.past_due_since
                .get(subscription_id)?
                .checked_add(Duration::days(i64::from(days)))
        });
        period_end.into_iter().chain(past_due_churn).min()
    }

    /// The customer's MRR on `day`, a day on or after its last folded event.
    fn mrr_on(&self, day: Date, settings: &RevenueSettings) -> Amounts {
        let mut amounts = Amounts::new();
        for (id, subscription) in &self.customer.subscriptions {
            if self
                .ends_from(id, subscription, settings)
                .is_some_and(|from| from <= day)
            {
                continue;
            }
            let units = subscription
                .monthly_recurring_revenue_under(settings.rules)
                .units();
            if units != 0 {
                *amounts.entry(subscription.currency()).or_default() += units;
            }
        }
        amounts.retain(|_, units| *units != 0);
        amounts
    }

    /// The days after `day` on which a subscription stops counting by the calendar, ascending.
    fn end_days_after(&self, day: Date, settings: &RevenueSettings) -> Vec<Date> {
        let mut days: Vec<Date> = self
            .customer
            .subscriptions
            .iter()
            .filter_map(|(id, subscription)| self.ends_from(id, subscription, settings))
            .filter(|from| *from > day)
            .collect();
        days.sort_unstable();
        days.dedup();
        days
    }
}

/// Per currency, the days the customer's MRR changed and its value from that day on (the
/// value before the first day is zero; consecutive values differ).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Timeline(pub(crate) BTreeMap<Currency, BTreeMap<Date, i128>>);

impl Timeline {
    /// The value on `day`.
    pub(crate) fn value_on(&self, currency: Currency, day: Date) -> i128 {
        self.0
            .get(&currency)
            .and_then(|changes| changes.range(..=day).next_back())
            .map_or(0, |(_, value)| *value)
    }

    fn truncate_from(&mut self, day: Date) {
        for changes in self.0.values_mut() {
            changes.split_off(&day);
        }
        self.0.retain(|_, changes| !changes.is_empty());
    }

    /// Records `amounts` as the values from `day` on; `day` is after every recorded day.
    fn record(&mut self, day: Date, amounts: &Amounts) {
        let currencies: Vec<Currency> = self.0.keys().chain(amounts.keys()).copied().collect();
        for currency in currencies {
            let value = amounts.get(&currency).copied().unwrap_or(0);
            if value != self.value_on(currency, day) {
                self.0.entry(currency).or_default().insert(day, value);
            }
        }
    }
}

/// A customer's event with its business time: the UTC day and `occurred_at` in Unix
/// microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dated<'a> {
    pub(crate) day: Date,
    pub(crate) occurred_at_unix_micros: i64,
    pub(crate) event: &'a Event,
}

/// False for the events that change no subscription (profile, one-off invoices,
/// finalizations, refunds, disputes).
fn changes_subscriptions(event: &Event) -> bool {
    match event {
        Event::SubscriptionStarted(_)
        | Event::TrialConverted(_)
        | Event::PlanChanged(_)
        | Event::CancellationRequested(_)
        | Event::SubscriptionCancelled(_)
        | Event::CancellationFailed(_)
        | Event::SubscriptionPaused(_)
        | Event::SubscriptionResumed(_)
        | Event::SubscriptionReactivated(_)
        | Event::PaymentSucceeded(_)
        | Event::PaymentFailed(_) => true,
        // A subscription's invoice may advance its period end, the day a pending
        // cancellation at period end takes effect.
        Event::InvoiceIssued(issued) => !issued.subscription_id.is_empty(),
        Event::CustomerRegistered(_)
        | Event::CustomerProfileUpdated(_)
        | Event::ProviderAccountLinked(_)
        | Event::InvoiceFinalized(_)
        | Event::PaymentRefunded(_)
        | Event::RefundRequested(_)
        | Event::RefundFailed(_)
        | Event::SubscriptionUpdateRequested(_)
        | Event::SubscriptionUpdateFailed(_)
        | Event::DisputeOpened(_)
        | Event::DisputeClosed(_)
        | Event::IntegrationRegistered(_)
        | Event::IntegrationUpdated(_)
        | Event::IntegrationPaused(_)
        | Event::IntegrationResumed(_)
        | Event::IntegrationRemoved(_) => false,
    }
}

/// A customer's MRR timeline and the state it was computed from: all its events so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CustomerMrr {
    state: DayState,
    last_day: Option<Date>,
    pub(crate) timeline: Timeline,
}

impl CustomerMrr {
    /// An estimate of the memory the state holds, in bytes: the customer's aggregate
    /// ([`ledger_domain::Customer::approximate_bytes`]), its past-due subscriptions (an id's
    /// heap text each, about 96 bytes with the entry) and its timeline's days (twice an
    /// entry's size, for the B-tree's nodes).
    pub(crate) fn approximate_bytes(&self) -> usize {
        let days: usize = self.timeline.0.values().map(BTreeMap::len).sum();
        size_of::<CustomerMrr>()
            + self.state.customer.approximate_bytes()
            + self.state.past_due_since.len() * 96
            + days * 2 * size_of::<(Date, i128)>()
    }

    /// Computes the timeline of a customer's events, given in ledger order with their days and
    /// business times.
    pub(crate) fn from_events(events: &[Dated<'_>], settings: &RevenueSettings) -> CustomerMrr {
        let mut days: Vec<Date> = events.iter().map(|dated| dated.day).collect();
        days.sort_unstable();
        days.dedup();
        let mut mrr = CustomerMrr::default();
        for day in days {
            mrr.state = events
                .iter()
                .filter(|dated| dated.day <= day)
                .fold(DayState::default(), |state, dated| {
                    state.apply(dated.day, dated.occurred_at_unix_micros, dated.event)
                });
            mrr.last_day = Some(day);
            mrr.record_from(day, settings);
        }
        mrr
    }

    /// The number of events folded in.
    pub(crate) fn version(&self) -> u64 {
        self.state.customer.version
    }

    /// Folds the customer's next event. Returns false, changing nothing, when the event is
    /// dated before an earlier one: the timeline must then be computed from all events.
    pub(crate) fn push(&mut self, dated: &Dated<'_>, settings: &RevenueSettings) -> bool {
        let day = dated.day;
        if self.last_day.is_some_and(|last| day < last) {
            return false;
        }
        self.state =
            std::mem::take(&mut self.state).apply(day, dated.occurred_at_unix_micros, dated.event);
        self.last_day = Some(day);
        // The timeline from the last event's day on holds for the new state too when the
        // event leaves every subscription as it was.
        if changes_subscriptions(dated.event) {
            self.record_from(day, settings);
        }
        true
    }

    /// Recomputes the timeline from `day` on, `day` being the last event's day.
    fn record_from(&mut self, day: Date, settings: &RevenueSettings) {
        self.timeline.truncate_from(day);
        self.timeline.record(day, &self.state.mrr_on(day, settings));
        for end_day in self.state.end_days_after(day, settings) {
            self.timeline
                .record(end_day, &self.state.mrr_on(end_day, settings));
        }
    }
}
