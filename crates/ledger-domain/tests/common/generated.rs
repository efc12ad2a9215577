//! Generators of random command sequences, valid and invalid, for the property tests
//! (`it/aggregate_properties.rs`) and the memory test (`memory.rs`), each binary including it.

use ledger_domain::proto;
use ledger_domain::proto::command::Kind as C;
use ledger_domain::proto::subscription_update_requested::Change;
use proptest::prelude::*;

const NOW_SECONDS: i64 = 1_750_000_000;
const DAY_SECONDS: i64 = 86_400;
const CUSTOMER_ID: &str = "0190f3c2-6a4e-7cc0-9a8e-3f6d2b1c0d4e";
const COMMANDS_PER_CASE_MAX: usize = 60;

// ---------------------------------------------------------------------------------------------
// Generators: small id pools so commands collide, a few currencies (mostly USD, so that deep
// states are reached) plus an invalid one, and amounts that include zero, negatives and the
// extremes.

fn id(prefix: &'static str, count: usize) -> impl Strategy<Value = String> {
    (0..count).prop_map(move |index| format!("{prefix}_{index}"))
}

fn optional_id(prefix: &'static str, count: usize) -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), id(prefix, count)]
}

/// An invoice a payment pays: mostly none, so that payments are not all rejected.
fn paid_invoice_id() -> impl Strategy<Value = String> {
    prop_oneof![2 => Just(String::new()), 1 => id("in", 3)]
}

fn payment_id() -> impl Strategy<Value = String> {
    id("pay", 3)
}

fn subscription_id() -> impl Strategy<Value = String> {
    id("sub", 3)
}

fn currency() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("USD"),
        1 => Just("EUR"),
        1 => Just("JPY"),
        1 => Just("KWD"),
        1 => Just("usd"),
    ]
    .prop_map(str::to_owned)
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        1 => Just(-1i64),
        1 => Just(i64::MAX),
        8 => 1..=10_000i64,
    ]
}

fn money() -> impl Strategy<Value = proto::Money> {
    (amount(), currency()).prop_map(|(amount_minor, currency)| proto::Money {
        amount_minor,
        currency,
    })
}

/// Refunds and disputes: often small, so that several fit in one payment.
fn part_of_money() -> impl Strategy<Value = proto::Money> {
    prop_oneof![
        1 => money(),
        2 => (1..=2_000i64, currency()).prop_map(|(amount_minor, currency)| proto::Money {
            amount_minor,
            currency,
        }),
    ]
}

fn plan() -> impl Strategy<Value = proto::Plan> {
    (
        prop_oneof![Just("basic"), Just("pro")],
        money(),
        prop_oneof![8 => 1..=4i32, 1 => Just(0i32)],
        prop_oneof![8 => Just(1u32), 1 => Just(0u32), 1 => Just(40u32)],
    )
        .prop_map(
            |(plan_id, unit_price, interval, interval_count)| proto::Plan {
                plan_id: plan_id.to_owned(),
                unit_price: Some(unit_price),
                interval,
                interval_count,
            },
        )
}

fn discount() -> impl Strategy<Value = Option<proto::Discount>> {
    prop_oneof![
        3 => Just(None),
        1 => (0..=10_001u32, proptest::option::of(money()), 0..=3i32, 0..=2u32).prop_map(
            |(percent_off_basis_points, amount_off, duration, duration_in_months)| {
                Some(proto::Discount {
                    coupon_id: "COUPON".to_owned(),
                    percent_off_basis_points,
                    amount_off,
                    duration,
                    duration_in_months,
                })
            }
        ),
    ]
}

/// Mostly WON or LOST, sometimes UNSPECIFIED or out of range.
fn dispute_outcome() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 1..=2i32, 1 => Just(0i32), 1 => Just(3i32)]
}

fn quantity() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1..=5u32, 1 => Just(0u32)]
}

/// The subscription a request's change names: mostly none (the request's), sometimes one of
/// the pool (the request's or another).
fn changed_subscription_id() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(String::new()), 1 => subscription_id()]
}

/// The change a subscription update request asks for (decision 0032): a pause (mostly until
/// resumed, sometimes by itself on a date, even one already past), a resume or a plan change;
/// sometimes none.
fn update_change() -> impl Strategy<Value = Option<Change>> {
    prop_oneof![
        2 => (
            changed_subscription_id(),
            prop_oneof![3 => Just(None), 1 => (-2..=40i64).prop_map(Some)],
        )
            .prop_map(|(subscription_id, resumes_in_days)| {
                Some(Change::Pause(proto::SubscriptionPaused {
                    subscription_id,
                    resumes_at_unix_seconds: resumes_in_days
                        .map(|days| NOW_SECONDS + days * DAY_SECONDS),
                }))
            }),
        2 => changed_subscription_id().prop_map(|subscription_id| {
            Some(Change::Resume(proto::SubscriptionResumed { subscription_id }))
        }),
        2 => (changed_subscription_id(), plan(), quantity(), discount()).prop_map(
            |(subscription_id, plan, quantity, discount)| {
                Some(Change::PlanChange(proto::PlanChanged {
                    subscription_id,
                    plan: Some(plan),
                    quantity,
                    discount,
                }))
            }
        ),
        1 => Just(None),
    ]
}

fn command_kind() -> impl Strategy<Value = C> {
    prop_oneof![
        1 => prop_oneof![Just("alice@example.com"), Just("no-at-sign")].prop_map(|email| {
            C::RegisterCustomer(proto::CustomerRegistered {
                email: email.to_owned(),
                name: "Alice".to_owned(),
                provider_account: None,
            })
        }),
        1 => prop_oneof![Just("bob@example.com"), Just("a\0@b")].prop_map(|email| {
            C::UpdateCustomerProfile(proto::CustomerProfileUpdated {
                email: Some(email.to_owned()),
                name: None,
            })
        }),
        1 => (0..=4i32, id("cus", 2)).prop_map(|(provider, account_id)| {
            C::LinkProviderAccount(proto::ProviderAccountLinked {
                provider_account: Some(proto::ProviderAccount { provider, account_id }),
            })
        }),
        4 => (
            subscription_id(),
            plan(),
            quantity(),
            proptest::option::of(-20..=20i64),
            discount(),
        )
            .prop_map(|(subscription_id, plan, quantity, trial_days, discount)| {
                C::StartSubscription(proto::SubscriptionStarted {
                    subscription_id,
                    plan: Some(plan),
                    quantity,
                    trial_end_unix_seconds: trial_days
                        .map(|days| NOW_SECONDS + days * DAY_SECONDS),
                    current_period_end_unix_seconds: NOW_SECONDS + 30 * DAY_SECONDS,
                    discount,
                })
            }),
        2 => subscription_id()
            .prop_map(|subscription_id| C::ConvertTrial(proto::TrialConverted { subscription_id })),
        2 => (subscription_id(), plan(), quantity(), discount()).prop_map(
            |(subscription_id, plan, quantity, discount)| {
                C::ChangePlan(proto::PlanChanged {
                    subscription_id,
                    plan: Some(plan),
                    quantity,
                    discount,
                })
            }
        ),
        3 => (subscription_id(), any::<bool>()).prop_map(|(subscription_id, at_period_end)| {
            C::RequestCancellation(proto::CancellationRequested {
                subscription_id,
                at_period_end,
                reason: String::new(),
            })
        }),
        3 => subscription_id().prop_map(|subscription_id| {
            C::ConfirmCancellation(proto::SubscriptionCancelled {
                subscription_id,
                reason: String::new(),
            })
        }),
        2 => subscription_id().prop_map(|subscription_id| {
            C::FailCancellation(proto::CancellationFailed {
                subscription_id,
                failure_code: "failed".to_owned(),
                failure_message: String::new(),
            })
        }),
        2 => subscription_id().prop_map(|subscription_id| {
            C::PauseSubscription(proto::SubscriptionPaused {
                subscription_id,
                resumes_at_unix_seconds: None,
            })
        }),
        2 => subscription_id().prop_map(|subscription_id| {
            C::ResumeSubscription(proto::SubscriptionResumed { subscription_id })
        }),
        2 => subscription_id().prop_map(|subscription_id| {
            C::ReactivateSubscription(proto::SubscriptionReactivated { subscription_id })
        }),
        // Updates asked of the provider, answered by the pause, resume or plan change above or
        // by its refusal.
        4 => prop_oneof![
            3 => (subscription_id(), update_change()).prop_map(|(subscription_id, change)| {
                C::RequestSubscriptionUpdate(proto::SubscriptionUpdateRequested {
                    subscription_id,
                    change,
                    reason: String::new(),
                })
            }),
            1 => subscription_id().prop_map(|subscription_id| {
                C::FailSubscriptionUpdate(proto::SubscriptionUpdateFailed {
                    subscription_id,
                    failure_code: "resource_missing".to_owned(),
                    failure_message: String::new(),
                })
            }),
        ],
        3 => (id("in", 3), optional_id("sub", 3), money()).prop_map(
            |(invoice_id, subscription_id, amount_due)| {
                C::IssueInvoice(proto::InvoiceIssued {
                    invoice_id,
                    subscription_id,
                    amount_due: Some(amount_due),
                    period_start_unix_seconds: NOW_SECONDS,
                    period_end_unix_seconds: NOW_SECONDS + 30 * DAY_SECONDS,
                })
            }
        ),
        1 => id("in", 3).prop_map(|invoice_id| {
            C::FinalizeInvoice(proto::InvoiceFinalized { invoice_id })
        }),
        6 => (payment_id(), paid_invoice_id(), optional_id("sub", 3), money()).prop_map(
            |(payment_id, invoice_id, subscription_id, amount)| {
                C::RecordPaymentSucceeded(proto::PaymentSucceeded {
                    payment_id,
                    invoice_id,
                    subscription_id,
                    amount: Some(amount),
                })
            }
        ),
        3 => (payment_id(), paid_invoice_id(), optional_id("sub", 3), money()).prop_map(
            |(payment_id, invoice_id, subscription_id, amount)| {
                C::RecordPaymentFailed(proto::PaymentFailed {
                    payment_id,
                    invoice_id,
                    subscription_id,
                    amount: Some(amount),
                    failure_code: "card_declined".to_owned(),
                    failure_message: String::new(),
                    attempt_count: 1,
                })
            }
        ),
        // Refunds: at the provider, requested of it, and its refusals.
        5 => prop_oneof![
            3 => (
                id("re", 4),
                payment_id(),
                part_of_money(),
                prop_oneof![3 => Just(String::new()), 1 => id("rr", 2)]
            )
                .prop_map(|(refund_id, payment_id, amount, refund_request_id)| {
                    C::RefundPayment(proto::PaymentRefunded {
                        refund_id,
                        payment_id,
                        amount: Some(amount),
                        reason: String::new(),
                        refund_request_id,
                    })
                }),
            1 => (id("rr", 2), payment_id(), part_of_money()).prop_map(
                |(refund_request_id, payment_id, amount)| {
                    C::RequestRefund(proto::RefundRequested {
                        refund_request_id,
                        payment_id,
                        amount: Some(amount),
                        reason: String::new(),
                    })
                }
            ),
            1 => id("rr", 2).prop_map(|refund_request_id| {
                C::FailRefund(proto::RefundFailed {
                    refund_request_id,
                    failure_code: "charge_already_refunded".to_owned(),
                    failure_message: String::new(),
                })
            }),
        ],
        3 => (id("dp", 2), payment_id(), part_of_money()).prop_map(
            |(dispute_id, payment_id, amount)| {
                C::OpenDispute(proto::DisputeOpened {
                    dispute_id,
                    payment_id,
                    amount: Some(amount),
                    reason: String::new(),
                })
            }
        ),
        3 => (id("dp", 2), dispute_outcome()).prop_map(|(dispute_id, outcome)| {
            C::CloseDispute(proto::DisputeClosed { dispute_id, outcome })
        }),
    ]
}

fn command() -> impl Strategy<Value = proto::Command> {
    (
        command_kind(),
        prop_oneof![50 => Just("key"), 1 => Just("")],
        // Mostly now, often up to two days either side (late, older deliveries), rarely absent.
        prop_oneof![
            30 => Just(NOW_SECONDS * 1_000_000),
            20 => (-2..=2i64).prop_map(|days| (NOW_SECONDS + days * 86_400) * 1_000_000),
            1 => Just(0i64),
        ],
        prop_oneof![50 => 1..=2i32, 1 => Just(0i32)],
    )
        .prop_map(
            |(kind, key, occurred_at_unix_micros, issuer)| proto::Command {
                metadata: Some(proto::CommandMetadata {
                    idempotency_key: key.to_owned(),
                    customer_id: CUSTOMER_ID.to_owned(),
                    expected_version: None,
                    occurred_at_unix_micros,
                    issuer,
                    payment_provider: proto::PaymentProvider::Stripe as i32,
                    account_id: String::new(),
                    correlation_id: String::new(),
                    causation_id: String::new(),
                }),
                kind: Some(kind),
            },
        )
}

/// Mostly a registration first, so that most sequences get past `customer_not_registered`.
pub(crate) fn commands() -> impl Strategy<Value = Vec<proto::Command>> {
    (
        prop_oneof![9 => Just(true), 1 => Just(false)],
        proptest::collection::vec(command(), 0..=COMMANDS_PER_CASE_MAX),
    )
        .prop_map(|(register_first, mut commands)| {
            if register_first {
                let register = proto::Command {
                    metadata: Some(proto::CommandMetadata {
                        idempotency_key: "register".to_owned(),
                        customer_id: CUSTOMER_ID.to_owned(),
                        occurred_at_unix_micros: NOW_SECONDS * 1_000_000,
                        issuer: proto::Issuer::Internal as i32,
                        payment_provider: proto::PaymentProvider::Internal as i32,
                        ..proto::CommandMetadata::default()
                    }),
                    kind: Some(C::RegisterCustomer(proto::CustomerRegistered {
                        email: "alice@example.com".to_owned(),
                        name: "Alice".to_owned(),
                        provider_account: None,
                    })),
                };
                commands.insert(0, register);
            }
            commands
        })
}
