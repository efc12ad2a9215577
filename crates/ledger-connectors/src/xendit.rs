//! Xendit: callback verification and the mapping of Xendit callbacks to the ledger's commands.
//!
//! Xendit authenticates invoice and recurring callbacks with a static per-account token in the
//! `x-callback-token` header ("Callback verification token", Settings > Callbacks;
//! <https://docs.xendit.co/api-integration/callback/setup>); there is no body signature and no
//! timestamp. The token is compared in constant time against each configured one (rotation).

use subtle::ConstantTimeEq;

use crate::{Headers, Normalized, ProviderMessage, VerifyError, View};

/// The callback verification tokens of the Xendit account(s) pointing at the ledger.
#[derive(Clone)]
pub struct CallbackTokens(Vec<String>);

impl std::fmt::Debug for CallbackTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CallbackTokens({} tokens)", self.0.len())
    }
}

impl CallbackTokens {
    /// Tokens, any of which a genuine callback may carry.
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> CallbackTokens {
        CallbackTokens(
            tokens
                .iter()
                .map(|token| token.as_ref().to_owned())
                .collect(),
        )
    }
}

/// Checks a callback's `x-callback-token`, then parses it.
///
/// # Errors
/// [`VerifyError::Signature`] for a missing or unknown token; [`VerifyError::Malformed`] when
/// the body is not a Xendit callback.
pub fn verify(
    headers: &impl Headers,
    raw: &[u8],
    tokens: &CallbackTokens,
) -> Result<ProviderMessage, VerifyError> {
    let given = headers
        .header("x-callback-token")
        .ok_or_else(|| VerifyError::Signature("no x-callback-token header".to_owned()))?;
    // `fold`, not `any`: every configured token is compared, whichever matches.
    let known = tokens
        .0
        .iter()
        .fold(subtle::Choice::from(0), |known, token| {
            known | token.as_bytes().ct_eq(given.as_bytes())
        });
    if !bool::from(known) {
        return Err(VerifyError::Signature(
            "x-callback-token matches no configured token".to_owned(),
        ));
    }
    parse(raw)
}

/// Parses a Xendit callback body.
///
/// # Errors
/// [`VerifyError::Malformed`] always, until the mapping is written.
pub fn parse(_raw: &[u8]) -> Result<ProviderMessage, VerifyError> {
    Err(VerifyError::Malformed(
        "Xendit callbacks are not read yet".to_owned(),
    ))
}

/// Maps a Xendit callback to commands.
pub fn normalize(message: &ProviderMessage, _view: &View<'_>) -> Normalized {
    Normalized::Ignored {
        reason: format!("{} is not mapped", message.event_type),
    }
}
