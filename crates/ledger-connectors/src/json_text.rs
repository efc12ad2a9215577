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
/// [`VerifyError::Malformed`] with the event type, id and what `read` says, or as
/// [`without_nul`].
pub(crate) fn read_whole<T>(
    message: ProviderMessage,
    read: impl Fn(&ProviderMessage) -> Result<T, String>,
) -> Result<ProviderMessage, VerifyError> {
    let message = without_nul(message)?;
    match read(&message) {
        Ok(_) => Ok(message),
        Err(error) => Err(VerifyError::Malformed(format!(
            "{} {}: {error}",
            message.event_type, message.event_id
        ))),
    }
}

/// `message`, unless a string of its body (or a key of one of its objects) holds NUL
/// (`\u0000`): no provider sends one and PostgreSQL text cannot hold it, so the writer would
/// fail on the first look-up of such an id or email (its whole batch with it) instead of
/// refusing the message. Every provider's `parse` ends here, so verification (ingest) and
/// [`crate::parse`] (the writer) refuse the same bodies.
///
/// # Errors
/// [`VerifyError::Malformed`] naming the event type and id.
pub(crate) fn without_nul(message: ProviderMessage) -> Result<ProviderMessage, VerifyError> {
    if holds_nul(&message.body) {
        return Err(VerifyError::Malformed(format!(
            "{:?} {:?}: a string holds a NUL character (\\u0000), which the ledger cannot store",
            message.event_type, message.event_id
        )));
    }
    Ok(message)
}

/// Whether a string of `value`, or a key of one of its objects, holds NUL (U+0000).
fn holds_nul(value: &Value) -> bool {
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

/// Text from outside the ledger (a provider's event id, message or reason, a webhook
/// receiver's answer, an integration's name) for a terminal or a log line: each control
/// character written as its Rust escape (`\n`, `\t`, `\u{1b}`), so it cannot add rows or
/// columns to a listing or send escape sequences to the operator's terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                character.escape_default().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}
