//! Integration tests of `ledger-domain`, one binary (link time on a 2-core machine).

mod aggregate_properties;
mod integrations;
mod public_api;
