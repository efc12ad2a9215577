//! Random command sequences, valid and invalid, folded through `decide` and `evolve`.

use std::collections::BTreeSet;

use ledger_domain::proto;
use ledger_domain::{
    Customer, Event, PaymentStatus, PendingUpdate, SubscriptionStatus, decide, evolve,
    unique_key_changes,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

use crate::generated::commands;

/// Sequences the property folds per run (an update request then its answer or the
/// subscription's cancellation is a rare pair: fewer let a wrong fold of it pass).
const CASES: u32 = 1_000;
/// Sequences of the deterministic sample the reach check folds.
const REACH_RUNS: u32 = 1_600;

// ---------------------------------------------------------------------------------------------
// The fold and its checks.

/// What one run saw, for the coverage test.
#[derive(Debug, Default)]
struct Seen {
    statuses: BTreeSet<SubscriptionStatus>,
    event_types: BTreeSet<&'static str>,
    rejection_codes: BTreeSet<&'static str>,
    /// Runs that ended with the customer registered.
    registered_runs: u32,
}

fn run(commands: &[proto::Command], seen: &mut Seen) -> Result<(), TestCaseError> {
    let mut state = Customer::default();
    let mut accepted: Vec<(i64, Event)> = Vec::new();
    for command in commands {
        let occurred_at_unix_micros = ledger_domain::occurred_at_unix_micros(command);
        match decide(&state, command) {
            Ok(events) => {
                // Unique-key changes are computable for every accepted batch.
                let _ = unique_key_changes(&state, &events);
                for event in events {
                    let stored = proto::Event {
                        kind: Some(event.clone()),
                    };
                    let decoded = proto::Event::decode(stored.encode_to_vec().as_slice())
                        .map_err(|error| TestCaseError::fail(error.to_string()))?;
                    prop_assert_eq!(&decoded, &stored, "protobuf round trip");
                    let after = evolve(state.clone(), &event, occurred_at_unix_micros);
                    check_step(&state, &after, &event)?;
                    seen.event_types.insert(ledger_domain::event_type(&event));
                    state = after;
                    accepted.push((occurred_at_unix_micros, event));
                }
            }
            Err(rejection) => {
                seen.rejection_codes.insert(rejection.rejection_code());
            }
        }
        prop_assert_eq!(
            &Customer::from_events(accepted.iter().map(|(at, event)| (*at, event))),
            &state,
            "replay"
        );
        check_invariants(&state, accepted.len())?;
        seen.statuses.extend(
            state
                .subscriptions
                .values()
                .map(|subscription| subscription.status),
        );
    }
    if state.profile.is_some() {
        seen.registered_runs += 1;
    }
    Ok(())
}

fn check_step(before: &Customer, after: &Customer, event: &Event) -> Result<(), TestCaseError> {
    prop_assert_eq!(after.version, before.version + 1);
    for (subscription_id, subscription) in &before.subscriptions {
        let Some(now) = after.subscriptions.get(subscription_id) else {
            return Err(TestCaseError::fail("a subscription disappeared"));
        };
        if subscription.status == SubscriptionStatus::Canceled
            && now.status != SubscriptionStatus::Canceled
        {
            let reactivated = matches!(
                event,
                Event::SubscriptionReactivated(reactivated)
                    if reactivated.subscription_id == *subscription_id
            );
            prop_assert!(
                reactivated,
                "{} left canceled through {:?}",
                subscription_id,
                event
            );
        }
    }
    check_pending_update(after, event)
}

/// `evolve` applies an update request and its answers as `decide` accepted them (decision
/// 0032): a request leaves the update it asks for pending; its failure or the subscription's
/// cancellation leaves none; the pause, resume or plan change answers a request for it.
fn check_pending_update(after: &Customer, event: &Event) -> Result<(), TestCaseError> {
    let pending = |subscription_id: &str| {
        after
            .subscriptions
            .get(subscription_id)
            .and_then(|subscription| subscription.pending_update)
    };
    match event {
        Event::SubscriptionUpdateRequested(requested) => {
            let asked = PendingUpdate::of(requested);
            prop_assert!(asked.is_some(), "a request of no change: {:?}", requested);
            prop_assert_eq!(pending(&requested.subscription_id), asked);
        }
        Event::SubscriptionUpdateFailed(proto::SubscriptionUpdateFailed {
            subscription_id,
            ..
        })
        | Event::SubscriptionCancelled(proto::SubscriptionCancelled {
            subscription_id, ..
        }) => prop_assert_eq!(pending(subscription_id), None, "{:?}", event),
        Event::SubscriptionPaused(paused) => {
            prop_assert_ne!(pending(&paused.subscription_id), Some(PendingUpdate::Pause))
        }
        Event::SubscriptionResumed(resumed) => prop_assert_ne!(
            pending(&resumed.subscription_id),
            Some(PendingUpdate::Resume)
        ),
        Event::PlanChanged(changed) => prop_assert_ne!(
            pending(&changed.subscription_id),
            Some(PendingUpdate::PlanChange)
        ),
        _ => {}
    }
    Ok(())
}

fn check_invariants(state: &Customer, accepted: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(state.version, u64::try_from(accepted).unwrap_or(u64::MAX));
    for (subscription_id, subscription) in &state.subscriptions {
        prop_assert_eq!(
            subscription.status == SubscriptionStatus::CancelPending,
            subscription.cancel_at_period_end(),
            "{} cancel-pending without a pending cancellation at period end",
            subscription_id
        );
        // A pending update is one the subscription can still take: none once canceled, a
        // pause of one not paused, a resume of a paused one (its answer is the only change
        // that ends or starts a pause).
        match subscription.pending_update {
            Some(_) if subscription.status == SubscriptionStatus::Canceled => {
                prop_assert!(false, "{} canceled with an update pending", subscription_id);
            }
            Some(PendingUpdate::Pause) => prop_assert_ne!(
                subscription.life_status,
                SubscriptionStatus::Paused,
                "{} paused with a pause pending",
                subscription_id
            ),
            Some(PendingUpdate::Resume) => prop_assert_eq!(
                subscription.life_status,
                SubscriptionStatus::Paused,
                "{} not paused with a resume pending",
                subscription_id
            ),
            Some(PendingUpdate::PlanChange) | None => {}
        }
        prop_assert!(subscription.quantity >= 1);
        prop_assert!(subscription.plan.unit_price.amount_minor >= 0);
    }
    let subscription_currency = |subscription_id: &Option<String>| {
        subscription_id
            .as_ref()
            .map(|id| state.subscriptions.get(id).map(|s| s.currency()))
    };
    for (invoice_id, invoice) in &state.invoices {
        prop_assert!(invoice.amount_due.amount_minor >= 0);
        if let Some(currency) = subscription_currency(&invoice.subscription_id) {
            prop_assert_eq!(
                currency,
                Some(invoice.amount_due.currency),
                "invoice {}",
                invoice_id
            );
        }
    }
    for (payment_id, payment) in &state.payments {
        prop_assert!(payment.amount.amount_minor > 0);
        prop_assert_eq!(payment.refunded.currency, payment.amount.currency);
        prop_assert!(payment.refunded.amount_minor >= 0);
        prop_assert!(
            payment.refunded.amount_minor <= payment.amount.amount_minor,
            "payment {} refunded {} of {}",
            payment_id,
            payment.refunded,
            payment.amount
        );
        let refunds: i64 = state
            .refunds
            .values()
            .filter(|refund| refund.payment_id == *payment_id)
            .map(|refund| refund.amount.amount_minor)
            .sum();
        prop_assert_eq!(refunds, payment.refunded.amount_minor);
        if payment.status == PaymentStatus::Failed {
            prop_assert_eq!(refunds, 0);
            prop_assert!(payment.dispute_id.is_none());
        }
        if let Some(currency) = subscription_currency(&payment.subscription_id) {
            prop_assert_eq!(
                currency,
                Some(payment.amount.currency),
                "payment {}",
                payment_id
            );
        }
    }
    for (dispute_id, dispute) in &state.disputes {
        let payment = state.payments.get(&dispute.payment_id);
        prop_assert!(payment.is_some());
        if let Some(payment) = payment {
            prop_assert_eq!(payment.dispute_id.as_deref(), Some(dispute_id.as_str()));
            prop_assert_eq!(payment.amount.currency, dispute.amount.currency);
            prop_assert!(dispute.amount.amount_minor <= payment.amount.amount_minor);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    #[test]
    fn decide_and_evolve_agree_and_keep_invariants(commands in commands()) {
        run(&commands, &mut Seen::default())?;
    }
}

/// The generator is only useful if it reaches the interesting states; this fails if a change
/// to the domain (or the generator) makes whole areas unreachable.
#[test]
fn generated_sequences_reach_every_status_and_the_main_rejections() {
    let mut runner = TestRunner::deterministic();
    let mut seen = Seen::default();
    for _ in 0..REACH_RUNS {
        let commands = commands()
            .new_tree(&mut runner)
            .map(|tree| proptest::strategy::ValueTree::current(&tree))
            .unwrap_or_default();
        run(&commands, &mut seen).unwrap();
    }
    // Nine in ten sequences start with a registration that `decide` must accept: a sample of
    // unregistered customers reaches nothing.
    assert!(
        seen.registered_runs >= REACH_RUNS * 8 / 10,
        "{} of {REACH_RUNS} runs registered the customer",
        seen.registered_runs
    );
    let every_status: BTreeSet<_> = SubscriptionStatus::ALL.iter().copied().collect();
    assert_eq!(seen.statuses, every_status);
    assert_eq!(
        seen.event_types.len(),
        ledger_domain::EVENT_TYPES
            .iter()
            .filter(|name| !name.starts_with("integration_"))
            .count(),
        "{:?} {:?}",
        seen.event_types,
        seen.rejection_codes
    );
    for code in [
        "customer_not_registered",
        "invalid_currency",
        "invalid_amount",
        "invalid_transition",
        "currency_mismatch",
        "refund_exceeds_payment",
        "cancellation_already_pending",
        "no_pending_cancellation",
        "update_already_pending",
        "no_pending_update",
        "duplicate_payment",
        "unknown_subscription",
        "stale",
    ] {
        assert!(
            seen.rejection_codes.contains(code),
            "never saw {code}: {:?}",
            seen.rejection_codes
        );
    }
}
