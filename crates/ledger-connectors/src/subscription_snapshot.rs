//! Provider-neutral reconciliation: a webhook is a snapshot of an object; this module turns a
//! snapshot of a customer and a subscription into the commands that bring what the ledger holds
//! to it, and nothing when it is already there (PayPal and Xendit use it).
//!
//! Rules (docs/connectors.md, "Out of order"):
//! - an unknown customer is registered (with the message's account linked) when the message
//!   carries an email; a customer found by email gets the account linked first; both only
//!   along with the change the message is about (a message that changes nothing registers
//!   nobody);
//! - an unknown subscription is started from the snapshot (plan, quantity, trial, period end)
//!   and then moved to the snapshot's status, so an update that arrives before the created
//!   event creates what is missing;
//! - a snapshot dated before the subscription's latest change
//!   ([`ledger_domain::Subscription::changed_at_unix_micros`]) is [`Normalized::Stale`];
//! - a snapshot that matches the ledger is `Ignored` ("already applied").

use std::borrow::Cow;

use ledger_domain::{BillingInterval, Customer, Plan, SubscriptionStatus, proto};
use proto::command::Kind;
use uuid::Uuid;

use crate::{Normalized, ObjectKind, ProviderMessage, View, commands_for, customer_id_for_account};

/// Where the provider says a subscription is, in the ledger's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Created but not yet approved or paid for: not a subscription for the ledger yet.
    Pending,
    /// In a free trial that ends at `trial_end_unix_seconds`.
    Trialing {
        trial_end_unix_seconds: i64,
    },
    Active,
    /// Collection suspended by the merchant or the provider.
    Paused,
    /// Cancelled or expired.
    Canceled,
}

/// A provider's snapshot of one subscription.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubscriptionSnapshot {
    pub(crate) subscription_id: String,
    /// The price, when the snapshot carries it (needed to start the subscription).
    pub(crate) plan: Option<Plan>,
    pub(crate) quantity: u32,
    pub(crate) lifecycle: Lifecycle,
    /// The end of the current period (the next billing time), Unix seconds, positive.
    pub(crate) current_period_end_unix_seconds: i64,
}

/// The customer a message's commands are for, what the ledger holds about them, and the
/// commands collected so far (registration or account link first).
#[derive(Debug)]
pub(crate) struct Target<'a> {
    customer_id: Uuid,
    pub(crate) state: Cow<'a, Customer>,
    kinds: Vec<Kind>,
}

impl<'a> Target<'a> {
    /// The customer `view` resolved, with the message's account linked first when it was found
    /// by email only; or, when none was found, a new customer (id from
    /// [`customer_id_for_account`]) registered with `name`, the message's email and account.
    ///
    /// # Errors
    /// `Waiting` for the message's account when the customer is unknown and the message lacks
    /// an email to register them with; `Ignored` when it names no account either.
    pub(crate) fn resolve(
        message: &ProviderMessage,
        view: &View<'a>,
        name: &str,
    ) -> Result<Target<'a>, Normalized> {
        let account = message
            .account_id
            .as_ref()
            .map(|account_id| proto::ProviderAccount {
                provider: proto::PaymentProvider::from(message.provider) as i32,
                account_id: account_id.clone(),
            });
        if let Some(known) = view.customer {
            let kinds = match account {
                Some(account) if !known.account_linked => {
                    vec![Kind::LinkProviderAccount(proto::ProviderAccountLinked {
                        provider_account: Some(account),
                    })]
                }
                _ => Vec::new(),
            };
            return Ok(Target {
                customer_id: known.customer_id,
                state: Cow::Borrowed(known.state),
                kinds,
            });
        }
        let Some(account) = account else {
            return Err(Normalized::Ignored {
                reason: format!(
                    "{} names no customer the ledger knows, and no account to register one with",
                    message.event_type
                ),
            });
        };
        let Some(email) = message.email.as_deref() else {
            return Err(crate::waiting(
                message.provider,
                ObjectKind::CustomerAccount,
                &account.account_id,
                &format!(
                    "this {} carries no email to register the customer with",
                    message.event_type
                ),
            ));
        };
        Ok(Target {
            customer_id: customer_id_for_account(message.provider, &account.account_id),
            state: Cow::Owned(Customer::default()),
            kinds: vec![Kind::RegisterCustomer(proto::CustomerRegistered {
                email: email.to_owned(),
                name: name.to_owned(),
                provider_account: Some(account),
            })],
        })
    }

    /// Adds a command.
    pub(crate) fn push(&mut self, kind: Kind) {
        self.kinds.push(kind);
    }

    /// The commands collected, when `outcome` is `Ok` (or "already applied" when there are
    /// none); when `outcome` says why the message changes nothing, that, and no registration
    /// or link either. So an event id's idempotency keys only ever name the commands of the
    /// change the message is about: a message normalized again once the ledger holds more
    /// (`ledger connectors renormalize`) yields the same commands or none, never a different
    /// command under a key already used.
    pub(crate) fn finish(
        self,
        message: &ProviderMessage,
        outcome: Result<(), Normalized>,
    ) -> Normalized {
        match outcome {
            Err(why) => why,
            Ok(()) if self.kinds.is_empty() => Normalized::Ignored {
                reason: "already applied".to_owned(),
            },
            Ok(()) => commands_for(message, self.customer_id, self.kinds),
        }
    }

    /// Adds the commands that bring the subscription to `snapshot`, dated by the message.
    /// `seen_unix_micros` is the latest time of a snapshot of it already seen
    /// ([`crate::normalize_after`]).
    ///
    /// # Errors
    /// Why nothing is added: `Stale` for a snapshot older than the subscription's latest
    /// change or than the latest snapshot seen; `Ignored` for a snapshot already applied or a
    /// pending subscription; `Waiting` for an unknown subscription whose snapshot carries no
    /// price.
    pub(crate) fn reach(
        &mut self,
        message: &ProviderMessage,
        snapshot: &SubscriptionSnapshot,
        seen_unix_micros: Option<i64>,
    ) -> Result<(), Normalized> {
        use Lifecycle as L;
        use SubscriptionStatus as S;
        let id = &snapshot.subscription_id;
        let Some(current) = self.state.subscriptions.get(id) else {
            return self.start(message.provider, snapshot);
        };
        let at = message.created_at_unix_micros;
        let latest = seen_unix_micros.map_or(current.changed_at_unix_micros, |seen| {
            seen.max(current.changed_at_unix_micros)
        });
        if at < latest {
            return Err(Normalized::Stale {
                reason: format!(
                    "the snapshot of subscription {id} (at {at} µs) is older than what the \
                     ledger already has of it (at {latest} µs)"
                ),
            });
        }
        let mut kinds = Vec::new();
        let lives = !matches!(snapshot.lifecycle, L::Canceled | L::Pending);
        let status = if current.status == S::Canceled && lives {
            kinds.push(Kind::ReactivateSubscription(
                proto::SubscriptionReactivated {
                    subscription_id: id.clone(),
                },
            ));
            S::Active
        } else {
            current.status
        };
        if let Some(plan) = &snapshot.plan
            && status != S::Canceled
            && snapshot.lifecycle != L::Pending
            && (current.plan != *plan || current.quantity != snapshot.quantity)
        {
            kinds.push(Kind::ChangePlan(proto::PlanChanged {
                subscription_id: id.clone(),
                plan: Some(plan_to_proto(plan)),
                quantity: snapshot.quantity,
                discount: None,
            }));
        }
        // A trial whose payment failed shows past due, but its trial still has to convert.
        let life = if status == S::PastDue && current.in_trial() {
            S::Trialing
        } else {
            status
        };
        kinds.extend(status_change(id, snapshot.lifecycle, life));
        if kinds.is_empty() {
            return Err(Normalized::Ignored {
                reason: format!("already applied: subscription {id} is {status}"),
            });
        }
        self.kinds.extend(kinds);
        Ok(())
    }

    /// Starts an unknown subscription from its snapshot and moves it to the snapshot's status.
    fn start(
        &mut self,
        provider: ledger_domain::Provider,
        snapshot: &SubscriptionSnapshot,
    ) -> Result<(), Normalized> {
        let id = &snapshot.subscription_id;
        if snapshot.lifecycle == Lifecycle::Pending {
            return Err(Normalized::Ignored {
                reason: format!(
                    "subscription {id} is not active yet (awaiting approval); it starts with \
                     its activation"
                ),
            });
        }
        let Some(plan) = &snapshot.plan else {
            return Err(crate::waiting(
                provider,
                ObjectKind::Subscription,
                id,
                "the message carries no price to start it with; start it with \
                 start_subscription (this subscription id and provider) and later messages move it",
            ));
        };
        let trial_end_unix_seconds = match snapshot.lifecycle {
            Lifecycle::Trialing {
                trial_end_unix_seconds,
            } => Some(trial_end_unix_seconds),
            _ => None,
        };
        self.kinds
            .push(Kind::StartSubscription(proto::SubscriptionStarted {
                subscription_id: id.clone(),
                plan: Some(plan_to_proto(plan)),
                quantity: snapshot.quantity,
                trial_end_unix_seconds,
                current_period_end_unix_seconds: snapshot.current_period_end_unix_seconds,
                discount: None,
            }));
        let started = if trial_end_unix_seconds.is_some() {
            SubscriptionStatus::Trialing
        } else {
            SubscriptionStatus::Active
        };
        self.kinds
            .extend(status_change(id, snapshot.lifecycle, started));
        Ok(())
    }
}

/// The command that moves a subscription in `status` to `lifecycle`, if one is needed. A
/// `past_due` subscription is left to payments; a cancel-pending one that the provider still
/// reports active is left as it is (its cancellation is the ledger owner's).
fn status_change(id: &str, lifecycle: Lifecycle, status: SubscriptionStatus) -> Option<Kind> {
    use Lifecycle as L;
    use SubscriptionStatus as S;
    let subscription_id = id.to_owned();
    match (lifecycle, status) {
        (L::Active, S::Trialing) => Some(Kind::ConvertTrial(proto::TrialConverted {
            subscription_id,
        })),
        (L::Active | L::Trialing { .. }, S::Paused) => {
            Some(Kind::ResumeSubscription(proto::SubscriptionResumed {
                subscription_id,
            }))
        }
        (L::Paused, S::Active | S::Trialing | S::PastDue) => {
            Some(Kind::PauseSubscription(proto::SubscriptionPaused {
                subscription_id,
                resumes_at_unix_seconds: None,
            }))
        }
        (L::Canceled, status) if status != S::Canceled => {
            Some(Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                subscription_id,
                reason: String::new(),
            }))
        }
        _ => None,
    }
}

/// A plan in the command's wire form.
fn plan_to_proto(plan: &Plan) -> proto::Plan {
    proto::Plan {
        plan_id: plan.plan_id.clone(),
        unit_price: Some(plan.unit_price.into()),
        interval: match plan.interval {
            BillingInterval::Day => proto::BillingInterval::Day,
            BillingInterval::Week => proto::BillingInterval::Week,
            BillingInterval::Month => proto::BillingInterval::Month,
            BillingInterval::Year => proto::BillingInterval::Year,
        } as i32,
        interval_count: plan.interval_count,
    }
}

/// A provider's interval unit (`"MONTH"`, `"Month"`, `"month"`) in the ledger's terms.
pub(crate) fn interval_of(unit: &str) -> Option<BillingInterval> {
    match unit.to_ascii_lowercase().as_str() {
        "day" => Some(BillingInterval::Day),
        "week" => Some(BillingInterval::Week),
        "month" => Some(BillingInterval::Month),
        "year" => Some(BillingInterval::Year),
        _ => None,
    }
}

/// Unix microseconds of an RFC 3339 time (`2016-04-28T11:29:31Z`,
/// `2017-08-25T17:55:42.135Z`) within the ledger's range (1970 to 9999).
///
/// # Errors
/// A sentence naming the text when it is not such a time.
pub(crate) fn unix_micros_of(text: &str) -> Result<i64, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("time {text:?} is not RFC 3339: {error}"))?;
    let micros = parsed.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros)
        .ok()
        .filter(|micros| (1..=ledger_domain::limits::UNIX_SECONDS_MAX * 1_000_000).contains(micros))
        .ok_or_else(|| format!("time {text:?} is outside 1970 to 9999"))
}
