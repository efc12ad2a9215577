//! Integration tests of ledger-devenv: one binary, modules per area.

mod database_url;
mod services;
