//! The ledger on NATS: subject names, the JetStream event stream, the codecs of commands,
//! replies and published events, and the typed [`Client`] internal services use to send
//! commands.
//!
//! Subjects (all under a configurable prefix, `ledger` in production, a unique one per test):
//! - `<prefix>.cmd.<command>`: command requests (request/reply), e.g. `ledger.cmd.refund_payment`;
//! - `<prefix>.delivery.<provider>`: verified provider webhook deliveries from ingest to the
//!   writer (request/reply, `ledger.v1.ProviderDelivery` -> `ledger.v1.DeliveryReply`, protobuf);
//! - `<prefix>.delivery.<provider>.page`: a page of such deliveries in one request (the
//!   backfill; `ledger.v1.ProviderDeliveryPage` -> `ledger.v1.DeliveryPageReply`, protobuf);
//! - `<prefix>.events.<event_type>`: appended events, captured by the JetStream stream;
//! - `<prefix>.projections.<name>`: projection progress.
//!
//! [`connect`] connects as one of the ledger's NATS users (`deploy/nats-auth.conf`).
//!
//! Commands and replies are protobuf (`application/x-protobuf`, the default) or the proto3 JSON
//! mapping (`application/json`), chosen by the request's `Content-Type` header; the reply uses
//! the request's encoding. This crate knows nothing about PostgreSQL beyond the store's event
//! type, and nothing about HTTP.

mod client;
mod codec;
mod config;
mod connect;
pub mod retry;

pub use client::{Client, SendError, delivery_outcome_name};
pub use codec::{
    CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, CodecError, Encoding, decode_command,
    decode_recorded_event, decode_reply, encode_command, encode_recorded_event, encode_reply,
};
pub use config::{BusConfig, ensure_event_stream};
pub use connect::{ConnectError, NatsAuth, connect, connect_service, connected, redact_url};

/// Largest command body the writer accepts; larger ones are rejected as too large.
pub const COMMAND_BYTES_MAX: usize = 64 * 1024;

/// Most deliveries in one [`Client::deliver_page`] request: a page of a provider's list
/// endpoint (Stripe's `limit` is at most 100: <https://docs.stripe.com/api/pagination>).
pub const PAGE_DELIVERIES_MAX: usize = 100;

/// Largest encoded `ProviderDeliveryPage` the writer accepts, in bytes: half of NATS's default
/// `max_payload` (1 MiB), and room for one delivery of the largest webhook body
/// (`ledger_connectors::WEBHOOK_BYTES_MAX`, 256 KiB).
pub const PAGE_BYTES_MAX: usize = 512 * 1024;

/// The NATS header naming the encoding of a command or reply.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
