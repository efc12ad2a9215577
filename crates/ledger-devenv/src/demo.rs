//! The demo's customer history: customers join over the demo's months through Stripe, PayPal
//! or Xendit, in USD, EUR or JPY; they trial, convert, pay monthly or yearly invoices, fail
//! payments and recover, upgrade, downgrade, cancel at period end (some change their mind), get
//! refunds and open disputes. [`Generator`] runs `decide` locally to know each customer's state,
//! so every command is one the writer accepts. `ledger demo` sends it through NATS, `ledger
//! bench query` appends it through the store; both then [`wait_for_projections`].

use std::time::Duration;

use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{Customer, SubscriptionStatus};
use time::macros::datetime;
use uuid::Uuid;

use crate::progress;

const SECONDS_PER_DAY: i64 = 86_400;
const DAYS_PER_MONTH: i64 = 30;

#[derive(Debug)]
pub struct DemoCustomer {
    index: u32,
    pub id: Uuid,
    provider: proto::PaymentProvider,
    account_id: String,
    currency: &'static str,
    join_month: u32,
    plan_step: usize,
    yearly: bool,
    pub state: Customer,
    commands_sent: u64,
    payments: u64,
}

/// Monthly unit prices per currency, cheapest plan first.
const PLANS: [(&str, [i64; 3]); 3] = [
    ("USD", [1_900, 4_900, 19_900]),
    ("EUR", [1_700, 4_500, 17_900]),
    ("JPY", [2_000, 5_000, 20_000]),
];
const PLAN_NAMES: [&str; 3] = ["starter", "pro", "business"];
const SUBSCRIPTION_ID: &str = "sub_main";

/// A small deterministic generator (SplitMix64): the demo must give the same history for the
/// same seed on every machine, so it does not depend on a random-number crate's algorithm.
#[derive(Debug)]
pub struct Generator {
    state: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    pub fn customer(&mut self, index: u32, months: u32) -> DemoCustomer {
        let provider = match self.below(3) {
            0 => proto::PaymentProvider::Stripe,
            1 => proto::PaymentProvider::Paypal,
            _ => proto::PaymentProvider::Xendit,
        };
        let account_id = match provider {
            proto::PaymentProvider::Stripe => format!("cus_demo{index:06}"),
            proto::PaymentProvider::Paypal => format!("PAYER{index:06}"),
            _ => format!("xnd_cust_{index:06}"),
        };
        DemoCustomer {
            index,
            id: Uuid::from_u64_pair(self.next_u64(), self.next_u64()),
            provider,
            account_id,
            currency: PLANS[self.below(3) as usize].0,
            join_month: self.below(u64::from(months)) as u32,
            plan_step: self.below(2) as usize,
            yearly: self.chance(20),
            state: Customer::default(),
            commands_sent: 0,
            payments: 0,
        }
    }

    /// The commands `customer` sends in `month`, in time order.
    pub fn commands(&mut self, customer: &mut DemoCustomer, month: u32) -> Vec<proto::Command> {
        let mut bodies: Vec<(Kind, proto::Issuer)> = Vec::new();
        let provider_issued = proto::Issuer::PaymentProvider;
        // A customer's events of the month fall on consecutive days from its own day of the
        // month, so its history is in business-time order.
        let first_day = i64::from(customer.index % 24);
        if month == customer.join_month {
            bodies.push((
                Kind::RegisterCustomer(proto::CustomerRegistered {
                    email: format!("customer{:05}@example.com", customer.index),
                    name: format!("Customer {}", customer.index),
                    provider_account: Some(proto::ProviderAccount {
                        provider: customer.provider as i32,
                        account_id: customer.account_id.clone(),
                    }),
                }),
                proto::Issuer::Internal,
            ));
            let trial = self.chance(40);
            // The subscription starts the day after the registration.
            let start = month_start_seconds(month) + (first_day + 1) * SECONDS_PER_DAY;
            bodies.push((
                Kind::StartSubscription(proto::SubscriptionStarted {
                    subscription_id: SUBSCRIPTION_ID.to_owned(),
                    plan: Some(self.plan(customer)),
                    quantity: 1 + self.below(3) as u32,
                    trial_end_unix_seconds: trial.then_some(start + 14 * SECONDS_PER_DAY),
                    current_period_end_unix_seconds: start + DAYS_PER_MONTH * SECONDS_PER_DAY,
                    discount: None,
                }),
                provider_issued,
            ));
        } else if let Some(subscription) = customer.state.subscriptions.get(SUBSCRIPTION_ID) {
            let subscription_id = SUBSCRIPTION_ID.to_owned();
            match subscription.status {
                SubscriptionStatus::Trialing => {
                    if self.chance(75) {
                        bodies.push((
                            Kind::ConvertTrial(proto::TrialConverted { subscription_id }),
                            provider_issued,
                        ));
                        self.bill(customer, &mut bodies, month, true);
                    } else {
                        bodies.push((
                            Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                                subscription_id,
                                reason: "trial_not_converted".to_owned(),
                            }),
                            provider_issued,
                        ));
                    }
                }
                SubscriptionStatus::Active => {
                    if self.chance(6) && customer.plan_step < 2 {
                        customer.plan_step += 1;
                        bodies.push((self.change_plan(customer), provider_issued));
                    } else if self.chance(3) && customer.plan_step > 0 {
                        customer.plan_step -= 1;
                        bodies.push((self.change_plan(customer), provider_issued));
                    }
                    if self.chance(5) {
                        bodies.push((
                            Kind::RequestCancellation(proto::CancellationRequested {
                                subscription_id,
                                at_period_end: true,
                                reason: "too_expensive".to_owned(),
                            }),
                            provider_issued,
                        ));
                    } else if month_start_seconds(month + 1)
                        > subscription.current_period_end_unix_seconds
                    {
                        // The period ends this month: the next one is invoiced (a year at a
                        // time for yearly plans).
                        let paid = self.chance(90);
                        self.bill(customer, &mut bodies, month, paid);
                    }
                }
                SubscriptionStatus::PastDue => {
                    if self.chance(70) {
                        self.bill(customer, &mut bodies, month, true);
                    } else {
                        bodies.push((
                            Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                                subscription_id,
                                reason: "payment_failed".to_owned(),
                            }),
                            provider_issued,
                        ));
                    }
                }
                SubscriptionStatus::CancelPending => {
                    let kind = if self.chance(30) {
                        Kind::ReactivateSubscription(proto::SubscriptionReactivated {
                            subscription_id,
                        })
                    } else {
                        Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                            subscription_id,
                            reason: "cancelled_at_period_end".to_owned(),
                        })
                    };
                    bodies.push((kind, provider_issued));
                }
                SubscriptionStatus::Canceled => {
                    if self.chance(8) {
                        bodies.push((
                            Kind::ReactivateSubscription(proto::SubscriptionReactivated {
                                subscription_id,
                            }),
                            provider_issued,
                        ));
                        self.bill(customer, &mut bodies, month, true);
                    }
                }
                SubscriptionStatus::Paused => {}
            }
        }
        bodies
            .into_iter()
            .zip(0..)
            .map(|((kind, issuer), nth)| {
                customer.commands_sent += 1;
                let day = (first_day + nth).min(DAYS_PER_MONTH - 1);
                proto::Command {
                    metadata: Some(proto::CommandMetadata {
                        idempotency_key: format!(
                            "demo:{}:{}",
                            customer.index, customer.commands_sent
                        ),
                        customer_id: customer.id.to_string(),
                        expected_version: None,
                        occurred_at_unix_micros: (month_start_seconds(month)
                            + day * SECONDS_PER_DAY
                            + i64::from(customer.index))
                            * 1_000_000,
                        issuer: issuer as i32,
                        payment_provider: customer.provider as i32,
                        account_id: customer.account_id.clone(),
                        correlation_id: String::new(),
                        causation_id: String::new(),
                    }),
                    kind: Some(kind),
                }
            })
            .collect()
    }

    fn plan(&mut self, customer: &DemoCustomer) -> proto::Plan {
        let monthly = PLANS
            .iter()
            .find(|(currency, _)| *currency == customer.currency)
            .map_or(0, |(_, prices)| prices[customer.plan_step]);
        let (interval, unit_amount) = if customer.yearly {
            (proto::BillingInterval::Year, monthly * 10)
        } else {
            (proto::BillingInterval::Month, monthly)
        };
        proto::Plan {
            plan_id: format!(
                "{}-{}",
                PLAN_NAMES[customer.plan_step],
                if customer.yearly { "yearly" } else { "monthly" }
            ),
            unit_price: Some(proto::Money {
                amount_minor: unit_amount,
                currency: customer.currency.to_owned(),
            }),
            interval: interval as i32,
            interval_count: 1,
        }
    }

    fn change_plan(&mut self, customer: &DemoCustomer) -> Kind {
        let quantity = customer
            .state
            .subscriptions
            .get(SUBSCRIPTION_ID)
            .map_or(1, |subscription| subscription.quantity);
        Kind::ChangePlan(proto::PlanChanged {
            subscription_id: SUBSCRIPTION_ID.to_owned(),
            plan: Some(self.plan(customer)),
            quantity,
            discount: None,
        })
    }

    /// An invoice for the billing period starting in `month` (which moves the subscription's
    /// period end) and its payment; sometimes a refund or a dispute after it.
    fn bill(
        &mut self,
        customer: &mut DemoCustomer,
        bodies: &mut Vec<(Kind, proto::Issuer)>,
        month: u32,
        paid: bool,
    ) {
        let amount_minor =
            customer
                .state
                .subscriptions
                .get(SUBSCRIPTION_ID)
                .map_or(0, |subscription| {
                    subscription.plan.unit_price.amount_minor * i64::from(subscription.quantity)
                });
        let amount = proto::Money {
            amount_minor,
            currency: customer.currency.to_owned(),
        };
        customer.payments += 1;
        let invoice_id = format!("in_{}_{}", customer.index, customer.payments);
        let payment_id = format!("py_{}_{}", customer.index, customer.payments);
        let issued = proto::Issuer::PaymentProvider;
        bodies.push((
            Kind::IssueInvoice(proto::InvoiceIssued {
                invoice_id: invoice_id.clone(),
                subscription_id: SUBSCRIPTION_ID.to_owned(),
                amount_due: Some(amount.clone()),
                period_start_unix_seconds: month_start_seconds(month),
                period_end_unix_seconds: month_start_seconds(
                    month + if customer.yearly { 12 } else { 1 },
                ),
            }),
            issued,
        ));
        bodies.push((
            Kind::FinalizeInvoice(proto::InvoiceFinalized {
                invoice_id: invoice_id.clone(),
            }),
            issued,
        ));
        if !paid {
            bodies.push((
                Kind::RecordPaymentFailed(proto::PaymentFailed {
                    payment_id,
                    invoice_id,
                    subscription_id: SUBSCRIPTION_ID.to_owned(),
                    amount: Some(amount),
                    failure_code: "card_declined".to_owned(),
                    failure_message: "Your card was declined.".to_owned(),
                    attempt_count: 1,
                }),
                issued,
            ));
            return;
        }
        bodies.push((
            Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: payment_id.clone(),
                invoice_id,
                subscription_id: SUBSCRIPTION_ID.to_owned(),
                amount: Some(amount.clone()),
            }),
            issued,
        ));
        if self.chance(2) {
            bodies.push((
                Kind::RefundPayment(proto::PaymentRefunded {
                    refund_id: format!("re_{}_{}", customer.index, customer.payments),
                    payment_id,
                    amount: Some(proto::Money {
                        amount_minor: amount.amount_minor / 2,
                        currency: amount.currency,
                    }),
                    reason: "requested_by_customer".to_owned(),
                    refund_request_id: String::new(),
                }),
                issued,
            ));
        } else if self.chance(1) {
            bodies.push((
                Kind::OpenDispute(proto::DisputeOpened {
                    dispute_id: format!("dp_{}_{}", customer.index, customer.payments),
                    payment_id,
                    amount: Some(amount),
                    reason: "fraudulent".to_owned(),
                }),
                issued,
            ));
        }
    }
}

/// Unix seconds at the start of demo month `month` (months of 30 days from 2025-01-01).
pub fn month_start_seconds(month: u32) -> i64 {
    datetime!(2025-01-01 00:00 UTC).unix_timestamp()
        + i64::from(month) * DAYS_PER_MONTH * SECONDS_PER_DAY
}

/// Waits, with a progress bar each, until the checkpoint of every read model in `schemas`
/// (`customers`, `revenue`: a projector's schema holds its `projector_checkpoint`) reaches
/// `last_position`; fails after `timeout`, naming the projector and its position.
pub async fn wait_for_projections(
    client: &tokio_postgres::Client,
    schemas: &[&'static str],
    last_position: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for &schema in schemas {
        let bar = progress::events_bar(last_position, schema);
        loop {
            let position = client
                .query_opt(
                    &format!("SELECT global_position FROM {schema}.projector_checkpoint"),
                    &[],
                )
                .await
                .ok()
                .flatten()
                .map_or(0, |row| row.get::<_, i64>(0));
            let position = u64::try_from(position).unwrap_or(0);
            bar.set_position(position.min(last_position));
            if position >= last_position {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "projector {schema} is at {position} of {last_position} after {} s",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
    }
    Ok(())
}
