//! A fresh database per test.

use std::{env, thread};

use tokio_postgres::{Client, NoTls};
use tracing::{debug, warn};
use uuid::Uuid;

use ledger_devenv::services::{DEFAULT_DATABASE_URL, database_url_with_name};
use ledger_store::error_text as error_chain;

/// Prefix of every test database's name, so leftovers are easy to find and drop.
const TEST_DATABASE_PREFIX: &str = "ledger_test";

/// A database of its own for one test, with the event store's migrations applied, on the server in `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/postgres`); dropped `WITH (FORCE)` on `Drop`.
///
/// Tests never start servers themselves: `just test` runs them under `ledger with-services`,
/// which sets `DATABASE_URL` and `NATS_URL`.
#[derive(Debug)]
pub struct TestDb {
    server_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// Creates a database named `ledger_test_<uuid>` and applies the migrations.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or the database cannot be created; the message says what
    /// to do.
    pub async fn new() -> Self {
        let server_url = env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let admin = connect(&server_url).await.unwrap_or_else(|error| {
            panic!(
                "cannot connect to PostgreSQL at {server_url} ({}): run the tests with `just test` \
                 (it provides the servers and sets DATABASE_URL) or set DATABASE_URL to a server \
                 where user may create databases",
                error_chain(&error)
            )
        });
        let name = format!("{TEST_DATABASE_PREFIX}_{}", Uuid::now_v7().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot create test database {name} at {server_url}: {}",
                    error_chain(&error)
                )
            });
        let url = database_url_with_name(&server_url, &name);
        let mut client = connect(&url).await.unwrap_or_else(|error| {
            panic!(
                "cannot connect to test database {url}: {}",
                error_chain(&error)
            )
        });
        ledger_store::migrate(&mut client)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot migrate test database {name}: {}",
                    error_chain(&error)
                )
            });
        Self {
            server_url,
            name,
            url,
        }
    }

    /// Full connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A transaction holding the event table in `EXCLUSIVE` mode, on a connection of its own:
    /// appends wait (a batch being appended cannot commit), reads go on, until `COMMIT` on the
    /// returned client. How tests make the writer decide a batch while the one before it is
    /// still being appended.
    ///
    /// # Panics
    ///
    /// If the connection or the lock fails.
    pub async fn lock_the_event_table(&self) -> Client {
        let locked = self.client().await;
        locked
            .batch_execute("BEGIN; LOCK TABLE customer_payment_events IN EXCLUSIVE MODE")
            .await
            .expect("the event table locked");
        locked
    }

    /// Ends the connections holding an advisory lock on this database (a writer's lock, as if
    /// its process died without a goodbye); returns how many.
    ///
    /// # Panics
    ///
    /// If PostgreSQL refuses.
    pub async fn terminate_lock_holders(&self) -> usize {
        self.client()
            .await
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND database = \
                   (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("the lock holders' connections ended")
            .len()
    }

    /// A new connection to this database, its connection task spawned on the current runtime.
    ///
    /// # Panics
    ///
    /// If the connection fails, or outside a tokio runtime.
    pub async fn client(&self) -> Client {
        connect(&self.url).await.unwrap_or_else(|error| {
            panic!(
                "cannot connect to test database {}: {}",
                self.url,
                error_chain(&error)
            )
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime that must not be blocked on: drop the
        // database from a thread with its own runtime, and wait for it so nothing is left behind
        // when the test process exits.
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let dropped = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start a runtime: {error}"))?;
            runtime.block_on(async {
                let admin = connect(&server_url)
                    .await
                    .map_err(|error| error_chain(&error))?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|error| error_chain(&error))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => debug!(database = self.name, "dropped test database"),
            Ok(Err(error)) => warn!(database = self.name, error, "cannot drop test database"),
            Err(_) => warn!(database = self.name, "dropping the test database panicked"),
        }
    }
}

/// `<prefix>_<UUID in upper-case hex>`: a name no other test uses, valid as a JetStream stream
/// name and as a NATS subject token, e.g. `unique_name("LEDGER")`.
///
/// # Panics
///
/// If `prefix` is empty or has characters other than ASCII letters, digits, `_` and `-`.
pub fn unique_name(prefix: &str) -> String {
    assert!(
        !prefix.is_empty()
            && prefix
                .chars()
                .all(|char| char.is_ascii_alphanumeric() || char == '_' || char == '-'),
        "unique_name prefix {prefix:?} must be ASCII letters, digits, `_` or `-`"
    );
    format!(
        "{prefix}_{}",
        Uuid::now_v7().simple().to_string().to_uppercase()
    )
}

/// Connects and spawns the connection task on the current runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Expected when the test database is dropped WITH (FORCE) under an open connection.
        if let Err(error) = connection.await {
            debug!(
                error = error_chain(&error),
                "test database connection ended with an error"
            );
        }
    });
    Ok(client)
}
