//! The import loop: every list in order, a page at a time, each object wrapped as a Stripe
//! event ([`ledger_connectors::stripe::listed`]) with source `backfill`, and the page's objects
//! sent to the writer as one delivery page (`ledger_bus::Client::deliver_page`, decision 0035);
//! the list's cursor saved once a page's objects are all recorded.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use ledger_bus::{Client, SendError};
use ledger_connectors::stripe::{ListedKind, listed};
use ledger_domain::proto::{self, RejectionKind};
use ledger_domain::{Provider, proto::DeliveryOutcome};
use ledger_store::Store;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::SyncError;
use crate::stripe_api::StripeReader;

/// How far back `GET /v1/events` is read: Stripe keeps events for 30 days
/// (<https://docs.stripe.com/api/events>).
pub const EVENTS_DAYS: i64 = 30;
/// Attempts per delivery while the writer answers busy or unavailable (nothing recorded).
pub const DELIVERY_ATTEMPTS_MAX: u32 = 20;

/// A list a backfill reads: for Stripe one kind of object or the account's events; for PayPal
/// its subscriptions or transactions; for Xendit its invoices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListName {
    Objects(ListedKind),
    /// `GET /v1/events` for the last [`EVENTS_DAYS`] days: real event ids, so the events
    /// already received by webhook are duplicates.
    Events,
    /// PayPal's subscriptions paid by the transactions of Transaction Search (PayPal lists no
    /// subscriptions): each read with `GET /v1/billing/subscriptions/{id}`.
    PaypalSubscriptions,
    /// PayPal's Transaction Search: sales and refunds.
    PaypalTransactions,
    /// PayPal's webhook event notifications (`GET /v1/notifications/webhooks-events`) of the
    /// last [`EVENTS_DAYS`] days: the webhooks' own ids, so those already received are
    /// duplicates; the only list holding a subscription no transaction pays.
    PaypalEvents,
    /// Xendit's `GET /v2/invoices`.
    XenditInvoices,
}

impl ListName {
    /// Every list, in the order a backfill reads them: customers, subscriptions, invoices,
    /// charges, disputes, then the events.
    pub const ALL: [ListName; 6] = [
        ListName::Objects(ListedKind::Customer),
        ListName::Objects(ListedKind::Subscription),
        ListName::Objects(ListedKind::Invoice),
        ListName::Objects(ListedKind::Charge),
        ListName::Objects(ListedKind::Dispute),
        ListName::Events,
    ];

    /// PayPal's lists, in the order a backfill reads them: the subscriptions first, so the
    /// sales paying them find them, then the webhook event notifications.
    pub const PAYPAL: [ListName; 3] = [
        ListName::PaypalSubscriptions,
        ListName::PaypalTransactions,
        ListName::PaypalEvents,
    ];

    /// Whether it is a list of the provider's events, read only with
    /// [`ImportOptions::events`].
    pub fn is_events(self) -> bool {
        matches!(self, ListName::Events | ListName::PaypalEvents)
    }

    /// The provider whose list it is.
    pub fn provider(self) -> Provider {
        match self {
            ListName::Objects(_) | ListName::Events => Provider::Stripe,
            ListName::PaypalSubscriptions
            | ListName::PaypalTransactions
            | ListName::PaypalEvents => Provider::Paypal,
            ListName::XenditInvoices => Provider::Xendit,
        }
    }

    /// The cursor's `object_kind` (under the list's provider): `customer`, ..., `dispute`,
    /// `event`; `subscription`, `transaction`, `event`; `invoice`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListName::Objects(kind) => kind.as_str(),
            ListName::Events | ListName::PaypalEvents => "event",
            ListName::PaypalSubscriptions => "subscription",
            ListName::PaypalTransactions => "transaction",
            ListName::XenditInvoices => "invoice",
        }
    }
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Only objects created at or after this time (`created[gte]` on every list). The events
    /// are read from the later of this and [`EVENTS_DAYS`] days ago.
    pub since: Option<OffsetDateTime>,
    /// Stop after this many pages in all (the cursors keep where it stopped); `None`: read
    /// every list to its end.
    pub pages_max: Option<u64>,
    /// Pages whose objects may be in flight to the writer at once (at least 1); each page is
    /// one request, and the writer decides the pages that arrive together in one group commit.
    /// Memory is bounded by this many pages.
    pub pages_in_flight: usize,
    /// Read the provider's events after the object lists (Stripe's `GET /v1/events`, PayPal's
    /// webhook event notifications).
    pub events: bool,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            since: None,
            pages_max: None,
            pages_in_flight: 4,
            events: true,
        }
    }
}

/// What became of the objects of one list (or of one page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListReport {
    /// Pages read.
    pub pages: u64,
    /// Objects read.
    pub objects: u64,
    /// Objects whose synthetic (or real) event id the inbox already held: not sent again.
    pub skipped: u64,
    pub appended: u64,
    pub duplicate: u64,
    pub ignored: u64,
    pub stale: u64,
    pub failed: u64,
    pub waiting: u64,
    /// Objects that could not be wrapped (not of the list's kind, no time) or that the writer
    /// refused as malformed: logged with their id, nothing recorded.
    pub unreadable: u64,
}

impl ListReport {
    pub(crate) fn add(&mut self, other: &ListReport) {
        self.pages += other.pages;
        self.objects += other.objects;
        self.skipped += other.skipped;
        self.appended += other.appended;
        self.duplicate += other.duplicate;
        self.ignored += other.ignored;
        self.stale += other.stale;
        self.failed += other.failed;
        self.waiting += other.waiting;
        self.unreadable += other.unreadable;
    }

    pub(crate) fn count(&mut self, outcome: DeliveryOutcome) {
        match outcome {
            DeliveryOutcome::Appended => self.appended += 1,
            DeliveryOutcome::Duplicate => self.duplicate += 1,
            DeliveryOutcome::Ignored => self.ignored += 1,
            DeliveryOutcome::Stale => self.stale += 1,
            DeliveryOutcome::Waiting => self.waiting += 1,
            DeliveryOutcome::Failed | DeliveryOutcome::Unspecified => self.failed += 1,
        }
    }
}

/// A page whose objects were all recorded, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageDone {
    pub list: ListName,
    /// Objects on the page.
    pub objects: u64,
    /// The list's `total_count`, when the server gives one.
    pub total_count: Option<u64>,
}

/// A run's result, per list in the order read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub lists: Vec<(ListName, ListReport)>,
    /// `false` when it stopped at `pages_max` before the end of the last list: run again to
    /// resume from the cursors.
    pub complete: bool,
    /// Lists the server does not offer (404: localstripe has no disputes), skipped.
    pub not_listed: Vec<ListName>,
    /// The correlation id of the run's deliveries (and of their events).
    pub correlation_id: Uuid,
}

impl ImportReport {
    /// The sum over the lists.
    pub fn total(&self) -> ListReport {
        let mut total = ListReport::default();
        for (_, list) in &self.lists {
            total.add(list);
        }
        total
    }
}

/// Imports the Stripe account `reader` reads: each list of [`ListName::ALL`] in order (the
/// events only with `options.events`), from its saved cursor, through the writer (`client`,
/// NATS user `ingest`); `store` keeps the cursors and says which objects the inbox already
/// holds. Calls `progress` after each page whose objects are all recorded.
///
/// # Errors
/// [`SyncError`] when Stripe's API fails after its retries, the writer does not answer, or
/// the database fails; the cursors keep the pages done, so a new run resumes.
pub async fn import_stripe(
    reader: &StripeReader,
    store: &Store,
    client: &Client,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&PageDone) + Send),
) -> Result<ImportReport, SyncError> {
    let lists: Vec<ListName> = ListName::ALL
        .into_iter()
        .filter(|list| !list.is_events() || options.events)
        .collect();
    let stripe = StripeLists {
        reader,
        since: options.since.map(OffsetDateTime::unix_timestamp),
    };
    import(&stripe, &lists, store, client, options, progress).await
}

/// A page read from one of a provider's lists, ready for the writer.
pub(crate) struct Listed {
    /// Each object as `(event id, event body)`, or why it cannot be imported.
    pub(crate) bodies: Vec<Result<(String, Vec<u8>), String>>,
    /// Where the list resumes after this page (saved as its cursor once the page is
    /// recorded); `None`: the list ends with this page.
    pub(crate) next: Option<String>,
    /// The list's length, when the provider says.
    pub(crate) total_count: Option<u64>,
}

/// A provider's lists, read a page at a time from a cursor: Stripe's
/// ([`import_stripe`]), PayPal's ([`crate::import_paypal`]), Xendit's
/// ([`crate::import_xendit`]).
pub(crate) trait Lists: Sync {
    /// The page of `list` at `cursor` (`None`: the list's start).
    fn page(
        &self,
        list: ListName,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Listed, SyncError>> + Send;
}

/// Imports `names` of `lists` in order, each from its saved cursor: the loop every provider's
/// backfill runs (see [`import_stripe`]).
pub(crate) async fn import(
    lists: &impl Lists,
    names: &[ListName],
    store: &Store,
    client: &Client,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&PageDone) + Send),
) -> Result<ImportReport, SyncError> {
    let mut report = ImportReport {
        complete: true,
        correlation_id: Uuid::now_v7(),
        ..ImportReport::default()
    };
    let provider = names.first().map(|list| list.provider().as_str());
    tracing::info!(?provider, correlation_id = %report.correlation_id, "backfill starts");
    let mut pages_left = options.pages_max;
    for list in names.iter().copied() {
        let mut list_report = ListReport::default();
        let finished = import_list(
            lists,
            store,
            client,
            options,
            list,
            report.correlation_id,
            &mut pages_left,
            &mut list_report,
            progress,
        )
        .await;
        match finished {
            Ok(true) => report.lists.push((list, list_report)),
            Ok(false) => {
                report.lists.push((list, list_report));
                report.complete = false;
                break;
            }
            Err(SyncError::NotListed { path, message }) => {
                tracing::warn!(path, message, "the server has no such list; skipped");
                report.not_listed.push(list);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(report)
}

/// Stripe's lists: `limit`, `starting_after` the last id of the previous page,
/// `created[gte]`.
struct StripeLists<'a> {
    reader: &'a StripeReader,
    /// `--since`, in Unix seconds.
    since: Option<i64>,
}

impl Lists for StripeLists<'_> {
    async fn page(&self, list: ListName, cursor: Option<&str>) -> Result<Listed, SyncError> {
        let (path, fixed) = match list {
            ListName::Objects(kind) => kind.list_path(),
            ListName::Events => ("/v1/events", &[][..]),
            other => {
                return Err(SyncError::Config(format!(
                    "{} is not a Stripe list",
                    other.as_str()
                )));
            }
        };
        let mut query: Vec<(&str, String)> = fixed
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        let events_from =
            (OffsetDateTime::now_utc() - time::Duration::days(EVENTS_DAYS)).unix_timestamp();
        let created_from = match list {
            ListName::Events => Some(
                self.since
                    .map_or(events_from, |since| since.max(events_from)),
            ),
            _ => self.since,
        };
        if let Some(created_from) = created_from {
            query.push(("created[gte]", created_from.to_string()));
        }
        let page = self.reader.page(path, &query, cursor).await?;
        let last_id = page
            .objects
            .last()
            .and_then(|object| object.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Listed {
            next: last_id.filter(|_| page.has_more),
            total_count: page.total_count,
            bodies: wrap(list, page.objects),
        })
    }
}

/// A page being recorded: its task, and the cursor to save once it is done.
struct InFlight {
    task: JoinHandle<Result<ListReport, SyncError>>,
    next: Option<String>,
    objects: u64,
    total_count: Option<u64>,
}

/// One list from its cursor; `Ok(false)` when the page budget ran out first.
#[allow(clippy::too_many_arguments)]
async fn import_list(
    lists: &impl Lists,
    store: &Store,
    client: &Client,
    options: &ImportOptions,
    list: ListName,
    correlation_id: Uuid,
    pages_left: &mut Option<u64>,
    report: &mut ListReport,
    progress: &mut (dyn FnMut(&PageDone) + Send),
) -> Result<bool, SyncError> {
    let provider = list.provider();
    let mut cursor = match store.sync_cursor(provider, list.as_str()).await? {
        Some(saved) if same_since(saved.since, options.since) => {
            tracing::info!(
                %provider,
                list = list.as_str(),
                cursor = saved.cursor,
                "resuming after the saved cursor"
            );
            Some(saved.cursor)
        }
        Some(saved) => {
            tracing::warn!(
                %provider,
                list = list.as_str(),
                cursor = saved.cursor,
                saved_since = ?saved.since,
                since = ?options.since,
                "the saved cursor was read with another --since: the list starts over"
            );
            None
        }
        None => None,
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // The cursors this run read pages from: a page naming one again (its own, or an earlier
    // page's: a list whose links go round in a cycle) would be read for ever.
    let mut read_from: HashSet<String> = cursor.iter().cloned().collect();
    let mut finished = false;
    // A page that could not be read: returned once the pages in flight are recorded.
    let mut failure = None;
    while !finished {
        if *pages_left == Some(0) {
            break;
        }
        let page = match lists.page(list, cursor.as_deref()).await {
            Ok(Listed {
                next: Some(next), ..
            }) if read_from.contains(&next) => {
                failure = Some(SyncError::Provider(format!(
                    "the {} list's paging does not advance: the page after {} names the cursor                      {next}, whose page this run already read (the provider ignores the paging                      parameter, or its links go round)",
                    list.as_str(),
                    cursor.as_deref().unwrap_or("the start")
                )));
                break;
            }
            Ok(page) => page,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        if let Some(left) = pages_left.as_mut() {
            *left -= 1;
        }
        report.pages += 1;
        finished = page.next.is_none();
        if finished && page.bodies.is_empty() {
            break;
        }
        let objects = u64::try_from(page.bodies.len()).unwrap_or(u64::MAX);
        let task = tokio::spawn(record_page(
            store.clone(),
            client.clone(),
            provider,
            page.bodies,
            correlation_id,
        ));
        cursor.clone_from(&page.next);
        read_from.extend(page.next.iter().cloned());
        in_flight.push_back(InFlight {
            task,
            next: page.next,
            objects,
            total_count: page.total_count,
        });
        drain(
            store,
            list,
            options.since,
            &mut in_flight,
            report,
            progress,
            Some(options.pages_in_flight.max(1) - 1),
        )
        .await?;
    }
    // Keep what is recorded, also after a page that could not be read: wait for the pages in
    // flight and save their cursor.
    drain(
        store,
        list,
        options.since,
        &mut in_flight,
        report,
        progress,
        None,
    )
    .await?;
    if let Some(error) = failure {
        return Err(error);
    }
    if finished {
        store
            .save_sync_cursor(provider, list.as_str(), None, options.since)
            .await?;
    }
    Ok(finished)
}

/// Whether a cursor saved under the `--since` `saved` (kept to the microsecond) belongs to a
/// run with `since`.
fn same_since(saved: Option<OffsetDateTime>, since: Option<OffsetDateTime>) -> bool {
    let micros = |time: OffsetDateTime| time.unix_timestamp_nanos() / 1_000;
    saved.map(micros) == since.map(micros)
}

/// Waits for the oldest pages in flight until at most `keep` remain (`None`: all), saving the
/// cursor after each (under `since`, the run's `--since`; one the table cannot hold is not
/// saved), in order.
async fn drain(
    store: &Store,
    list: ListName,
    since: Option<OffsetDateTime>,
    in_flight: &mut VecDeque<InFlight>,
    report: &mut ListReport,
    progress: &mut (dyn FnMut(&PageDone) + Send),
    keep: Option<usize>,
) -> Result<(), SyncError> {
    while in_flight.len() > keep.unwrap_or(0) {
        let Some(page) = in_flight.pop_front() else {
            break;
        };
        let done = page
            .task
            .await
            .map_err(|error| SyncError::Provider(format!("a page's task failed: {error}")))??;
        report.add(&done);
        if let Some(next) = &page.next {
            match ledger_store::text_problem(next, false) {
                None => {
                    store
                        .save_sync_cursor(list.provider(), list.as_str(), Some(next), since)
                        .await?;
                }
                // A position the table cannot hold (an object id with NUL, or over 255
                // bytes) is kept in memory only: the run reads on, and an interrupted one
                // resumes from the last position saved (its objects skipped by id).
                Some(problem) => tracing::warn!(
                    provider = %list.provider(),
                    list = list.as_str(),
                    cursor = next.escape_debug().to_string(),
                    problem,
                    "the page's paging position cannot be saved; the run goes on without it"
                ),
            }
        }
        progress(&PageDone {
            list,
            objects: page.objects,
            total_count: page.total_count,
        });
    }
    Ok(())
}

/// A page of a Stripe list as event bodies: `(event id, body)`, or the reason an object is
/// unreadable.
fn wrap(list: ListName, objects: Vec<Value>) -> Vec<Result<(String, Vec<u8>), String>> {
    objects
        .into_iter()
        .map(|object| match list {
            ListName::Objects(kind) => listed(kind, &object).map_err(|error| error.to_string()),
            _ => match (
                object.get("id").and_then(Value::as_str),
                object.get("type").and_then(Value::as_str),
            ) {
                (Some(id), Some(_)) => Ok((
                    id.to_owned(),
                    serde_json::to_vec(&object).unwrap_or_default(),
                )),
                _ => Err("an event without an id or a type".to_owned()),
            },
        })
        .collect()
}

/// Sends a page's objects to the writer as delivery pages (one request, one group commit,
/// one answer: [`Client::deliver_page`]), skipping those the inbox holds. A list page larger
/// than [`ledger_bus::PAGE_BYTES_MAX`] goes as several.
async fn record_page(
    store: Store,
    client: Client,
    provider: Provider,
    bodies: Vec<Result<(String, Vec<u8>), String>>,
    correlation_id: Uuid,
) -> Result<ListReport, SyncError> {
    let mut report = ListReport {
        objects: u64::try_from(bodies.len()).unwrap_or(u64::MAX),
        ..ListReport::default()
    };
    let mut readable = Vec::with_capacity(bodies.len());
    for body in bodies {
        match body {
            Ok(body) => readable.push(body),
            Err(reason) => {
                tracing::warn!(reason, "a listed object cannot be imported; skipped");
                report.unreadable += 1;
            }
        }
    }
    let ids: Vec<String> = readable.iter().map(|(id, _)| id.clone()).collect();
    let recorded = store.recorded_event_ids(provider, &ids).await?;
    let listed = readable.len();
    readable.retain(|(id, _)| !recorded.contains(id));
    // Every copy of an object the page lists twice (paging at a list that moves) is skipped;
    // one not yet recorded is sent each time, and the writer records the second as a
    // `duplicate`, as a redelivered webhook.
    report.skipped += u64::try_from(listed - readable.len()).unwrap_or(u64::MAX);
    let received_at_unix_micros =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(0);
    let deliveries = readable.into_iter().map(|(id, body)| {
        let delivery = proto::ProviderDelivery {
            provider: proto::PaymentProvider::from(provider) as i32,
            body: bytes::Bytes::from(body),
            received_at_unix_micros,
            correlation_id: correlation_id.to_string(),
            renormalizes_inbox_id: String::new(),
            source: proto::DeliverySource::Backfill as i32,
        };
        (id, delivery)
    });
    for page in delivery_pages(deliveries) {
        let (ids, page): (Vec<String>, Vec<proto::ProviderDelivery>) = page.into_iter().unzip();
        let answers = sent_again_while_busy(|| client.deliver_page(provider, page.clone()))
            .await
            .map_err(|error| {
                SyncError::Writer(format!(
                    "recording a page of {} objects from {}: {error}",
                    ids.len(),
                    ids.first().map_or("", String::as_str)
                ))
            })?;
        if answers.len() != ids.len() {
            return Err(SyncError::Writer(format!(
                "the writer answered {} of a page's {} deliveries",
                answers.len(),
                ids.len()
            )));
        }
        for (id, answer) in ids.into_iter().zip(answers) {
            match answer {
                Ok(recorded) => report.count(recorded.outcome()),
                // Refused alone (not a Stripe event, too large): nothing of it recorded, the
                // rest of the page is, as when each object was sent on its own.
                Err(rejected)
                    if matches!(
                        rejected.kind(),
                        RejectionKind::Malformed | RejectionKind::TooLarge
                    ) =>
                {
                    tracing::warn!(
                        event_id = id,
                        reason = rejected.message,
                        "the writer refused a listed object; skipped"
                    );
                    report.unreadable += 1;
                }
                Err(rejected) => {
                    return Err(SyncError::Writer(format!(
                        "recording {id}: rejected ({}): {}",
                        rejected.code, rejected.message
                    )));
                }
            }
        }
    }
    Ok(report)
}

/// `deliveries` in pages of at most [`ledger_bus::PAGE_DELIVERIES_MAX`] deliveries and
/// [`ledger_bus::PAGE_BYTES_MAX`] bytes encoded (a delivery larger than that alone is a page
/// of its own, which the writer refuses as too large).
fn delivery_pages(
    deliveries: impl IntoIterator<Item = (String, proto::ProviderDelivery)>,
) -> Vec<Vec<(String, proto::ProviderDelivery)>> {
    let mut pages: Vec<Vec<(String, proto::ProviderDelivery)>> = Vec::new();
    let mut page_bytes = 0;
    for (id, delivery) in deliveries {
        // The field's tag, its length and the delivery.
        let length = prost::Message::encoded_len(&delivery);
        let bytes = 1 + prost::length_delimiter_len(length) + length;
        match pages.last_mut() {
            Some(page)
                if page.len() < ledger_bus::PAGE_DELIVERIES_MAX
                    && page_bytes + bytes <= ledger_bus::PAGE_BYTES_MAX =>
            {
                page_bytes += bytes;
                page.push((id, delivery));
            }
            _ => {
                page_bytes = bytes;
                pages.push(vec![(id, delivery)]);
            }
        }
    }
    pages
}

/// One delivery, sent again while the writer answers busy or unavailable (nothing recorded).
pub(crate) async fn deliver(
    client: &Client,
    delivery: &proto::ProviderDelivery,
) -> Result<proto::DeliveryRecorded, SendError> {
    sent_again_while_busy(|| client.deliver(delivery)).await
}

/// `send`'s answer, sent again (up to [`DELIVERY_ATTEMPTS_MAX`] attempts, with a growing pause)
/// while the writer answers busy or unavailable, which record nothing.
async fn sent_again_while_busy<T, Answer>(mut send: impl FnMut() -> Answer) -> Result<T, SendError>
where
    Answer: std::future::Future<Output = Result<T, SendError>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Err(error)
                if attempt < DELIVERY_ATTEMPTS_MAX
                    && matches!(
                        error.rejection_kind(),
                        Some(RejectionKind::Busy | RejectionKind::Unavailable)
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(40)))).await;
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body_bytes: usize) -> (String, proto::ProviderDelivery) {
        let delivery = proto::ProviderDelivery {
            provider: proto::PaymentProvider::Stripe as i32,
            body: bytes::Bytes::from(vec![b'x'; body_bytes]),
            ..proto::ProviderDelivery::default()
        };
        (String::new(), delivery)
    }

    fn sizes(pages: &[Vec<(String, proto::ProviderDelivery)>]) -> Vec<usize> {
        pages.iter().map(Vec::len).collect()
    }

    #[test]
    fn delivery_pages_hold_at_most_the_page_bounds() {
        let small = delivery_pages((0..250).map(|_| delivery(100)));
        assert_eq!(sizes(&small), [100, 100, 50]);
        // 100 KiB bodies: five fit in 512 KiB with their framing, six do not.
        let large = delivery_pages((0..9).map(|_| delivery(100 * 1024)));
        assert_eq!(sizes(&large), [5, 4]);
        for page in &large {
            let encoded = prost::Message::encoded_len(&proto::ProviderDeliveryPage {
                deliveries: page.iter().map(|(_, delivery)| delivery.clone()).collect(),
            });
            assert!(encoded <= ledger_bus::PAGE_BYTES_MAX, "{encoded}");
        }
        assert!(delivery_pages(Vec::new()).is_empty());
    }
}
