//! What the connector suites share: the shared fixtures' folder, this crate's own test data,
//! and an in-memory model of the writer (resolve the customer, normalize, decide and evolve
//! every command), with no database.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use ledger_connectors::{Headers, KnownCustomer, Normalized, ProviderMessage, RelatedObject, View};
use ledger_domain::{Customer, Provider, ProviderAccount, Stream, proto};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use uuid::Uuid;

/// The shared fixtures' folder, from `LEDGER_PROVIDER_FIXTURES` (`.ci/run` sets it to
/// `../shared/fixtures/providers`). Panics with what to do when it is unset or missing: the
/// suites must not pass by skipping.
pub fn fixtures() -> PathBuf {
    let folder = std::env::var_os("LEDGER_PROVIDER_FIXTURES").unwrap_or_else(|| {
        panic!(
            "LEDGER_PROVIDER_FIXTURES is not set: point it at the shared provider fixtures \
             (../shared/fixtures/providers, as .ci/run does)"
        )
    });
    let folder = PathBuf::from(folder);
    assert!(
        folder.join("README.md").is_file(),
        "LEDGER_PROVIDER_FIXTURES={} holds no provider fixtures (README.md missing)",
        folder.display()
    );
    folder
}

/// The bytes of a shared fixture, e.g. `fixture("paypal/PAYMENT.SALE.REFUNDED.json")`.
pub fn fixture(path: &str) -> Vec<u8> {
    let file = fixtures().join(path);
    std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// The bytes of this crate's own test data under `tests/data/`.
pub fn data(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// Headers as a list of (name, value); names compared case-insensitively.
pub struct HeaderList(pub Vec<(&'static str, String)>);

impl Headers for HeaderList {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The ledger in memory: the streams, and what the writer does with a verified delivery.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub streams: BTreeMap<Uuid, Stream>,
    /// The latest `created_at` of a message about each snapshot object whose outcome was
    /// commands, already applied, or stale (what the writer reads from its inbox).
    pub seen: BTreeMap<String, i64>,
}

impl Ledger {
    /// Parses, resolves, normalizes and applies one delivery, as the writer does; panics when
    /// the body does not parse or a command is rejected (the mapping must only emit commands
    /// that `decide` accepts).
    pub fn deliver(&mut self, provider: Provider, raw: &[u8]) -> Normalized {
        let message = ledger_connectors::parse(provider, raw)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(raw)));
        self.deliver_message(&message)
    }

    /// [`Ledger::deliver`] of a message already parsed.
    pub fn deliver_message(&mut self, message: &ProviderMessage) -> Normalized {
        let object = ledger_connectors::snapshot_object(message).map(str::to_owned);
        let seen = object
            .as_ref()
            .and_then(|object| self.seen.get(object).copied());
        let found = self.find(message);
        let normalized = {
            let view = View {
                customer: found.and_then(|(customer_id, account_linked)| {
                    Some(KnownCustomer {
                        customer_id,
                        state: self.customer(customer_id)?,
                        account_linked,
                    })
                }),
            };
            ledger_connectors::normalize_after(message, &view, seen)
        };
        let counts = match &normalized {
            Normalized::Commands(commands) => {
                for command in commands {
                    self.apply(command);
                }
                true
            }
            Normalized::Stale { .. } => true,
            Normalized::Ignored { reason } => reason.starts_with("already applied"),
        };
        if let Some(object) = object.filter(|_| counts) {
            let latest = self.seen.entry(object).or_insert(i64::MIN);
            *latest = (*latest).max(message.created_at_unix_micros);
        }
        normalized
    }

    /// Decides and applies one command to its stream; panics with the rejection.
    pub fn apply(&mut self, command: &proto::Command) {
        let metadata = command.metadata.as_ref().expect("metadata");
        let customer_id: Uuid = metadata.customer_id.parse().expect("customer id");
        let stream = self.streams.entry(customer_id).or_default();
        let events = stream
            .decide(command)
            .unwrap_or_else(|rejection| panic!("{command:?} rejected: {rejection}"));
        for event in &events {
            *stream = std::mem::take(stream).evolve(event, metadata.occurred_at_unix_micros);
        }
    }

    /// The customer `customer_id`, if registered.
    pub fn customer(&self, customer_id: Uuid) -> Option<&Customer> {
        match self.streams.get(&customer_id) {
            Some(Stream::Customer(customer)) => Some(customer),
            _ => None,
        }
    }

    /// The only customer; panics unless there is exactly one.
    pub fn only_customer(&self) -> &Customer {
        assert_eq!(self.streams.len(), 1, "{:#?}", self.streams);
        let id = *self.streams.keys().next().expect("one stream");
        self.customer(id).expect("a customer")
    }

    /// The writer's resolution: the provider account (linked), else the email (trimmed,
    /// case-insensitive; not linked), else the object the message relates to (linked).
    fn find(&self, message: &ProviderMessage) -> Option<(Uuid, bool)> {
        let customers = || {
            self.streams.iter().filter_map(|(id, stream)| match stream {
                Stream::Customer(customer) => Some((*id, customer)),
                _ => None,
            })
        };
        if let Some(account_id) = &message.account_id {
            let account = ProviderAccount {
                provider: message.provider,
                account_id: account_id.clone(),
            };
            if let Some((id, _)) =
                customers().find(|(_, customer)| customer.provider_accounts.contains(&account))
            {
                return Some((id, true));
            }
        }
        if let Some(email) = &message.email {
            let key = email.trim().to_lowercase();
            if let Some((id, _)) = customers().find(|(_, customer)| {
                customer
                    .profile
                    .as_ref()
                    .is_some_and(|profile| profile.email.to_lowercase() == key)
            }) {
                return Some((id, false));
            }
        }
        let holds = |customer: &Customer| match ledger_connectors::related_object(message) {
            Some(RelatedObject::Subscription(id)) => customer.subscriptions.contains_key(id),
            Some(RelatedObject::Payment(id)) => customer.payments.contains_key(id),
            None => false,
        };
        customers()
            .find(|(_, customer)| holds(customer))
            .map(|(id, _)| (id, true))
    }
}

/// The names of the commands of a normalization (`["register_customer", ...]`), or the
/// outcome's name and reason.
pub fn command_names(normalized: &Normalized) -> Vec<String> {
    match normalized {
        Normalized::Commands(commands) => commands
            .iter()
            .map(|command| {
                ledger_domain::command_name(command.kind.as_ref().expect("kind")).to_owned()
            })
            .collect(),
        Normalized::Ignored { reason } => vec![format!("ignored: {reason}")],
        Normalized::Stale { reason } => vec![format!("stale: {reason}")],
    }
}

/// What any order of a subscription's deliveries must agree on: per customer, the profile,
/// the accounts, per subscription its plan, quantity, status and pending cancellation, and
/// the payments and refunds. Not compared: the trial end, the period end and the time of the
/// latest change are dated by whichever delivery started or last changed the subscription (a
/// late start cannot know the earlier dates), and the version counts events.
pub fn comparable(ledger: &Ledger) -> Vec<String> {
    ledger
        .streams
        .iter()
        .filter_map(|(id, stream)| match stream {
            Stream::Customer(customer) => Some(format!(
                "{id}: {:?} {:?} {:?} {:?} {:?}",
                customer.profile,
                customer.provider_accounts,
                customer
                    .subscriptions
                    .iter()
                    .map(|(id, subscription)| (
                        id,
                        &subscription.plan,
                        subscription.quantity,
                        subscription.status,
                        &subscription.pending_cancellation,
                    ))
                    .collect::<Vec<_>>(),
                customer.payments,
                customer.refunds,
            )),
            _ => None,
        })
        .collect()
}

/// Generated `events` with a delivery order: every event at least once, some twice or more,
/// shuffled (indices into `events`).
pub fn with_deliveries(
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
pub fn ends_as_in_order(
    provider: Provider,
    events: &[Value],
    order: &[usize],
) -> Result<(), TestCaseError> {
    let body = |event: &Value| serde_json::to_vec(event).expect("JSON");
    let mut in_order = Ledger::default();
    for event in events {
        in_order.deliver(provider, &body(event));
    }
    let mut shuffled = Ledger::default();
    for index in order {
        shuffled.deliver(provider, &body(&events[*index]));
    }
    prop_assert_eq!(comparable(&shuffled), comparable(&in_order));
    Ok(())
}
