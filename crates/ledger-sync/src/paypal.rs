//! PayPal's backfill: Transaction Search (`GET /v1/reporting/transactions`,
//! <https://developer.paypal.com/docs/api/transaction-search/v1/>) read in windows of at most
//! [`WINDOW_DAYS`] days (`start_date`, `end_date`; `page`, `page_size`, `total_pages`) from
//! `--since` (else [`HISTORY_DAYS`] days ago: the three years PayPal keeps) to the start of the
//! run. PayPal has no call listing an account's subscriptions: the subscriptions imported are
//! those the transactions pay (`paypal_reference_id` of type `SUB`), each read with
//! `GET /v1/billing/subscriptions/{id}?fields=plan`
//! (<https://developer.paypal.com/docs/api/subscriptions/v1/#subscriptions_get>). The objects
//! are wrapped by [`ledger_connectors::paypal::listed_subscription`] and
//! [`ledger_connectors::paypal::listed_transaction`].
//!
//! Then the webhook event notifications of the last [`EVENTS_DAYS`] days
//! (`GET /v1/notifications/webhooks-events`, `start_time`, `end_time`, `page_size`; the next page
//! by the `next` link, <https://developer.paypal.com/docs/api/webhooks/v1/#webhooks-events_list>),
//! each sent as it is: it is the webhook's body, with the webhook's id. They hold what no other
//! list does (a subscription created, activated, suspended or cancelled with no transaction), for
//! the events PayPal made for the app's webhooks.
//!
//! A transaction list's cursor is `<window start, Unix seconds>:<page>`, the page to read next;
//! the events list's is the query of the `next` link.

use std::collections::HashSet;
use std::time::Duration;

use ledger_bus::Client;
use ledger_connectors::paypal::{listed_subscription, listed_transaction, subscriptions_paid};
use ledger_domain::Provider;
use ledger_store::Store;
use provider_sync::{PaypalApi, PaypalToken, utf8_percent_encode};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use crate::api_reader::{ApiReader, Auth};
use crate::import::{Listed, Lists, import};
use crate::{EVENTS_DAYS, ImportOptions, ImportReport, ListName, PageDone, SyncError};

/// The longest window Transaction Search accepts between `start_date` and `end_date`.
pub const WINDOW_DAYS: i64 = 31;
/// How far back a backfill without `--since` reads: PayPal lists the transactions of the
/// previous three years.
pub const HISTORY_DAYS: i64 = 3 * 365;
/// Transactions per page (PayPal allows up to 500).
pub const TRANSACTIONS_PAGE_SIZE: u32 = 100;
/// Webhook event notifications per page: PayPal's default, as it documents no maximum.
pub const EVENTS_PAGE_SIZE: u32 = 10;
/// PayPal's list of webhook event notifications.
const EVENTS_PATH: &str = "/v1/notifications/webhooks-events";

/// Reads PayPal's REST API with an OAuth2 client-credentials token.
#[derive(Debug, Clone)]
pub struct PaypalReader {
    api: ApiReader,
}

impl PaypalReader {
    /// A reader of `api` (`LEDGER_PAYPAL_API_BASE`, `LEDGER_PAYPAL_CLIENT_ID`,
    /// `LEDGER_PAYPAL_CLIENT_SECRET` / `_FILE`, as provider-sync reads them), each request
    /// bounded by `request_timeout`. The app needs the Transaction Search feature.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the base URL is not an `http(s)://` URL.
    pub fn new(api: PaypalApi, request_timeout: Duration) -> Result<PaypalReader, SyncError> {
        let base = api.api_base.clone();
        Ok(PaypalReader {
            api: ApiReader::new(
                Provider::Paypal,
                ("LEDGER_PAYPAL_API_BASE", &base),
                Auth::Paypal(api, PaypalToken::default()),
                request_timeout,
            )?,
        })
    }
}

/// Imports the PayPal account `reader` reads: its subscriptions, then its sales and refunds,
/// then (with `options.events`) its webhook event notifications ([`ListName::PAYPAL`]), as
/// [`crate::import_stripe`] does Stripe's.
///
/// # Errors
/// As [`crate::import_stripe`].
pub async fn import_paypal(
    reader: &PaypalReader,
    store: &Store,
    client: &Client,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&PageDone) + Send),
) -> Result<ImportReport, SyncError> {
    let until = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let lists = PaypalLists {
        reader,
        from: options
            .since
            .unwrap_or(until - time::Duration::days(HISTORY_DAYS))
            .unix_timestamp(),
        until: until.unix_timestamp(),
        subscriptions_read: Mutex::new(HashSet::new()),
    };
    let names: Vec<ListName> = ListName::PAYPAL
        .into_iter()
        .filter(|list| !list.is_events() || options.events)
        .collect();
    import(&lists, &names, store, client, options, progress).await
}

struct PaypalLists<'a> {
    reader: &'a PaypalReader,
    /// The first window's start, Unix seconds.
    from: i64,
    /// The end of the last window: the run's start.
    until: i64,
    /// The subscriptions already read in this run: a subscription paid every month is read
    /// once.
    subscriptions_read: Mutex<HashSet<String>>,
}

impl Lists for PaypalLists<'_> {
    async fn page(&self, list: ListName, cursor: Option<&str>) -> Result<Listed, SyncError> {
        if list == ListName::PaypalEvents {
            return self.events(cursor).await;
        }
        let (start, page) = match cursor {
            None => (self.from, 1),
            Some(cursor) => parse_cursor(cursor)?,
        };
        if start >= self.until {
            // `--since` is not in the past: nothing to read.
            return Ok(Listed {
                bodies: Vec::new(),
                next: None,
                total_count: None,
            });
        }
        let end = (start + WINDOW_DAYS * 86_400).min(self.until);
        let (transactions, total_pages) = self.transactions(start, end, page).await?;
        let next = next_cursor(
            (start, end, self.until),
            page,
            total_pages,
            transactions.is_empty(),
        );
        let bodies = match list {
            ListName::PaypalSubscriptions => self.subscriptions(&transactions).await?,
            ListName::PaypalTransactions => transactions
                .iter()
                .filter_map(|transaction| listed_transaction(transaction).transpose())
                .collect(),
            other => {
                return Err(SyncError::Config(format!(
                    "{} is not a PayPal list",
                    other.as_str()
                )));
            }
        };
        Ok(Listed {
            bodies,
            next,
            total_count: None,
        })
    }
}

impl PaypalLists<'_> {
    /// One page of Transaction Search's window `[start, end)`, and its `total_pages`.
    async fn transactions(
        &self,
        start: i64,
        end: i64,
        page: u64,
    ) -> Result<(Vec<Value>, u64), SyncError> {
        const PATH: &str = "/v1/reporting/transactions";
        let query = [
            ("start_date", rfc3339(start)?),
            ("end_date", rfc3339(end)?),
            ("fields", "transaction_info".to_owned()),
            ("page_size", TRANSACTIONS_PAGE_SIZE.to_string()),
            ("page", page.to_string()),
        ];
        let body = self.reader.api.get(PATH, &query).await?;
        let not_a_page = |reason: &str| {
            SyncError::Provider(format!("GET {PATH} did not answer a page: {reason}"))
        };
        let mut answer: Value =
            serde_json::from_slice(&body).map_err(|_| not_a_page("not JSON"))?;
        let total_pages = answer
            .get("total_pages")
            .and_then(Value::as_u64)
            .ok_or_else(|| not_a_page("no total_pages"))?;
        match answer.get_mut("transaction_details").map(Value::take) {
            Some(Value::Array(transactions)) => Ok((transactions, total_pages)),
            None => Ok((Vec::new(), total_pages)),
            Some(_) => Err(not_a_page("transaction_details is not an array")),
        }
    }

    /// A page of the webhook event notifications from the later of `--since` and
    /// [`EVENTS_DAYS`] days ago to the run's start: the first page when `cursor` is `None`,
    /// else the page of the `next` link whose query the cursor is.
    async fn events(&self, cursor: Option<&str>) -> Result<Listed, SyncError> {
        let query: Vec<(String, String)> = match cursor {
            None => vec![
                ("page_size".to_owned(), EVENTS_PAGE_SIZE.to_string()),
                (
                    "start_time".to_owned(),
                    rfc3339(self.from.max(self.until - EVENTS_DAYS * 86_400))?,
                ),
                ("end_time".to_owned(), rfc3339(self.until)?),
            ],
            Some(cursor) => url::form_urlencoded::parse(cursor.as_bytes())
                .into_owned()
                .collect(),
        };
        let parameters: Vec<(&str, String)> = query
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let body = self.reader.api.get(EVENTS_PATH, &parameters).await?;
        let not_a_page = |reason: &str| {
            SyncError::Provider(format!("GET {EVENTS_PATH} did not answer a page: {reason}"))
        };
        let mut answer: Value =
            serde_json::from_slice(&body).map_err(|_| not_a_page("not JSON"))?;
        let events = match answer.get_mut("events").map(Value::take) {
            Some(Value::Array(events)) => events,
            None => Vec::new(),
            Some(_) => return Err(not_a_page("events is not an array")),
        };
        let bodies = events
            .into_iter()
            .map(|event| match event.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => Ok((
                    id.to_owned(),
                    serde_json::to_vec(&event).unwrap_or_default(),
                )),
                _ => Err("a webhook event notification without an id".to_owned()),
            })
            .collect();
        Ok(Listed {
            bodies,
            next: next_link(&answer)?,
            total_count: None,
        })
    }

    /// The subscriptions `transactions` pay and this run has not read yet, read and wrapped.
    async fn subscriptions(
        &self,
        transactions: &[Value],
    ) -> Result<Vec<Result<(String, Vec<u8>), String>>, SyncError> {
        let mut bodies = Vec::new();
        for id in subscriptions_paid(transactions) {
            if !self.subscriptions_read.lock().await.insert(id.clone()) {
                continue;
            }
            let path = format!("/v1/billing/subscriptions/{}", utf8_percent_encode(&id));
            let query = [("fields", "plan".to_owned())];
            match self.reader.api.object(&path, &query).await? {
                Some(subscription) => bodies.push(listed_subscription(&subscription)),
                None => bodies.push(Err(format!(
                    "PayPal has no subscription {id}, which a transaction pays"
                ))),
            }
        }
        Ok(bodies)
    }
}

/// The cursor after page `page` of the window `(start, end)` of a search up to `until`: the
/// window's next page while `total_pages` says there is one, else the next window's first, else
/// none. An empty page ends its window whatever `total_pages` claims (only the last page of a
/// window may hold fewer than `page_size` results), so a wrong count cannot keep the run reading
/// empty pages.
fn next_cursor(
    (start, end, until): (i64, i64, i64),
    page: u64,
    total_pages: u64,
    empty: bool,
) -> Option<String> {
    if page < total_pages && !empty {
        Some(format!("{start}:{}", page + 1))
    } else if end < until {
        Some(format!("{end}:1"))
    } else {
        None
    }
}

/// The query of the page's `next` link (HATEOAS `links`, `rel: next`), the events list's cursor;
/// `None` on the last page.
///
/// # Errors
/// [`SyncError::Provider`] when the link is not a URL of the events list: the reader sends its
/// token to the configured base only, so a link elsewhere is not followed.
fn next_link(page: &Value) -> Result<Option<String>, SyncError> {
    // A malformed `links` or next link is refused rather than read as the last page: the run
    // would say it is complete with the rest of the list unread.
    let malformed = |what: &str| {
        SyncError::Provider(format!("GET {EVENTS_PATH} did not answer a page: {what}"))
    };
    let links = match page.get("links") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(links)) => links,
        Some(_) => return Err(malformed("links is not an array")),
    };
    let Some(next) = links
        .iter()
        .find(|link| link.get("rel").and_then(Value::as_str) == Some("next"))
    else {
        return Ok(None);
    };
    let href = next
        .get("href")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("its next link has no href"))?;
    match reqwest::Url::parse(href) {
        Ok(url) if url.path() == EVENTS_PATH => match url.query() {
            Some(query) if !query.trim().is_empty() => Ok(Some(query.to_owned())),
            // The list's first page again, not a next one.
            _ => Err(malformed("its next link names no page (no query)")),
        },
        _ => Err(SyncError::Provider(format!(
            "GET {EVENTS_PATH} answered a next link that is not a page of it: {href:?}"
        ))),
    }
}

/// `<window start>:<page>`.
fn parse_cursor(cursor: &str) -> Result<(i64, u64), SyncError> {
    cursor
        .split_once(':')
        .and_then(|(start, page)| Some((start.parse().ok()?, page.parse().ok()?)))
        .filter(|(_, page)| *page >= 1)
        .ok_or_else(|| {
            SyncError::Config(format!(
                "the saved PayPal cursor {cursor:?} is not <window start>:<page>; delete it \
                 from provider_sync_cursors to start the list again"
            ))
        })
}

fn rfc3339(unix_seconds: i64) -> Result<String, SyncError> {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .ok_or_else(|| SyncError::Config(format!("{unix_seconds} is not a time")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_page_ends_its_window_whatever_the_page_count_says() {
        let window = (100, 200, 300);
        assert_eq!(next_cursor(window, 1, 3, false).as_deref(), Some("100:2"));
        assert_eq!(next_cursor(window, 3, 3, false).as_deref(), Some("200:1"));
        assert_eq!(
            next_cursor(window, 2, 1_000_000_000, true).as_deref(),
            Some("200:1")
        );
        assert_eq!(next_cursor((200, 300, 300), 2, 1_000_000_000, true), None);
    }

    #[test]
    fn the_events_next_page_is_the_query_of_a_next_link_to_the_events_list_only() {
        let page = |links: Value| json!({"events": [], "links": links});
        let link = |rel: &str, href: &str| json!({"rel": rel, "href": href, "method": "GET"});
        assert_eq!(next_link(&json!({"events": []})).expect("a page"), None);
        assert_eq!(
            next_link(&page(json!([link(
                "self",
                "https://api-m.paypal.com/v1/notifications/webhooks-events?page_size=10"
            )])))
            .expect("a page"),
            None
        );
        assert_eq!(
            next_link(&page(json!([
                link("self", "https://api-m.paypal.com/v1/notifications/webhooks-events"),
                link(
                    "next",
                    "https://api-m.paypal.com/v1/notifications/webhooks-events?page_size=10&move_to=next&index_id=42"
                ),
            ])))
            .expect("a page")
            .as_deref(),
            Some("page_size=10&move_to=next&index_id=42")
        );
        for elsewhere in [
            "https://api-m.paypal.com/v1/billing/subscriptions?page=2",
            "not a URL",
        ] {
            assert!(next_link(&page(json!([link("next", elsewhere)]))).is_err());
        }
        // Malformed: not read as the last page, which would end the run as complete.
        for malformed in [json!({"rel": "next"}), json!({"rel": "next", "href": 5})] {
            let error = next_link(&page(json!([malformed]))).expect_err("malformed");
            assert!(error.to_string().contains("no href"), "{error}");
        }
        for first_page in [
            "https://api-m.paypal.com/v1/notifications/webhooks-events",
            "https://api-m.paypal.com/v1/notifications/webhooks-events?",
        ] {
            let error = next_link(&page(json!([link("next", first_page)]))).expect_err(first_page);
            assert!(error.to_string().contains("names no page"), "{error}");
        }
        let error = next_link(&page(json!({"rel": "next"}))).expect_err("links not an array");
        assert!(
            error.to_string().contains("links is not an array"),
            "{error}"
        );
    }

    #[test]
    fn a_cursor_is_a_window_start_and_a_page() {
        assert_eq!(
            parse_cursor("1700000000:3").expect("a cursor"),
            (1_700_000_000, 3)
        );
        assert!(parse_cursor("cus_1").is_err());
        assert!(parse_cursor("1700000000:0").is_err());
    }
}
