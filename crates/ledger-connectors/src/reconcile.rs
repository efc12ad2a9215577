//! Reconciliation: the drift between a provider's subscriptions and what the ledger holds of
//! them (docs/connectors.md, "Reconciliation").
//!
//! Both sides are read into [`SubscriptionState`] (the provider's objects by the provider's
//! module, e.g. [`crate::stripe::subscription_state`]; the ledger's from the customers read
//! model by the caller), then compared field by field. [`Reconciliation`] takes the
//! provider's subscriptions one at a time as they are paged in, so only the ledger's side is
//! held in memory. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use ledger_domain::SubscriptionStatus;

/// One subscription as the ledger's customers read model shows it, or as a provider's object
/// says the ledger should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The provider's subscription id (`sub_...`, `I-...`, `repl_...`).
    pub subscription_id: String,
    /// The provider's customer (`cus_...`), when known: printed to find the customer.
    pub account_id: String,
    /// The ledger's status word for it (`cancel_pending` for Stripe's `cancel_at_period_end`).
    pub status: SubscriptionStatus,
    /// The price's id (`price_...`; several items' ids joined by `+`).
    pub plan_id: String,
    /// The price of one unit per interval, in minor units of `currency`.
    pub unit_amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub quantity: u32,
    /// The end of the current period, Unix seconds.
    pub current_period_end_unix_seconds: i64,
}

/// One field on which the ledger and the provider disagree: `ledger` is what the ledger holds,
/// `provider` what the provider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Status {
        ledger: SubscriptionStatus,
        provider: SubscriptionStatus,
    },
    /// The price's id or its unit amount.
    Price {
        ledger: (String, i64),
        provider: (String, i64),
    },
    Quantity {
        ledger: u32,
        provider: u32,
    },
    Currency {
        ledger: String,
        provider: String,
    },
    PeriodEnd {
        ledger: i64,
        provider: i64,
    },
}

impl fmt::Display for Difference {
    /// `status active -> canceled` (the ledger's value, then the provider's).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Status { ledger, provider } => {
                write!(formatter, "status {ledger} -> {provider}")
            }
            Difference::Price { ledger, provider } => write!(
                formatter,
                "price {} {} -> {} {}",
                ledger.0, ledger.1, provider.0, provider.1
            ),
            Difference::Quantity { ledger, provider } => {
                write!(formatter, "quantity {ledger} -> {provider}")
            }
            Difference::Currency { ledger, provider } => {
                write!(formatter, "currency {ledger} -> {provider}")
            }
            Difference::PeriodEnd { ledger, provider } => {
                write!(formatter, "period end {ledger} -> {provider}")
            }
        }
    }
}

/// The drift of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The provider holds it; the ledger does not.
    MissingInLedger { provider: SubscriptionState },
    /// The ledger holds it (started at this provider); the provider does not list it.
    MissingAtProvider { ledger: SubscriptionState },
    /// Both hold it with different values (at least one).
    Different {
        subscription_id: String,
        account_id: String,
        differences: Vec<Difference>,
    },
}

impl Drift {
    pub fn subscription_id(&self) -> &str {
        match self {
            Drift::MissingInLedger { provider: state }
            | Drift::MissingAtProvider { ledger: state } => &state.subscription_id,
            Drift::Different {
                subscription_id, ..
            } => subscription_id,
        }
    }

    /// What a repair records as its reason: `repair: status active -> canceled; quantity 1 ->
    /// 3`, `repair: missing in the ledger`.
    pub fn repair_reason(&self) -> String {
        match self {
            Drift::MissingInLedger { .. } => "repair: missing in the ledger".to_owned(),
            Drift::MissingAtProvider { .. } => "repair: missing at the provider".to_owned(),
            Drift::Different { differences, .. } => {
                let texts: Vec<String> = differences.iter().map(ToString::to_string).collect();
                format!("repair: {}", texts.join("; "))
            }
        }
    }
}

impl fmt::Display for Drift {
    /// One line, tab-separated: subscription id, account id, what differs (the ledger's value
    /// first, then the provider's).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingInLedger { provider } => write!(
                formatter,
                "{}\t{}\tmissing in the ledger (provider: {})",
                provider.subscription_id, provider.account_id, provider.status
            ),
            Drift::MissingAtProvider { ledger } => write!(
                formatter,
                "{}\t{}\tmissing at the provider (ledger: {})",
                ledger.subscription_id, ledger.account_id, ledger.status
            ),
            Drift::Different {
                subscription_id,
                account_id,
                differences,
            } => {
                write!(formatter, "{subscription_id}\t{account_id}\t")?;
                for (index, difference) in differences.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str("; ")?;
                    }
                    write!(formatter, "{difference}")?;
                }
                Ok(())
            }
        }
    }
}

/// The differences between the ledger's and the provider's view of one subscription, in a
/// fixed order (status, price, quantity, currency, period end); empty when they agree.
///
/// The period end is compared only while the subscription runs: the ledger moves it with the
/// invoices it records, and a cancelled subscription's last period is history.
pub fn differences(ledger: &SubscriptionState, provider: &SubscriptionState) -> Vec<Difference> {
    let mut differences = Vec::new();
    if ledger.status != provider.status {
        differences.push(Difference::Status {
            ledger: ledger.status,
            provider: provider.status,
        });
    }
    if (&ledger.plan_id, ledger.unit_amount_minor)
        != (&provider.plan_id, provider.unit_amount_minor)
    {
        differences.push(Difference::Price {
            ledger: (ledger.plan_id.clone(), ledger.unit_amount_minor),
            provider: (provider.plan_id.clone(), provider.unit_amount_minor),
        });
    }
    if ledger.quantity != provider.quantity {
        differences.push(Difference::Quantity {
            ledger: ledger.quantity,
            provider: provider.quantity,
        });
    }
    if ledger.currency != provider.currency {
        differences.push(Difference::Currency {
            ledger: ledger.currency.clone(),
            provider: provider.currency.clone(),
        });
    }
    let running = ledger.status != SubscriptionStatus::Canceled
        || provider.status != SubscriptionStatus::Canceled;
    if running && ledger.current_period_end_unix_seconds != provider.current_period_end_unix_seconds
    {
        differences.push(Difference::PeriodEnd {
            ledger: ledger.current_period_end_unix_seconds,
            provider: provider.current_period_end_unix_seconds,
        });
    }
    differences
}

/// A comparison in progress: the ledger's subscriptions of one provider, matched against the
/// provider's as they are paged in.
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// The ledger's subscriptions not yet seen at the provider, by id.
    unseen: BTreeMap<String, SubscriptionState>,
    /// The provider's subscription ids compared so far: a list that moved while it was paged
    /// can show one twice.
    seen: HashSet<String>,
}

impl Reconciliation {
    /// Starts from the ledger's subscriptions of the provider (every status, cancelled ones
    /// too). A repeated id keeps the last.
    pub fn new(ledger: impl IntoIterator<Item = SubscriptionState>) -> Reconciliation {
        Reconciliation {
            unseen: ledger
                .into_iter()
                .map(|state| (state.subscription_id.clone(), state))
                .collect(),
            seen: HashSet::new(),
        }
    }

    /// Compares one of the provider's subscriptions: `None` when the ledger agrees. `provider`
    /// is `None` for an object the ledger does not hold by design (Stripe's `incomplete`, not
    /// yet paid): it only marks `subscription_id` as seen, and is drift only when the ledger
    /// holds it anyway. A subscription listed again (the list moved while it was paged) is
    /// not compared again.
    pub fn provider(
        &mut self,
        subscription_id: &str,
        provider: Option<SubscriptionState>,
    ) -> Option<Drift> {
        if !self.seen.insert(subscription_id.to_owned()) {
            return None;
        }
        let ledger = self.unseen.remove(subscription_id);
        match (ledger, provider) {
            (None, None) => None,
            (None, Some(provider)) => Some(Drift::MissingInLedger { provider }),
            (Some(ledger), None) => Some(Drift::MissingAtProvider { ledger }),
            (Some(ledger), Some(provider)) => {
                let differences = differences(&ledger, &provider);
                (!differences.is_empty()).then_some(Drift::Different {
                    subscription_id: provider.subscription_id,
                    account_id: provider.account_id,
                    differences,
                })
            }
        }
    }

    /// How many provider subscriptions were compared so far.
    pub fn compared(&self) -> usize {
        self.seen.len()
    }

    /// The ledger's subscriptions the provider did not list, by id.
    pub fn finish(self) -> Vec<Drift> {
        self.unseen
            .into_values()
            .map(|ledger| Drift::MissingAtProvider { ledger })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionStatus as S;

    fn state(id: &str, status: SubscriptionStatus) -> SubscriptionState {
        SubscriptionState {
            subscription_id: id.to_owned(),
            account_id: "cus_1".to_owned(),
            status,
            plan_id: "price_basic".to_owned(),
            unit_amount_minor: 1_500,
            currency: "USD".to_owned(),
            quantity: 1,
            current_period_end_unix_seconds: 1_767_225_600,
        }
    }

    #[test]
    fn equal_subscriptions_have_no_drift() {
        let mut reconciliation = Reconciliation::new([state("sub_1", S::Active)]);
        assert_eq!(
            reconciliation.provider("sub_1", Some(state("sub_1", S::Active))),
            None
        );
        assert_eq!(reconciliation.compared(), 1);
        assert_eq!(reconciliation.finish(), Vec::new());
    }

    #[test]
    fn every_field_that_differs_is_named_in_order() {
        let ledger = state("sub_1", S::Active);
        let provider = SubscriptionState {
            status: S::Canceled,
            plan_id: "price_pro".to_owned(),
            unit_amount_minor: 4_900,
            currency: "EUR".to_owned(),
            quantity: 3,
            current_period_end_unix_seconds: 1_769_904_000,
            ..ledger.clone()
        };
        let drift = Reconciliation::new([ledger])
            .provider("sub_1", Some(provider))
            .unwrap();
        assert_eq!(
            drift.to_string(),
            "sub_1\tcus_1\tstatus active -> canceled; price price_basic 1500 -> price_pro 4900; \
             quantity 1 -> 3; currency USD -> EUR; period end 1767225600 -> 1769904000"
        );
        assert_eq!(
            drift.repair_reason(),
            "repair: status active -> canceled; price price_basic 1500 -> price_pro 4900; \
             quantity 1 -> 3; currency USD -> EUR; period end 1767225600 -> 1769904000"
        );
    }

    #[test]
    fn one_difference_alone() {
        let ledger = state("sub_1", S::Active);
        let provider = SubscriptionState {
            quantity: 5,
            ..ledger.clone()
        };
        assert_eq!(
            differences(&ledger, &provider),
            vec![Difference::Quantity {
                ledger: 1,
                provider: 5
            }]
        );
        let provider = SubscriptionState {
            unit_amount_minor: 1_501,
            ..ledger.clone()
        };
        assert_eq!(
            differences(&ledger, &provider),
            vec![Difference::Price {
                ledger: ("price_basic".to_owned(), 1_500),
                provider: ("price_basic".to_owned(), 1_501)
            }]
        );
    }

    #[test]
    fn a_cancelled_subscriptions_period_end_is_history() {
        let ledger = state("sub_1", S::Canceled);
        let provider = SubscriptionState {
            current_period_end_unix_seconds: 1,
            ..ledger.clone()
        };
        assert_eq!(differences(&ledger, &provider), Vec::new());
        let running = SubscriptionState {
            status: S::Active,
            ..provider
        };
        assert_eq!(
            differences(&ledger, &running),
            vec![
                Difference::Status {
                    ledger: S::Canceled,
                    provider: S::Active
                },
                Difference::PeriodEnd {
                    ledger: 1_767_225_600,
                    provider: 1
                }
            ]
        );
    }

    #[test]
    fn missing_on_either_side() {
        let mut reconciliation =
            Reconciliation::new([state("sub_2", S::Active), state("sub_3", S::Canceled)]);
        assert_eq!(
            reconciliation.provider("sub_1", Some(state("sub_1", S::Trialing))),
            Some(Drift::MissingInLedger {
                provider: state("sub_1", S::Trialing)
            })
        );
        // Not held by design (an unpaid `incomplete` subscription) and not in the ledger.
        assert_eq!(reconciliation.provider("sub_4", None), None);
        // Not held by design, yet in the ledger.
        assert_eq!(
            reconciliation.provider("sub_3", None),
            Some(Drift::MissingAtProvider {
                ledger: state("sub_3", S::Canceled)
            })
        );
        let rest = reconciliation.finish();
        assert_eq!(
            rest,
            vec![Drift::MissingAtProvider {
                ledger: state("sub_2", S::Active)
            }]
        );
        assert_eq!(
            rest[0].to_string(),
            "sub_2\tcus_1\tmissing at the provider (ledger: active)"
        );
        assert_eq!(rest[0].repair_reason(), "repair: missing at the provider");
        assert_eq!(
            Drift::MissingInLedger {
                provider: state("sub_1", S::Trialing)
            }
            .to_string(),
            "sub_1\tcus_1\tmissing in the ledger (provider: trialing)"
        );
    }

    #[test]
    fn a_subscription_listed_twice_is_compared_once() {
        let mut reconciliation = Reconciliation::new([state("sub_1", S::Active)]);
        assert_eq!(
            reconciliation.provider("sub_1", Some(state("sub_1", S::Active))),
            None
        );
        assert_eq!(
            reconciliation.provider("sub_1", Some(state("sub_1", S::Active))),
            None
        );
        assert_eq!(
            reconciliation.provider("sub_9", Some(state("sub_9", S::Active))),
            Some(Drift::MissingInLedger {
                provider: state("sub_9", S::Active)
            })
        );
        assert_eq!(
            reconciliation.provider("sub_9", Some(state("sub_9", S::Active))),
            None
        );
        assert_eq!(reconciliation.compared(), 2);
        assert_eq!(reconciliation.finish(), Vec::new());
    }
}
