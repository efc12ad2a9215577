//! Monthly recurring revenue of a subscription, in exact integer arithmetic.

use crate::customer::{
    BillingInterval, DiscountDuration, DiscountOff, Subscription, SubscriptionStatus,
};
use crate::money::Currency;
use crate::names::storage_enum;

/// MRR units per minor unit: sums of MRR are kept in these units, exact for every interval
/// count that divides `27,720 x periods per year` (every count from 1 to 12, and 14, 15, 18,
/// 20, 21, 24, 28, 30, 36, 52 weeks, 90 or 365 days, ...) and every percentage discount in
/// basis points. Other interval counts are rounded to the nearest unit (under 10^-9 minor units).
pub const MRR_UNITS_PER_MINOR: i128 = 12 * 10_000 * 27_720;

/// Minor units of an amount in [`MRR_UNITS_PER_MINOR`] units, rounded half away from zero
/// (as PostgreSQL's `round(numeric)`, which `revenue.minor(units)` uses). Round a sum of units
/// once: never sum rounded figures.
pub fn minor_of_units(units: i128) -> i128 {
    let whole = units / MRR_UNITS_PER_MINOR;
    let rest = units % MRR_UNITS_PER_MINOR;
    if rest.abs() * 2 >= MRR_UNITS_PER_MINOR {
        whole + units.signum()
    } else {
        whole
    }
}

storage_enum! {
    /// Which discounts reduce MRR.
    DiscountsInMrr, "discounts in MRR" {
        /// None: MRR is the list price.
        None => "none",
        /// Forever and repeating discounts, while they are on the subscription.
        Recurring => "recurring",
        /// Every discount, one-off ones included.
        All => "all",
    }
}

storage_enum! {
    /// When a cancellation takes a subscription's MRR to zero.
    ChurnRecognition, "churn recognition" {
        /// When it is requested (the subscription has a pending cancellation).
        Requested => "requested",
        /// When it takes effect (the subscription is canceled), at the period end for a
        /// cancellation at period end.
        Effective => "effective",
    }
}

storage_enum! {
    /// Whether a subscription that was never paid (no `payment_succeeded` for it) counts MRR
    /// while past due: a trial whose first charge fails. Analytics tools differ here:
    /// ChartMogul's "invoiced customer handling" by default counts a subscription only once
    /// an invoice of it is paid; others count it from its start.
    UnpaidSubscriptions, "unpaid subscriptions" {
        /// A never-paid subscription counts no MRR while past due (its underlying status is).
        Excluded => "excluded",
        /// Counted like any past-due subscription.
        Counted => "counted",
    }
}

/// The choices a business makes in defining MRR. The default: recurring discounts reduce MRR,
/// churn is recognised when the cancellation takes effect, and a subscription never paid
/// counts no MRR while past due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MrrRules {
    pub discounts: DiscountsInMrr,
    pub churn_recognition: ChurnRecognition,
    pub unpaid_subscriptions: UnpaidSubscriptions,
}

impl Default for MrrRules {
    fn default() -> MrrRules {
        MrrRules {
            discounts: DiscountsInMrr::Recurring,
            churn_recognition: ChurnRecognition::Effective,
            unpaid_subscriptions: UnpaidSubscriptions::Excluded,
        }
    }
}

/// A subscription's monthly recurring revenue: exactly `numerator / denominator` minor units of
/// `currency` per month. Kept as a fraction so that sums stay exact; round only to present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyRecurringRevenue {
    pub currency: Currency,
    pub numerator: i128,
    /// Always positive.
    pub denominator: i128,
}

impl MonthlyRecurringRevenue {
    /// Minor units, rounded half away from zero.
    pub fn rounded_minor(&self) -> i64 {
        let doubled = self.numerator * 2 / self.denominator;
        let rounded = (doubled + doubled.signum()) / 2;
        i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN })
    }

    pub fn is_zero(&self) -> bool {
        self.numerator == 0
    }

    /// The amount in [`MRR_UNITS_PER_MINOR`] units, rounded half away from zero when not exact
    /// (saturating for amounts beyond any real price).
    pub fn units(&self) -> i128 {
        let whole = self.numerator / self.denominator;
        let doubled_rest =
            self.numerator % self.denominator * MRR_UNITS_PER_MINOR * 2 / self.denominator;
        whole
            .saturating_mul(MRR_UNITS_PER_MINOR)
            .saturating_add((doubled_rest + doubled_rest.signum()) / 2)
    }
}

impl Subscription {
    /// [`Subscription::monthly_recurring_revenue_under`] the default [`MrrRules`].
    pub fn monthly_recurring_revenue(&self) -> MonthlyRecurringRevenue {
        self.monthly_recurring_revenue_under(MrrRules::default())
    }

    /// The plan's recurring price times the quantity, normalised to a month (a year / 12, a
    /// week x 52 / 12, a day x 365 / 12, divided by the interval count), after the discounts
    /// `rules` count (by default forever and repeating ones; one-off discounts do not recur).
    /// Zero while trialing or paused and once canceled; still counted while past due, unless
    /// the subscription was never paid and `rules` exclude unpaid subscriptions (the default);
    /// while a cancellation is pending, counted unless `rules` recognise churn when it is
    /// requested. A pending cancellation's period end is not seen here: the revenue model
    /// ends the MRR on that day (`docs/metrics.md`).
    pub fn monthly_recurring_revenue_under(&self, rules: MrrRules) -> MonthlyRecurringRevenue {
        let currency = self.currency();
        let unpaid_past_due = rules.unpaid_subscriptions == UnpaidSubscriptions::Excluded
            && !self.ever_paid
            && self.underlying_status() == SubscriptionStatus::PastDue;
        let counted = !unpaid_past_due
            && match self.status {
                SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                    rules.churn_recognition == ChurnRecognition::Effective
                        || self.pending_cancellation.is_none()
                }
                SubscriptionStatus::CancelPending => {
                    rules.churn_recognition == ChurnRecognition::Effective
                }
                SubscriptionStatus::Trialing
                | SubscriptionStatus::Paused
                | SubscriptionStatus::Canceled => false,
            };
        let periods_per_year: i128 = match self.plan.interval {
            BillingInterval::Day => 365,
            BillingInterval::Week => 52,
            BillingInterval::Month => 12,
            BillingInterval::Year => 1,
        };
        // Price per period, after a recurring discount: a fraction over `discount_denominator`.
        let gross = i128::from(self.plan.unit_price.amount_minor) * i128::from(self.quantity);
        let counted_discount = self
            .discount
            .as_ref()
            .filter(|discount| match rules.discounts {
                DiscountsInMrr::None => false,
                DiscountsInMrr::Recurring => discount.duration != DiscountDuration::Once,
                DiscountsInMrr::All => true,
            });
        let (per_period, discount_denominator) = match counted_discount.map(|d| d.off) {
            Some(DiscountOff::PercentBasisPoints(basis_points)) => {
                let kept = 10_000 - i128::from(basis_points.min(10_000));
                (gross * kept, 10_000)
            }
            Some(DiscountOff::Amount(off)) => ((gross - i128::from(off.amount_minor)).max(0), 1),
            None => (gross, 1),
        };
        let numerator = if counted {
            per_period * periods_per_year
        } else {
            0
        };
        MonthlyRecurringRevenue {
            currency,
            numerator,
            denominator: 12 * i128::from(self.plan.interval_count.max(1)) * discount_denominator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::{Discount, PendingCancellation, Plan};
    use crate::money::Money;

    fn subscription(amount_minor: i64, interval: BillingInterval, count: u32) -> Subscription {
        let currency = Currency::parse("USD").expect("USD");
        Subscription {
            plan: Plan {
                plan_id: "p".to_owned(),
                unit_price: Money {
                    amount_minor,
                    currency,
                },
                interval,
                interval_count: count,
            },
            quantity: 2,
            status: SubscriptionStatus::Active,
            trial_end_unix_seconds: None,
            current_period_end_unix_seconds: 1,
            pending_cancellation: None,
            discount: None,
            resumes_at_unix_seconds: None,
            pending_update: None,
            changed_at_unix_micros: 0,
            life_status: SubscriptionStatus::Active,
            latest_payment: None,
            ever_paid: true,
        }
    }

    #[test]
    fn intervals_normalise_to_a_month_exactly() {
        let cases = [
            (BillingInterval::Month, 1, 4_900, 9_800),
            (BillingInterval::Month, 3, 3_000, 2_000),
            (BillingInterval::Year, 1, 12_000, 2_000),
            (BillingInterval::Week, 1, 1_200, 10_400),
            (BillingInterval::Day, 1, 100, 6_083),
        ];
        for (interval, count, price, expected) in cases {
            let mrr = subscription(price, interval, count).monthly_recurring_revenue();
            assert_eq!(mrr.rounded_minor(), expected, "{interval:?} x {count}");
        }
        // A daily 1.00 x 2 is 730/12 = 60.8333... per month, kept exact.
        let daily = subscription(100, BillingInterval::Day, 1).monthly_recurring_revenue();
        assert_eq!(daily.numerator * 12 / daily.denominator, 200 * 365);
    }

    #[test]
    fn only_counted_statuses_and_recurring_discounts_make_mrr() {
        for (status, counted) in [
            (SubscriptionStatus::Trialing, false),
            (SubscriptionStatus::Active, true),
            (SubscriptionStatus::PastDue, true),
            (SubscriptionStatus::Paused, false),
            (SubscriptionStatus::CancelPending, true),
            (SubscriptionStatus::Canceled, false),
        ] {
            let mut subscription = subscription(1_000, BillingInterval::Month, 1);
            subscription.status = status;
            assert_eq!(
                subscription.monthly_recurring_revenue().is_zero(),
                !counted,
                "{status:?}"
            );
        }
        let mut discounted = subscription(1_000, BillingInterval::Month, 1);
        discounted.discount = Some(Discount {
            coupon_id: "c".to_owned(),
            off: DiscountOff::PercentBasisPoints(2_500),
            duration: DiscountDuration::Forever,
        });
        assert_eq!(
            discounted.monthly_recurring_revenue().rounded_minor(),
            1_500
        );
        if let Some(discount) = discounted.discount.as_mut() {
            discount.duration = DiscountDuration::Once;
        }
        assert_eq!(
            discounted.monthly_recurring_revenue().rounded_minor(),
            2_000
        );
        let all_discounts = MrrRules {
            discounts: DiscountsInMrr::All,
            ..MrrRules::default()
        };
        assert_eq!(
            discounted
                .monthly_recurring_revenue_under(all_discounts)
                .rounded_minor(),
            1_500
        );
        let no_discounts = MrrRules {
            discounts: DiscountsInMrr::None,
            ..MrrRules::default()
        };
        if let Some(discount) = discounted.discount.as_mut() {
            discount.duration = DiscountDuration::Forever;
        }
        assert_eq!(
            discounted
                .monthly_recurring_revenue_under(no_discounts)
                .rounded_minor(),
            2_000
        );
    }

    #[test]
    fn a_never_paid_subscription_counts_nothing_while_past_due_unless_unpaid_ones_count() {
        let counted = MrrRules {
            unpaid_subscriptions: UnpaidSubscriptions::Counted,
            ..MrrRules::default()
        };
        let mut subscription = subscription(3_000, BillingInterval::Month, 1);
        subscription.ever_paid = false;
        // Active and never paid (e.g. a first invoice not yet charged): counted either way.
        assert_eq!(
            subscription.monthly_recurring_revenue().rounded_minor(),
            6_000
        );
        subscription.status = SubscriptionStatus::PastDue;
        assert!(subscription.monthly_recurring_revenue().is_zero());
        assert_eq!(
            subscription
                .monthly_recurring_revenue_under(counted)
                .rounded_minor(),
            6_000
        );
        // Cancel-pending over a past-due, never-paid status: the same.
        subscription.status = SubscriptionStatus::CancelPending;
        subscription.pending_cancellation = Some(PendingCancellation {
            at_period_end: true,
            status_before: SubscriptionStatus::PastDue,
            reason: String::new(),
        });
        assert!(subscription.monthly_recurring_revenue().is_zero());
        assert_eq!(
            subscription
                .monthly_recurring_revenue_under(counted)
                .rounded_minor(),
            6_000
        );
        // Paid once: past due counts again.
        subscription.ever_paid = true;
        assert_eq!(
            subscription.monthly_recurring_revenue().rounded_minor(),
            6_000
        );
    }

    #[test]
    fn churn_recognised_on_request_zeroes_any_pending_cancellation() {
        let requested = MrrRules {
            churn_recognition: ChurnRecognition::Requested,
            ..MrrRules::default()
        };
        let mut subscription = subscription(1_000, BillingInterval::Month, 1);
        assert!(
            !subscription
                .monthly_recurring_revenue_under(requested)
                .is_zero()
        );
        for (at_period_end, status) in [
            (true, SubscriptionStatus::CancelPending),
            (false, SubscriptionStatus::Active),
            (false, SubscriptionStatus::PastDue),
        ] {
            subscription.status = status;
            subscription.pending_cancellation = Some(PendingCancellation {
                at_period_end,
                status_before: SubscriptionStatus::Active,
                reason: String::new(),
            });
            assert!(
                subscription
                    .monthly_recurring_revenue_under(requested)
                    .is_zero()
            );
            assert!(!subscription.monthly_recurring_revenue().is_zero());
        }
    }

    #[test]
    fn units_round_to_minor_half_away_from_zero() {
        let half = MRR_UNITS_PER_MINOR / 2;
        let cases = [
            (0, 0),
            (half - 1, 0),
            (half, 1),
            (-half, -1),
            (-half + 1, 0),
            (3 * MRR_UNITS_PER_MINOR + half, 4),
            (
                i128::from(i64::MAX) * 12 * MRR_UNITS_PER_MINOR,
                i128::from(i64::MAX) * 12,
            ),
        ];
        for (units, minor) in cases {
            assert_eq!(minor_of_units(units), minor, "{units}");
        }
    }

    #[test]
    fn units_are_exact_for_common_intervals_and_discounts() {
        let mut quarterly = subscription(1_000, BillingInterval::Month, 3);
        quarterly.discount = Some(Discount {
            coupon_id: "c".to_owned(),
            off: DiscountOff::PercentBasisPoints(3_333),
            duration: DiscountDuration::Forever,
        });
        let mrr = quarterly.monthly_recurring_revenue();
        // 2 x 10.00 x 66.67 % / 3 = 444.46666... minor units: exact in units.
        assert_eq!(
            mrr.units() * mrr.denominator,
            mrr.numerator * MRR_UNITS_PER_MINOR
        );
        let daily = subscription(100, BillingInterval::Day, 7).monthly_recurring_revenue();
        assert_eq!(
            daily.units() * daily.denominator,
            daily.numerator * MRR_UNITS_PER_MINOR
        );
    }
}
