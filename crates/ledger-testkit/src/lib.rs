//! The ledger's test scaffolding (a dev-dependency only; nothing here ships in the `ledger`
//! binary).
//!
//! - [`TestDb`]: a fresh database per test on the configured server, migrated, dropped on `Drop`;
//!   [`unique_name`] gives per-test JetStream stream and subject names on the shared NATS server.
//! - [`ledger`]: a running ledger per test, [`ledger::TestLedger`]: a `TestDb`, the store on it, a
//!   NATS connection, unique bus names and real writers (`ledger_writer::run`) started on demand,
//!   with checks that the JetStream stream holds exactly the table's events; its stream is deleted
//!   on `Drop`. Nothing is faked.
//! - [`commands`]: command fixtures at a fixed time ([`commands::NOW_MICROS`]).
//! - [`projector_faults`]: crash, redelivery and rebuild-while-appending scenarios every
//!   projector's tests run.
//! - [`localstripe`]: localstripe, a fake Stripe API that signs and delivers webhooks, started
//!   on a free port, and a client for it (the Stripe connector's end-to-end tests).
//! - [`smtp`]: a real SMTP server (aiosmtpd) keeping the messages it receives, for the email
//!   notification tests.
//!
//! Tests of the writer, the ingest endpoints and the projectors share these instead of each
//! keeping a copy. The servers they run against, random histories and the recording HTTP
//! receiver are the development environment's, in `ledger-devenv`, which the `ledger` binary
//! uses too.

pub mod commands;
pub mod ledger;
pub mod localstripe;
pub mod projector_faults;
pub mod smtp;
mod test_db;

pub use test_db::{TestDb, unique_name};
