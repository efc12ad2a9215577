//! `ledger run projector` and `ledger replay`: the read models, several to a process.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, try_join_all};
use indicatif::{MultiProgress, ProgressBar};
use ledger_domain::{ChurnRecognition, DiscountsInMrr, MrrRules, UnpaidSubscriptions};
use ledger_projector::{Projector, ProjectorConfig, ProjectorError};
use ledger_store::Store;
use projector_revenue::RevenueSettings;

use crate::notify::EgressArgs;
use ledger_devenv::progress;

/// The read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProjectorName {
    /// Schema `customers`: one row per customer, subscriptions, totals, timeline.
    Customers,
    /// Schema `revenue`: MRR, movements, churn and cohorts per currency (docs/metrics.md).
    Revenue,
    /// Schema `notify`: the integrations; decides notifications into the outbox, and runs the
    /// delivery worker in the same process (docs/notifications.md).
    Notify,
}

/// Which projectors to run, and how.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProjectorsArgs {
    /// The read models, run side by side in this process.
    #[arg(required = true)]
    pub(crate) projectors: Vec<ProjectorName>,
    /// Events read from the event table and applied per transaction while catching up (a
    /// rebuild). Larger pages write each customer's rows fewer times; up to three pages per
    /// projector are in memory at once, about 1 KB per event.
    #[arg(long, env = "LEDGER_PROJECTOR_PAGE_EVENTS", default_value_t = ProjectorConfig::default().table_page_events, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) page_events: u64,
    /// MiB of customer states each projector keeps in memory between batches, by their
    /// estimated size (a state grows with its customer's history); past it the projector
    /// empties them and reads the states it needs from the event table again.
    #[arg(long, env = "LEDGER_PROJECTOR_STATES_MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub(crate) states_mib: u64,
    #[command(flatten)]
    pub(crate) revenue: RevenueArgs,
    #[command(flatten)]
    pub(crate) egress: EgressArgs,
}

/// The revenue read model's definitions (docs/metrics.md). They are stored with it; starting
/// it with other values rebuilds it from the event table.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RevenueArgs {
    /// When a cancellation takes MRR to zero: `effective` (when it takes effect, at the period
    /// end for a cancellation at period end) or `requested`.
    #[arg(
        long,
        env = "LEDGER_REVENUE_CHURN_RECOGNITION",
        default_value = "effective"
    )]
    churn_recognition: ChurnRecognition,
    /// Count a subscription past due for this many days as churned until it recovers;
    /// unset: past-due subscriptions count until they are cancelled.
    #[arg(long, env = "LEDGER_REVENUE_PAST_DUE_CHURN_DAYS", value_parser = clap::value_parser!(u16).range(1..))]
    past_due_churn_days: Option<u16>,
    /// Discounts that reduce MRR: `none`, `recurring` (forever and repeating ones) or `all`.
    #[arg(long, env = "LEDGER_REVENUE_DISCOUNTS", default_value = "recurring")]
    mrr_discounts: DiscountsInMrr,
    /// Whether a subscription never paid counts MRR while past due (a trial whose first
    /// charge fails): `excluded` or `counted`.
    #[arg(
        long,
        env = "LEDGER_REVENUE_UNPAID_SUBSCRIPTIONS",
        default_value = "excluded"
    )]
    unpaid_subscriptions: UnpaidSubscriptions,
}

impl RevenueArgs {
    pub(crate) fn settings(&self) -> RevenueSettings {
        RevenueSettings {
            rules: MrrRules {
                discounts: self.mrr_discounts,
                churn_recognition: self.churn_recognition,
                unpaid_subscriptions: self.unpaid_subscriptions,
            },
            past_due_churn_days: self.past_due_churn_days,
        }
    }
}

/// Runs `args.projectors` (replaying them first with `replay`) until `shutdown`, with a
/// progress bar each while they catch up with the table.
pub(crate) async fn run(
    store: Store,
    database_url: &str,
    nats: async_nats::Client,
    config: &ProjectorConfig,
    args: &ProjectorsArgs,
    replay: bool,
) -> anyhow::Result<()> {
    let table_last = store.last_position().await?;
    let delivery = args.egress.delivery_config()?;
    let bars = MultiProgress::new();
    let runs: Vec<BoxFuture<'_, anyhow::Result<()>>> = args
        .projectors
        .iter()
        .map(|name| {
            let message = match name {
                ProjectorName::Customers => "customers",
                ProjectorName::Revenue => "revenue",
                ProjectorName::Notify => "notify",
            };
            let bar = (
                bars.add(progress::events_bar(table_last, message)),
                table_last,
            );
            let services = (database_url, &nats, config);
            match name {
                ProjectorName::Customers => {
                    supervise_projector(message, replay, bar, services, || {
                        projector_customers::CustomersProjector::new(store.clone())
                    })
                }
                ProjectorName::Revenue => {
                    supervise_projector(message, replay, bar, services, || {
                        projector_revenue::RevenueProjector::new(
                            store.clone(),
                            args.revenue.settings(),
                        )
                    })
                }
                ProjectorName::Notify => supervise(
                    message,
                    replay,
                    bar,
                    |rebuild, shutdown, progress| {
                        projector_notify::run(
                            store.clone(),
                            database_url,
                            nats.clone(),
                            config,
                            delivery.clone(),
                            projector_notify::Rules::default(),
                            rebuild,
                            shutdown,
                            progress,
                        )
                    },
                    projector_notify::NotifyError::needs_operator,
                )
                .boxed(),
            }
        })
        .collect();
    try_join_all(runs).await?;
    Ok(())
}

/// Runs one projector (through `attempt`) until Ctrl-C / SIGTERM, again after every failure
/// that waiting can fix (PostgreSQL or NATS gone), with capped backoff (docs/decisions/0020).
/// A replay rebuilds until an attempt has committed its first batch; later attempts resume
/// from the checkpoint.
pub(crate) async fn supervise<E, Fut>(
    name: &'static str,
    replay: bool,
    (bar, table_last): (ProgressBar, u64),
    mut attempt: impl FnMut(bool, BoxFuture<'static, ()>, Box<dyn FnMut(u64) + Send>) -> Fut,
    needs_operator: impl Fn(&E) -> bool,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>>,
{
    let bar = Arc::new(Mutex::new(progress_bar(name, bar, table_last)));
    let rebuilt = Arc::new(AtomicBool::new(false));
    ledger_bus::retry::supervise(
        name,
        crate::shutdown(),
        |running| {
            let rebuild = replay && !rebuilt.load(Ordering::Relaxed);
            let (bar, rebuilt, up) = (bar.clone(), rebuilt.clone(), running.clone());
            let progress = move |global_position: u64| {
                up.up();
                rebuilt.store(true, Ordering::Relaxed);
                if let Ok(mut bar) = bar.lock() {
                    bar(global_position);
                }
            };
            attempt(rebuild, running.stopped().boxed(), Box::new(progress))
        },
        needs_operator,
    )
    .await?;
    Ok(())
}

/// [`supervise`] of a projector of the runtime, made anew by `make` for each attempt.
fn supervise_projector<'a, P: Projector + 'a>(
    name: &'static str,
    replay: bool,
    bar: (ProgressBar, u64),
    (database_url, nats, config): (&'a str, &'a async_nats::Client, &'a ProjectorConfig),
    make: impl Fn() -> P + Send + 'a,
) -> BoxFuture<'a, anyhow::Result<()>> {
    supervise(
        name,
        replay,
        bar,
        move |rebuild, shutdown, progress| {
            let (projector, nats) = (make(), nats.clone());
            ledger_projector::run_or_rebuild(
                projector,
                database_url,
                nats,
                config,
                shutdown,
                progress,
                rebuild,
            )
        },
        ProjectorError::needs_operator,
    )
    .boxed()
}

/// Moves `bar` with the checkpoint until the projector catches up with the table.
fn progress_bar(name: &'static str, bar: ProgressBar, table_last: u64) -> impl FnMut(u64) + Send {
    move |global_position: u64| {
        if !bar.is_finished() {
            bar.set_position(global_position.min(table_last));
            if global_position >= table_last {
                bar.finish();
                tracing::info!(projector = name, global_position, "caught up; live");
            }
        }
    }
}
