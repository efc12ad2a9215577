//! Reading Stripe's list endpoints a page at a time (Stripe, "Pagination",
//! <https://docs.stripe.com/api/pagination>): `limit` (1 to 100), `starting_after` = the last
//! object id of the previous page, `has_more`; `created[gte]` filters by creation time
//! (<https://docs.stripe.com/api/customers/list>). Lists are newest first.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use provider_sync::{StripeApi, error_chain, retry_after};
use reqwest::StatusCode;
use serde_json::Value;

use crate::SyncError;

/// Objects per page: Stripe's largest `limit`.
pub const PAGE_LIMIT: u32 = 100;
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

/// One page of a list: its objects, in Stripe's order (newest first), and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<Value>,
    pub has_more: bool,
    /// The list's `total_count`, when the server gives it (localstripe does; Stripe's lists
    /// do not): the length of the progress bar.
    pub total_count: Option<u64>,
}

/// Reads Stripe's list endpoints with the secret key as the bearer token.
#[derive(Debug, Clone)]
pub struct StripeReader {
    api: StripeApi,
    http: reqwest::Client,
}

impl StripeReader {
    /// A reader of `api` (base URL and key, as `ledger run provider-sync` reads them:
    /// `LEDGER_STRIPE_API_BASE`, `LEDGER_STRIPE_API_KEY` / `_FILE`), each request bounded by
    /// `request_timeout`.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the base URL is not an `http(s)://` URL or the HTTP client
    /// cannot be built.
    pub fn new(api: StripeApi, request_timeout: Duration) -> Result<StripeReader, SyncError> {
        let parsed = reqwest::Url::parse(&api.api_base).map_err(|error| {
            SyncError::Config(format!(
                "LEDGER_STRIPE_API_BASE {:?} is not a URL: {error}",
                api.api_base
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(SyncError::Config(format!(
                "LEDGER_STRIPE_API_BASE {:?} is not an http(s):// URL with a host",
                api.api_base
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|error| SyncError::Config(format!("the HTTP client: {error}")))?;
        Ok(StripeReader { api, http })
    }

    /// `GET <path>?limit=100[&starting_after=<id>][&<query>...]`: one page, retried on a
    /// connection failure, a timeout, 429 and 5xx (pauses from [`RETRY_DELAY_MIN`] doubling to
    /// [`RETRY_DELAY_MAX`] with jitter, `Retry-After` honoured), at most
    /// [`PAGE_ATTEMPTS_MAX`] requests.
    ///
    /// # Errors
    /// [`SyncError::NotListed`] for 404 (the account or server has no such list);
    /// [`SyncError::Provider`] for another 4xx (a bad key: 401; a missing permission: 403),
    /// an answer that is not a list, retries run out, or a `Retry-After` over
    /// [`RETRY_AFTER_MAX`].
    pub async fn page(
        &self,
        path: &str,
        query: &[(&str, String)],
        starting_after: Option<&str>,
    ) -> Result<Page, SyncError> {
        let mut parameters: Vec<(&str, String)> = vec![("limit", PAGE_LIMIT.to_string())];
        if let Some(id) = starting_after {
            parameters.push(("starting_after", id.to_owned()));
        }
        parameters.extend(query.iter().cloned());
        parse_page(path, &self.get(path, &parameters).await?)
    }

    /// `GET <path>` of one object (`/v1/customers/cus_1`), retried as [`StripeReader::page`];
    /// `Ok(None)` when Stripe answers 404 (no such object).
    ///
    /// # Errors
    /// As [`StripeReader::page`], and [`SyncError::Provider`] for an answer that is not JSON.
    pub async fn object(&self, path: &str) -> Result<Option<Value>, SyncError> {
        match self.get(path, &[]).await {
            Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|error| {
                SyncError::Provider(format!("GET {path} did not answer JSON: {error}"))
            }),
            Err(SyncError::NotListed { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET <path>?<parameters>`: the body of a 2xx answer, with the retries of
    /// [`StripeReader::page`]; 404 is [`SyncError::NotListed`].
    async fn get(&self, path: &str, parameters: &[(&str, String)]) -> Result<Vec<u8>, SyncError> {
        let url = format!("{}{path}", self.api.api_base.trim_end_matches('/'));
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(RETRY_DELAY_MIN)
            .with_max_delay(RETRY_DELAY_MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut last_failure = String::new();
        for attempt in 1..=PAGE_ATTEMPTS_MAX {
            let answer = self
                .http
                .get(&url)
                .bearer_auth(self.api.api_key.expose())
                .query(parameters)
                .send()
                .await;
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
                    let message = stripe_message(&body);
                    if status == StatusCode::NOT_FOUND {
                        return Err(SyncError::NotListed {
                            path: path.to_owned(),
                            message,
                        });
                    }
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Err(SyncError::Provider(format!(
                            "GET {path} answered {status}: {message}{}",
                            match status.as_u16() {
                                401 => "; check LEDGER_STRIPE_API_KEY",
                                403 => "; the key needs read access to this list",
                                _ => "",
                            }
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
                    path,
                    attempt,
                    failure = last_failure,
                    pause_ms = pause.as_millis(),
                    "Stripe list page failed; retrying"
                );
                tokio::time::sleep(pause).await;
            }
        }
        Err(SyncError::Provider(format!(
            "GET {path} failed {PAGE_ATTEMPTS_MAX} times, last: {last_failure}; run again later, \
             it resumes from the cursor"
        )))
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

/// Stripe's `error.message` of an error body, else the start of the body.
fn stripe_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|error| {
            error
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

/// A list body: `{"object": "list", "data": [...], "has_more": bool}`.
fn parse_page(path: &str, body: &[u8]) -> Result<Page, SyncError> {
    let not_a_list =
        |reason: &str| SyncError::Provider(format!("GET {path} did not answer a list: {reason}"));
    let mut list: Value = serde_json::from_slice(body).map_err(|_| not_a_list("not JSON"))?;
    let has_more = list
        .get("has_more")
        .and_then(Value::as_bool)
        .ok_or_else(|| not_a_list("no has_more"))?;
    let total_count = list.get("total_count").and_then(Value::as_u64);
    let objects = match list.get_mut("data").map(Value::take) {
        Some(Value::Array(objects)) => objects,
        _ => return Err(not_a_list("no data array")),
    };
    Ok(Page {
        objects,
        has_more,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_body_is_a_page_and_anything_else_an_error() {
        let page = parse_page(
            "/v1/customers",
            br#"{"object":"list","data":[{"id":"cus_1"}],"has_more":true,"total_count":3}"#,
        )
        .expect("a page");
        assert_eq!(
            page,
            Page {
                objects: vec![serde_json::json!({"id": "cus_1"})],
                has_more: true,
                total_count: Some(3),
            }
        );
        let error = parse_page("/v1/customers", br#"{"data":[]}"#).expect_err("no has_more");
        assert_eq!(
            error.to_string(),
            "the provider: GET /v1/customers did not answer a list: no has_more"
        );
        assert_eq!(
            stripe_message(br#"{"error":{"message":"Invalid API Key provided"}}"#),
            "Invalid API Key provided"
        );
    }
}
