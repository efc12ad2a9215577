//! Xendit's backfill: `GET /v2/invoices` (<https://docs.xendit.co/apidocs/list-invoices>),
//! `limit` invoices a page after `last_invoice_id` (the cursor), from `created_after` with
//! `--since`; the list ends at the first empty page (Xendit answers a bare array, with no
//! `has_more`). An invoice as listed is the body of Xendit's invoice callback, so each goes to
//! the writer as it is: its event id is the callback's (`<invoice id>:<status>`,
//! [`ledger_connectors::xendit::parse`]), and a callback arriving after a backfill is a
//! duplicate. Recurring plans and cycles are not imported: Xendit's Recurring API lists no
//! plans of an account (docs/connectors.md, "Backfill").

use std::time::Duration;

use ledger_bus::Client;
use ledger_domain::Provider;
use ledger_store::Store;
use provider_sync::XenditApi;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::api_reader::{ApiReader, Auth};
use crate::import::{Listed, Lists, import};
use crate::{ImportOptions, ImportReport, ListName, PageDone, SyncError};

/// Invoices per page: Xendit's largest `limit`.
pub const INVOICES_PAGE_LIMIT: usize = 100;

/// Reads Xendit's API with the secret API key as the Basic user.
#[derive(Debug, Clone)]
pub struct XenditReader {
    api: ApiReader,
}

impl XenditReader {
    /// A reader of `api` (`LEDGER_XENDIT_API_BASE`, `LEDGER_XENDIT_API_KEY` / `_FILE`, as
    /// provider-sync reads them; a key with read permission for Invoices is enough), each
    /// request bounded by `request_timeout`.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the base URL is not an `http(s)://` URL.
    pub fn new(api: XenditApi, request_timeout: Duration) -> Result<XenditReader, SyncError> {
        Ok(XenditReader {
            api: ApiReader::new(
                Provider::Xendit,
                ("LEDGER_XENDIT_API_BASE", &api.api_base),
                Auth::Basic(api.api_key),
                request_timeout,
            )?,
        })
    }
}

/// Imports the Xendit account `reader` reads: its invoices ([`ListName::XenditInvoices`]),
/// as [`crate::import_stripe`] does Stripe's (`options.events` does not apply).
///
/// # Errors
/// As [`crate::import_stripe`].
pub async fn import_xendit(
    reader: &XenditReader,
    store: &Store,
    client: &Client,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&PageDone) + Send),
) -> Result<ImportReport, SyncError> {
    let created_after = options
        .since
        .map(|since| since.format(&Rfc3339))
        .transpose()
        .map_err(|error| SyncError::Config(format!("--since: {error}")))?;
    let lists = XenditLists {
        reader,
        created_after,
    };
    import(
        &lists,
        &[ListName::XenditInvoices],
        store,
        client,
        options,
        progress,
    )
    .await
}

struct XenditLists<'a> {
    reader: &'a XenditReader,
    created_after: Option<String>,
}

impl Lists for XenditLists<'_> {
    async fn page(&self, list: ListName, cursor: Option<&str>) -> Result<Listed, SyncError> {
        const PATH: &str = "/v2/invoices";
        if list != ListName::XenditInvoices {
            return Err(SyncError::Config(format!(
                "{} is not a Xendit list",
                list.as_str()
            )));
        }
        let mut query = vec![("limit", INVOICES_PAGE_LIMIT.to_string())];
        if let Some(created_after) = &self.created_after {
            query.push(("created_after", created_after.clone()));
        }
        if let Some(last) = cursor {
            query.push(("last_invoice_id", last.to_owned()));
        }
        let body = self.reader.api.get(PATH, &query).await?;
        let invoices: Vec<Value> = serde_json::from_slice(&body).map_err(|error| {
            SyncError::Provider(format!("GET {PATH} did not answer an array: {error}"))
        })?;
        let last_id = invoices
            .last()
            .and_then(|invoice| invoice.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let bodies = invoices
            .into_iter()
            .map(|invoice| {
                let body = serde_json::to_vec(&invoice).unwrap_or_default();
                ledger_connectors::xendit::parse(&body)
                    .map(|message| (message.event_id, body))
                    .map_err(|error| error.to_string())
            })
            .collect();
        Ok(Listed {
            bodies,
            // Xendit says no more than the page: the list ends at the first empty one.
            next: last_id,
            total_count: None,
        })
    }
}
