//! Monitoring notifications: read model `notify` and its delivery worker.
//!
//! - Integrations (Slack incoming webhooks, signed webhooks, email over SMTP) are data in the
//!   ledger: their own streams of `integration_*` events. The projector keeps the current ones
//!   in schema `notify`.
//! - For each customer event the projector derives the notifications it means
//!   ([`NotificationKind`], defined in `docs/notifications.md`) from the customer's aggregate
//!   before and after it, and writes one delivery per interested integration into the outbox
//!   (`notify_delivery.deliveries`) in the batch's transaction, with the checkpoint: a crash
//!   neither loses nor repeats a decision. A delivery's id is a UUID v5 of the integration and
//!   the notification, and the outbox survives a rebuild of `notify`, so a rebuild decides the
//!   same ids again and sends nothing twice.
//! - The worker ([`run_worker`]) leases due deliveries (`FOR UPDATE SKIP LOCKED`, the oldest
//!   pending one per integration, so each integration hears in order), sends them, logs every
//!   attempt (status code, error, latency) and retries with exponential backoff and jitter
//!   ([`DeliveryConfig`]) until the dead letter. Receivers dedupe on the delivery id.
//!
//! It writes only in `notify` and `notify_delivery`, reads events only as the projector
//! runtime hands them (and customers' earlier events through the store), and knows nothing
//! about NATS commands or the HTTP API.

mod admin;
mod derive;
mod egress;
mod integration;
mod kind;
mod outbox;
mod projector;
mod render;
mod send;
pub mod signature;
mod worker;

use std::future::Future;

use ledger_projector::{ProjectorConfig, ProjectorError};
use ledger_store::Store;
use uuid::Uuid;

pub use admin::{
    DELIVERY_ROWS_MAX, DeliveryRow, IntegrationRow, TestOutcome, deliveries, integrations,
    send_test,
};
pub use derive::Rules;
pub use egress::{AllowedTarget, EgressPolicy, EgressRefused, SMTP_PORTS_DEFAULT};
pub use kind::NotificationKind;
pub use outbox::{ensure_outbox, retry};
pub use projector::NotifyProjector;
pub use worker::{DELIVERIES, DeliveryConfig, run_worker};

/// Why the worker or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("PostgreSQL: {}", ledger_store::error_text(.0))]
    Database(tokio_postgres::Error),
    #[error("the HTTP client: {0}")]
    Http(String),
    /// A send task panicked or was cancelled.
    #[error("a send task failed: {0}")]
    SendTask(String),
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    /// No such integration in the projection: check `ledger notify list`, and that
    /// `ledger run projector notify` has caught up.
    #[error(
        "no integration {0} in the notify projection: check `ledger notify list` and that the notify projector runs"
    )]
    UnknownIntegration(Uuid),
}

// Not `#[from]`: that would also report the driver's error as the source, and a report of the
// chain would print its text twice.
impl From<tokio_postgres::Error> for NotifyError {
    fn from(error: tokio_postgres::Error) -> NotifyError {
        NotifyError::Database(error)
    }
}

impl NotifyError {
    /// Whether a person must act before the projector and worker can run again (the HTTP
    /// client's configuration, or what [`ProjectorError::needs_operator`] flags); every other
    /// error passes with time and is retried by whoever supervises them.
    pub fn needs_operator(&self) -> bool {
        match self {
            NotifyError::Projector(error) => error.needs_operator(),
            NotifyError::Http(_) => true,
            _ => false,
        }
    }
}

/// Runs the projector (or, with `replay`, rebuilds it first) and the delivery worker in this
/// process until `shutdown` completes; both stop, the worker after its in-flight sends.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    database_url: &str,
    nats: async_nats::Client,
    projector_config: &ProjectorConfig,
    delivery_config: DeliveryConfig,
    rules: Rules,
    replay: bool,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(u64),
) -> Result<(), NotifyError> {
    let projector = NotifyProjector::new(store, rules);
    let (projected, delivered) = ledger_projector::alongside(
        shutdown,
        |stop| {
            ledger_projector::run_or_rebuild(
                projector,
                database_url,
                nats,
                projector_config,
                stop.wait(),
                progress,
                replay,
            )
        },
        |stop| run_worker(database_url, delivery_config, stop.wait()),
    )
    .await;
    projected?;
    delivered
}
