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
//! A list's cursor is `<window start, Unix seconds>:<page>`, the page to read next.

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
use crate::{ImportOptions, ImportReport, ListName, PageDone, SyncError};

/// The longest window Transaction Search accepts between `start_date` and `end_date`.
pub const WINDOW_DAYS: i64 = 31;
/// How far back a backfill without `--since` reads: PayPal lists the transactions of the
/// previous three years.
pub const HISTORY_DAYS: i64 = 3 * 365;
/// Transactions per page (PayPal allows up to 500).
pub const TRANSACTIONS_PAGE_SIZE: u32 = 100;

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

/// Imports the PayPal account `reader` reads: its subscriptions, then its sales and refunds
/// ([`ListName::PAYPAL`]), as [`crate::import_stripe`] does Stripe's (`options.events` does
/// not apply).
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
    import(&lists, &ListName::PAYPAL, store, client, options, progress).await
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
    fn a_cursor_is_a_window_start_and_a_page() {
        assert_eq!(
            parse_cursor("1700000000:3").expect("a cursor"),
            (1_700_000_000, 3)
        );
        assert!(parse_cursor("cus_1").is_err());
        assert!(parse_cursor("1700000000:0").is_err());
    }
}
