//! The event id of an object read from a provider's list endpoint for a backfill (Stripe,
//! PayPal): `sync_<object id>_<16 hex digits of SHA-256 of the object's JSON>`. The same
//! unchanged object always gives the same id (a second backfill is a duplicate in the inbox), a
//! changed object a new one (normalized against the ledger's state: applied, already applied
//! or stale).

use serde_json::Value;

/// The prefix of a synthetic event id.
pub const LISTED_EVENT_PREFIX: &str = "sync_";
/// The longest object id a listed object may have: the event id (prefix, id, `_`, 16 hex
/// digits) must fit the inbox's 255 bytes.
pub const LISTED_OBJECT_ID_BYTES_MAX: usize = 255 - LISTED_EVENT_PREFIX.len() - 1 - 16;

/// The synthetic event id of `object`, whose id is `id`.
///
/// # Errors
/// A sentence when `id` is longer than [`LISTED_OBJECT_ID_BYTES_MAX`].
pub(crate) fn event_id(id: &str, object: &Value) -> Result<String, String> {
    event_id_of_json(id, &serde_json::to_vec(object).unwrap_or_default())
}

/// [`event_id`] of an object already serialized (`serde_json::to_vec`) as `json`.
///
/// # Errors
/// A sentence when `id` is longer than [`LISTED_OBJECT_ID_BYTES_MAX`].
pub(crate) fn event_id_of_json(id: &str, json: &[u8]) -> Result<String, String> {
    if id.len() > LISTED_OBJECT_ID_BYTES_MAX {
        return Err(format!(
            "an id of {} bytes, more than {LISTED_OBJECT_ID_BYTES_MAX}",
            id.len()
        ));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, json);
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("{LISTED_EVENT_PREFIX}{id}_{hex}"))
}
