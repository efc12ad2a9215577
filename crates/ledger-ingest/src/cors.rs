//! Cross-origin requests: the browser pages allowed to call the command endpoints, i.e. the
//! query service's dashboard when it is served from another origin than ingest
//! (`LEDGER_INGEST_CORS_ORIGINS`, docs/security.md).
//!
//! CORS (the Fetch standard, <https://fetch.spec.whatwg.org/#http-cors-protocol>) only tells a
//! browser which pages may read ingest's answers; the bearer token still decides what a request
//! may do. With no origin configured no CORS header is sent, so browsers refuse every
//! cross-origin call, as before.

use actix_cors::Cors;
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::middleware::Condition;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE_SECONDS: usize = 600;

/// The origins (`scheme://host[:port]`) whose pages may call the command endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

/// Why an entry of `LEDGER_INGEST_CORS_ORIGINS` is not an origin.
#[derive(Debug, thiserror::Error)]
#[error(
    "LEDGER_INGEST_CORS_ORIGINS entry {origin:?} is not an origin: {reason} (write \
     scheme://host[:port], e.g. https://dashboard.example.com or http://127.0.0.1:8090)"
)]
pub struct OriginError {
    origin: String,
    reason: &'static str,
}

impl AllowedOrigins {
    /// Parses a comma-separated list of origins (`http` or `https`, a host, an optional port,
    /// nothing else). Each is kept in the form browsers send in `Origin` (lowercase host, no
    /// default port).
    pub fn parse(text: &str) -> Result<AllowedOrigins, OriginError> {
        let mut origins = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = |reason| OriginError {
                origin: entry.to_owned(),
                reason,
            };
            let url = url::Url::parse(entry).map_err(|_| invalid("not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("the scheme is not http or https"));
            }
            if url.host().is_none() {
                return Err(invalid("there is no host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(invalid("it has a user name or password"));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(invalid("it has a path, query or fragment"));
            }
            let origin = url.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(AllowedOrigins(origins))
    }

    /// The origins, as browsers send them.
    pub fn origins(&self) -> &[String] {
        &self.0
    }

    /// The CORS middleware of the command endpoints: the allowed origins may send `GET` and
    /// `POST` with `Authorization` and `Content-Type`; none configured, no middleware.
    pub(crate) fn middleware(&self) -> Condition<Cors> {
        let mut cors = Cors::default()
            .allowed_methods([Method::GET, Method::POST])
            .allowed_headers([AUTHORIZATION, CONTENT_TYPE])
            .max_age(PREFLIGHT_MAX_AGE_SECONDS);
        for origin in &self.0 {
            cors = cors.allowed_origin(origin);
        }
        Condition::new(!self.0.is_empty(), cors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins_and_refuses_anything_else() {
        let origins =
            AllowedOrigins::parse(" http://127.0.0.1:8090, https://Dash.Example.com:443/ ,")
                .unwrap();
        assert_eq!(
            origins.origins(),
            ["http://127.0.0.1:8090", "https://dash.example.com"]
        );
        assert_eq!(
            AllowedOrigins::parse("").unwrap(),
            AllowedOrigins::default()
        );
        for (entry, reason) in [
            ("127.0.0.1:8090", "not a URL"),
            ("dashboard", "not a URL"),
            ("ftp://example.com", "the scheme is not http or https"),
            (
                "https://example.com/dashboard",
                "it has a path, query or fragment",
            ),
            (
                "https://example.com/?a=1",
                "it has a path, query or fragment",
            ),
            (
                "https://user:pw@example.com",
                "it has a user name or password",
            ),
        ] {
            let error = AllowedOrigins::parse(entry).unwrap_err();
            assert_eq!(error.reason, reason, "{entry}");
            assert!(error.to_string().contains(entry), "{error}");
        }
    }
}
