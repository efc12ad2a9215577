use uuid::Uuid;

use crate::event::ExpectedVersion;

/// A failure of the store itself (database, connection, corrupt data). The caller should retry
/// later or alert an operator; nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL {url:?}: {source}; expected postgres://user@host:port/dbname")]
    InvalidUrl {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(
        "cannot get a PostgreSQL connection: {0}; is the server running and DATABASE_URL right?"
    )]
    Pool(String),
    #[error("applying migrations failed: {0}")]
    Migration(Box<refinery::Error>),
    /// Stored data breaks an invariant (gap in positions, unreadable column). Run
    /// `ledger audit verify` to locate tampering.
    #[error(
        "stored event at global position {global_position} is invalid: {reason}; run `ledger audit verify`"
    )]
    Corrupt {
        global_position: u64,
        reason: String,
    },
}

/// Why one request of a batch was not appended. The rest of the batch is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejection {
    /// Optimistic concurrency: the stream moved on since the caller read it (HTTP 409).
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    Conflict {
        stream_id: Uuid,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// An email or provider account already belongs to another customer (HTTP 409).
    #[error("{unique_key} already belongs to customer {owner}")]
    UniqueKeyTaken { unique_key: String, owner: Uuid },
    /// The idempotency key was first used for another request (another customer, command,
    /// body or business time): nothing was appended, and the first request's customer and
    /// events are not revealed. Send the new request with a new key (HTTP 422).
    #[error(
        "idempotency key {idempotency_key:?} was already used for a different request: \
         send a new request with a new key"
    )]
    IdempotencyKeyReused { idempotency_key: String },
    /// The request itself is malformed (HTTP 422); `reason` names the field.
    #[error("invalid append request: {reason}")]
    Invalid { reason: String },
}

/// The outcome of appending a single request.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Rejected(#[from] AppendRejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}
