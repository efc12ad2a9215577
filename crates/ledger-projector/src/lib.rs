//! The projector runtime: every read model is a [`Projector`] run by [`run`].
//!
//! - A projector owns one PostgreSQL schema (its name). Its checkpoint (the last global
//!   position applied) lives in that schema and is written in the same transaction as the
//!   batch it covers, so a crash can neither lose nor repeat an event's effect.
//! - Events come from the JetStream stream through a durable pull consumer, in batches.
//!   Positions at or below the checkpoint are skipped (redeliveries); a position beyond
//!   checkpoint + 1 means a gap, which is filled from the event table first. Messages are
//!   acknowledged after the commit.
//! - On start the runtime catches up from the table in large pages, to the table's end, before
//!   it consumes live. [`replay`] drops the schema first: a rebuild from position 1.
//! - The checkpoint also holds its event's chain hash; every applied event must link to it
//!   (`prev_hash`), so a stream filled from another event table is refused, not projected.
//! - After each commit it announces its position on `<prefix>.projections.<name>`.
//! - A change of [`Projector::schema_version`] drops and rebuilds the schema: read models
//!   are disposable, the event table is the truth.
//!
//! - [`CustomerStates`] keeps customers' aggregates between batches (bounded cache, replayed
//!   from the store on a miss) for projectors that derive rows from them.
//!
//! It reads the event table only through `ledger-store`, and knows nothing about HTTP.

mod checkpoint;
mod customers;
mod runtime;

use std::future::Future;

use ledger_domain::Event;
use ledger_store::{RecordedEvent, StoreError};
use tokio_postgres::Transaction;

pub use customers::CustomerStates;
pub use runtime::{ProjectorConfig, replay, run};

/// One event as a projector sees it: the stored envelope and the decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    pub recorded: RecordedEvent,
    pub event: Event,
}

/// A read model.
pub trait Projector: Send + Sync + 'static {
    /// The projector's name: its schema, its consumer and its progress subject.
    fn name(&self) -> &'static str;

    /// Bump it whenever [`Projector::schema_sql`] or the meaning of the tables changes: the
    /// schema is then dropped and rebuilt from the event table.
    fn schema_version(&self) -> i32;

    /// DDL creating the projector's tables; run with `search_path` set to its schema.
    fn schema_sql(&self) -> &'static str;

    /// Applies `events` (consecutive global positions, in order) inside `transaction`, which
    /// also advances the checkpoint. Anything it writes must stay inside its schema.
    fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send;
}

/// Why a projector stopped. Restarting resumes from the last committed checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("NATS: {0}")]
    Nats(String),
    /// An event on the stream or in the table cannot be decoded.
    #[error("event at global position {global_position} cannot be decoded: {reason}")]
    CorruptEvent {
        global_position: u64,
        reason: String,
    },
    /// Another instance advanced the checkpoint under this one: run one instance per
    /// projector.
    #[error(
        "the checkpoint of projector {projector} moved from {expected} under this instance: run one instance per projector"
    )]
    CheckpointMoved {
        projector: &'static str,
        expected: u64,
    },
    /// An event does not continue the hash chain from the checkpoint: the stream belongs to
    /// another event table (check LEDGER_STREAM_NAME and DATABASE_URL) or events are missing.
    #[error(
        "event at global position {global_position} does not continue the hash chain of projector \
         {projector}: the stream belongs to another event table (check LEDGER_STREAM_NAME and \
         DATABASE_URL) or events are missing"
    )]
    ChainMismatch {
        projector: &'static str,
        global_position: u64,
    },
    /// The projector's own logic failed on an event.
    #[error("projector {projector} failed: {reason}")]
    Apply {
        projector: &'static str,
        reason: String,
    },
}
