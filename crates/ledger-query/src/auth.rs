//! Bearer tokens with scopes. Only the SHA-256 of each token is kept in memory, and a
//! presented token's digest is compared with every configured one in constant time.

use std::fmt;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What a token may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `metrics:read`: the `/v1/metrics/*` endpoints.
    MetricsRead,
    /// `customers:read`: the `/v1/customers*` endpoints.
    CustomersRead,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MetricsRead => "metrics:read",
            Scope::CustomersRead => "customers:read",
        }
    }

    fn parse(text: &str) -> Option<Scope> {
        match text {
            "metrics:read" => Some(Scope::MetricsRead),
            "customers:read" => Some(Scope::CustomersRead),
            _ => None,
        }
    }
}

/// Why a token list cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error(
        "token entry {entry} has no scopes: write `<token>:<scope>,<scope>` (scopes: metrics:read, customers:read)"
    )]
    NoScopes { entry: usize },
    #[error(
        "token entry {entry} has unknown scope `{scope}` (scopes: metrics:read, customers:read)"
    )]
    UnknownScope { entry: usize, scope: String },
    #[error("token entry {entry} is shorter than {TOKEN_CHARS_MIN} characters")]
    TooShort { entry: usize },
}

/// Shortest token accepted in the configuration.
const TOKEN_CHARS_MIN: usize = 16;

/// The configured tokens: SHA-256 digests and their scopes.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Vec<Scope>)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Tokens {
    /// Parses `token:scope,scope;token:scope` (newlines also separate entries, so a file
    /// with one entry per line works too; `#` starts a comment line).
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut tokens = Tokens::default();
        let entries = text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty() && !entry.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let (token, scopes) = entry
                .split_once(':')
                .ok_or(TokensError::NoScopes { entry: number })?;
            let token = token.trim();
            if token.len() < TOKEN_CHARS_MIN {
                return Err(TokensError::TooShort { entry: number });
            }
            let mut parsed = Vec::new();
            for scope in scopes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                parsed.push(
                    Scope::parse(scope).ok_or_else(|| TokensError::UnknownScope {
                        entry: number,
                        scope: scope.to_owned(),
                    })?,
                );
            }
            if parsed.is_empty() {
                return Err(TokensError::NoScopes { entry: number });
            }
            tokens.add(token, &parsed);
        }
        Ok(tokens)
    }

    /// Adds `token` with `scopes`.
    pub fn add(&mut self, token: &str, scopes: &[Scope]) {
        self.entries.push((digest(token), scopes.to_vec()));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the request's `Authorization: Bearer <token>` for `scope`: 401 without a known
    /// token, 403 when the token lacks the scope.
    pub(crate) fn check(&self, request: &HttpRequest, scope: Scope) -> Result<(), ApiError> {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "this endpoint needs an `Authorization: Bearer <token>` header",
            ))?;
        let presented = digest(token);
        let mut found: Option<&[Scope]> = None;
        for (configured, scopes) in &self.entries {
            // Every digest is compared in full, so timing does not tell how much matched.
            if constant_time_eq(configured, &presented) {
                found = Some(scopes);
            }
        }
        match found {
            None => Err(ApiError::Unauthorized("the bearer token is not valid")),
            Some(scopes) if scopes.contains(&scope) => Ok(()),
            Some(_) => Err(ApiError::Forbidden {
                scope: scope.as_str(),
            }),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_refuses_bad_ones() {
        let tokens = Tokens::parse(
            "aaaaaaaaaaaaaaaa:metrics:read,customers:read; bbbbbbbbbbbbbbbb:metrics:read\n# c\n",
        )
        .unwrap();
        assert_eq!(tokens.entries.len(), 2);
        assert_eq!(
            tokens.entries[0].1,
            vec![Scope::MetricsRead, Scope::CustomersRead]
        );
        assert_eq!(
            Tokens::parse("aaaaaaaaaaaaaaaa").unwrap_err(),
            TokensError::NoScopes { entry: 1 }
        );
        assert_eq!(
            Tokens::parse("aaaaaaaaaaaaaaaa:metrics:write").unwrap_err(),
            TokensError::UnknownScope {
                entry: 1,
                scope: "metrics:write".to_owned()
            }
        );
        assert_eq!(
            Tokens::parse("short:metrics:read").unwrap_err(),
            TokensError::TooShort { entry: 1 }
        );
    }
}
