//! Integration tests of ledger-testkit: one binary, modules per area.

mod database_url;
mod services;
mod test_db;
mod test_ledger;
