//! A reference implementation of `docs/metrics.md` by brute force: for every customer and
//! every day, fold the customer's events dated up to that day and take the MRR (zero for a
//! subscription whose pending cancellation's period end or past-due churn day has come);
//! then read movements, daily figures, monthly churn and cohorts off those daily values. It
//! shares nothing with the projector but the domain's `evolve` and MRR of a subscription.

use std::collections::{BTreeMap, BTreeSet};

use ledger_domain::{Customer, Event, SubscriptionStatus, evolve};
use projector_revenue::RevenueSettings;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

/// What the read model must hold; amounts in MRR units.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    /// (customer, currency, day) -> (movement, delta).
    pub(crate) movements: BTreeMap<(Uuid, String, Date), (String, i128)>,
    /// (currency, day) -> (MRR, paying customers), every day from the first to the last
    /// day with a movement.
    pub(crate) daily: BTreeMap<(String, Date), (i128, i64)>,
    /// (currency, month) -> (paying customers at the start, churned customers, MRR at the start).
    pub(crate) monthly: BTreeMap<(String, Date), (i64, i64, i128)>,
    /// (currency, cohort month, month) -> (customers paying at the month's end, their MRR).
    pub(crate) cohorts: BTreeMap<(String, Date, Date), (i64, i128)>,
}

/// Customer -> currency -> day -> MRR at the end of the day.
type Values = BTreeMap<Uuid, BTreeMap<String, BTreeMap<Date, i128>>>;

/// A customer's event with its UTC day and `occurred_at` in Unix microseconds.
pub(crate) type DatedEvent = (Uuid, Date, i64, Event);

pub(crate) fn expected(events: &[DatedEvent], settings: &RevenueSettings) -> Expected {
    let values = daily_values(events, settings);
    let first = events.iter().map(|(_, day, _, _)| *day).min();
    let Some(first) = first else {
        return Expected::default();
    };
    let last = values
        .values()
        .flat_map(|currencies| currencies.values())
        .filter_map(|days| days.keys().next_back())
        .max()
        .copied()
        .unwrap_or(first);
    let value = |customer: &Uuid, currency: &str, day: Date| -> i128 {
        values
            .get(customer)
            .and_then(|currencies| currencies.get(currency))
            .map_or(0, |days| {
                // Values are computed for every day up to the last; later days keep it.
                days.range(..=day)
                    .next_back()
                    .map_or(0, |(_, value)| *value)
            })
    };
    let currencies: BTreeSet<String> = values
        .values()
        .flat_map(|currencies| currencies.keys().cloned())
        .collect();
    let mut expected = Expected::default();
    for (customer, by_currency) in &values {
        for currency in by_currency.keys() {
            let mut paid_before = false;
            for day in days(first, last) {
                let before = day
                    .previous_day()
                    .map_or(0, |eve| value(customer, currency, eve));
                let after = value(customer, currency, day);
                if after != before {
                    let movement = match (before > 0, after > 0) {
                        (false, _) if paid_before => "reactivation",
                        (false, _) => "new",
                        (true, false) => "churn",
                        (true, true) if after > before => "expansion",
                        (true, true) => "contraction",
                    };
                    expected.movements.insert(
                        (*customer, currency.clone(), day),
                        (movement.to_owned(), after - before),
                    );
                }
                paid_before |= after > 0;
            }
        }
    }
    for currency in &currencies {
        let moving_days: Vec<Date> = expected
            .movements
            .keys()
            .filter(|(_, movement_currency, _)| movement_currency == currency)
            .map(|(_, _, day)| *day)
            .collect();
        let (Some(from), Some(to)) = (moving_days.iter().min(), moving_days.iter().max()) else {
            continue;
        };
        let paying_on = |day: Date| -> (i128, i64) {
            values.keys().fold((0, 0), |(mrr, paying), customer| {
                let value = value(customer, currency, day);
                (mrr + value, paying + i64::from(value > 0))
            })
        };
        for day in days(*from, *to) {
            expected
                .daily
                .insert((currency.clone(), day), paying_on(day));
        }
        let mut month = month_start(*from);
        while month <= *to {
            let eve = month.previous_day().expect("a day before");
            let next_month = next_month(month);
            let (mrr_start, paying_start) = paying_on(eve);
            let churned = values
                .keys()
                .filter(|customer| value(customer, currency, eve) > 0)
                .filter(|customer| {
                    expected
                        .movements
                        .iter()
                        .any(|((c, cur, day), (movement, _))| {
                            c == *customer
                                && cur == currency
                                && *day >= month
                                && *day < next_month
                                && movement == "churn"
                        })
                })
                .count();
            expected.monthly.insert(
                (currency.clone(), month),
                (
                    paying_start,
                    i64::try_from(churned).expect("count"),
                    mrr_start,
                ),
            );
            month = next_month;
        }
        // Cohorts: by the month of the customer's first MRR, every month to the last one.
        for customer in values.keys() {
            let first_paying = days(first, last).find(|day| value(customer, currency, *day) > 0);
            let Some(first_paying) = first_paying else {
                continue;
            };
            let cohort = month_start(first_paying);
            let mut month = cohort;
            while month <= *to {
                let end = next_month(month).previous_day().expect("a day before");
                let mrr = value(customer, currency, end);
                let entry = expected
                    .cohorts
                    .entry((currency.clone(), cohort, month))
                    .or_default();
                entry.0 += i64::from(mrr > 0);
                entry.1 += mrr;
                month = next_month(month);
            }
        }
    }
    // A cohort none of whose customers was paying at the end of a month is not listed.
    let listed: BTreeSet<(String, Date)> = expected
        .cohorts
        .iter()
        .filter(|(_, figures)| **figures != (0, 0))
        .map(|((currency, cohort, _), _)| (currency.clone(), *cohort))
        .collect();
    expected
        .cohorts
        .retain(|(currency, cohort, _), _| listed.contains(&(currency.clone(), *cohort)));
    expected
}

/// Every customer's MRR per currency on every day from the first event's day to 40 days after
/// the last one or to the last period end an event names, whichever is later (past every
/// past-due churn day the settings can produce in the tests, and every period end).
fn daily_values(events: &[DatedEvent], settings: &RevenueSettings) -> Values {
    let first = events.iter().map(|(_, day, _, _)| *day).min();
    let last = events.iter().map(|(_, day, _, _)| *day).max();
    let (Some(first), Some(last)) = (first, last) else {
        return Values::new();
    };
    let last_period_end = events
        .iter()
        .filter_map(|(_, _, _, event)| match event {
            Event::SubscriptionStarted(started) => Some(started.current_period_end_unix_seconds),
            Event::InvoiceIssued(issued) => Some(issued.period_end_unix_seconds),
            _ => None,
        })
        .filter_map(utc_day)
        .max();
    let horizon = (last + Duration::days(40)).max(last_period_end.unwrap_or(last));
    let customers: BTreeSet<Uuid> = events.iter().map(|(customer, ..)| *customer).collect();
    let mut values = Values::new();
    for customer in customers {
        let own: Vec<&DatedEvent> = events
            .iter()
            .filter(|(event_customer, ..)| *event_customer == customer)
            .collect();
        for day in days(first, horizon) {
            let mut state = Customer::default();
            let mut past_due_since: BTreeMap<String, Date> = BTreeMap::new();
            for (_, event_day, occurred_at_unix_micros, event) in
                own.iter().filter(|(_, event_day, ..)| *event_day <= day)
            {
                state = evolve(state, event, *occurred_at_unix_micros);
                for (id, subscription) in &state.subscriptions {
                    if subscription.status == SubscriptionStatus::PastDue {
                        past_due_since.entry(id.clone()).or_insert(*event_day);
                    } else {
                        past_due_since.remove(id);
                    }
                }
            }
            let mut amounts: BTreeMap<String, i128> = BTreeMap::new();
            for (id, subscription) in &state.subscriptions {
                let churned_past_due = settings.past_due_churn_days.is_some_and(|days| {
                    past_due_since
                        .get(id)
                        .is_some_and(|since| *since + Duration::days(i64::from(days)) <= day)
                });
                // A cancellation at period end counts from the period end's day on.
                let cancelled_at_period_end = subscription
                    .pending_cancellation
                    .as_ref()
                    .is_some_and(|pending| pending.at_period_end)
                    && utc_day(subscription.current_period_end_unix_seconds)
                        .is_some_and(|end| end <= day);
                let units = subscription
                    .monthly_recurring_revenue_under(settings.rules)
                    .units();
                let amount = amounts
                    .entry(subscription.currency().code().to_owned())
                    .or_default();
                if !churned_past_due && !cancelled_at_period_end {
                    *amount += units;
                }
            }
            for (currency, units) in amounts {
                values
                    .entry(customer)
                    .or_default()
                    .entry(currency)
                    .or_default()
                    .insert(day, units);
            }
        }
    }
    values
}

fn utc_day(unix_seconds: i64) -> Option<Date> {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .map(OffsetDateTime::date)
}

fn days(from: Date, to: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(from), |day| day.next_day()).take_while(move |day| *day <= to)
}

fn month_start(day: Date) -> Date {
    day.replace_day(1).expect("day 1")
}

fn next_month(month: Date) -> Date {
    (month_start(month) + Duration::days(32))
        .replace_day(1)
        .expect("day 1")
}
