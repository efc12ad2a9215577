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
//! - A change of [`Projector::schema_version`] or of its DDL (settings included) drops and
//!   rebuilds the schema: read models are disposable, the event table is the truth.
//!
//! - [`StreamStates`] keeps per-customer states between batches for projectors that derive
//!   rows from them, and replays the ones a batch misses from the store in one query.
//!
//! - [`alongside`] runs a projector and the worker acting on its records in one process.
//!
//! It reads the event table only through `ledger-store`, and knows nothing about HTTP.

mod alongside;
mod checkpoint;
pub mod metrics;
mod runtime;
mod states;

use std::collections::BTreeMap;
use std::future::Future;

use ledger_domain::{Event, decode_event};
use ledger_store::{RecordedEvent, Store, StoreError};
use tokio_postgres::Transaction;
use uuid::Uuid;

pub use alongside::{Stop, alongside};
pub use checkpoint::checkpoints;
pub use runtime::{ProjectorConfig, replay, run, run_or_rebuild};
pub use states::{STATES_BYTES_MAX, StreamStates};

/// One event as a projector sees it: the stored envelope and the decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    pub recorded: RecordedEvent,
    pub event: Event,
}

impl Projected {
    /// Decodes the payload of `recorded`.
    pub fn decode(recorded: RecordedEvent) -> Result<Projected, ProjectorError> {
        let event = decode_event(&recorded.event.payload).map_err(|error| {
            ProjectorError::CorruptEvent {
                global_position: recorded.global_position,
                reason: error.to_string(),
            }
        })?;
        Ok(Projected { recorded, event })
    }

    /// The event with its business time (`occurred_at` in Unix microseconds), as
    /// `ledger_domain::evolve` and `Customer::from_events` take it.
    pub fn timed(&self) -> (i64, &Event) {
        (self.recorded.event.occurred_at_unix_micros(), &self.event)
    }
}

/// The events of `stream_ids` before `global_position`, decoded, by stream: what a projector
/// replays, in one query per batch, for the customers it holds no state of in memory.
pub async fn streams_before(
    store: &Store,
    stream_ids: &[Uuid],
    global_position: u64,
) -> Result<BTreeMap<Uuid, Vec<Projected>>, ProjectorError> {
    let mut streams: BTreeMap<Uuid, Vec<Projected>> = BTreeMap::new();
    for recorded in store
        .read_streams_before(stream_ids, global_position)
        .await?
    {
        streams
            .entry(recorded.stream_id)
            .or_default()
            .push(Projected::decode(recorded)?);
    }
    Ok(streams)
}

/// A read model.
pub trait Projector: Send + Sync + 'static {
    /// The projector's name: its schema, its consumer and its progress subject.
    fn name(&self) -> &'static str;

    /// Bump it whenever the meaning of the tables changes: the schema is then dropped and
    /// rebuilt from the event table.
    fn schema_version(&self) -> i32;

    /// DDL creating the projector's tables; run with `search_path` set to its schema. It may
    /// also record the projector's settings: a change of this text rebuilds the schema too.
    fn schema_sql(&self) -> String;

    /// Whether the query service's role `ledger_query` may read the schema (USAGE and SELECT
    /// on its tables, granted whenever the schema is created). Only read models the query API
    /// serves say yes: a schema holding anything else (the notify integrations) stays out of
    /// its reach. `docs/security.md` lists the resulting grants.
    fn readable_by_query(&self) -> bool;

    /// Bounds the states the projector keeps in memory between batches to `bytes_max`
    /// ([`ProjectorConfig::states_bytes_max`]); the runtime calls it before the first batch.
    /// Projectors that keep no states ignore it.
    fn bound_states(&mut self, bytes_max: usize) {
        let _ = bytes_max;
    }

    /// Applies `events` (consecutive global positions, in order) inside `transaction`, which
    /// also advances the checkpoint. Anything it writes must stay inside its schema.
    fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[Projected],
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send;
}

// Not `#[from]`: that would also report the driver's error as the source, and a report of the
// chain would print its text twice.
impl From<tokio_postgres::Error> for ProjectorError {
    fn from(error: tokio_postgres::Error) -> ProjectorError {
        ProjectorError::Database(error)
    }
}

impl ProjectorError {
    /// Whether a person must act before the projector can run again (corrupt or foreign data,
    /// a second instance, a replay refused); every other error passes with time (a server
    /// restarts) and is retried by whoever supervises the projector.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            ProjectorError::CorruptEvent { .. }
                | ProjectorError::ChainMismatch { .. }
                | ProjectorError::Running { .. }
                | ProjectorError::Apply { .. }
                | ProjectorError::Store(StoreError::Corrupt { .. } | StoreError::InvalidUrl { .. })
        )
    }
}

/// Why a projector stopped. Restarting resumes from the last committed checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PostgreSQL: {}", ledger_store::error_text(.0))]
    Database(tokio_postgres::Error),
    #[error("NATS: {0}")]
    Nats(String),
    /// `ledger replay` found the projector running in another process: a rebuild next to it
    /// would split its work. Stop that instance first (or replay there).
    #[error(
        "projector {projector} is running in another process: {holder}. Stop it (or the \
         projector from its list), then run `ledger replay {projector}`, which rebuilds it and \
         keeps it running; start the other process again without it, or after the replay ends"
    )]
    Running {
        projector: &'static str,
        holder: ledger_store::LockHolder,
    },
    /// The connection holding the projector's lock closed (PostgreSQL restarted): another
    /// instance may take over, so this one stopped applying events.
    #[error("lost the lock of projector {projector} (its PostgreSQL connection closed)")]
    LockLost { projector: &'static str },
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
