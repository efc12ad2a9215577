//! Keys that at most one customer may hold: emails and provider accounts.

use crate::customer::{Customer, apply, provider_account_from_proto};
use crate::email::email_match_key;
use crate::names::Provider;
use crate::{Event, proto};

/// A value that at most one customer may hold. The store keeps claimed keys in a table with a
/// unique index on [`UniqueKey::storage_key`], so two customers never share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UniqueKey {
    /// An email in the form emails are compared in: trimmed, Unicode compatibility caseless
    /// (NFKC with case folding; lower case for ASCII), see [`UniqueKey::email`].
    Email(String),
    /// A customer's account at a provider.
    ProviderAccount(Provider, String),
}

impl UniqueKey {
    /// The key of an email as a customer gave it. Two emails hold the same key when they are
    /// equal under Unicode's compatibility caseless match (The Unicode Standard, chapter 3.13,
    /// D146: case folding and NFKD, kept composed): `Bob@Example.COM`, `bob@ｅxample.com` and
    /// `bob@example.com` share `email:bob@example.com`.
    pub fn email(email: &str) -> UniqueKey {
        UniqueKey::Email(email_match_key(email))
    }

    /// The text stored in the unique index: `email:alice@example.com`,
    /// `account:stripe:cus_123`.
    pub fn storage_key(&self) -> String {
        match self {
            UniqueKey::Email(email) => format!("email:{email}"),
            UniqueKey::ProviderAccount(provider, account_id) => {
                format!("account:{provider}:{account_id}")
            }
        }
    }
}

/// The keys a batch of events claims for the customer and the keys it gives up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UniqueKeyChanges {
    /// Keys the customer holds after the batch and did not hold before.
    pub claims: Vec<UniqueKey>,
    /// Keys the customer held before the batch and no longer holds.
    pub releases: Vec<UniqueKey>,
}

impl UniqueKeyChanges {
    fn claim(&mut self, key: UniqueKey) {
        if let Some(index) = self.releases.iter().position(|held| *held == key) {
            self.releases.remove(index);
        } else if !self.claims.contains(&key) {
            self.claims.push(key);
        }
    }

    /// Claims a provider account, if the event names a valid one.
    fn claim_account(&mut self, account: Option<&proto::ProviderAccount>) {
        if let Some(account) = account.and_then(provider_account_from_proto) {
            self.claim(UniqueKey::ProviderAccount(
                account.provider,
                account.account_id,
            ));
        }
    }

    fn release(&mut self, key: UniqueKey) {
        if let Some(index) = self.claims.iter().position(|claimed| *claimed == key) {
            self.claims.remove(index);
        } else if !self.releases.contains(&key) {
            self.releases.push(key);
        }
    }
}

/// The unique keys that appending `events` to the customer `before` claims and releases.
///
/// Registering claims the email and the initial provider account; a profile update that
/// changes the email (compared normalized) releases the old one and claims the new one;
/// linking claims the account. Events are applied in order, so a batch that changes the email
/// twice claims only the last one. Events that `evolve` would ignore change no keys.
pub fn unique_key_changes(before: &Customer, events: &[Event]) -> UniqueKeyChanges {
    let mut changes = UniqueKeyChanges::default();
    let mut state = before.clone();
    for event in events {
        let email_before = state
            .profile
            .as_ref()
            .map(|profile| UniqueKey::email(&profile.email));
        // Only profile and account events change keys, and no date makes those stale.
        if apply(&mut state, event, i64::MAX).is_err() {
            continue;
        }
        match event {
            proto::event::Kind::CustomerRegistered(registered) => {
                changes.claim(UniqueKey::email(&registered.email));
                changes.claim_account(registered.provider_account.as_ref());
            }
            proto::event::Kind::CustomerProfileUpdated(updated) => {
                if let Some(email) = &updated.email {
                    let email_after = UniqueKey::email(email);
                    if email_before.as_ref() != Some(&email_after) {
                        if let Some(old) = email_before {
                            changes.release(old);
                        }
                        changes.claim(email_after);
                    }
                }
            }
            proto::event::Kind::ProviderAccountLinked(linked) => {
                changes.claim_account(linked.provider_account.as_ref());
            }
            _ => {}
        }
    }
    changes
}
