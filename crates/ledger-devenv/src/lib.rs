//! The ledger's development environment: what the `ledger` binary's `demo`, `bench` and
//! `with-services` need, and what tests share with them. Nothing here runs in production.
//!
//! - [`services`]: a PostgreSQL and a NATS (JetStream) server to talk to: the configured ones
//!   (`DATABASE_URL`, `NATS_URL`), the shared ones on the default local ports, or private
//!   instances (one server, or a NATS cluster) started from the installed binaries with the
//!   settings in `deploy/` and removed on `Drop`.
//! - [`demo`]: the demo's deterministic customer history (`ledger demo`, `ledger bench query`)
//!   and the wait until read models have projected it.
//! - [`demo_notify`]: the demo's sample webhook integration, its key ring for integration
//!   secrets and the delivery worker's settings for a receiver on loopback (the demo and the
//!   notify benchmark).
//! - [`history`]: random valid customer histories with out-of-order dates (the projector
//!   benchmarks and the projectors' fault scenarios).
//! - [`receivers`]: an HTTP server recording the requests it gets (with scripted failures; the
//!   demo's sample webhook and the notify benchmark's receiver) and a real SMTP server
//!   (aiosmtpd) keeping the messages it receives.
//! - [`progress`]: the progress bar of the binary's long-running commands.
//!
//! Test-only scaffolding (a database and a running ledger per test, command fixtures, fault
//! scenarios, localstripe) is in `ledger-testkit`, a dev-dependency only.

pub mod demo;
pub mod demo_notify;
pub mod history;
pub mod progress;
pub mod receivers;
pub mod services;
