use uuid::Uuid;

use crate::event::ExpectedVersion;

/// A failure of the store itself (database, connection, corrupt data). The caller should retry
/// later or alert an operator; nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse; it is not shown, since it may hold a password.
    #[error("invalid database URL: {reason}; expected postgres://user@host:port/dbname")]
    InvalidUrl { reason: String },
    /// A statement failed (the text is the server's or the driver's; for a missing table or
    /// column, with a hint that the schema may predate this ledger).
    #[error("PostgreSQL: {}{}", error_text(.0), schema_hint(.0))]
    Database(tokio_postgres::Error),
    /// No connection to the server at `address` (`host:port`): it refused, is unreachable,
    /// or answered with an error of its own (such as "the database system is starting up").
    #[error("cannot connect to PostgreSQL at {address}: {reason}")]
    Connect { address: String, reason: String },
    /// A migration failed (the text ends with the server's reason); it was rolled back.
    #[error("applying migrations failed: {}", error_text(.0.as_ref()))]
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

// Not `#[from]`: that would also report the driver's error as the source, and a report of
// the chain would print its text twice.
impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> StoreError {
        StoreError::Database(error)
    }
}

impl StoreError {
    /// Connecting to the server of `config` failed with `error`.
    pub(crate) fn connecting(
        config: &tokio_postgres::Config,
        error: &tokio_postgres::Error,
    ) -> StoreError {
        StoreError::Connect {
            address: address(config),
            reason: connect_reason(error),
        }
    }

    /// The read pool could not hand out a connection to the server of `config`.
    pub(crate) fn pool(
        config: &tokio_postgres::Config,
        error: deadpool_postgres::PoolError,
    ) -> StoreError {
        let reason = match &error {
            deadpool_postgres::PoolError::Backend(error) => connect_reason(error),
            other => other.to_string(),
        };
        StoreError::Connect {
            address: address(config),
            reason,
        }
    }
}

/// `host:port` of every server `config` names (never the user or password).
pub(crate) fn address(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = ports
                .get(index)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What an operator needs from a failed connection: the server's own words when it answered
/// (`FATAL: the database system is starting up`, a wrong password), else the network error
/// with the usual causes.
fn connect_reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(answer) => format!("{}: {}", answer.severity(), answer.message()),
        None => format!(
            "{}; is the server running there, and is DATABASE_URL right?",
            error_text(error)
        ),
    }
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

/// What to check when a statement names a table or column the database lacks: most often a
/// ledger started on a database its `ledger migrate` has not brought to its version (found by
/// a try-it pass: a writer started before V14 retried "relation provider_objects does not
/// exist" while ingest answered that no writer was running).
fn schema_hint(error: &tokio_postgres::Error) -> &'static str {
    use tokio_postgres::error::SqlState;
    match error.code() {
        Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN => {
            "; a table or column this ledger needs is missing: run `ledger migrate` with this \
             version before starting it"
        }
        _ => "",
    }
}

/// The text of `error` and every error below it, each part said once. tokio-postgres shows
/// only its kind ("db error") and keeps the server's words in the source; async-nats prints
/// `<kind>: <source>` while also reporting that source, and some of its sources repeat their
/// kind ("no responders: no responders"). Use it wherever a third-party error becomes text.
pub fn error_text(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        for part in current.to_string().split(": ") {
            if !parts.iter().any(|seen| seen == part) {
                parts.push(part.to_owned());
            }
        }
        next = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("no responders: {0}")]
    struct Repeating(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("no responders")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct KindOnly(#[source] std::io::Error);

    #[test]
    fn each_part_of_an_error_chain_is_said_once() {
        assert_eq!(error_text(&Repeating(Inner)), "no responders");
        let cause = std::io::Error::other("FATAL: the database system is starting up");
        assert_eq!(
            error_text(&KindOnly(cause)),
            "db error: FATAL: the database system is starting up"
        );
    }
}
