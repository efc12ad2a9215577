//! The writer against real PostgreSQL and NATS: each test has its own database, subjects and
//! JetStream stream (`ledger_testkit::ledger::TestLedger`).

mod deliveries;
mod faults;
mod inputs;
mod pipeline;
mod round_trip;
mod waiting;
