//! Reading Stripe objects (subscriptions, invoices, charges, disputes) out of an event's
//! `data.object`, in both the 2020-08-27 shapes (billing period, `plan` and `quantity` on the
//! subscription, `subscription` and `charge` on the invoice) and the current ones (billing
//! period on the subscription items, `parent.subscription_details.subscription` on the invoice,
//! `payment_intent` or `payments` instead of `charge`).

use ledger_domain::proto;
use serde_json::Value;

use super::amounts;

/// A field's text, when it is a non-empty string.
pub(crate) fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// A field's integer, when it is one.
pub(crate) fn integer(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

/// The id of an object or of an expanded object (`"ch_1"` or `{"id": "ch_1", ...}`).
pub(crate) fn id<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    let value = object.pointer(pointer)?;
    value
        .as_str()
        .or_else(|| value.get("id").and_then(Value::as_str))
        .filter(|text| !text.is_empty())
}

/// A subscription snapshot: what the ledger keeps of a Stripe subscription.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscription {
    pub id: String,
    /// Stripe's status: `trialing`, `active`, `past_due`, `unpaid`, `paused`, `canceled`,
    /// `incomplete`, `incomplete_expired`.
    pub status: String,
    pub cancel_at_period_end: bool,
    pub plan: proto::Plan,
    pub quantity: u32,
    pub trial_end_unix_seconds: Option<i64>,
    pub current_period_end_unix_seconds: i64,
    pub discount: Option<proto::Discount>,
    /// When Stripe created the subscription (Unix seconds), if given.
    pub created_unix_seconds: Option<i64>,
    /// `pause_collection.resumes_at`, when collection is paused with a resume date.
    pub resumes_at_unix_seconds: Option<i64>,
    /// True when `pause_collection` is set or the status is `paused`.
    pub paused: bool,
    /// `cancellation_details.reason` (or `comment`), when given.
    pub cancellation_reason: String,
}

impl Subscription {
    /// Reads a subscription object.
    ///
    /// # Errors
    /// What is missing or unusable (no id, no price, a currency the ledger does not know).
    pub(crate) fn read(object: &Value) -> Result<Subscription, String> {
        let id = text(object, "/id").ok_or("the subscription has no id")?;
        let status = text(object, "/status").unwrap_or("active");
        let items = object
            .pointer("/items/data")
            .and_then(Value::as_array)
            .filter(|items| !items.is_empty())
            .ok_or_else(|| format!("subscription {id} has no items"))?;
        let item = &items[0];
        let (plan, quantity) = match items.as_slice() {
            [item] => {
                let price = item
                    .get("price")
                    .or_else(|| item.get("plan"))
                    .or_else(|| object.get("plan"))
                    .ok_or_else(|| format!("subscription {id} has no price"))?;
                let plan = plan(price).map_err(|reason| format!("subscription {id}: {reason}"))?;
                let quantity = integer(item, "/quantity")
                    .or_else(|| integer(object, "/quantity"))
                    .unwrap_or(1);
                let quantity = u32::try_from(quantity)
                    .map_err(|_| format!("subscription {id} has quantity {quantity}"))?;
                (plan, quantity)
            }
            items => (
                combined_plan(items).map_err(|reason| format!("subscription {id}: {reason}"))?,
                1,
            ),
        };
        let current_period_end_unix_seconds = integer(object, "/current_period_end")
            .or_else(|| integer(item, "/current_period_end"))
            .ok_or_else(|| format!("subscription {id} has no current_period_end"))?;
        let discount = object
            .get("discount")
            .filter(|discount| !discount.is_null())
            .map(|discount| discount_of(discount, &plan))
            .transpose()
            .map_err(|reason| format!("subscription {id}: {reason}"))?;
        let pause = object
            .get("pause_collection")
            .filter(|pause| !pause.is_null());
        Ok(Subscription {
            id: id.to_owned(),
            status: status.to_owned(),
            cancel_at_period_end: object
                .get("cancel_at_period_end")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            plan,
            quantity,
            trial_end_unix_seconds: integer(object, "/trial_end"),
            current_period_end_unix_seconds,
            discount,
            created_unix_seconds: integer(object, "/created"),
            resumes_at_unix_seconds: pause.and_then(|pause| integer(pause, "/resumes_at")),
            paused: pause.is_some() || status == "paused",
            cancellation_reason: text(object, "/cancellation_details/reason")
                .or_else(|| text(object, "/cancellation_details/comment"))
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// The snapshot before the change an update event describes: the object with
    /// `data.previous_attributes` laid over it (Stripe puts there the old values of the fields
    /// that changed, e.g. `plan`, `items`, `quantity`, `status`, `trial_end`).
    pub(crate) fn previous(object: &Value, previous_attributes: &Value) -> Option<Subscription> {
        let changes = previous_attributes.as_object()?;
        let mut before = object.clone();
        let fields = before.as_object_mut()?;
        for (field, value) in changes {
            fields.insert(field.clone(), value.clone());
        }
        // An old top-level plan (2018 shape) names the plan the first item had.
        if let Some(plan) = changes.get("plan")
            && !changes.contains_key("items")
            && let Some(item) = before.pointer_mut("/items/data/0")
            && let Some(item) = item.as_object_mut()
        {
            item.remove("price");
            item.insert("plan".to_owned(), plan.clone());
        }
        Subscription::read(&before).ok()
    }
}

/// The one plan of a subscription with several items (a base plan and a seats add-on): the
/// ledger keeps one plan per subscription, so its unit price is what one period of all items
/// bills (the sum of each price's `unit_amount` x its item's quantity), its quantity 1, and its
/// id the items' price ids joined by `+` in Stripe's order (`price_base+price_seats`). Stripe
/// bills all items of a subscription in one currency and interval
/// (<https://docs.stripe.com/billing/subscriptions/multiple-products>); items that differ are
/// refused with the reason.
fn combined_plan(items: &[Value]) -> Result<proto::Plan, String> {
    let mut combined: Option<proto::Plan> = None;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let price = item
            .get("price")
            .or_else(|| item.get("plan"))
            .ok_or("an item has no price")?;
        let plan = plan(price)?;
        let quantity = integer(item, "/quantity").unwrap_or(1);
        let billed = plan
            .unit_price
            .as_ref()
            .and_then(|unit_price| unit_price.amount_minor.checked_mul(quantity))
            .filter(|_| quantity >= 0)
            .ok_or_else(|| format!("price {} x quantity {quantity} overflows", plan.plan_id))?;
        ids.push(plan.plan_id.clone());
        combined = Some(match combined {
            None => proto::Plan {
                unit_price: plan.unit_price.map(|unit_price| proto::Money {
                    amount_minor: billed,
                    ..unit_price
                }),
                ..plan
            },
            Some(mut sum) => {
                let same_billing = sum.interval == plan.interval
                    && sum.interval_count == plan.interval_count
                    && sum.unit_price.as_ref().map(|money| &money.currency)
                        == plan.unit_price.as_ref().map(|money| &money.currency);
                if !same_billing {
                    return Err(format!(
                        "its items are billed in different currencies or intervals ({} and {}): \
                         the ledger keeps one plan per subscription",
                        sum.plan_id, plan.plan_id
                    ));
                }
                if let Some(unit_price) = sum.unit_price.as_mut() {
                    unit_price.amount_minor =
                        unit_price.amount_minor.checked_add(billed).ok_or_else(|| {
                            format!("the sum of its items overflows at {}", plan.plan_id)
                        })?;
                }
                sum
            }
        });
    }
    let mut plan = combined.ok_or("it has no items")?;
    plan.plan_id = ids.join("+");
    Ok(plan)
}

/// A Stripe price (`price` with `unit_amount` and `recurring`) or legacy plan (`amount`,
/// `interval`, `interval_count`) as a ledger plan.
fn plan(price: &Value) -> Result<proto::Plan, String> {
    let plan_id = text(price, "/id").ok_or("the price has no id")?;
    let amount = integer(price, "/unit_amount")
        .or_else(|| integer(price, "/amount"))
        .ok_or_else(|| {
            format!("price {plan_id} has no unit_amount (tiered prices are not mapped)")
        })?;
    let currency =
        text(price, "/currency").ok_or_else(|| format!("price {plan_id} has no currency"))?;
    let interval = text(price, "/recurring/interval")
        .or_else(|| text(price, "/interval"))
        .ok_or_else(|| format!("price {plan_id} is not recurring"))?;
    let interval_count = integer(price, "/recurring/interval_count")
        .or_else(|| integer(price, "/interval_count"))
        .unwrap_or(1);
    let interval = match interval {
        "day" => proto::BillingInterval::Day,
        "week" => proto::BillingInterval::Week,
        "month" => proto::BillingInterval::Month,
        "year" => proto::BillingInterval::Year,
        other => return Err(format!("price {plan_id} has interval {other:?}")),
    };
    Ok(proto::Plan {
        plan_id: plan_id.to_owned(),
        unit_price: Some(amounts::money(amount, currency)?),
        interval: interval as i32,
        interval_count: u32::try_from(interval_count)
            .map_err(|_| format!("price {plan_id} has interval_count {interval_count}"))?,
    })
}

/// A subscription's `discount` (its `coupon`): percent off (Stripe gives a decimal number of
/// percent, read as text into basis points, no floats) or an amount off.
fn discount_of(discount: &Value, plan: &proto::Plan) -> Result<proto::Discount, String> {
    let coupon = discount.get("coupon").ok_or("the discount has no coupon")?;
    let coupon_id = text(coupon, "/id").ok_or("the coupon has no id")?;
    let percent_off_basis_points = match coupon.get("percent_off").filter(|p| !p.is_null()) {
        Some(Value::Number(number)) => basis_points(&number.to_string())
            .ok_or_else(|| format!("coupon {coupon_id} has percent_off {number}"))?,
        Some(other) => return Err(format!("coupon {coupon_id} has percent_off {other}")),
        None => 0,
    };
    let amount_off = match integer(coupon, "/amount_off") {
        Some(amount) => {
            let currency = text(coupon, "/currency")
                .or_else(|| {
                    plan.unit_price
                        .as_ref()
                        .map(|money| money.currency.as_str())
                })
                .unwrap_or_default();
            Some(amounts::money(amount, currency)?)
        }
        None => None,
    };
    let (duration, duration_in_months) = match text(coupon, "/duration") {
        Some("once") => (proto::DiscountDuration::Once, 0),
        Some("repeating") => (
            proto::DiscountDuration::Repeating,
            integer(coupon, "/duration_in_months")
                .and_then(|months| u32::try_from(months).ok())
                .unwrap_or(0),
        ),
        _ => (proto::DiscountDuration::Forever, 0),
    };
    Ok(proto::Discount {
        coupon_id: coupon_id.to_owned(),
        percent_off_basis_points,
        amount_off,
        duration: duration as i32,
        duration_in_months,
    })
}

/// `"25"`, `"25.5"`, `"33.33"` percent as basis points (2500, 2550, 3333); `None` for more than
/// two decimals, a negative or an exponent.
fn basis_points(percent: &str) -> Option<u32> {
    let (whole, fraction) = percent.split_once('.').unwrap_or((percent, ""));
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 || !whole.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(fraction)
}

/// An invoice snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invoice {
    pub id: String,
    /// `draft`, `open`, `paid`, `void`, `uncollectible`.
    pub status: String,
    pub subscription_id: Option<String>,
    pub amount_due: proto::Money,
    pub amount_paid: proto::Money,
    pub period_start_unix_seconds: i64,
    pub period_end_unix_seconds: i64,
    /// The charge (2020-08-27), else the payment intent, that paid or tried to pay it.
    pub payment_id: Option<String>,
    pub attempt_count: u32,
}

impl Invoice {
    /// Reads an invoice object.
    ///
    /// # Errors
    /// What is missing or unusable.
    pub(crate) fn read(object: &Value) -> Result<Invoice, String> {
        let id = text(object, "/id").ok_or("the invoice has no id")?;
        let currency =
            text(object, "/currency").ok_or_else(|| format!("invoice {id} has no currency"))?;
        let money = |field: &str| {
            amounts::money(integer(object, field).unwrap_or(0), currency)
                .map_err(|reason| format!("invoice {id}: {reason}"))
        };
        let subscription_id = id_at(object, "/subscription")
            .or_else(|| id_at(object, "/parent/subscription_details/subscription"))
            .or_else(|| {
                object
                    .pointer("/lines/data")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|line| {
                        id_at(line, "/subscription").or_else(|| {
                            id_at(line, "/parent/subscription_item_details/subscription")
                        })
                    })
            });
        // A subscription line's period is the billed period; the invoice's own
        // period_start/period_end are, for subscription invoices, the previous one.
        let line_period = object
            .pointer("/lines/data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|line| {
                Some((
                    integer(line, "/period/start")?,
                    integer(line, "/period/end")?,
                ))
            });
        let (period_start, period_end) = line_period
            .or_else(|| {
                Some((
                    integer(object, "/period_start")?,
                    integer(object, "/period_end")?,
                ))
            })
            .unwrap_or((0, 0));
        Ok(Invoice {
            id: id.to_owned(),
            status: text(object, "/status").unwrap_or("draft").to_owned(),
            subscription_id,
            amount_due: money("/amount_due")?,
            amount_paid: money("/amount_paid")?,
            period_start_unix_seconds: period_start.min(period_end),
            period_end_unix_seconds: period_end,
            payment_id: id_at(object, "/charge")
                .or_else(|| id_at(object, "/payment_intent"))
                .or_else(|| id_at(object, "/payments/data/0/payment/charge"))
                .or_else(|| id_at(object, "/payments/data/0/payment/payment_intent")),
            attempt_count: integer(object, "/attempt_count")
                .and_then(|count| u32::try_from(count).ok())
                .unwrap_or(0),
        })
    }
}

fn id_at(object: &Value, pointer: &str) -> Option<String> {
    id(object, pointer).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_off_is_read_as_text_into_basis_points() {
        assert_eq!(basis_points("25"), Some(2500));
        assert_eq!(basis_points("25.5"), Some(2550));
        assert_eq!(basis_points("33.33"), Some(3333));
        assert_eq!(basis_points("10.0"), Some(1000));
        assert_eq!(basis_points("1.005"), None);
        assert_eq!(basis_points("-5"), None);
        assert_eq!(basis_points("1e2"), None);
    }
}
