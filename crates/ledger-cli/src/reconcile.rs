//! `ledger sync stripe --check [--repair]` and `ledger run provider-sync --reconcile-every`:
//! the reconciliation of a Stripe account with the customers read model (docs/connectors.md,
//! "Reconciliation"; the comparison is `ledger_connectors::reconcile`, the reading and the
//! repair `ledger_sync`).

use std::process::ExitCode;
use std::time::Duration;

use ledger_connectors::reconcile::{Difference, Drift, SubscriptionState};
use ledger_domain::Provider;
use ledger_sync::{Found, StripeReader};

use ledger_connectors::printable;

/// A PostgreSQL advisory lock key held during a round, so two processes never reconcile at
/// once ("reconcile" in ASCII).
const RECONCILE_LOCK_KEY: i64 = 0x7265_636f_6e63_696c;

/// What one round of check (and repair) came to.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// The drifts found first.
    pub(crate) found: Vec<Found>,
    /// The repair, when asked for: its appended positions and the drifts left afterwards.
    pub(crate) repaired: Option<(ledger_sync::Repair, Vec<Found>)>,
}

/// Checks (and with `repair`, repairs then checks again) the Stripe account against the
/// ledger. `None` when another process holds the round's lock. `print` gets each drift line
/// as it is found, first check and second.
pub(crate) async fn round(
    database_url: &str,
    client: &ledger_bus::Client,
    reader: &StripeReader,
    repair: bool,
    print: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Option<Round>> {
    let database = crate::database::connect(database_url).await?;
    let locked: bool = database
        .query_one("SELECT pg_try_advisory_lock($1)", &[&RECONCILE_LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let outcome = check_and_repair(&database, client, reader, repair, print).await;
    // Freed here rather than when the connection drops, which PostgreSQL notices only a moment
    // later: a round started right after this one ends must find the lock free.
    if let Err(error) = database
        .execute("SELECT pg_advisory_unlock($1)", &[&RECONCILE_LOCK_KEY])
        .await
    {
        tracing::debug!(%error, "reconciliation lock released with its connection");
    }
    outcome.map(Some)
}

async fn check_and_repair(
    database: &tokio_postgres::Client,
    client: &ledger_bus::Client,
    reader: &StripeReader,
    repair: bool,
    print: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Round> {
    let found = check_once(database, reader, print).await?;
    let mut round = Round {
        found,
        repaired: None,
    };
    if repair && !round.found.is_empty() {
        let repaired = ledger_sync::repair_stripe(reader, client, &round.found).await?;
        let counts = &repaired.changes.counts;
        print(&format!(
            "repair (correlation id {}): {} objects imported: {} appended ({} events), {} \
             duplicate, {} ignored, {} stale, {} failed, {} waiting, {} unreadable; {} not \
             repairable (the provider does not hold them)",
            repaired.correlation_id,
            counts.objects,
            counts.appended,
            repaired.changes.global_positions.len(),
            counts.duplicate,
            counts.ignored,
            counts.stale,
            counts.failed,
            counts.waiting,
            counts.unreadable,
            repaired.not_repairable.len(),
        ));
        print("remaining:");
        let remaining = check_once(database, reader, print).await?;
        round.repaired = Some((repaired, remaining));
    }
    Ok(round)
}

/// One check: waits for the read model, compares, prints each drift and a summary line.
async fn check_once(
    database: &tokio_postgres::Client,
    reader: &StripeReader,
    print: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Vec<Found>> {
    ledger_sync::wait_for_read_model(database).await?;
    let ledger = ledger_sync::ledger_subscriptions(database, Provider::Stripe).await?;
    let mut on_drift = |drift: &Drift| print(&drift_line(drift));
    let check = ledger_sync::check_stripe(reader, ledger, &mut on_drift).await?;
    print(&format!(
        "compared {} Stripe subscriptions: {} drift{}{}",
        check.compared,
        check.found.len(),
        if check.found.len() == 1 { "" } else { "s" },
        if check.unreadable > 0 {
            format!(", {} unreadable (see the log)", check.unreadable)
        } else {
            String::new()
        }
    ));
    Ok(check.found)
}

impl Round {
    /// The drifts left at the end: after the repair when one ran, else those found.
    pub(crate) fn remaining(&self) -> usize {
        match &self.repaired {
            Some((_, remaining)) => remaining.len(),
            None => self.found.len(),
        }
    }
}

/// `ledger sync stripe --check [--repair]`: exit 0 when no drift remains, 1 otherwise.
pub(crate) async fn check(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    reader: &StripeReader,
    repair: bool,
) -> anyhow::Result<ExitCode> {
    let client = ledger_bus::Client::new(nats, bus);
    let mut print = |line: &str| println!("{line}");
    let Some(round) = round(database_url, &client, reader, repair, &mut print).await? else {
        anyhow::bail!(
            "another reconciliation is running (ledger run provider-sync --reconcile-every, or \
             another ledger sync --check): try again when it ends"
        );
    };
    Ok(if round.remaining() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--reconcile-every`: a round of check and repair every `every`, the first one `every` after
/// start, until the process stops (the task is aborted; a delivery cut off is recorded or not,
/// never twice). A round never overlaps another (one after the other here; the advisory lock
/// across processes). Drift found and repaired is logged.
pub(crate) async fn every(
    database_url: String,
    client: ledger_bus::Client,
    reader: StripeReader,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let mut lines = Vec::new();
        let mut print = |line: &str| lines.push(line.to_owned());
        match round(&database_url, &client, &reader, true, &mut print).await {
            Ok(None) => tracing::info!("reconciliation skipped: another process is running one"),
            Ok(Some(round)) => {
                for line in &lines {
                    tracing::info!(line, "reconciliation");
                }
                if round.found.is_empty() {
                    tracing::info!("reconciliation: no drift");
                } else {
                    tracing::warn!(
                        found = round.found.len(),
                        remaining = round.remaining(),
                        "reconciliation found drift and repaired it"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reconciliation failed; next round as planned"
                );
            }
        }
    }
}

/// A drift's line (tab-separated: subscription, account, what differs) with the control
/// characters of the provider's text (its ids, price and currency) escaped: it can neither add
/// a row or a column to the listing nor reach the operator's terminal as an escape sequence.
fn drift_line(drift: &Drift) -> String {
    let state = |state: &SubscriptionState| SubscriptionState {
        subscription_id: printable(&state.subscription_id),
        account_id: printable(&state.account_id),
        plan_id: printable(&state.plan_id),
        currency: printable(&state.currency),
        ..state.clone()
    };
    let difference = |difference: &Difference| match difference {
        Difference::Price { ledger, provider } => Difference::Price {
            ledger: (printable(&ledger.0), ledger.1),
            provider: (printable(&provider.0), provider.1),
        },
        Difference::Currency { ledger, provider } => Difference::Currency {
            ledger: printable(ledger),
            provider: printable(provider),
        },
        other => other.clone(),
    };
    let escaped = match drift {
        Drift::MissingInLedger { provider } => Drift::MissingInLedger {
            provider: state(provider),
        },
        Drift::MissingAtProvider { ledger } => Drift::MissingAtProvider {
            ledger: state(ledger),
        },
        Drift::Different {
            subscription_id,
            account_id,
            differences,
        } => Drift::Different {
            subscription_id: printable(subscription_id),
            account_id: printable(account_id),
            differences: differences.iter().map(difference).collect(),
        },
    };
    escaped.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drift_shows_the_providers_text_with_its_control_characters_escaped() {
        let drift = Drift::Different {
            subscription_id: "sub_1\nforged".to_owned(),
            account_id: "cus_1\t\u{1b}[31mred".to_owned(),
            differences: vec![Difference::Price {
                ledger: ("price_a".to_owned(), 100),
                provider: ("price_b\r".to_owned(), 100),
            }],
        };
        let line = drift_line(&drift);
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert_eq!(line.matches('\t').count(), 2, "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(
            line.starts_with("sub_1\\nforged\tcus_1\\t\\u{1b}[31mred\tprice price_a"),
            "{line:?}"
        );
        assert!(line.ends_with("price_b\\r 100"), "{line:?}");
    }
}
