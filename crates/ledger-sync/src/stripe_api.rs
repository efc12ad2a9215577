//! Reading Stripe's list endpoints a page at a time (Stripe, "Pagination",
//! <https://docs.stripe.com/api/pagination>): `limit` (1 to 100), `starting_after` = the last
//! object id of the previous page, `has_more`; `created[gte]` filters by creation time
//! (<https://docs.stripe.com/api/customers/list>). Lists are newest first.

use std::time::Duration;

use ledger_domain::Provider;
use provider_sync::StripeApi;
use serde_json::Value;

use crate::SyncError;
use crate::api_reader::{ApiReader, Auth};
#[cfg(doc)]
use crate::api_reader::{PAGE_ATTEMPTS_MAX, RETRY_AFTER_MAX, RETRY_DELAY_MAX, RETRY_DELAY_MIN};

/// Objects per page: Stripe's largest `limit`.
pub const PAGE_LIMIT: u32 = 100;
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
    api: ApiReader,
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
        Ok(StripeReader {
            api: ApiReader::new(
                Provider::Stripe,
                ("LEDGER_STRIPE_API_BASE", &api.api_base),
                Auth::Bearer(api.api_key),
                request_timeout,
            )?,
        })
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
        parse_page(path, &self.api.get(path, &parameters).await?)
    }

    /// `GET <path>` of one object (`/v1/customers/cus_1`), retried as [`StripeReader::page`];
    /// `Ok(None)` when Stripe answers 404 (no such object).
    ///
    /// # Errors
    /// As [`StripeReader::page`], and [`SyncError::Provider`] for an answer that is not JSON.
    pub async fn object(&self, path: &str) -> Result<Option<Value>, SyncError> {
        self.api.object(path, &[]).await
    }
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
    }
}
