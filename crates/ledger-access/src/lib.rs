//! Who may call the ledger's HTTP services, and how often.
//!
//! Both HTTP services (`ledger-ingest` for writes, `ledger-query` for reads) admit a request
//! the same way:
//! 1. [`Access::admit`]: the `Authorization: Bearer <token>` header names a configured token
//!    ([`Tokens`]), else [`Denied::Unauthenticated`] (HTTP 401); the token is within its rate
//!    limit ([`RateLimiter`], keyed by [`TokenId`]), else [`Denied::RateLimited`] (429 with
//!    `Retry-After`);
//! 2. [`Caller::require`]: the token holds the [`Scope`] the endpoint (or, on ingest, the
//!    command) needs, else [`Denied::Forbidden`] (403).
//!
//! Each service turns a [`Denied`] into its own error shape. This crate knows nothing about
//! HTTP frameworks, commands or read models: it sees a header value and a scope.

mod rate;
mod tokens;

pub use rate::{RateLimit, RateLimitError, RateLimited, RateLimiter};
pub use tokens::{Scope, TokenId, Tokens, TokensError, Unauthenticated};

/// Why a request was not admitted. Each variant names the HTTP status it becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 401: no bearer token, or one that is not configured.
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    /// 403: the token lacks the scope the endpoint needs.
    #[error("the token lacks scope `{}`", .0.as_str())]
    Forbidden(Scope),
    /// 429: the token sent more requests than its limit allows; retry after the given time.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
}

/// The configured tokens and the per-token rate limit of one service. Cheap to clone: clones
/// share the limiter's state, so every HTTP worker counts against the same budget.
#[derive(Debug, Clone)]
pub struct Access {
    tokens: Tokens,
    limiter: RateLimiter<TokenId>,
}

impl Access {
    /// `tokens`, each limited to `rate_limit` (`None`: unlimited).
    pub fn new(tokens: Tokens, rate_limit: Option<RateLimit>) -> Access {
        Access {
            tokens,
            limiter: RateLimiter::new(rate_limit),
        }
    }

    /// Admits a request whose `Authorization` header is `authorization` (`None` when absent or
    /// not UTF-8) and counts it against the token's limit: 401 before 429, so requests without
    /// a known token cost no token's budget.
    pub fn admit(&self, authorization: Option<&str>) -> Result<Caller<'_>, Denied> {
        let (token, scopes) = self.tokens.authenticate(authorization)?;
        self.limiter.check(&token)?;
        Ok(Caller { token, scopes })
    }
}

/// An admitted request's token: its id and scopes.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The token's id, for logs and rate-limit keys.
    pub token: TokenId,
    scopes: &'a [Scope],
}

impl Caller<'_> {
    /// `Ok` when the token holds `scope`, else [`Denied::Forbidden`].
    pub fn require(&self, scope: Scope) -> Result<(), Denied> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Denied::Forbidden(scope))
        }
    }

    /// The token's scopes, in the order they were configured.
    pub fn scopes(&self) -> &[Scope] {
        self.scopes
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    const TOKEN: &str = "aaaaaaaaaaaaaaaa";

    #[test]
    fn admits_known_tokens_within_their_limit_and_checks_scopes() {
        let tokens = Tokens::parse(&format!("{TOKEN}:commands:write"), Scope::INGEST).unwrap();
        let limit = RateLimit {
            requests_per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(1).unwrap(),
        };
        let access = Access::new(tokens, Some(limit));
        let bearer = format!("Bearer {TOKEN}");
        // Unknown tokens are refused before the limit and spend nothing.
        for _ in 0..3 {
            assert_eq!(
                access.admit(Some("Bearer bbbbbbbbbbbbbbbb")).unwrap_err(),
                Denied::Unauthenticated(Unauthenticated::UnknownToken)
            );
        }
        let caller = access.admit(Some(&bearer)).expect("within the limit");
        assert_eq!(caller.require(Scope::CommandsWrite), Ok(()));
        assert_eq!(
            caller.require(Scope::IntegrationsAdmin),
            Err(Denied::Forbidden(Scope::IntegrationsAdmin))
        );
        assert_eq!(
            access.admit(Some(&bearer)).unwrap_err(),
            Denied::RateLimited(RateLimited {
                retry_after_seconds: 1
            })
        );
        assert_eq!(
            Denied::Forbidden(Scope::IntegrationsAdmin).to_string(),
            "the token lacks scope `integrations:admin`"
        );
    }
}
