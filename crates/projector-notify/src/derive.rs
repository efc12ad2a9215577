//! Which notifications an event produces: pure functions of the customer's aggregate before
//! and after the event (docs/notifications.md defines each kind).

use std::collections::BTreeMap;

use ledger_domain::{
    ChurnRecognition, Customer, DiscountsInMrr, Event, Money, MonthlyRecurringRevenue, MrrRules,
    PaymentStatus, PendingUpdate, Subscription, SubscriptionStatus, UnpaidSubscriptions,
};

use uuid::Uuid;

use crate::kind::NotificationKind;

/// Business rules of the derivation. Changing them changes what a rebuild decides: bump the
/// projector's schema version with them (deliveries already made are never repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A drop of the customer's MRR by at least this share (basis points, 2,500 = 25 %) is a
    /// large contraction.
    pub(crate) contraction_basis_points_min: u32,
    /// A trial ending within this many days of an event of its customer is ending soon.
    pub(crate) trial_ending_days: u32,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            contraction_basis_points_min: 2_500,
            trial_ending_days: 3,
        }
    }
}

/// One notification an event produced, before it is addressed to integrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notification {
    pub(crate) kind: NotificationKind,
    /// What makes two notifications the same one: the event and the kind, or for a trial
    /// ending soon the subscription and its trial end (several events may see it).
    pub(crate) dedupe_key: String,
    pub(crate) subscription_id: Option<String>,
    /// The money it is about; `None` when the customer's MRR spans several currencies.
    pub(crate) amount: Option<Money>,
    /// One line for humans, with the customer's email.
    pub(crate) summary: String,
    /// Extra facts (failure code, reason), as (name, value).
    pub(crate) details: Vec<(&'static str, String)>,
}

/// Where and when an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Occurrence {
    pub(crate) customer_id: Uuid,
    pub(crate) event_id: Uuid,
    pub(crate) occurred_at_unix_seconds: i64,
}

/// The notifications `event` produces for the customer going from `before` to `after`.
pub(crate) fn notifications(
    rules: &Rules,
    before: &Customer,
    after: &Customer,
    event: &Event,
    occurrence: Occurrence,
) -> Vec<Notification> {
    let Occurrence {
        event_id,
        occurred_at_unix_seconds,
        ..
    } = occurrence;
    let customer = after
        .profile
        .as_ref()
        .map_or("an unregistered customer", |profile| profile.email.as_str());
    let mut found = Vec::new();
    let mut push = |kind: NotificationKind,
                    subscription_id: Option<String>,
                    amount: Option<Money>,
                    summary: String,
                    details: Vec<(&'static str, String)>| {
        found.push(Notification {
            kind,
            dedupe_key: format!("{event_id}:{}", kind.as_str()),
            subscription_id,
            amount,
            summary,
            details,
        });
    };
    let non_empty = |id: &str| (!id.is_empty()).then(|| id.to_owned());
    match event {
        Event::PaymentFailed(failed) => {
            let payment = after.payments.get(&failed.payment_id);
            let amount = payment.map(|payment| payment.amount);
            push(
                NotificationKind::PaymentFailed,
                payment.and_then(|payment| payment.subscription_id.clone()),
                amount,
                format!(
                    "Payment of {} failed for {customer}: {}",
                    shown(amount),
                    if failed.failure_code.is_empty() {
                        "no failure code"
                    } else {
                        &failed.failure_code
                    }
                ),
                vec![
                    ("payment_id", failed.payment_id.clone()),
                    ("failure_code", failed.failure_code.clone()),
                    ("failure_message", failed.failure_message.clone()),
                    ("attempt_count", failed.attempt_count.to_string()),
                ],
            );
        }
        Event::PaymentSucceeded(succeeded) => {
            let payment = after.payments.get(&succeeded.payment_id);
            let subscription_id = payment.and_then(|payment| payment.subscription_id.clone());
            let was_past_due = subscription_id
                .as_ref()
                .and_then(|id| before.subscriptions.get(id))
                .is_some_and(is_past_due);
            let invoice_failed_before = non_empty(&succeeded.invoice_id).is_some_and(|invoice| {
                before.payments.values().any(|earlier| {
                    earlier.status == PaymentStatus::Failed
                        && earlier.invoice_id.as_deref() == Some(invoice.as_str())
                })
            });
            if was_past_due || invoice_failed_before {
                let amount = payment.map(|payment| payment.amount);
                push(
                    NotificationKind::PaymentRecovered,
                    subscription_id,
                    amount,
                    format!("Payment of {} recovered for {customer}", shown(amount)),
                    vec![("payment_id", succeeded.payment_id.clone())],
                );
            }
        }
        Event::CancellationFailed(failed) => {
            let amount = before
                .subscriptions
                .get(&failed.subscription_id)
                .map(|subscription| {
                    mrr_money(&subscription.monthly_recurring_revenue_under(NOTIFIED_MRR_RULES))
                });
            push(
                NotificationKind::CancellationFailed,
                non_empty(&failed.subscription_id),
                amount,
                format!(
                    "Cancelling subscription {} of {customer} failed at the provider: {}",
                    failed.subscription_id, failed.failure_code
                ),
                vec![
                    ("failure_code", failed.failure_code.clone()),
                    ("failure_message", failed.failure_message.clone()),
                ],
            );
        }
        Event::SubscriptionUpdateFailed(failed) => {
            let subscription = before.subscriptions.get(&failed.subscription_id);
            let update = match subscription.and_then(|subscription| subscription.pending_update) {
                Some(PendingUpdate::Pause) => "Pausing",
                Some(PendingUpdate::Resume) => "Resuming",
                Some(PendingUpdate::PlanChange) => "Changing the plan of",
                None => "Updating",
            };
            push(
                NotificationKind::SubscriptionUpdateFailed,
                non_empty(&failed.subscription_id),
                subscription.map(|subscription| {
                    mrr_money(&subscription.monthly_recurring_revenue_under(NOTIFIED_MRR_RULES))
                }),
                format!(
                    "{update} subscription {} of {customer} failed at the provider: {}",
                    failed.subscription_id, failed.failure_code
                ),
                vec![
                    ("failure_code", failed.failure_code.clone()),
                    ("failure_message", failed.failure_message.clone()),
                ],
            );
        }
        // Provider-sync's answer to a refund request whose refund the provider's webhook
        // recorded first: issued once, then.
        Event::PaymentRefunded(refunded) if before.refunds.contains_key(&refunded.refund_id) => {}
        Event::RefundFailed(failed) => {
            let request = before.refund_requests.get(&failed.refund_request_id);
            let payment_id = request.map(|request| request.payment_id.clone());
            push(
                NotificationKind::RefundFailed,
                payment_id
                    .as_ref()
                    .and_then(|payment_id| before.payments.get(payment_id))
                    .and_then(|payment| payment.subscription_id.clone()),
                request.map(|request| request.amount),
                format!(
                    "Refunding {} to {customer} failed at the provider: {}",
                    shown(request.map(|request| request.amount)),
                    failed.failure_code
                ),
                vec![
                    ("refund_request_id", failed.refund_request_id.clone()),
                    ("payment_id", payment_id.unwrap_or_default()),
                    ("failure_code", failed.failure_code.clone()),
                    ("failure_message", failed.failure_message.clone()),
                ],
            );
        }
        Event::PaymentRefunded(refunded) => {
            let amount = after
                .refunds
                .get(&refunded.refund_id)
                .map(|refund| refund.amount);
            push(
                NotificationKind::RefundIssued,
                after
                    .payments
                    .get(&refunded.payment_id)
                    .and_then(|payment| payment.subscription_id.clone()),
                amount,
                format!("Refund of {} issued to {customer}", shown(amount)),
                vec![
                    ("refund_id", refunded.refund_id.clone()),
                    ("payment_id", refunded.payment_id.clone()),
                    ("reason", refunded.reason.clone()),
                ],
            );
        }
        Event::DisputeOpened(opened) => {
            let amount = after
                .disputes
                .get(&opened.dispute_id)
                .map(|dispute| dispute.amount);
            push(
                NotificationKind::DisputeOpened,
                after
                    .payments
                    .get(&opened.payment_id)
                    .and_then(|payment| payment.subscription_id.clone()),
                amount,
                format!("Dispute of {} opened by {customer}", shown(amount)),
                vec![
                    ("dispute_id", opened.dispute_id.clone()),
                    ("payment_id", opened.payment_id.clone()),
                    ("reason", opened.reason.clone()),
                ],
            );
        }
        _ => {}
    }
    let mrr_before = total_mrr(before);
    let mrr_after = total_mrr(after);
    let was_paying = mrr_before.values().any(|mrr| !mrr.is_zero());
    let is_paying = mrr_after.values().any(|mrr| !mrr.is_zero());
    let any_paused = after
        .subscriptions
        .values()
        .any(|subscription| subscription.status == SubscriptionStatus::Paused);
    if was_paying && !is_paying && !any_paused {
        let amount = single(&mrr_before);
        push(
            NotificationKind::CustomerChurned,
            None,
            amount,
            format!("{customer} churned: MRR {} -> 0", shown(amount)),
            Vec::new(),
        );
    }
    let had_canceled = before
        .subscriptions
        .values()
        .any(|subscription| subscription.status == SubscriptionStatus::Canceled);
    if !was_paying && is_paying && had_canceled && !matches!(event, Event::SubscriptionResumed(_)) {
        let amount = single(&mrr_after);
        push(
            NotificationKind::CustomerReactivated,
            None,
            amount,
            format!("{customer} reactivated: MRR 0 -> {}", shown(amount)),
            Vec::new(),
        );
    }
    if let Some((drop, before_mrr, after_mrr)) = contraction(rules, &mrr_before, &mrr_after) {
        push(
            NotificationKind::LargeContraction,
            None,
            Some(drop),
            format!(
                "MRR of {customer} dropped by {} ({} -> {})",
                drop, before_mrr, after_mrr
            ),
            Vec::new(),
        );
    }
    for (subscription_id, subscription) in &after.subscriptions {
        let Some(trial_end) = subscription.trial_end_unix_seconds else {
            continue;
        };
        let window_seconds = i64::from(rules.trial_ending_days) * 86_400;
        let ending_soon = subscription.status == SubscriptionStatus::Trialing
            && trial_end > occurred_at_unix_seconds
            && trial_end - occurred_at_unix_seconds <= window_seconds;
        if !ending_soon {
            continue;
        }
        let converted = Subscription {
            status: SubscriptionStatus::Active,
            ..subscription.clone()
        };
        let amount = Some(mrr_money(
            &converted.monthly_recurring_revenue_under(NOTIFIED_MRR_RULES),
        ));
        let hours_left = (trial_end - occurred_at_unix_seconds) / 3_600;
        found.push(Notification {
            kind: NotificationKind::TrialEndingSoon,
            dedupe_key: format!(
                "{}:{subscription_id}:{trial_end}:trial_ending_soon",
                occurrence.customer_id
            ),
            subscription_id: Some(subscription_id.clone()),
            amount,
            summary: format!(
                "Trial of {subscription_id} for {customer} ends in {hours_left} h (then {} a month)",
                shown(amount)
            ),
            details: vec![("trial_end_unix_seconds", trial_end.to_string())],
        });
    }
    found
}

fn is_past_due(subscription: &Subscription) -> bool {
    subscription.status == SubscriptionStatus::PastDue
        || subscription
            .pending_cancellation
            .as_ref()
            .is_some_and(|pending| pending.status_before == SubscriptionStatus::PastDue)
}

/// The MRR notifications follow: the default rules, except that a never-paid subscription
/// keeps counting while past due, so that a failed first charge is reported as
/// `payment_failed` and not also as churn (docs/notifications.md, decision 0015).
const NOTIFIED_MRR_RULES: MrrRules = MrrRules {
    discounts: DiscountsInMrr::Recurring,
    churn_recognition: ChurnRecognition::Effective,
    unpaid_subscriptions: UnpaidSubscriptions::Counted,
};

/// The customer's MRR per currency (exact fractions).
fn total_mrr(customer: &Customer) -> BTreeMap<&'static str, MonthlyRecurringRevenue> {
    let mut totals: BTreeMap<&'static str, MonthlyRecurringRevenue> = BTreeMap::new();
    for subscription in customer.subscriptions.values() {
        let mrr = subscription.monthly_recurring_revenue_under(NOTIFIED_MRR_RULES);
        totals
            .entry(mrr.currency.code())
            .and_modify(|sum| {
                *sum = MonthlyRecurringRevenue {
                    currency: sum.currency,
                    numerator: sum.numerator * mrr.denominator + mrr.numerator * sum.denominator,
                    denominator: sum.denominator * mrr.denominator,
                };
            })
            .or_insert(mrr);
    }
    totals
}

fn mrr_money(mrr: &MonthlyRecurringRevenue) -> Money {
    Money::new(mrr.rounded_minor(), mrr.currency)
}

/// The MRR when it is in one currency.
fn single(totals: &BTreeMap<&'static str, MonthlyRecurringRevenue>) -> Option<Money> {
    let mut nonzero = totals.values().filter(|mrr| !mrr.is_zero());
    match (nonzero.next(), nonzero.next()) {
        (Some(mrr), None) => Some(mrr_money(mrr)),
        _ => None,
    }
}

/// (drop, before, after) when the MRR, in one currency before and after, dropped by at least
/// the rules' share without reaching zero.
fn contraction(
    rules: &Rules,
    before: &BTreeMap<&'static str, MonthlyRecurringRevenue>,
    after: &BTreeMap<&'static str, MonthlyRecurringRevenue>,
) -> Option<(Money, Money, Money)> {
    let old = {
        let mut nonzero = before.values().filter(|mrr| !mrr.is_zero());
        match (nonzero.next(), nonzero.next()) {
            (Some(mrr), None) => *mrr,
            _ => return None,
        }
    };
    let new = {
        let mut nonzero = after.values().filter(|mrr| !mrr.is_zero());
        match (nonzero.next(), nonzero.next()) {
            (Some(mrr), None) if mrr.currency == old.currency => *mrr,
            _ => return None,
        }
    };
    // drop / old >= bp / 10_000, with drop = old - new, all as exact fractions.
    let old_scaled = old.numerator.checked_mul(new.denominator)?;
    let new_scaled = new.numerator.checked_mul(old.denominator)?;
    let drop_numerator = old_scaled.checked_sub(new_scaled)?;
    if drop_numerator <= 0 {
        return None;
    }
    let large = drop_numerator.checked_mul(10_000)?
        >= old_scaled.checked_mul(i128::from(rules.contraction_basis_points_min))?;
    if !large {
        return None;
    }
    let drop = MonthlyRecurringRevenue {
        currency: old.currency,
        numerator: drop_numerator,
        denominator: old.denominator.checked_mul(new.denominator)?,
    };
    Some((mrr_money(&drop), mrr_money(&old), mrr_money(&new)))
}

fn shown(amount: Option<Money>) -> String {
    amount.map_or_else(
        || "several currencies".to_owned(),
        |money| money.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use ledger_domain::proto::{self, event::Kind as E};
    use ledger_domain::{Customer, evolve};

    use super::*;

    const NOW: i64 = 1_767_225_600;

    fn usd(amount_minor: i64) -> Option<proto::Money> {
        Some(proto::Money {
            amount_minor,
            currency: "USD".to_owned(),
        })
    }

    fn registered() -> E {
        E::CustomerRegistered(proto::CustomerRegistered {
            email: "ada@example.com".to_owned(),
            name: "Ada".to_owned(),
            provider_account: None,
        })
    }

    fn started(id: &str, price_minor: i64, quantity: u32, trial_end: Option<i64>) -> E {
        E::SubscriptionStarted(proto::SubscriptionStarted {
            subscription_id: id.to_owned(),
            plan: Some(proto::Plan {
                plan_id: "pro".to_owned(),
                unit_price: usd(price_minor),
                interval: proto::BillingInterval::Month as i32,
                interval_count: 1,
            }),
            quantity,
            trial_end_unix_seconds: trial_end,
            current_period_end_unix_seconds: NOW + 30 * 86_400,
            discount: None,
        })
    }

    fn paid(payment_id: &str, amount_minor: i64, succeeded: bool) -> E {
        if succeeded {
            E::PaymentSucceeded(proto::PaymentSucceeded {
                payment_id: payment_id.to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: usd(amount_minor),
            })
        } else {
            E::PaymentFailed(proto::PaymentFailed {
                payment_id: payment_id.to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: usd(amount_minor),
                failure_code: "card_declined".to_owned(),
                failure_message: String::new(),
                attempt_count: 1,
            })
        }
    }

    fn cancelled(id: &str) -> E {
        E::SubscriptionCancelled(proto::SubscriptionCancelled {
            subscription_id: id.to_owned(),
            reason: String::new(),
        })
    }

    /// Given `history`, when `event` happens at `at`: (kind, amount, summary) of each
    /// notification.
    fn when(history: &[E], event: E, at: i64) -> Vec<(NotificationKind, Option<i64>, String)> {
        let before = Customer::from_events(history.iter().map(|event| (0, event)));
        let after = evolve(before.clone(), &event, at * 1_000_000);
        let occurrence = Occurrence {
            customer_id: Uuid::nil(),
            event_id: Uuid::nil(),
            occurred_at_unix_seconds: at,
        };
        notifications(&Rules::default(), &before, &after, &event, occurrence)
            .into_iter()
            .map(|n| (n.kind, n.amount.map(|money| money.amount_minor), n.summary))
            .collect()
    }

    fn kinds(found: &[(NotificationKind, Option<i64>, String)]) -> Vec<NotificationKind> {
        found.iter().map(|(kind, _, _)| *kind).collect()
    }

    #[test]
    fn payments_failed_and_recovered() {
        let history = [registered(), started("sub_1", 4_900, 1, None)];
        let failed = when(&history, paid("py_1", 4_900, false), NOW);
        assert_eq!(
            failed,
            [(
                NotificationKind::PaymentFailed,
                Some(4_900),
                "Payment of 49.00 USD failed for ada@example.com: card_declined".to_owned()
            )]
        );
        let past_due = [
            registered(),
            started("sub_1", 4_900, 1, None),
            paid("py_1", 4_900, false),
        ];
        assert_eq!(
            kinds(&when(&past_due, paid("py_2", 4_900, true), NOW)),
            [NotificationKind::PaymentRecovered]
        );
        // A payment on a subscription in good standing is not news.
        assert!(when(&history, paid("py_2", 4_900, true), NOW).is_empty());
    }

    #[test]
    fn churn_and_reactivation_follow_the_total_mrr() {
        let two = [
            registered(),
            started("sub_1", 4_900, 1, None),
            started("sub_2", 1_000, 1, None),
        ];
        // 59.00 -> 10.00 is a drop of 83 %: a large contraction, not churn.
        assert_eq!(
            when(&two, cancelled("sub_1"), NOW),
            [(
                NotificationKind::LargeContraction,
                Some(4_900),
                "MRR of ada@example.com dropped by 49.00 USD (59.00 USD -> 10.00 USD)".to_owned()
            )]
        );
        let one = [registered(), started("sub_1", 4_900, 1, None)];
        assert_eq!(
            when(&one, cancelled("sub_1"), NOW),
            [(
                NotificationKind::CustomerChurned,
                Some(4_900),
                "ada@example.com churned: MRR 49.00 USD -> 0".to_owned()
            )]
        );
        let churned = [
            registered(),
            started("sub_1", 4_900, 1, None),
            cancelled("sub_1"),
        ];
        assert_eq!(
            kinds(&when(&churned, started("sub_2", 9_900, 1, None), NOW)),
            [NotificationKind::CustomerReactivated]
        );
        // A first subscription is a new customer, not a reactivation; a pause is not churn.
        assert!(when(&[registered()], started("sub_1", 4_900, 1, None), NOW).is_empty());
        let paused = E::SubscriptionPaused(proto::SubscriptionPaused {
            subscription_id: "sub_1".to_owned(),
            resumes_at_unix_seconds: None,
        });
        assert!(when(&one, paused, NOW).is_empty());
    }

    #[test]
    fn a_small_contraction_is_not_news() {
        let one = [registered(), started("sub_1", 1_000, 4, None)];
        let fewer_seats = |quantity| {
            E::PlanChanged(proto::PlanChanged {
                subscription_id: "sub_1".to_owned(),
                plan: Some(proto::Plan {
                    plan_id: "pro".to_owned(),
                    unit_price: usd(1_000),
                    interval: proto::BillingInterval::Month as i32,
                    interval_count: 1,
                }),
                quantity,
                discount: None,
            })
        };
        // 40.00 -> 30.00: exactly 25 %, the default threshold.
        assert_eq!(
            kinds(&when(&one, fewer_seats(3), NOW)),
            [NotificationKind::LargeContraction]
        );
        // 50.00 -> 40.00 is 20 %: below the threshold.
        let five = [registered(), started("sub_1", 1_000, 5, None)];
        assert!(when(&five, fewer_seats(4), NOW).is_empty());
    }

    #[test]
    fn a_refused_refund_request_is_news_and_an_answered_one_is_issued_once() {
        let requested = [
            registered(),
            started("sub_1", 4_900, 1, None),
            paid("py_1", 4_900, true),
            E::RefundRequested(proto::RefundRequested {
                refund_request_id: "rr_1".to_owned(),
                payment_id: "py_1".to_owned(),
                amount: usd(1_500),
                reason: String::new(),
            }),
        ];
        let failed = E::RefundFailed(proto::RefundFailed {
            refund_request_id: "rr_1".to_owned(),
            failure_code: "charge_already_refunded".to_owned(),
            failure_message: "Charge py_1 has already been refunded.".to_owned(),
        });
        assert_eq!(
            when(&requested, failed, NOW),
            [(
                NotificationKind::RefundFailed,
                Some(1_500),
                "Refunding 15.00 USD to ada@example.com failed at the provider: \
                 charge_already_refunded"
                    .to_owned()
            )]
        );
        let refund = |refund_request_id: &str| {
            E::PaymentRefunded(proto::PaymentRefunded {
                refund_id: "re_1".to_owned(),
                payment_id: "py_1".to_owned(),
                amount: usd(1_500),
                reason: String::new(),
                refund_request_id: refund_request_id.to_owned(),
            })
        };
        let (webhook, answer) = (refund(""), refund("rr_1"));
        assert_eq!(
            kinds(&when(&requested, answer.clone(), NOW)),
            [NotificationKind::RefundIssued]
        );
        let webhook_first: Vec<E> = requested.iter().cloned().chain([webhook]).collect();
        assert!(when(&webhook_first, answer, NOW).is_empty());
    }

    #[test]
    fn refunds_disputes_and_failed_cancellations() {
        let paid_once = [
            registered(),
            started("sub_1", 4_900, 1, None),
            paid("py_1", 4_900, true),
        ];
        let refund = E::PaymentRefunded(proto::PaymentRefunded {
            refund_id: "re_1".to_owned(),
            payment_id: "py_1".to_owned(),
            amount: usd(1_000),
            reason: "requested_by_customer".to_owned(),
            refund_request_id: String::new(),
        });
        assert_eq!(
            when(&paid_once, refund, NOW),
            [(
                NotificationKind::RefundIssued,
                Some(1_000),
                "Refund of 10.00 USD issued to ada@example.com".to_owned()
            )]
        );
        let dispute = E::DisputeOpened(proto::DisputeOpened {
            dispute_id: "dp_1".to_owned(),
            payment_id: "py_1".to_owned(),
            amount: usd(4_900),
            reason: "fraudulent".to_owned(),
        });
        assert_eq!(
            kinds(&when(&paid_once, dispute, NOW)),
            [NotificationKind::DisputeOpened]
        );
        let pending = [
            registered(),
            started("sub_1", 4_900, 1, None),
            E::CancellationRequested(proto::CancellationRequested {
                subscription_id: "sub_1".to_owned(),
                at_period_end: false,
                reason: String::new(),
            }),
        ];
        let failed = E::CancellationFailed(proto::CancellationFailed {
            subscription_id: "sub_1".to_owned(),
            failure_code: "provider_unavailable".to_owned(),
            failure_message: String::new(),
        });
        assert_eq!(
            when(&pending, failed, NOW),
            [(
                NotificationKind::CancellationFailed,
                Some(4_900),
                "Cancelling subscription sub_1 of ada@example.com failed at the provider: \
                 provider_unavailable"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_refused_subscription_update_is_news() {
        let pending = [
            registered(),
            started("sub_1", 4_900, 1, None),
            E::SubscriptionUpdateRequested(proto::SubscriptionUpdateRequested {
                subscription_id: "sub_1".to_owned(),
                change: Some(proto::subscription_update_requested::Change::Pause(
                    proto::SubscriptionPaused {
                        subscription_id: "sub_1".to_owned(),
                        resumes_at_unix_seconds: None,
                    },
                )),
                reason: String::new(),
            }),
        ];
        let failed = E::SubscriptionUpdateFailed(proto::SubscriptionUpdateFailed {
            subscription_id: "sub_1".to_owned(),
            failure_code: "SUBSCRIPTION_STATUS_INVALID".to_owned(),
            failure_message: String::new(),
        });
        assert_eq!(
            when(&pending, failed, NOW),
            [(
                NotificationKind::SubscriptionUpdateFailed,
                Some(4_900),
                "Pausing subscription sub_1 of ada@example.com failed at the provider: \
                 SUBSCRIPTION_STATUS_INVALID"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_trial_ending_within_the_window_is_noticed_once_per_trial() {
        let trial_end = NOW + 2 * 86_400;
        let trialing = [registered(), started("sub_1", 4_900, 1, Some(trial_end))];
        let profile = E::CustomerProfileUpdated(proto::CustomerProfileUpdated {
            email: None,
            name: Some("Ada L.".to_owned()),
        });
        assert_eq!(
            when(&trialing, profile.clone(), NOW),
            [(
                NotificationKind::TrialEndingSoon,
                Some(4_900),
                "Trial of sub_1 for ada@example.com ends in 48 h (then 49.00 USD a month)"
                    .to_owned()
            )]
        );
        // Four days before the end is outside the 3-day window.
        assert!(when(&trialing, profile.clone(), trial_end - 4 * 86_400).is_empty());
        // Every event in the window derives the same dedupe key: one delivery per trial.
        let key = |at: i64| {
            let before = Customer::from_events(trialing.iter().map(|event| (0, event)));
            let after = evolve(before.clone(), &profile, at * 1_000_000);
            let occurrence = Occurrence {
                customer_id: Uuid::nil(),
                event_id: Uuid::from_u128(u128::try_from(at).unwrap_or(0)),
                occurred_at_unix_seconds: at,
            };
            notifications(&Rules::default(), &before, &after, &profile, occurrence)[0]
                .dedupe_key
                .clone()
        };
        assert_eq!(key(NOW), key(NOW + 86_400));
    }
}
