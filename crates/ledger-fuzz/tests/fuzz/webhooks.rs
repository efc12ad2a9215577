//! Provider webhook bodies as the writer handles them after ingest verified them:
//! `ledger_connectors::parse`, the customer look-ups (`related_objects`, `snapshot_object`),
//! `normalize_after` against no customer, the customer the provider's corpus builds (linked
//! and found by email only), with and without a snapshot seen, then `decide` + `evolve` of the
//! commands in order, as the writer does.
//!
//! Properties: no panic; a body `parse` refuses is `VerifyError::Malformed` (400), never a
//! signature error; normalizing is deterministic; every command carries the message's
//! provider as issuer, its account, its time and the idempotency key
//! `ledger_connectors::idempotency_key` gives, all for one customer; `decide` answers events
//! or a `Rejection` with a code.

use std::sync::OnceLock;

use ledger_connectors::{
    KnownCustomer, Normalized, ProviderMessage, VerifyError, View, idempotency_key,
    normalize_after, related_objects, snapshot_object,
};
use ledger_domain::{Customer, Provider, decide, evolve, proto};
use ledger_fuzz::{cases, corpus, json_corpus, mutated_json};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use uuid::Uuid;

/// The customer a provider's corpus builds when delivered in order to one customer: each
/// message normalized against the state so far; its commands decided and applied (a refused
/// one ends that message's commands, as the writer appends all or nothing).
#[derive(Debug)]
struct Known {
    customer_id: Uuid,
    state: Customer,
}

fn build_known(provider: Provider, target: &str) -> Known {
    let mut known: Option<Known> = None;
    for entry in corpus(target) {
        let message = ledger_connectors::parse(provider, &entry.bytes)
            .unwrap_or_else(|error| panic!("corpus {target}/{}: {error}", entry.name));
        let view = View {
            customer: known.as_ref().map(|known| KnownCustomer {
                customer_id: known.customer_id,
                state: &known.state,
                account_linked: true,
            }),
        };
        let Normalized::Commands(commands) = normalize_after(&message, &view, None) else {
            continue;
        };
        let Some(customer_id) = commands.first().and_then(customer_of) else {
            continue;
        };
        let mut state = match known.take() {
            Some(known) if known.customer_id == customer_id => known.state,
            _ => Customer::default(),
        };
        state = apply(state, &commands).0;
        known = Some(Known { customer_id, state });
    }
    let known = known.unwrap_or_else(|| panic!("corpus {target} registers no customer"));
    assert!(
        !known.state.subscriptions.is_empty(),
        "corpus {target} starts no subscription"
    );
    known
}

fn customer_of(command: &proto::Command) -> Option<Uuid> {
    let metadata = command.metadata.as_ref()?;
    Uuid::parse_str(&metadata.customer_id).ok()
}

/// Decides and applies `commands` in order from `state`, stopping at the first rejection;
/// the state reached and the rejection, if any.
fn apply(
    mut state: Customer,
    commands: &[proto::Command],
) -> (Customer, Option<ledger_domain::Rejection>) {
    for command in commands {
        match decide(&state, command) {
            Ok(events) => {
                let at = ledger_domain::occurred_at_unix_micros(command);
                for event in &events {
                    state = evolve(state, event, at);
                }
            }
            Err(rejection) => return (state, Some(rejection)),
        }
    }
    (state, None)
}

fn check(provider: Provider, body: &[u8], known: &Known) -> Result<(), TestCaseError> {
    let message = match ledger_connectors::parse(provider, body) {
        Ok(message) => message,
        Err(VerifyError::Malformed(_)) => return Ok(()),
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "parse answered a signature error: {other:?}"
            )));
        }
    };
    prop_assert_eq!(message.provider, provider);
    let _ = related_objects(&message);
    let _ = snapshot_object(&message);
    let views = [
        View { customer: None },
        View {
            customer: Some(KnownCustomer {
                customer_id: known.customer_id,
                state: &known.state,
                account_linked: true,
            }),
        },
        View {
            customer: Some(KnownCustomer {
                customer_id: known.customer_id,
                state: &known.state,
                account_linked: false,
            }),
        },
    ];
    let at = message.created_at_unix_micros;
    for view in &views {
        for seen in [None, Some(at.saturating_sub(1)), Some(at.saturating_add(1))] {
            let normalized = normalize_after(&message, view, seen);
            prop_assert_eq!(&normalize_after(&message, view, seen), &normalized);
            if let Normalized::Commands(commands) = normalized {
                check_commands(&message, view, &commands)?;
            }
        }
    }
    Ok(())
}

fn check_commands(
    message: &ProviderMessage,
    view: &View<'_>,
    commands: &[proto::Command],
) -> Result<(), TestCaseError> {
    let customer_ids: Vec<Option<Uuid>> = commands.iter().map(customer_of).collect();
    prop_assert!(
        customer_ids.windows(2).all(|pair| pair[0] == pair[1]),
        "commands for several customers: {customer_ids:?}"
    );
    for (index, command) in commands.iter().enumerate() {
        let metadata = command
            .metadata
            .as_ref()
            .ok_or_else(|| TestCaseError::fail("a command without metadata"))?;
        prop_assert_eq!(metadata.issuer, proto::Issuer::PaymentProvider as i32);
        prop_assert_eq!(
            metadata.payment_provider,
            proto::PaymentProvider::from(message.provider) as i32
        );
        // Stripe starts a subscription it missed at the subscription's own `created` when that
        // is earlier; every other command is dated by the message.
        let at = metadata.occurred_at_unix_micros;
        if message.provider == Provider::Stripe {
            prop_assert!((1..=message.created_at_unix_micros).contains(&at), "{}", at);
        } else {
            prop_assert_eq!(at, message.created_at_unix_micros);
        }
        prop_assert_eq!(
            &metadata.idempotency_key,
            &idempotency_key(message, index, commands.len())
        );
        prop_assert!(command.kind.is_some(), "a command without a kind");
    }
    let state = match (view.customer, customer_ids.first()) {
        (Some(known), Some(Some(id))) if known.customer_id == *id => known.state.clone(),
        _ => Customer::default(),
    };
    if let (_, Some(rejection)) = apply(state, commands) {
        prop_assert!(!rejection.rejection_code().is_empty());
    }
    Ok(())
}

/// One provider's harness: its corpus folder, and the customer that corpus builds (once).
struct Harness {
    provider: Provider,
    target: &'static str,
    known: OnceLock<Known>,
}

impl Harness {
    const fn new(provider: Provider, target: &'static str) -> Harness {
        Harness {
            provider,
            target,
            known: OnceLock::new(),
        }
    }

    fn known(&self) -> &Known {
        self.known
            .get_or_init(|| build_known(self.provider, self.target))
    }

    fn check(&self, body: &[u8]) -> Result<(), TestCaseError> {
        check(self.provider, body, self.known())
    }

    fn replay(&self) {
        for entry in corpus(self.target) {
            self.check(&entry.bytes)
                .unwrap_or_else(|error| panic!("{}/{}: {error}", self.target, entry.name));
        }
    }
}

static STRIPE: Harness = Harness::new(Provider::Stripe, "stripe");
static PAYPAL: Harness = Harness::new(Provider::Paypal, "paypal");
static XENDIT: Harness = Harness::new(Provider::Xendit, "xendit");

#[test]
fn webhook_corpora_replay() {
    STRIPE.replay();
    PAYPAL.replay();
    XENDIT.replay();
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn fuzz_stripe_webhooks(body in mutated_json(json_corpus(STRIPE.target))) {
        STRIPE.check(&body)?;
    }

    #[test]
    fn fuzz_paypal_webhooks(body in mutated_json(json_corpus(PAYPAL.target))) {
        PAYPAL.check(&body)?;
    }

    #[test]
    fn fuzz_xendit_webhooks(body in mutated_json(json_corpus(XENDIT.target))) {
        XENDIT.check(&body)?;
    }
}
