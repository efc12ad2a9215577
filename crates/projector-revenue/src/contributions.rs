//! What one customer's timeline contributes to the read model: its movements, and its share of
//! the daily, monthly-churn and cohort figures. Pure: no I/O.
//!
//! The aggregate tables are sums over customers, so a batch updates them by the difference
//! between each changed customer's contributions after and before it.

use std::collections::BTreeMap;

use ledger_domain::Currency;
use time::Date;

use crate::timeline::Timeline;

/// How a customer's MRR in a currency changed on a day (netted over the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Movement {
    /// From zero to more, for the first time.
    New,
    /// From more than zero to more.
    Expansion,
    /// From more than zero to less, but not zero.
    Contraction,
    /// From more than zero to zero.
    Churn,
    /// From zero to more, after an earlier churn.
    Reactivation,
}

impl Movement {
    pub const ALL: [Movement; 5] = [
        Movement::New,
        Movement::Expansion,
        Movement::Contraction,
        Movement::Churn,
        Movement::Reactivation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Movement::New => "new",
            Movement::Expansion => "expansion",
            Movement::Contraction => "contraction",
            Movement::Churn => "churn",
            Movement::Reactivation => "reactivation",
        }
    }

    /// Classifies a change from `before` to `after` (both at least zero, and different).
    pub fn classify(before: i128, after: i128, paid_before: bool) -> Movement {
        match (before > 0, after > 0) {
            (false, _) if paid_before => Movement::Reactivation,
            (false, _) => Movement::New,
            (true, false) => Movement::Churn,
            (true, true) if after > before => Movement::Expansion,
            (true, true) => Movement::Contraction,
        }
    }

    /// Paying customers it adds (new, reactivation) or removes (churn).
    pub fn paying_change(self) -> i64 {
        match self {
            Movement::New | Movement::Reactivation => 1,
            Movement::Churn => -1,
            Movement::Expansion | Movement::Contraction => 0,
        }
    }
}

/// One customer's contributions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contributions {
    /// (currency, day) -> the movement and its MRR change in units.
    pub(crate) movements: BTreeMap<(Currency, Date), (Movement, i128)>,
    /// (currency, month) -> 1 when the customer was paying at the month's start and churned in it.
    pub(crate) churned_months: BTreeMap<(Currency, Date), i64>,
    /// (currency, cohort month, month) -> change of (paying customers, MRR units) at the end of
    /// the month against the end of the previous month, for the customer's cohort.
    pub(crate) cohorts: BTreeMap<(Currency, Date, Date), (i64, i128)>,
}

pub(crate) fn month_start(day: Date) -> Date {
    day.replace_day(1).unwrap_or(day)
}

impl Timeline {
    pub(crate) fn contributions(&self) -> Contributions {
        let mut contributions = Contributions::default();
        for (&currency, changes) in &self.0 {
            let mut before = 0;
            let mut paid_before = false;
            // Month -> the value at its end, for months with a change.
            let mut month_ends: BTreeMap<Date, i128> = BTreeMap::new();
            for (&day, &after) in changes {
                let movement = Movement::classify(before, after, paid_before);
                contributions
                    .movements
                    .insert((currency, day), (movement, after - before));
                let month = month_start(day);
                if movement == Movement::Churn
                    && month
                        .previous_day()
                        .is_some_and(|eve| self.value_on(currency, eve) > 0)
                {
                    contributions.churned_months.insert((currency, month), 1);
                }
                month_ends.insert(month, after);
                paid_before |= after > 0;
                before = after;
            }
            // The first change is the customer's first MRR: its month is the cohort.
            let Some(&cohort) = month_ends.keys().next() else {
                continue;
            };
            let mut previous_end = 0;
            for (month, end) in month_ends {
                let change = (
                    i64::from(end > 0) - i64::from(previous_end > 0),
                    end - previous_end,
                );
                if change != (0, 0) {
                    contributions
                        .cohorts
                        .insert((currency, cohort, month), change);
                }
                previous_end = end;
            }
        }
        contributions
    }
}
