//! Integration tests of `ledger-domain`, one binary (link time on a 2-core machine).

mod aggregate_properties;
#[path = "../common/generated.rs"]
mod generated;
mod integrations;
mod public_api;
