//! Reading a provider's JSON: text fields by JSON pointer (`/resource/id`), and the whole
//! message before it is accepted.

use serde_json::Value;

use crate::{ProviderMessage, VerifyError};

/// The non-empty string at `pointer`.
///
/// # Errors
/// A sentence naming the pointer when there is none.
pub(crate) fn text(value: &Value, pointer: &str) -> Result<String, String> {
    optional_text(value, pointer).ok_or_else(|| format!("no text at {pointer}"))
}

/// The non-empty string at `pointer`, if any.
pub(crate) fn optional_text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// `message`, once `read` (the provider's reading of the events it maps) accepts it, so a
/// malformed body is refused when it is received rather than ignored later.
///
/// # Errors
/// [`VerifyError::Malformed`] with the event type, id and what `read` says.
pub(crate) fn read_whole<T>(
    message: ProviderMessage,
    read: impl Fn(&ProviderMessage) -> Result<T, String>,
) -> Result<ProviderMessage, VerifyError> {
    match read(&message) {
        Ok(_) => Ok(message),
        Err(error) => Err(VerifyError::Malformed(format!(
            "{} {}: {error}",
            message.event_type, message.event_id
        ))),
    }
}

/// Whether a string of `value`, or a key of one of its objects, holds NUL (U+0000), which
/// PostgreSQL text cannot hold: the writer would fail on the first look-up of such an id or
/// email (its whole batch with it) instead of refusing the message.
pub(crate) fn holds_nul(value: &Value) -> bool {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => {
                if fields.keys().any(|key| key.contains('\0')) {
                    return true;
                }
                pending.extend(fields.values());
            }
            _ => {}
        }
    }
    false
}
