//! Xendit: webhook verification and the mapping of Xendit events to the ledger's commands.
//! (Mapping to be written: every message is ignored until then.)

use crate::{Normalized, ProviderMessage, VerifyError, View};

/// Parses a Xendit webhook body.
///
/// # Errors
/// [`VerifyError::Malformed`] always, until the mapping is written.
pub fn parse(_raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    Err(VerifyError::Malformed(
        "Xendit messages are not read yet".to_owned(),
    ))
}

/// Maps a Xendit message to commands.
pub fn normalize(message: &ProviderMessage, _view: &View<'_>) -> Normalized {
    Normalized::Ignored {
        reason: format!("{} is not mapped", message.event_type),
    }
}
