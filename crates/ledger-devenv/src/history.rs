//! Random customer histories the ledger would accept: every command goes through `decide`, so
//! only accepted commands are kept, each with the store request it makes (to append without a
//! writer) and the command itself (to send through one). Dates wander: a given share of the
//! events is dated days before the customer's previous ones, as late provider webhooks are.

use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{
    Customer, PaymentStatus, decide, evolve, occurred_at_unix_micros, unique_key_changes,
};
use ledger_store::{AppendRequest, ExpectedVersion};
use uuid::Uuid;

/// 2026-01-01T00:00:00Z.
const START_SECONDS: i64 = 1_767_225_600;
const DAY_SECONDS: i64 = 86_400;
const CURRENCIES: [&str; 5] = ["USD", "EUR", "JPY", "GBP", "KWD"];

/// SplitMix64: small, deterministic, enough to drive a simulation from a proptest seed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// An accepted command and what appending it directly takes.
#[derive(Debug, Clone)]
pub struct Generated {
    pub command: proto::Command,
    pub request: AppendRequest,
}

/// The shape of a generated history.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub customers: usize,
    /// Commands attempted per customer; about half are accepted.
    pub steps: usize,
    /// The share of commands dated up to 20 days before the customer's latest one, in percent.
    pub late_percent: u64,
}

/// The accepted commands of `shape.customers` random customers, interleaved at random across
/// customers (each customer's own order kept).
pub fn generate(rng: &mut Rng, shape: Shape) -> Vec<Generated> {
    let mut queues: Vec<Vec<Generated>> = (0..shape.customers)
        .map(|index| customer_history(rng, index, shape))
        .collect();
    for queue in &mut queues {
        queue.reverse();
    }
    let mut requests = Vec::new();
    while !queues.is_empty() {
        let index = rng.below(queues.len() as u64) as usize;
        match queues[index].pop() {
            Some(request) => requests.push(request),
            None => {
                queues.swap_remove(index);
            }
        }
    }
    requests
}

fn customer_history(rng: &mut Rng, index: usize, shape: Shape) -> Vec<Generated> {
    let id = Uuid::from_u64_pair(rng.next(), rng.next());
    let home_currency = rng.pick(&CURRENCIES);
    let mut state = Customer::default();
    let mut requests = Vec::new();
    let mut day = rng.below(40) as i64;
    let mut attempt = 0;
    let mut send = |state: &mut Customer, kind: Kind, day: i64, attempt: &mut usize| {
        *attempt += 1;
        let command = proto::Command {
            metadata: Some(proto::CommandMetadata {
                idempotency_key: format!("{id}:{attempt}"),
                customer_id: id.to_string(),
                expected_version: None,
                occurred_at_unix_micros: (START_SECONDS + day * DAY_SECONDS + 3_600) * 1_000_000,
                issuer: proto::Issuer::PaymentProvider as i32,
                payment_provider: proto::PaymentProvider::Stripe as i32,
                account_id: format!("cus_{index}"),
                correlation_id: String::new(),
                causation_id: String::new(),
            }),
            kind: Some(kind),
        };
        if let Ok(events) = decide(state, &command) {
            let request = ledger_writer::append_request(
                id,
                &command,
                unique_key_changes(state, &events),
                events.clone(),
                ExpectedVersion::Exact(state.version),
            )
            .expect("a decided command makes a request");
            *state = events.iter().fold(std::mem::take(state), |state, event| {
                evolve(state, event, occurred_at_unix_micros(&command))
            });
            requests.push(Generated { command, request });
        }
    };
    send(
        &mut state,
        Kind::RegisterCustomer(proto::CustomerRegistered {
            email: format!("{id}@example.com"),
            name: String::new(),
            provider_account: None,
        }),
        day,
        &mut attempt,
    );
    for _ in 0..shape.steps {
        day += rng.below(4) as i64;
        let dated = if rng.chance(shape.late_percent) {
            (day - rng.below(20) as i64).max(0)
        } else {
            day
        };
        let kind = next_command(rng, &state, home_currency, day);
        send(&mut state, kind, dated, &mut attempt);
    }
    requests
}

fn next_command(rng: &mut Rng, state: &Customer, home_currency: &str, day: i64) -> Kind {
    let subscription_ids: Vec<&String> = state.subscriptions.keys().collect();
    if subscription_ids.is_empty() || rng.chance(8) {
        let currency = if rng.chance(80) {
            home_currency
        } else {
            rng.pick(&CURRENCIES)
        };
        return Kind::StartSubscription(proto::SubscriptionStarted {
            subscription_id: format!("sub_{}", state.subscriptions.len()),
            plan: Some(plan(rng, currency)),
            quantity: 1 + rng.below(4) as u32,
            trial_end_unix_seconds: rng.chance(30).then_some(START_SECONDS + 400 * DAY_SECONDS),
            // Periods end within the history, so cancellations at period end take effect.
            current_period_end_unix_seconds: START_SECONDS
                + (day + 5 + rng.below(40) as i64) * DAY_SECONDS,
            discount: discount(rng, currency),
        });
    }
    let subscription_id =
        (*subscription_ids[rng.below(subscription_ids.len() as u64) as usize]).clone();
    let currency = state.subscriptions[&subscription_id]
        .currency()
        .code()
        .to_owned();
    let payment_id = format!("pay_{}", state.payments.len());
    let period_end = state.subscriptions[&subscription_id].current_period_end_unix_seconds;
    match rng.below(12) {
        0 => Kind::ConvertTrial(proto::TrialConverted { subscription_id }),
        1 => Kind::ChangePlan(proto::PlanChanged {
            subscription_id,
            plan: Some(plan(rng, &currency)),
            quantity: 1 + rng.below(4) as u32,
            discount: discount(rng, &currency),
        }),
        2 => Kind::RecordPaymentFailed(proto::PaymentFailed {
            payment_id,
            invoice_id: String::new(),
            subscription_id,
            amount: Some(money(1_000, &currency)),
            failure_code: "card_declined".to_owned(),
            failure_message: String::new(),
            attempt_count: 1,
        }),
        3 => Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
            payment_id,
            invoice_id: String::new(),
            subscription_id,
            amount: Some(money(1_000, &currency)),
        }),
        4 => Kind::PauseSubscription(proto::SubscriptionPaused {
            subscription_id,
            resumes_at_unix_seconds: None,
        }),
        5 => Kind::ResumeSubscription(proto::SubscriptionResumed { subscription_id }),
        6 => Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id,
            at_period_end: rng.chance(60),
            reason: String::new(),
        }),
        7 => Kind::ConfirmCancellation(proto::SubscriptionCancelled {
            subscription_id,
            reason: String::new(),
        }),
        8 => Kind::FailCancellation(proto::CancellationFailed {
            subscription_id,
            failure_code: "provider_error".to_owned(),
            failure_message: String::new(),
        }),
        9 => Kind::ReactivateSubscription(proto::SubscriptionReactivated { subscription_id }),
        // The next period's invoice advances the period end.
        10 => Kind::IssueInvoice(proto::InvoiceIssued {
            invoice_id: format!("in_{}", state.invoices.len()),
            subscription_id,
            amount_due: Some(money(1_000, &currency)),
            period_start_unix_seconds: period_end,
            period_end_unix_seconds: period_end + 30 * DAY_SECONDS,
        }),
        _ => {
            let succeeded: Vec<(&String, i64, String)> = state
                .payments
                .iter()
                .filter(|(_, payment)| payment.status == PaymentStatus::Succeeded)
                .map(|(id, payment)| {
                    (
                        id,
                        payment.amount.amount_minor - payment.refunded.amount_minor,
                        payment.amount.currency.code().to_owned(),
                    )
                })
                .collect();
            match succeeded.get(rng.below(succeeded.len() as u64) as usize) {
                Some((payment, left, currency)) if *left > 0 => {
                    Kind::RefundPayment(proto::PaymentRefunded {
                        refund_id: format!("re_{}", state.refunds.len()),
                        payment_id: (*payment).clone(),
                        amount: Some(money(1 + rng.below(*left as u64) as i64, currency)),
                        reason: String::new(),
                        refund_request_id: String::new(),
                    })
                }
                _ => Kind::ConvertTrial(proto::TrialConverted { subscription_id }),
            }
        }
    }
}

/// `amount_minor` minor units of `currency` (ISO 4217 code).
pub fn money(amount_minor: i64, currency: &str) -> proto::Money {
    proto::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

fn plan(rng: &mut Rng, currency: &str) -> proto::Plan {
    let interval = rng.pick(&[
        proto::BillingInterval::Month,
        proto::BillingInterval::Month,
        proto::BillingInterval::Year,
        proto::BillingInterval::Week,
        proto::BillingInterval::Day,
    ]);
    proto::Plan {
        plan_id: format!("plan_{}", rng.below(5)),
        unit_price: Some(money(100 + rng.below(50_000) as i64, currency)),
        interval: interval as i32,
        interval_count: 1 + rng.below(3) as u32,
    }
}

fn discount(rng: &mut Rng, currency: &str) -> Option<proto::Discount> {
    if !rng.chance(30) {
        return None;
    }
    let duration = rng.pick(&[
        proto::DiscountDuration::Once,
        proto::DiscountDuration::Repeating,
        proto::DiscountDuration::Forever,
    ]);
    let percent = rng.chance(50);
    Some(proto::Discount {
        coupon_id: "coupon".to_owned(),
        percent_off_basis_points: if percent {
            1 + rng.below(10_000) as u32
        } else {
            0
        },
        amount_off: (!percent).then(|| money(1 + rng.below(5_000) as i64, currency)),
        duration: duration as i32,
        duration_in_months: if duration == proto::DiscountDuration::Repeating {
            3
        } else {
            0
        },
    })
}
