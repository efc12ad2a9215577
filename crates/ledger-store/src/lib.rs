//! The append-only PostgreSQL event store: the ledger's single source of truth.
//!
//! - [`Writer`] appends batches of events. Only one writer exists at a time: it holds a
//!   PostgreSQL advisory lock on its own connection and appends on that same connection, so two
//!   writers can never interleave positions. It assigns gap-free `global_position`s and
//!   `stream_version`s, checks expected versions, records idempotency keys and the customers'
//!   unique keys, and extends the SHA-256 hash chain, all in one transaction per batch.
//! - [`Store`] reads: a stream, everything from a position (paged), idempotency and unique-key
//!   look-ups, and verifies the hash chain.
//!
//! - The provider inbox (`provider_inbox`): the writer records each verified webhook delivery
//!   with the batch its events are appended in ([`Writer::append_with_inbox`]); [`Store`]
//!   reads it back ([`Store::inbox_rows`]).
//!
//! This crate stores opaque payload bytes: it never decodes or validates an event's meaning
//! (that is `ledger-domain`). It knows nothing about NATS or HTTP.

mod error;
mod event;
mod hash;
mod inbox;
mod projector_lock;
mod read;
mod sync_cursors;
mod verify;
mod writer;

pub use error::{AppendError, AppendRejection, StoreError, error_text};
pub use event::{
    AppendRequest, Committed, ExpectedVersion, NewEvent, RecordedEvent, RequestFingerprint,
    StoredRequest,
};
pub use hash::{GENESIS_HASH, Hash};
pub use inbox::{
    DeliveryLookups, INBOX_ROWS_MAX, InboxFilter, InboxOutcome, InboxRow, InboxSource, InboxWrite,
    NewInboxRow, WaitingDelivery,
};
pub use projector_lock::{LockHolder, ProjectorLock};
pub use sync_cursors::SyncCursor;
pub use verify::{ChainBreak, ChainVerification, CopyVerdict, HeadCopy, TableHead};
pub use writer::{Writer, refused_delivery_reason, text_problem};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Connections the read pool keeps at most.
const POOL_CONNECTIONS_MAX: usize = 16;

/// Advisory lock namespace of the ledger ("LEDG"); the second key says what is locked.
const ADVISORY_LOCK_NAMESPACE: i32 = 0x4c45_4447;
/// Second advisory key of the migration lock (the writer lock uses the partition number, >= 0).
const ADVISORY_LOCK_MIGRATIONS: i32 = -1;

/// Applies the event store's migrations (`migrations/` at the workspace root). Safe to run
/// concurrently from several processes: they serialise on an advisory lock.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&ADVISORY_LOCK_NAMESPACE, &ADVISORY_LOCK_MIGRATIONS],
        )
        .await?;
    let report = embedded::migrations::runner().run_async(client).await;
    client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&ADVISORY_LOCK_NAMESPACE, &ADVISORY_LOCK_MIGRATIONS],
        )
        .await?;
    let report = report.map_err(|error| StoreError::Migration(Box::new(error)))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}

/// Read access to the event store, and the factory of the [`Writer`].
#[derive(Clone, Debug)]
pub struct Store {
    config: tokio_postgres::Config,
    pool: Pool,
}

impl Store {
    /// Connects a pool to the database at `database_url`
    /// (`postgres://user@host:port/dbname`). Connections are opened lazily.
    pub fn connect(database_url: &str) -> Result<Store, StoreError> {
        let mut config: tokio_postgres::Config =
            database_url
                .parse()
                .map_err(|error: tokio_postgres::Error| StoreError::InvalidUrl {
                    reason: error.to_string(),
                })?;
        // Statements are prepared once per connection, often while the table is still small.
        // A generic plan cached then (a sequential scan of an empty table) would stay in use
        // as the table grows to millions of rows: plan every execution with the current size.
        let options = match config.get_options() {
            Some(options) => format!("{options} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_CONNECTIONS_MAX)
            .build()
            .map_err(|error| StoreError::Connect {
                address: error::address(&config),
                reason: error.to_string(),
            })?;
        Ok(Store { config, pool })
    }

    /// Opens a dedicated connection and waits (as long as it takes) for the writer lock of
    /// partition 0. The lock is released when the [`Writer`] is dropped or its process dies.
    pub async fn writer(&self) -> Result<Writer, StoreError> {
        Writer::acquire(&self.config, 0).await
    }

    /// Takes the lock of projector `name` on a dedicated connection, waiting (as long as it
    /// takes) while another instance holds it: one instance per projector.
    pub async fn lock_projector(&self, name: &str) -> Result<ProjectorLock, StoreError> {
        projector_lock::acquire(&self.config, name).await
    }

    /// Takes the lock of projector `name` if it is free; otherwise names the holder.
    pub async fn try_lock_projector(
        &self,
        name: &str,
    ) -> Result<Result<ProjectorLock, LockHolder>, StoreError> {
        projector_lock::try_acquire(&self.config, name).await
    }

    pub(crate) async fn connection(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::pool(&self.config, error))
    }
}
