//! Monthly recurring revenue of a subscription, in exact integer arithmetic.

use crate::customer::{
    BillingInterval, DiscountDuration, DiscountOff, Subscription, SubscriptionStatus,
};
use crate::money::Currency;

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
}

impl Subscription {
    /// The plan's recurring price times the quantity, normalised to a month (a year / 12, a
    /// week x 52 / 12, a day x 365 / 12, divided by the interval count), after recurring
    /// discounts (forever and repeating ones; one-off discounts do not recur). Zero while
    /// trialing or paused and once canceled; still counted while past due and while a
    /// cancellation at period end is pending.
    pub fn monthly_recurring_revenue(&self) -> MonthlyRecurringRevenue {
        let currency = self.currency();
        let counted = matches!(
            self.status,
            SubscriptionStatus::Active
                | SubscriptionStatus::PastDue
                | SubscriptionStatus::CancelPending
        );
        let periods_per_year: i128 = match self.plan.interval {
            BillingInterval::Day => 365,
            BillingInterval::Week => 52,
            BillingInterval::Month => 12,
            BillingInterval::Year => 1,
        };
        // Price per period, after a recurring discount: a fraction over `discount_denominator`.
        let gross = i128::from(self.plan.unit_price.amount_minor) * i128::from(self.quantity);
        let recurring_discount = self
            .discount
            .as_ref()
            .filter(|discount| discount.duration != DiscountDuration::Once);
        let (per_period, discount_denominator) = match recurring_discount.map(|d| d.off) {
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
    use crate::customer::{Discount, Plan};
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
    }
}
