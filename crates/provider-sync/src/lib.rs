//! Provider-sync: the process manager that carries the ledger's internal requests out at the
//! payment providers and records their answers (docs/connectors.md, "Outbound:
//! provider-sync").
//!
//! - The projector [`ProviderSyncProjector`] (schema `provider_sync`, a consumer of the event
//!   stream with its checkpoint, like every read model) remembers which provider holds each
//!   subscription (the provider of its `subscription_started`) and each payment (that of its
//!   `payment_succeeded`) and, for every `cancellation_requested` or `refund_requested` issued
//!   `internal` for a subscription held, or a payment collected, at Stripe, PayPal or Xendit,
//!   writes a call into the outbox `provider_sync_outbox.calls` (migrations V8, V11) in the
//!   batch's transaction. A call's id is a UUID v5 of the request event's id, and the outbox
//!   survives a rebuild, so a rebuild decides the same calls and calls nothing twice. A
//!   request answered in the ledger before its call was made (the provider's own webhook, a
//!   reactivation) settles the call: nothing is sent.
//! - The worker ([`run_worker`]) leases due calls, calls the provider (an idempotency key
//!   derived from the request event on every request; a timeout per request; a cap on
//!   concurrent requests per provider; transient failures retried with exponential backoff
//!   and jitter, honouring `Retry-After`; 4xx refusals not retried), logs every attempt in
//!   `provider_sync_outbox.attempts`, records the answer, then sends the command that states
//!   it (`confirm_cancellation` or `fail_cancellation`, `refund_payment` naming the request or
//!   `fail_refund`) through the writer with an
//!   idempotency key derived from the call. A crash between the call and its record repeats
//!   the call with the same key, after asking the provider whether it already happened.
//!
//! It writes only in `provider_sync` and `provider_sync_outbox`, reads events only as the
//! projector runtime hands them, and talks to the providers only at the configured base URLs.

mod admin;
mod apis;
mod outbox;
mod projector;
mod worker;

use std::future::Future;

use ledger_projector::{ProjectorConfig, ProjectorError};

pub use admin::{ATTEMPT_ROWS_MAX, AttemptRow, attempts};
pub use apis::{ApiSecret, PaypalApi, PaypalToken, ProviderApis, StripeApi, XenditApi};
// Shared with the backfill (`ledger-sync`), which reads the same providers' APIs.
pub use apis::{
    body_start, check_api_base, error_chain, http_client, retry_after, utf8_percent_encode,
};
pub use projector::ProviderSyncProjector;
pub use worker::{ATTEMPTS, SyncConfig, run_worker};

/// Why provider-sync stopped, or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("PostgreSQL: {}", ledger_store::error_text(.0))]
    Database(tokio_postgres::Error),
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    /// The configuration cannot work (no provider, a key missing, a base URL that does not
    /// answer): fix it and start again.
    #[error("{0}")]
    Config(String),
    /// The connection holding the worker's lock closed (PostgreSQL restarted): another
    /// process may take over, so this worker stopped calling.
    #[error("lost the provider-sync worker lock (its PostgreSQL connection closed)")]
    LockLost,
}

// Not `#[from]`: that would also report the driver's error as the source, and a report of the
// chain would print its text twice.
impl From<tokio_postgres::Error> for SyncError {
    fn from(error: tokio_postgres::Error) -> SyncError {
        SyncError::Database(error)
    }
}

impl SyncError {
    /// Whether a person must act before provider-sync can run again (its configuration, or
    /// what [`ProjectorError::needs_operator`] flags); every other error passes with time and
    /// is retried by whoever supervises it.
    pub fn needs_operator(&self) -> bool {
        match self {
            SyncError::Projector(error) => error.needs_operator(),
            SyncError::Config(_) => true,
            _ => false,
        }
    }
}

/// Runs the projector (or, with `replay`, rebuilds it first) and the worker in this process
/// until `shutdown` completes. The worker starts calling once the projector has caught up
/// with the table as it was at start, so requests already answered in the history are
/// settled before anything is sent. Both stop, the worker after its in-flight calls.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    database_url: &str,
    nats: async_nats::Client,
    projector_config: &ProjectorConfig,
    apis: ProviderApis,
    config: SyncConfig,
    replay: bool,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(u64),
) -> Result<(), SyncError> {
    let store = ledger_store::Store::connect(database_url).map_err(ProjectorError::from)?;
    let table_last = store.last_position().await.map_err(ProjectorError::from)?;
    let commands = ledger_bus::Client::new(nats.clone(), projector_config.bus.clone());
    let (projected, called) = ledger_projector::alongside(
        shutdown,
        |stop| {
            ledger_projector::run_or_rebuild(
                ProviderSyncProjector,
                database_url,
                nats,
                projector_config,
                stop.wait(),
                progress,
                replay,
            )
        },
        |stop| {
            run_worker(
                database_url,
                apis,
                commands,
                config,
                table_last,
                stop.wait(),
            )
        },
    )
    .await;
    projected?;
    called
}
