//! The dashboard: one self-contained page (HTML, CSS and JS, no CDN), embedded in the binary.
//! It calls the `/v1` API with a token from the URL fragment (`#token=...`) or a prompt,
//! kept in `sessionStorage`.
//!
//! With an ingest address configured ([`crate::QueryConfig::ingest_url`]) the page also sends
//! an operator's commands (profile, cancellation, pause, resume) to ingest's
//! `POST /v1/commands/{name}` with the same token: the address is written into the page
//! (`<meta name="ledger-ingest-url">`) and allowed by its Content-Security-Policy
//! (`connect-src`); ingest must allow the page's origin (`LEDGER_INGEST_CORS_ORIGINS`). This
//! service itself still only reads.

use actix_web::{HttpResponse, web};

use crate::State;

const PAGE: &str = include_str!("../assets/dashboard.html");
/// The placeholder the ingest address replaces.
const INGEST_META: &str = r#"<meta name="ledger-ingest-url" content="">"#;

/// The page as served: the HTML with the ingest address, and its Content-Security-Policy.
#[derive(Debug)]
pub(crate) struct Page {
    html: String,
    content_security_policy: String,
}

/// Why `LEDGER_QUERY_INGEST_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "LEDGER_QUERY_INGEST_URL {url:?} is not ingest's address: {reason} (write its base URL as \
     the browser reaches it, e.g. https://ingest.example.com or http://127.0.0.1:8080)"
)]
pub struct IngestUrlError {
    url: String,
    reason: &'static str,
}

impl Page {
    /// The page for `ingest_url` (ingest's base URL as browsers reach it; `None`: the page
    /// offers no actions).
    pub(crate) fn new(ingest_url: Option<&str>) -> Result<Page, IngestUrlError> {
        let mut connect = "'self'".to_owned();
        let mut html = PAGE.to_owned();
        if let Some(text) = ingest_url {
            let invalid = |reason| IngestUrlError {
                url: text.to_owned(),
                reason,
            };
            let url = url::Url::parse(text.trim()).map_err(|_| invalid("not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(invalid("not an http or https URL with a host"));
            }
            if !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(invalid("it has a user name, password, query or fragment"));
            }
            let base = url.as_str().trim_end_matches('/');
            connect = format!("'self' {}", url.origin().ascii_serialization());
            html = html.replacen(
                INGEST_META,
                &format!(
                    r#"<meta name="ledger-ingest-url" content="{}">"#,
                    escape_attribute(base)
                ),
                1,
            );
        }
        Ok(Page {
            html,
            content_security_policy: format!(
                "default-src 'self'; connect-src {connect}; script-src 'unsafe-inline'; \
                 style-src 'unsafe-inline'; img-src 'self' data:"
            ),
        })
    }
}

/// `text` safe inside a double-quoted HTML attribute.
fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) async fn page(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            state.page.content_security_policy.as_str(),
        ))
        .body(state.page.html.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_ingest_address_into_the_page_and_its_policy() {
        let page = Page::new(None).unwrap();
        assert!(page.html.contains(INGEST_META));
        assert!(page.content_security_policy.contains("connect-src 'self';"));

        let page = Page::new(Some("http://127.0.0.1:8080/")).unwrap();
        assert!(
            page.html
                .contains(r#"<meta name="ledger-ingest-url" content="http://127.0.0.1:8080">"#)
        );
        assert!(
            page.content_security_policy
                .contains("connect-src 'self' http://127.0.0.1:8080;")
        );

        let page = Page::new(Some("https://Example.com/ingest/")).unwrap();
        assert!(
            page.html
                .contains(r#"content="https://example.com/ingest""#)
        );
        assert!(
            page.content_security_policy
                .contains("connect-src 'self' https://example.com;")
        );

        for (url, reason) in [
            ("127.0.0.1:8080", "not a URL"),
            ("ftp://example.com", "not an http or https URL with a host"),
            (
                "https://example.com/?x=\"",
                "it has a user name, password, query or fragment",
            ),
            (
                "https://a:b@example.com",
                "it has a user name, password, query or fragment",
            ),
        ] {
            let error = Page::new(Some(url)).unwrap_err();
            assert_eq!(error.reason, reason, "{url}");
        }
    }
}
