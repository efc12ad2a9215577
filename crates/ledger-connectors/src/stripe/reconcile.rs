//! A Stripe subscription object as the ledger's customers read model should show it, for
//! [`crate::reconcile`].

use ledger_domain::SubscriptionStatus;
use serde_json::Value;

use super::objects::{self, Subscription};
use crate::reconcile::SubscriptionState;

/// What the ledger should hold of a Stripe subscription object (as `GET /v1/subscriptions`
/// lists it, <https://docs.stripe.com/api/subscriptions/object>), or `Ok(None)` for one it
/// does not hold by design: `incomplete` and `incomplete_expired` (never paid; the ledger
/// starts a subscription once it is `active` or `trialing`, docs/connectors.md).
///
/// Status, in this order: `canceled` -> canceled; `cancel_at_period_end` -> cancel_pending;
/// `pause_collection` set or `paused` -> paused; `trialing`; `past_due` and `unpaid` ->
/// past_due; `active`. Price, quantity and period end are read as the webhook mapping reads
/// them (several items: one combined plan, quantity 1).
///
/// # Errors
/// Why the object cannot be read (no id, no items, no price, an unknown currency).
pub fn subscription_state(object: &Value) -> Result<Option<SubscriptionState>, String> {
    let subscription = Subscription::read(object)?;
    use SubscriptionStatus as S;
    let status = match subscription.status.as_str() {
        "incomplete" | "incomplete_expired" => return Ok(None),
        "canceled" => S::Canceled,
        _ if subscription.cancel_at_period_end => S::CancelPending,
        _ if subscription.paused => S::Paused,
        "trialing" => S::Trialing,
        "past_due" | "unpaid" => S::PastDue,
        _ => S::Active,
    };
    let unit_price = subscription
        .plan
        .unit_price
        .as_ref()
        .ok_or_else(|| format!("subscription {} has no unit price", subscription.id))?;
    Ok(Some(SubscriptionState {
        account_id: objects::id(object, "/customer")
            .unwrap_or_default()
            .to_owned(),
        status,
        plan_id: subscription.plan.plan_id.clone(),
        unit_amount_minor: unit_price.amount_minor,
        currency: unit_price.currency.clone(),
        quantity: subscription.quantity,
        current_period_end_unix_seconds: subscription.current_period_end_unix_seconds,
        subscription_id: subscription.id,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(status: &str) -> Value {
        json!({
            "id": "sub_1",
            "object": "subscription",
            "customer": "cus_1",
            "status": status,
            "cancel_at_period_end": false,
            "current_period_end": 1_767_225_600,
            "items": {"data": [{
                "quantity": 2,
                "price": {"id": "price_basic", "unit_amount": 1500, "currency": "usd",
                          "recurring": {"interval": "month", "interval_count": 1}}
            }]}
        })
    }

    #[test]
    fn a_stripe_subscription_reads_as_the_ledger_shows_it() {
        assert_eq!(
            subscription_state(&object("active")).unwrap(),
            Some(SubscriptionState {
                subscription_id: "sub_1".to_owned(),
                account_id: "cus_1".to_owned(),
                status: SubscriptionStatus::Active,
                plan_id: "price_basic".to_owned(),
                unit_amount_minor: 1_500,
                currency: "USD".to_owned(),
                quantity: 2,
                current_period_end_unix_seconds: 1_767_225_600,
            })
        );
    }

    #[test]
    fn stripe_statuses_map_to_the_ledgers() {
        use SubscriptionStatus as S;
        let status = |object: Value| subscription_state(&object).unwrap().map(|s| s.status);
        assert_eq!(status(object("trialing")), Some(S::Trialing));
        assert_eq!(status(object("past_due")), Some(S::PastDue));
        assert_eq!(status(object("unpaid")), Some(S::PastDue));
        assert_eq!(status(object("paused")), Some(S::Paused));
        assert_eq!(status(object("canceled")), Some(S::Canceled));
        assert_eq!(status(object("incomplete")), None);
        assert_eq!(status(object("incomplete_expired")), None);
        let mut pending = object("active");
        pending["cancel_at_period_end"] = json!(true);
        assert_eq!(status(pending.clone()), Some(S::CancelPending));
        pending["status"] = json!("canceled");
        assert_eq!(status(pending), Some(S::Canceled));
        let mut paused = object("active");
        paused["pause_collection"] = json!({"behavior": "void", "resumes_at": null});
        assert_eq!(status(paused), Some(S::Paused));
    }

    #[test]
    fn an_unreadable_subscription_says_why() {
        let error = subscription_state(&json!({"id": "sub_1", "items": {"data": []}})).unwrap_err();
        assert_eq!(error, "subscription sub_1 has no items");
    }
}
