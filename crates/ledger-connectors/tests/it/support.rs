//! Test support: an in-memory writer (customer resolution by account, then email, then the
//! objects a message relates to; then `normalize_after` with the latest snapshot seen of the
//! message's object, then `decide` + `evolve` per command, idempotency keys remembered; a
//! message waiting for an object is delivered again once an event makes that object known, as
//! the writer does) and builders of Stripe event JSON written from Stripe's documented object
//! shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ledger_connectors::{
    KnownCustomer, Normalized, ProviderMessage, RelatedObject, View, made_known, normalize_after,
    related_objects, snapshot_object,
};
use ledger_domain::{Customer, Provider, decide, evolve};
use serde_json::{Value, json};
use uuid::Uuid;

/// The folder of the shared provider fixtures, from `LEDGER_PROVIDER_FIXTURES`.
///
/// # Panics
/// When the variable is unset or the folder is missing: the suites must not skip silently.
pub(crate) fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("LEDGER_PROVIDER_FIXTURES")
        .map(PathBuf::from)
        .expect(
            "LEDGER_PROVIDER_FIXTURES is unset: set it to the shared provider fixtures folder \
         (.ci/run sets ../shared/fixtures/providers)",
        );
    assert!(
        dir.join("stripe").is_dir(),
        "LEDGER_PROVIDER_FIXTURES={} has no stripe/ folder",
        dir.display()
    );
    dir
}

/// What the writer did with one delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The command names of what was appended.
    Appended(Vec<&'static str>),
    Ignored(String),
    Stale(String),
    /// Waiting for the object with this key (`AwaitedObject::key`), and why.
    Waiting(String, String),
}

/// How many rounds of releases one delivery may set off (the writer's bound is the same).
const RELEASE_DEPTH_MAX: usize = 8;

/// The ledger's customers in memory, as the writer keeps them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    pub(crate) customers: BTreeMap<Uuid, Customer>,
    accounts: BTreeMap<(Provider, String), Uuid>,
    emails: BTreeMap<String, Uuid>,
    keys: BTreeSet<String>,
    /// Per snapshot object (`snapshot_object`), the latest `created_at` of a message about it
    /// that was appended, already applied or stale: what the writer reads from its inbox.
    seen: BTreeMap<String, i64>,
    /// Messages waiting, by the key of the object they wait for.
    waiting: BTreeMap<String, Vec<ProviderMessage>>,
}

impl Ledger {
    /// The customer holding Stripe account `account_id`.
    pub(crate) fn customer(&self, account_id: &str) -> Option<&Customer> {
        let id = self
            .accounts
            .get(&(Provider::Stripe, account_id.to_owned()))?;
        self.customers.get(id)
    }

    /// Resolves, normalizes and applies `message` as the writer does, then delivers again the
    /// messages waiting for the objects its events made known (and those theirs made known,
    /// up to [`RELEASE_DEPTH_MAX`] rounds); returns what became of `message` itself.
    pub(crate) fn deliver(&mut self, message: &ProviderMessage) -> Outcome {
        let (outcome, mut known) = self.deliver_once(message);
        for _ in 0..RELEASE_DEPTH_MAX {
            let released: Vec<ProviderMessage> = known
                .iter()
                .filter_map(|key| self.waiting.remove(key))
                .flatten()
                .collect();
            if released.is_empty() {
                break;
            }
            known = Vec::new();
            for message in &released {
                known.extend(self.deliver_once(message).1);
            }
        }
        outcome
    }

    /// Whether any message still waits.
    pub(crate) fn has_waiting(&self) -> bool {
        self.waiting.values().any(|messages| !messages.is_empty())
    }

    /// Resolves, normalizes and applies `message`; returns the outcome and the keys of the
    /// objects its events made known. A waiting message is kept until its object is known.
    ///
    /// # Panics
    /// When a normalized command is refused by `decide`: normalization must return commands
    /// that apply cleanly.
    fn deliver_once(&mut self, message: &ProviderMessage) -> (Outcome, Vec<String>) {
        let by_account = message
            .account_id
            .as_ref()
            .and_then(|account| self.accounts.get(&(message.provider, account.clone())))
            .map(|id| (*id, true));
        let by_email = message
            .email
            .as_ref()
            .and_then(|email| self.emails.get(&email.trim().to_lowercase()))
            .map(|id| (*id, false));
        // As the writer resolves: the holder of an object the message names, linking the
        // message's account only when no one owns it; else the account's owner; else the
        // email's.
        let account_free = message.account_id.is_some() && by_account.is_none();
        let by_related = related_objects(message).into_iter().find_map(|related| {
            self.customers
                .iter()
                .find(|(_, customer)| match related {
                    RelatedObject::Subscription(id) => customer.subscriptions.contains_key(id),
                    RelatedObject::Payment(id) => customer.payments.contains_key(id),
                })
                .map(|(id, _)| (*id, !account_free))
        });
        let found = by_related.or(by_account).or(by_email);
        let object = snapshot_object(message).map(str::to_owned);
        let seen = object
            .as_ref()
            .and_then(|object| self.seen.get(object).copied());
        let normalized = {
            let view = View {
                customer: found.and_then(|(customer_id, account_linked)| {
                    Some(KnownCustomer {
                        customer_id,
                        state: self.customers.get(&customer_id)?,
                        account_linked,
                    })
                }),
            };
            normalize_after(message, &view, seen)
        };
        let counts_as_seen = match &normalized {
            Normalized::Commands(_) | Normalized::Stale { .. } => true,
            Normalized::Ignored { reason } => reason.starts_with("already applied"),
            Normalized::Waiting { .. } => false,
        };
        if let Some(object) = object.filter(|_| counts_as_seen) {
            let latest = self.seen.entry(object).or_insert(i64::MIN);
            *latest = (*latest).max(message.created_at_unix_micros);
        }
        match normalized {
            Normalized::Commands(commands) => {
                let mut names = Vec::new();
                let mut known = Vec::new();
                for command in commands {
                    let metadata = command.metadata.clone().expect("metadata");
                    if !self.keys.insert(metadata.idempotency_key.clone()) {
                        continue;
                    }
                    let customer_id: Uuid = metadata.customer_id.parse().expect("customer id");
                    let state = self.customers.remove(&customer_id).unwrap_or_default();
                    let events = decide(&state, &command).unwrap_or_else(|rejection| {
                        panic!("{} refused {command:?}: {rejection}", message.event_id)
                    });
                    let provider =
                        Provider::try_from(metadata.payment_provider()).expect("provider");
                    known.extend(
                        events
                            .iter()
                            .filter_map(|event| made_known(provider, event))
                            .map(|object| object.key()),
                    );
                    let state = events.iter().fold(state, |state, event| {
                        evolve(state, event, metadata.occurred_at_unix_micros)
                    });
                    for account in &state.provider_accounts {
                        self.accounts
                            .insert((account.provider, account.account_id.clone()), customer_id);
                    }
                    if let Some(profile) = &state.profile {
                        self.emails
                            .insert(profile.email.trim().to_lowercase(), customer_id);
                    }
                    self.customers.insert(customer_id, state);
                    names.push(ledger_domain::command_name(
                        command.kind.as_ref().expect("kind"),
                    ));
                }
                (Outcome::Appended(names), known)
            }
            Normalized::Ignored { reason } => (Outcome::Ignored(reason), Vec::new()),
            Normalized::Stale { reason } => (Outcome::Stale(reason), Vec::new()),
            Normalized::Waiting { object, reason } => {
                let key = object.key();
                self.waiting
                    .entry(key.clone())
                    .or_default()
                    .push(message.clone());
                (Outcome::Waiting(key, reason), Vec::new())
            }
        }
    }

    /// Parses and delivers a raw body of `provider`.
    ///
    /// # Panics
    /// When the body does not parse.
    pub(crate) fn deliver_body(&mut self, provider: Provider, raw: &[u8]) -> Outcome {
        let message = ledger_connectors::parse(provider, raw)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(raw)));
        self.deliver(&message)
    }

    /// The only customer.
    ///
    /// # Panics
    /// Unless there is exactly one.
    pub(crate) fn only_customer(&self) -> &Customer {
        assert_eq!(self.customers.len(), 1, "{:#?}", self.customers);
        self.customers.values().next().expect("one customer")
    }

    /// Parses and delivers a raw Stripe body.
    pub(crate) fn deliver_raw(&mut self, raw: &[u8]) -> Outcome {
        let message = ledger_connectors::stripe::parse(raw).expect("a Stripe event");
        self.deliver(&message)
    }
}

/// A Stripe event envelope around `object`.
pub(crate) fn event(
    id: &str,
    event_type: &str,
    created: i64,
    object: Value,
    previous: Option<Value>,
) -> Vec<u8> {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    serde_json::to_vec(&json!({
        "id": id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "type": event_type,
        "data": data,
    }))
    .expect("JSON")
}

/// A customer object.
pub(crate) fn customer(id: &str, email: Option<&str>, name: &str, created: i64) -> Value {
    json!({ "id": id, "object": "customer", "created": created, "email": email, "name": name,
            "metadata": {} })
}

/// A recurring monthly price.
pub(crate) fn price(id: &str, unit_amount: i64, currency: &str) -> Value {
    json!({ "id": id, "object": "price", "active": true, "currency": currency,
            "unit_amount": unit_amount, "type": "recurring",
            "recurring": { "interval": "month", "interval_count": 1 } })
}

/// A subscription in the current shape (billing period on the items).
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionShape {
    pub(crate) id: String,
    pub(crate) customer: String,
    pub(crate) status: String,
    pub(crate) price: Value,
    pub(crate) quantity: u32,
    pub(crate) trial_end: Option<i64>,
    pub(crate) current_period_end: i64,
    pub(crate) cancel_at_period_end: bool,
    pub(crate) created: i64,
}

impl SubscriptionShape {
    /// The object as Stripe's current API gives it.
    pub(crate) fn object(&self) -> Value {
        json!({
            "id": self.id, "object": "subscription", "customer": self.customer,
            "status": self.status, "created": self.created, "start_date": self.created,
            "cancel_at_period_end": self.cancel_at_period_end, "trial_end": self.trial_end,
            "pause_collection": null, "discount": null,
            "items": { "object": "list", "data": [{
                "id": format!("si_{}", self.id), "object": "subscription_item",
                "price": self.price, "quantity": self.quantity,
                "current_period_start": self.current_period_end - 30 * 86_400,
                "current_period_end": self.current_period_end,
            }]},
        })
    }

    /// The object as API version 2020-08-27 gives it (period, plan and quantity on the
    /// subscription itself).
    pub(crate) fn object_2020(&self) -> Value {
        let mut object = self.object();
        let price = &self.price;
        let plan = json!({ "id": price["id"], "object": "plan", "amount": price["unit_amount"],
                           "currency": price["currency"], "interval": "month", "interval_count": 1 });
        object["plan"] = plan.clone();
        object["quantity"] = json!(self.quantity);
        object["current_period_end"] = json!(self.current_period_end);
        object["current_period_start"] = json!(self.current_period_end - 30 * 86_400);
        let item = &mut object["items"]["data"][0];
        item["plan"] = plan;
        if let Some(item) = item.as_object_mut() {
            item.remove("price");
            item.remove("current_period_end");
            item.remove("current_period_start");
        }
        object
    }
}

/// An invoice of a subscription (current shape: the subscription under `parent`, paid by
/// `charge` when given, as 2020-08-27 did).
pub(crate) fn invoice(
    id: &str,
    customer: &str,
    subscription: &str,
    status: &str,
    (amount, currency): (i64, &str),
    period: (i64, i64),
    charge: Option<&str>,
) -> Value {
    json!({
        "id": id, "object": "invoice", "customer": customer, "status": status,
        "currency": currency, "amount_due": amount,
        "amount_paid": if status == "paid" { amount } else { 0 },
        "attempt_count": if status == "draft" { 0 } else { 1 },
        "charge": charge, "billing_reason": "subscription_cycle",
        "parent": { "type": "subscription_details",
                    "subscription_details": { "subscription": subscription } },
        "period_start": period.0 - 30 * 86_400, "period_end": period.0,
        "lines": { "object": "list", "data": [{
            "id": format!("il_{id}"), "object": "line_item", "amount": amount,
            "currency": currency, "period": { "start": period.0, "end": period.1 },
        }]},
    })
}
