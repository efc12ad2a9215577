//! Backfill: a payment provider account's existing history, read from its list endpoints and
//! imported through the same path as its webhooks (docs/connectors.md, "Backfill"; issue 15).
//!
//! Stripe, PayPal and Xendit, one import loop (`import::Lists`: a provider's lists, a page from a
//! cursor; decision 0034). For Stripe, each object read from a list is wrapped as the Stripe event
//! its state corresponds to ([`ledger_connectors::stripe::listed`]: id `sync_<object id>_<hash>`,
//! time = the object's own latest time) and sent to the writer as a `ledger.v1.ProviderDelivery`
//! with source `backfill`, so the writer parses, resolves, normalizes and records it exactly as a
//! webhook (inbox row, outcome, waiting deliveries). An unchanged object always has the same event
//! id: a second run appends nothing (and does not even send it: the inbox is asked first). A
//! per-list cursor in `provider_sync_cursors` (migrations V9, V13) makes an interrupted run resume
//! after the last page whose objects were all recorded, if it has the same `--since` (another one
//! starts the list over).
//!
//! # Public API (kept stable; the reconciliation builds on it)
//!
//! ```text
//! // Reading Stripe (stripe_api.rs)
//! pub struct StripeReader;                       // Clone
//! StripeReader::new(api: provider_sync::StripeApi, request_timeout: Duration)
//!     -> Result<StripeReader, SyncError>
//! StripeReader::page(&self, path: &str, query: &[(&str, String)], starting_after: Option<&str>)
//!     -> Result<Page, SyncError>                 // GET <path>?limit=100..., retried on 429/5xx
//! pub struct Page { objects: Vec<serde_json::Value>, has_more: bool, total_count: Option<u64> }
//! pub const PAGE_LIMIT
//!
//! // Every provider's GET, retried on 429 (Retry-After), 5xx and timeouts (api_reader.rs)
//! pub const PAGE_ATTEMPTS_MAX, RETRY_DELAY_MIN, RETRY_DELAY_MAX, RETRY_AFTER_MAX, PAGE_BYTES_MAX
//!
//! // PayPal (paypal.rs) and Xendit (xendit.rs)
//! PaypalReader::new(api: provider_sync::PaypalApi, request_timeout) -> Result<_, SyncError>
//! XenditReader::new(api: provider_sync::XenditApi, request_timeout) -> Result<_, SyncError>
//! pub async fn import_paypal(&PaypalReader, &Store, &Client, &ImportOptions, progress)
//! pub async fn import_xendit(&XenditReader, &Store, &Client, &ImportOptions, progress)
//!     -> Result<ImportReport, SyncError>      // as import_stripe; options.events is Stripe's
//! pub const WINDOW_DAYS (31), HISTORY_DAYS, TRANSACTIONS_PAGE_SIZE, INVOICES_PAGE_LIMIT
//!
//! // Importing (import.rs)
//! pub enum ListName { Objects(ListedKind), Events,     // Stripe's; ALL: the order read
//!                     PaypalSubscriptions, PaypalTransactions, PaypalEvents, // PAYPAL
//!                     XenditInvoices }                           // as_str(): cursor key
//! pub struct ImportOptions { since: Option<OffsetDateTime>, pages_max: Option<u64>,
//!                            pages_in_flight: usize, events: bool }       // Default
//! pub async fn import_stripe(reader: &StripeReader, store: &ledger_store::Store,
//!                            client: &ledger_bus::Client, options: &ImportOptions,
//!                            progress: &mut (dyn FnMut(&PageDone) + Send))
//!     -> Result<ImportReport, SyncError>
//! pub struct PageDone { list: ListName, objects: u64, total_count: Option<u64> }
//! pub struct ImportReport { lists: Vec<(ListName, ListReport)>, complete: bool,
//!                           not_listed: Vec<ListName>, correlation_id: Uuid }  // total()
//! pub struct ListReport { pages, objects, skipped, appended, duplicate, ignored, stale,
//!                         failed, waiting, unreadable: u64 }
//! pub const EVENTS_DAYS (30), DELIVERY_ATTEMPTS_MAX
//!
//! // Errors
//! pub enum SyncError { Config(String), Provider(String), NotListed { path, message },
//!                      Writer(String), Store(ledger_store::StoreError) }
//!
//! // Elsewhere, used with it
//! ledger_connectors::stripe::{ListedKind, listed, listed_event_id, event_type, object_time}
//! ledger_store::Store::{sync_cursor, save_sync_cursor, recorded_event_ids}, InboxSource
//! ledger.v1.ProviderDelivery.source (DeliverySource: WEBHOOK, BACKFILL, REPAIR, SYNC)
//! ```

mod api_reader;
mod import;
mod on_demand;
mod paypal;
mod reconcile;
mod resync;
mod stripe_api;
mod xendit;

pub use api_reader::{
    PAGE_ATTEMPTS_MAX, PAGE_BYTES_MAX, RETRY_AFTER_MAX, RETRY_DELAY_MAX, RETRY_DELAY_MIN,
};
pub use import::{
    DELIVERY_ATTEMPTS_MAX, EVENTS_DAYS, ImportOptions, ImportReport, ListName, ListReport,
    PageDone, import_stripe,
};
pub use on_demand::{ON_DEMAND_PAGES_MAX, OnDemand, sync_stripe_customer};
pub use paypal::{
    EVENTS_PAGE_SIZE, HISTORY_DAYS, PaypalReader, TRANSACTIONS_PAGE_SIZE, WINDOW_DAYS,
    import_paypal,
};
pub use provider_sync::{ApiSecret, PaypalApi, StripeApi, XenditApi};
pub use reconcile::{
    Check, Found, READ_MODEL_WAIT_MAX, Repair, check_stripe, ledger_subscriptions, repair_stripe,
    wait_for_read_model,
};
pub use resync::{Changes, Resync};
pub use stripe_api::{PAGE_LIMIT, Page, StripeReader};
pub use xendit::{INVOICES_PAGE_LIMIT, XenditReader, import_xendit};

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A setting is missing or wrong: fix it and start again.
    #[error("configuration: {0}")]
    Config(String),
    /// The provider's API refused (a bad key, a missing permission) or kept failing.
    #[error("the provider: {0}")]
    Provider(String),
    /// The provider has no such list (404): the list is skipped.
    #[error("the provider has no list {path}: {message}")]
    NotListed { path: String, message: String },
    /// The writer did not answer or refused a delivery for another reason than malformed
    /// input; nothing of the page after the cursor counts as done.
    #[error("the writer: {0}")]
    Writer(String),
    #[error("the database: {0}")]
    Store(#[from] ledger_store::StoreError),
}
