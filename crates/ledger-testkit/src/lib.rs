//! The ledger's development and test environment.
//!
//! - [`services`]: a PostgreSQL and a NATS (JetStream) server to talk to: the configured ones
//!   (`DATABASE_URL`, `NATS_URL`), the shared ones on the default local ports, or private
//!   instances started from the installed binaries with the settings in `deploy/` and removed on
//!   `Drop`. Used by the `ledger` binary (`demo`, `bench`, `with-services`) and by tests.
//! - [`TestDb`]: a fresh database per test on the configured server, migrated, dropped on `Drop`;
//!   [`unique_name`] gives per-test JetStream stream and subject names on the shared NATS server.
//! - [`ledger`]: a running ledger per test, [`ledger::TestLedger`]: a `TestDb`, the store on it, a
//!   NATS connection, unique bus names and real writers (`ledger_writer::run`) started on demand,
//!   with checks that the JetStream stream holds exactly the table's events; its stream is deleted
//!   on `Drop`. Nothing is faked.
//! - [`commands`]: command fixtures at a fixed time ([`commands::NOW_MICROS`]); [`history`]:
//!   random valid customer histories with out-of-order dates.
//! - [`projector_faults`]: crash, redelivery and rebuild-while-appending scenarios every
//!   projector's tests run.
//! - [`localstripe`]: localstripe, a fake Stripe API that signs and delivers webhooks, started
//!   on a free port, and a client for it (the Stripe connector's end-to-end tests).
//! - [`receivers`]: for notification tests, an HTTP server recording requests (with scripted
//!   failures) and a real SMTP server (aiosmtpd) keeping the messages it receives.
//!
//! Tests of the writer, the ingest endpoints and the projectors share these instead of each
//! keeping a copy. Nothing here runs in production: the `ledger` binary uses only [`services`],
//! for `demo`, `bench` and `with-services`.

pub mod commands;
pub mod history;
pub mod ledger;
pub mod localstripe;
pub mod projector_faults;
pub mod receivers;
pub mod services;
mod test_db;

pub use test_db::{TestDb, unique_name};

/// `error` and its chain of sources on one line ("outer: inner: root cause").
///
/// `tokio_postgres::Error` shows only its kind ("db error"), the useful part is in the source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
