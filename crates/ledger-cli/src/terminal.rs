//! Text from outside the ledger shown in a listing on a terminal.

/// `text` (a provider's event id or reason, a webhook receiver's answer, an integration's name)
/// with each control character written as its Rust escape (`\n`, `\t`, `\u{1b}`), so it cannot
/// add rows or columns to a listing or send escape sequences to the operator's terminal.
pub(crate) fn printable(text: &str) -> String {
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
