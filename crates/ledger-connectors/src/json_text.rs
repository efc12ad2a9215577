//! Reading text fields of a provider's JSON by JSON pointer (`/resource/id`).

use serde_json::Value;

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
