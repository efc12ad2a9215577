//! One GET to a provider's API, retried on transient failures: what every list reader
//! (Stripe, PayPal, Xendit) reads pages and objects with.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ledger_domain::Provider;
use provider_sync::{
    ApiSecret, PaypalApi, PaypalToken, check_api_base, error_chain, http_client, retry_after,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::SyncError;

/// Requests per page at most (the first and the retries of transient failures).
pub const PAGE_ATTEMPTS_MAX: usize = 8;
/// The first pause before a retry; it doubles (with up to 100 % jitter) up to
/// [`RETRY_DELAY_MAX`]. A longer `Retry-After` replaces it.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(500);
/// The longest pause between two requests for a page, unless `Retry-After` says longer.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(8);
/// A `Retry-After` longer than this ends the run: resume later from the cursor.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(120);
/// A page's body is read up to this many bytes (100 objects of a few KiB each).
pub const PAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How requests are authenticated.
#[derive(Debug)]
pub(crate) enum Auth {
    /// Stripe: the secret key as the bearer token, and the API version the mapping reads
    /// ([`ledger_connectors::stripe::API_VERSION`]).
    Bearer(ApiSecret),
    /// Xendit: the secret API key as the Basic user, no password.
    Basic(ApiSecret),
    /// PayPal: an OAuth2 client-credentials token as the bearer token.
    Paypal(PaypalApi, PaypalToken),
}

/// A provider's API base and credentials, and the HTTP client that reads it.
#[derive(Debug, Clone)]
pub(crate) struct ApiReader {
    provider: Provider,
    api_base: String,
    auth: Arc<Auth>,
    http: reqwest::Client,
}

impl ApiReader {
    /// A reader of `api_base` (the value of the setting `base_setting`), each request bounded
    /// by `request_timeout`.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the base URL is not an `http(s)://` URL or the HTTP client
    /// cannot be built.
    pub(crate) fn new(
        provider: Provider,
        (base_setting, api_base): (&str, &str),
        auth: Auth,
        request_timeout: Duration,
    ) -> Result<ApiReader, SyncError> {
        check_api_base(base_setting, api_base).map_err(SyncError::Config)?;
        let http = http_client(request_timeout).map_err(SyncError::Config)?;
        Ok(ApiReader {
            provider,
            api_base: api_base.trim_end_matches('/').to_owned(),
            auth: Arc::new(auth),
            http,
        })
    }

    /// `GET <path>?<parameters>`: the body of a 2xx answer, retried on a connection failure,
    /// a timeout, 429 and 5xx (pauses from [`RETRY_DELAY_MIN`] doubling to
    /// [`RETRY_DELAY_MAX`] with jitter, `Retry-After` honoured), at most
    /// [`PAGE_ATTEMPTS_MAX`] requests.
    ///
    /// # Errors
    /// [`SyncError::NotListed`] for 404; [`SyncError::Provider`] for another 4xx (a bad key: 401,
    /// for PayPal after one more try with a new token; a missing permission: 403), a body over
    /// [`PAGE_BYTES_MAX`], retries run out, or a `Retry-After` over [`RETRY_AFTER_MAX`].
    pub(crate) async fn get(
        &self,
        path: &str,
        parameters: &[(&str, String)],
    ) -> Result<Vec<u8>, SyncError> {
        let url = format!("{}{path}", self.api_base);
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(RETRY_DELAY_MIN)
            .with_max_delay(RETRY_DELAY_MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut last_failure = String::new();
        let mut token_renewed = false;
        for attempt in 1..=PAGE_ATTEMPTS_MAX {
            let request = self.http.get(&url).query(parameters);
            let answer = match self.auth.as_ref() {
                Auth::Bearer(key) => {
                    request
                        .bearer_auth(key.expose())
                        .header("Stripe-Version", ledger_connectors::stripe::API_VERSION)
                        .send()
                        .await
                }
                Auth::Basic(key) => request.basic_auth(key.expose(), Some("")).send().await,
                Auth::Paypal(api, token) => {
                    let token = token
                        .bearer(&self.http, api)
                        .await
                        .map_err(SyncError::Provider)?;
                    request.bearer_auth(token).send().await
                }
            };
            let mut pause = delays.next().unwrap_or(RETRY_DELAY_MAX);
            match answer {
                Err(error) => last_failure = error_chain(&error),
                Ok(answer) => {
                    let status = answer.status();
                    let wait = retry_after(answer.headers());
                    let body = read_body(answer).await;
                    if status.is_success() {
                        return body;
                    }
                    let body = body.unwrap_or_default();
                    let message = error_message(&body);
                    if status == StatusCode::NOT_FOUND {
                        return Err(SyncError::NotListed {
                            path: path.to_owned(),
                            message,
                        });
                    }
                    if status == StatusCode::UNAUTHORIZED
                        && let Auth::Paypal(_, token) = self.auth.as_ref()
                        && !token_renewed
                    {
                        // The token expired or was revoked early: once more with a new one.
                        token.forget().await;
                        token_renewed = true;
                        last_failure = format!("{status}: {message}");
                        continue;
                    }
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Err(SyncError::Provider(format!(
                            "GET {path} answered {status}: {message}{}",
                            self.hint(status)
                        )));
                    }
                    last_failure = format!("{status}: {message}");
                    if let Some(wait) = wait {
                        if wait > RETRY_AFTER_MAX {
                            return Err(SyncError::Provider(format!(
                                "GET {path} answered {status} with Retry-After {} s; run again \
                                 later, it resumes from the cursor",
                                wait.as_secs()
                            )));
                        }
                        pause = pause.max(wait);
                    }
                }
            }
            if attempt < PAGE_ATTEMPTS_MAX {
                tracing::warn!(
                    provider = %self.provider,
                    path,
                    attempt,
                    failure = last_failure,
                    pause_ms = pause.as_millis(),
                    "a list page failed; retrying"
                );
                tokio::time::sleep(pause).await;
            }
        }
        Err(SyncError::Provider(format!(
            "GET {path} failed {PAGE_ATTEMPTS_MAX} times, last: {last_failure}; run again later, \
             it resumes from the cursor"
        )))
    }

    /// `GET <path>` of one object, as [`ApiReader::get`]; `Ok(None)` for 404.
    ///
    /// # Errors
    /// As [`ApiReader::get`], and [`SyncError::Provider`] for an answer that is not JSON.
    pub(crate) async fn object(
        &self,
        path: &str,
        parameters: &[(&str, String)],
    ) -> Result<Option<Value>, SyncError> {
        match self.get(path, parameters).await {
            Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|error| {
                SyncError::Provider(format!("GET {path} did not answer JSON: {error}"))
            }),
            Err(SyncError::NotListed { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// What to check when the provider refuses the credentials (401) or a permission (403).
    fn hint(&self, status: StatusCode) -> &'static str {
        match (self.provider, status.as_u16()) {
            (Provider::Stripe, 401) => "; check LEDGER_STRIPE_API_KEY",
            (Provider::Stripe, 403) => "; the key needs read access to this list",
            (Provider::Paypal, 401) => {
                "; check LEDGER_PAYPAL_CLIENT_ID and LEDGER_PAYPAL_CLIENT_SECRET"
            }
            (Provider::Paypal, 403) => {
                "; the app needs the Transaction Search and Subscriptions features \
                 (developer dashboard, app settings)"
            }
            (Provider::Xendit, 401) => "; check LEDGER_XENDIT_API_KEY",
            (Provider::Xendit, 403) => "; the key needs read permission for Invoices",
            _ => "",
        }
    }
}

async fn read_body(answer: reqwest::Response) -> Result<Vec<u8>, SyncError> {
    let mut answer = answer;
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|error| SyncError::Provider(format!("reading a page: {}", error_chain(&error))))?
    {
        if body.len() + chunk.len() > PAGE_BYTES_MAX {
            return Err(SyncError::Provider(format!(
                "a page larger than {PAGE_BYTES_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The message of an error body: Stripe's `error.message`, PayPal's and Xendit's `message`;
/// else the start of the body. Its control characters are written as their escapes (`\n`,
/// `\u{1b}`): the message ends on the operator's terminal (`error: ...`) and in the log.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|error| {
            error
                .pointer("/error/message")
                .or_else(|| error.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    ledger_connectors::printable(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_is_read_from_each_providers_error_body() {
        assert_eq!(
            error_message(br#"{"error":{"message":"Invalid API Key provided"}}"#),
            "Invalid API Key provided"
        );
        assert_eq!(
            error_message(br#"{"name":"NOT_AUTHORIZED","message":"Authorization failed"}"#),
            "Authorization failed"
        );
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn an_error_message_cannot_send_control_characters_to_the_terminal() {
        assert_eq!(
            error_message(br#"{"name":"X","message":"bad\nline\u001b[31mred"}"#),
            "bad\\nline\\u{1b}[31mred"
        );
        assert_eq!(
            error_message(b"down\r\n\x1b]0;title\x07"),
            "down\\r\\n\\u{1b}]0;title\\u{7}"
        );
    }
}
