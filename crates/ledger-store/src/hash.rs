//! The tamper-evident hash chain: `hash = SHA-256(prev_hash || canonical bytes of the event)`.
//!
//! The canonical bytes are a fixed-order, length-prefixed encoding of every stored column but
//! the hashes themselves, so no column can change without changing the hash. Integers are
//! big-endian, strings and byte strings are prefixed with their length as u32, optional values
//! with a presence byte, timestamps are Unix microseconds (the precision PostgreSQL stores).

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::RecordedEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the event at global position 1.
pub const GENESIS_HASH: Hash = [0; 32];

/// Version tag of the canonical encoding, hashed first so a future encoding cannot collide.
const CANONICAL_ENCODING_TAG: &[u8] = b"ledger.event.v1";

/// The chain hash of `event` given the hash of its predecessor (its `prev_hash` field is not
/// read, so a verifier can pass the hash it expects).
pub(crate) fn chain_hash(prev_hash: &Hash, event: &RecordedEvent, buffer: &mut Vec<u8>) -> Hash {
    buffer.clear();
    canonical_bytes(event, buffer);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&buffer[..]);
    hasher.finalize().into()
}

fn canonical_bytes(recorded: &RecordedEvent, out: &mut Vec<u8>) {
    let event = &recorded.event;
    put_bytes(out, CANONICAL_ENCODING_TAG);
    out.extend_from_slice(&recorded.global_position.to_be_bytes());
    put_uuid(out, &event.event_id);
    put_uuid(out, &recorded.stream_id);
    out.extend_from_slice(&recorded.stream_version.to_be_bytes());
    put_bytes(out, event.event_type.as_bytes());
    put_bytes(out, event.account_id.as_bytes());
    put_bytes(out, event.payment_provider_type.as_str().as_bytes());
    put_bytes(out, event.status.as_str().as_bytes());
    put_bytes(out, event.issuer.as_str().as_bytes());
    out.extend_from_slice(&unix_micros(event.occurred_at).to_be_bytes());
    out.extend_from_slice(&unix_micros(recorded.recorded_at).to_be_bytes());
    put_bytes(out, recorded.idempotency_key.as_bytes());
    put_optional_uuid(out, event.correlation_id.as_ref());
    put_optional_uuid(out, event.causation_id.as_ref());
    out.extend_from_slice(&event.schema_version.to_be_bytes());
    put_bytes(out, &event.payload);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are bounded by PostgreSQL's 1 GiB field limit, far below u32::MAX.
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_uuid(out: &mut Vec<u8>, uuid: &Uuid) {
    out.extend_from_slice(uuid.as_bytes());
}

fn put_optional_uuid(out: &mut Vec<u8>, uuid: Option<&Uuid>) {
    match uuid {
        Some(uuid) => {
            out.push(1);
            put_uuid(out, uuid);
        }
        None => out.push(0),
    }
}

/// Unix time in microseconds, rounded towards negative infinity.
pub(crate) fn unix_micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos().div_euclid(1_000);
    // OffsetDateTime spans years -9999..=9999, well inside i64 microseconds.
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// `at` truncated to the microsecond precision PostgreSQL stores, so the hash computed before
/// the insert equals the one recomputed from the stored row.
pub(crate) fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let truncated = i128::from(unix_micros(at)) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(truncated).unwrap_or(at)
}
