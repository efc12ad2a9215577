//! Bearer tokens with scopes. Only the SHA-256 of each token is kept in memory, and a
//! presented token's digest is compared with every configured one in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. A service accepts only its own scopes in its token list
/// ([`Scope::QUERY`], [`Scope::INGEST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `metrics:read` (query): the `/v1/metrics/*` endpoints.
    MetricsRead,
    /// `customers:read` (query): the `/v1/customers*` endpoints.
    CustomersRead,
    /// `connectors:read` (query): `/v1/provider-messages/{id}`, the payment providers' webhook
    /// deliveries as received (bodies with customers' personal data).
    ConnectorsRead,
    /// `commands:write` (ingest): every customer command (`POST /v1/customers`,
    /// `POST /v1/commands/{name}` for a customer's command).
    CommandsWrite,
    /// `integrations:admin` (ingest): the integration commands (`register_integration`,
    /// `update_integration`, `pause_integration`, `resume_integration`, `remove_integration`).
    IntegrationsAdmin,
}

impl Scope {
    /// The scopes of the query service.
    pub const QUERY: &'static [Scope] = &[
        Scope::MetricsRead,
        Scope::CustomersRead,
        Scope::ConnectorsRead,
    ];
    /// The scopes of the ingest service.
    pub const INGEST: &'static [Scope] = &[Scope::CommandsWrite, Scope::IntegrationsAdmin];
    const ALL: &'static [Scope] = &[
        Scope::MetricsRead,
        Scope::CustomersRead,
        Scope::ConnectorsRead,
        Scope::CommandsWrite,
        Scope::IntegrationsAdmin,
    ];

    /// The scope as written in token lists, e.g. `metrics:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MetricsRead => "metrics:read",
            Scope::CustomersRead => "customers:read",
            Scope::ConnectorsRead => "connectors:read",
            Scope::CommandsWrite => "commands:write",
            Scope::IntegrationsAdmin => "integrations:admin",
        }
    }

    fn parse(text: &str) -> Option<Scope> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == text)
    }
}

/// Shortest token accepted in the configuration (`openssl rand -hex 32` gives 64).
const TOKEN_CHARS_MIN: usize = 16;

/// Why a token list cannot be used. `entry` counts entries from 1; `scopes` lists the
/// service's scopes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error(
        "token entry {entry} has no scopes: write `<token>:<scope>,<scope>` (scopes: {scopes})"
    )]
    NoScopes { entry: usize, scopes: String },
    #[error("token entry {entry} has scope `{scope}`, not one of this service's: {scopes}")]
    UnknownScope {
        entry: usize,
        scope: String,
        scopes: String,
    },
    #[error(
        "token entry {entry} is shorter than {TOKEN_CHARS_MIN} characters: create one with \
         `openssl rand -hex 32`"
    )]
    TooShort { entry: usize },
}

/// Why a request has no known token (HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// No `Authorization: Bearer <token>` header.
    #[error("this endpoint needs an `Authorization: Bearer <token>` header")]
    MissingToken,
    /// A bearer token that is not configured.
    #[error("the bearer token is not valid")]
    UnknownToken,
}

/// A configured token, identified by its SHA-256 digest. It displays as the digest's first 8
/// hex digits, enough to tell tokens apart in logs without revealing them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId([u8; 32]);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0[..4]
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// The configured tokens: SHA-256 digests and their scopes.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(TokenId, Vec<Scope>)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Tokens {
    /// Parses `token:scope,scope;token:scope` (newlines also separate entries, so a file with
    /// one entry per line works too; `#` starts a comment line), accepting only `allowed`
    /// scopes (the service's: [`Scope::QUERY`] or [`Scope::INGEST`]).
    pub fn parse(text: &str, allowed: &[Scope]) -> Result<Tokens, TokensError> {
        let scopes = || {
            allowed
                .iter()
                .map(|scope| scope.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut tokens = Tokens::default();
        let entries = text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty() && !entry.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let no_scopes = || TokensError::NoScopes {
                entry: number,
                scopes: scopes(),
            };
            let (token, scope_list) = entry.split_once(':').ok_or_else(no_scopes)?;
            let token = token.trim();
            if token.chars().count() < TOKEN_CHARS_MIN {
                return Err(TokensError::TooShort { entry: number });
            }
            let mut parsed = Vec::new();
            for text in scope_list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let scope = Scope::parse(text)
                    .filter(|scope| allowed.contains(scope))
                    .ok_or_else(|| TokensError::UnknownScope {
                        entry: number,
                        scope: text.to_owned(),
                        scopes: scopes(),
                    })?;
                parsed.push(scope);
            }
            if parsed.is_empty() {
                return Err(no_scopes());
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

    /// The token of `authorization` (an `Authorization` header value: `Bearer <token>`, the
    /// scheme case-insensitive as RFC 7235 section 2.1 says) and its scopes.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<(TokenId, &[Scope]), Unauthenticated> {
        let token = authorization
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(Unauthenticated::MissingToken)?;
        let presented = digest(token);
        let mut found = None;
        for (configured, scopes) in &self.entries {
            // Every digest is compared in full, so timing does not tell how much matched.
            if bool::from(configured.0.ct_eq(&presented.0)) {
                found = Some((*configured, scopes.as_slice()));
            }
        }
        found.ok_or(Unauthenticated::UnknownToken)
    }
}

fn digest(token: &str) -> TokenId {
    TokenId(Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "aaaaaaaaaaaaaaaa";

    #[test]
    fn parses_entries_and_refuses_bad_ones() {
        let tokens = Tokens::parse(
            "aaaaaaaaaaaaaaaa:metrics:read,customers:read; bbbbbbbbbbbbbbbb:metrics:read\n# c\n",
            Scope::QUERY,
        )
        .unwrap();
        assert_eq!(tokens.entries.len(), 2);
        assert_eq!(
            tokens.entries[0].1,
            vec![Scope::MetricsRead, Scope::CustomersRead]
        );
        let query_scopes = "metrics:read, customers:read, connectors:read".to_owned();
        assert_eq!(
            Tokens::parse(TOKEN, Scope::QUERY).unwrap_err(),
            TokensError::NoScopes {
                entry: 1,
                scopes: query_scopes.clone()
            }
        );
        assert_eq!(
            Tokens::parse("aaaaaaaaaaaaaaaa:metrics:write", Scope::QUERY).unwrap_err(),
            TokensError::UnknownScope {
                entry: 1,
                scope: "metrics:write".to_owned(),
                scopes: query_scopes,
            }
        );
        assert_eq!(
            Tokens::parse("short:metrics:read", Scope::QUERY).unwrap_err(),
            TokensError::TooShort { entry: 1 }
        );
    }

    #[test]
    fn a_service_refuses_the_other_services_scopes() {
        assert_eq!(
            Tokens::parse("aaaaaaaaaaaaaaaa:commands:write", Scope::QUERY).unwrap_err(),
            TokensError::UnknownScope {
                entry: 1,
                scope: "commands:write".to_owned(),
                scopes: "metrics:read, customers:read, connectors:read".to_owned(),
            }
        );
        assert_eq!(
            Tokens::parse("aaaaaaaaaaaaaaaa:metrics:read", Scope::INGEST).unwrap_err(),
            TokensError::UnknownScope {
                entry: 1,
                scope: "metrics:read".to_owned(),
                scopes: "commands:write, integrations:admin".to_owned(),
            }
        );
        let tokens = Tokens::parse(
            "aaaaaaaaaaaaaaaa:commands:write,integrations:admin",
            Scope::INGEST,
        )
        .unwrap();
        assert_eq!(
            tokens.entries[0].1,
            vec![Scope::CommandsWrite, Scope::IntegrationsAdmin]
        );
    }

    #[test]
    fn authenticates_bearer_tokens_only() {
        let tokens = Tokens::parse("aaaaaaaaaaaaaaaa:commands:write", Scope::INGEST).unwrap();
        let known = Ok((digest(TOKEN), &[Scope::CommandsWrite][..]));
        assert_eq!(tokens.authenticate(Some("Bearer aaaaaaaaaaaaaaaa")), known);
        assert_eq!(
            tokens.authenticate(Some("bEaReR  aaaaaaaaaaaaaaaa ")),
            known
        );
        for missing in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic aaaaaaaaaaaaaaaa"),
            Some("aaaaaaaaaaaaaaaa"),
        ] {
            assert_eq!(
                tokens.authenticate(missing),
                Err(Unauthenticated::MissingToken),
                "{missing:?}"
            );
        }
        for unknown in [
            "Bearer aaaaaaaaaaaaaaab",
            "Bearer aaaaaaaaaaaaaaaa:commands:write",
            "Bearer aaaaaaaaaaaaaaa",
            "Bearer aaaaaaaaaaaaaaaa\0",
        ] {
            assert_eq!(
                tokens.authenticate(Some(unknown)),
                Err(Unauthenticated::UnknownToken),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn token_ids_show_a_digest_prefix_not_the_token() {
        // SHA-256("aaaaaaaaaaaaaaaa") starts 0c0beacef8877bbf.
        assert_eq!(digest(TOKEN).to_string(), "0c0beace");
        assert_eq!(format!("{:?}", digest(TOKEN)), "TokenId(0c0beace)");
    }
}
