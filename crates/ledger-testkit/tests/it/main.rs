//! Integration tests of ledger-testkit: one binary, modules per area.

mod test_db;
mod test_ledger;
