//! Protobuf types of the ledger's events and commands, generated at build time from
//! `proto/ledger/v1/` by protox + prost-build, with serde implementations of the proto3 JSON
//! mapping (pbjson) for every message.
//!
//! This crate is plain data: it knows nothing about validation (that is `ledger-domain`),
//! storage or transport.

/// Version 1 of the ledger's protobuf package `ledger.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/ledger.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/ledger.v1.serde.rs"));
}
