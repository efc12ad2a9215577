//! What the PayPal and Xendit suites share: the shared fixtures and this crate's own test data
//! (`tests/data/`), headers, outcomes as text, and the order property (any order of a
//! lifecycle's deliveries, with duplicates, ends where in-order delivery ends).

use std::path::PathBuf;

use ledger_connectors::{Headers, Normalized};
use ledger_domain::Provider;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use crate::support::{Ledger, Outcome, fixtures_dir};

/// The bytes of a shared fixture, e.g. `fixture("paypal/PAYMENT.SALE.REFUNDED.json")`.
pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let file = fixtures_dir().join(path);
    std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// The bytes of this crate's own test data under `tests/data/`.
pub(crate) fn data(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// A JSON value's bytes.
pub(crate) fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

/// Headers as a list of (name, value); names compared case-insensitively.
pub(crate) struct HeaderList(pub(crate) Vec<(&'static str, String)>);

impl Headers for HeaderList {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// An outcome as text: the names of the commands appended, or `ignored: <reason>` /
/// `stale: <reason>` / `waiting for <object key>: <reason>`.
pub(crate) fn names(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Appended(names) => names.iter().map(|name| (*name).to_owned()).collect(),
        Outcome::Ignored(reason) => vec![format!("ignored: {reason}")],
        Outcome::Stale(reason) => vec![format!("stale: {reason}")],
        Outcome::Waiting(key, reason) => vec![format!("waiting for {key}: {reason}")],
    }
}

/// The command names of a normalization made outside the in-memory writer.
pub(crate) fn command_names(normalized: &Normalized) -> Vec<&'static str> {
    match normalized {
        Normalized::Commands(commands) => commands
            .iter()
            .map(|command| ledger_domain::command_name(command.kind.as_ref().expect("kind")))
            .collect(),
        other => panic!("no commands: {other:?}"),
    }
}

/// What any order of a subscription's deliveries must agree on: per customer, the profile,
/// the accounts, per subscription its plan, quantity, status and pending cancellation, and
/// the payments and refunds. Not compared: the trial end, the period end and the time of the
/// latest change are dated by whichever delivery started or last changed the subscription (a
/// late start cannot know the earlier dates), and the version counts events.
pub(crate) fn comparable(ledger: &Ledger) -> Vec<String> {
    ledger
        .customers
        .iter()
        .map(|(id, customer)| {
            let subscriptions: Vec<_> = customer
                .subscriptions
                .iter()
                .map(|(id, subscription)| {
                    (
                        id,
                        &subscription.plan,
                        subscription.quantity,
                        subscription.status,
                        &subscription.pending_cancellation,
                    )
                })
                .collect();
            format!(
                "{id}: {:?} {:?} {subscriptions:?} {:?} {:?}",
                customer.profile, customer.provider_accounts, customer.payments, customer.refunds,
            )
        })
        .collect()
}

/// Generated `events` with a delivery order: every event at least once, some twice or more,
/// shuffled (indices into `events`).
pub(crate) fn with_deliveries(
    events: impl Strategy<Value = Vec<Value>>,
) -> impl Strategy<Value = (Vec<Value>, Vec<usize>)> {
    events.prop_flat_map(|events| {
        let count = events.len();
        let order = proptest::collection::vec(0..count, 0..count * 2)
            .prop_map(move |mut picks| {
                picks.extend(0..count);
                picks
            })
            .prop_shuffle();
        (Just(events), order)
    })
}

/// Checks that delivering `events` in `order` ends where delivering them once, in order, does.
pub(crate) fn ends_as_in_order(
    provider: Provider,
    events: &[Value],
    order: &[usize],
) -> Result<(), TestCaseError> {
    let mut in_order = Ledger::default();
    for event in events {
        in_order.deliver_body(provider, &bytes(event));
    }
    let mut shuffled = Ledger::default();
    for index in order {
        shuffled.deliver_body(provider, &bytes(&events[*index]));
    }
    prop_assert_eq!(comparable(&shuffled), comparable(&in_order));
    Ok(())
}
