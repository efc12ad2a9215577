//! Re-reading objects at the provider now and importing them (a reconciliation's repair, an
//! on-demand sync of one customer): each object goes to the writer first as the backfill
//! wraps it (dated by its own time, [`ledger_connectors::stripe::listed`]); when the writer
//! finds it stale or already recorded, again dated at the moment of the read
//! ([`ledger_connectors::stripe::listed_at`]), since what the provider answered is its state
//! now. The writer then appends what differs, and nothing when the ledger agrees.

use ledger_bus::{Client, SendError};
use ledger_connectors::stripe::{ListedKind, listed, listed_at};
use ledger_domain::proto::{self, DeliveryOutcome, RejectionKind};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::SyncError;
use crate::import::{ListReport, deliver};
use crate::stripe_api::StripeReader;

/// Where a re-read import comes from: the inbox's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// `ledger sync <provider> --repair` (and `--reconcile-every`).
    Repair,
    /// `POST /v1/sync/{provider}/customers/{account_id}`.
    OnDemand,
}

impl Resync {
    fn source(self) -> proto::DeliverySource {
        match self {
            Resync::Repair => proto::DeliverySource::Repair,
            Resync::OnDemand => proto::DeliverySource::Sync,
        }
    }
}

/// What an import of re-read objects did: the counts per final outcome (the outcome of the
/// re-dated delivery when one was sent) and the positions appended, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub counts: ListReport,
    pub global_positions: Vec<u64>,
}

impl Changes {
    pub(crate) fn add(&mut self, other: Changes) {
        self.counts.add(&other.counts);
        self.global_positions.extend(other.global_positions);
    }
}

/// The current Unix time in seconds: the moment of a read.
pub(crate) fn now_unix_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Imports one object of `kind` read at `read_at_unix_seconds`, with `note` (a repair's
/// reason) kept in the re-dated envelope.
///
/// # Errors
/// [`SyncError::Writer`] when the writer does not answer (retried while busy).
pub(crate) async fn reimport(
    client: &Client,
    resync: Resync,
    kind: ListedKind,
    object: &Value,
    read_at_unix_seconds: i64,
    note: &str,
    correlation_id: Uuid,
) -> Result<Changes, SyncError> {
    let mut changes = Changes::default();
    changes.counts.objects = 1;
    let first = match listed(kind, object) {
        Ok((_, body)) => send(client, resync, body, correlation_id).await?,
        Err(error) => {
            tracing::warn!(%error, "a re-read object cannot be imported; skipped");
            changes.counts.unreadable += 1;
            return Ok(changes);
        }
    };
    let recorded = match first {
        Some(recorded)
            if matches!(
                recorded.outcome(),
                DeliveryOutcome::Stale | DeliveryOutcome::Duplicate
            ) =>
        {
            match listed_at(kind, object, read_at_unix_seconds, note) {
                Ok(body) => send(client, resync, body, correlation_id).await?,
                Err(error) => {
                    tracing::warn!(%error, "a re-read object cannot be re-dated; skipped");
                    None
                }
            }
        }
        first => first,
    };
    match recorded {
        Some(recorded) => {
            changes.counts.count(recorded.outcome());
            changes.global_positions = recorded.global_positions;
        }
        None => changes.counts.unreadable += 1,
    }
    Ok(changes)
}

/// Sends one wrapped object; `None` when the writer refused it as malformed (logged).
async fn send(
    client: &Client,
    resync: Resync,
    body: Vec<u8>,
    correlation_id: Uuid,
) -> Result<Option<proto::DeliveryRecorded>, SyncError> {
    let delivery = proto::ProviderDelivery {
        provider: proto::PaymentProvider::Stripe as i32,
        body: bytes::Bytes::from(body),
        received_at_unix_micros: i64::try_from(
            OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000,
        )
        .unwrap_or(0),
        correlation_id: correlation_id.to_string(),
        renormalizes_inbox_id: String::new(),
        source: resync.source() as i32,
    };
    match deliver(client, &delivery).await {
        Ok(recorded) => Ok(Some(recorded)),
        Err(SendError::Rejected(rejected)) if rejected.kind() == RejectionKind::Malformed => {
            tracing::warn!(
                reason = rejected.message,
                "the writer refused a re-read object as malformed; skipped"
            );
            Ok(None)
        }
        Err(error) => Err(SyncError::Writer(error.to_string())),
    }
}

/// A Stripe list read page after page (`starting_after` the last id), newest first.
#[derive(Debug)]
pub(crate) struct Pages {
    path: &'static str,
    query: Vec<(&'static str, String)>,
    starting_after: Option<String>,
    has_more: bool,
}

impl Pages {
    /// The list of `kind` (with the parameters it always needs, e.g. `status=all`), filtered
    /// by `query` (`customer=cus_1`).
    pub(crate) fn new(kind: ListedKind, query: Vec<(&'static str, String)>) -> Pages {
        let (path, fixed) = kind.list_path();
        let mut all: Vec<(&'static str, String)> = fixed
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        all.extend(query);
        Pages {
            path,
            query: all,
            starting_after: None,
            has_more: true,
        }
    }

    /// The next page's objects; `None` after the last.
    pub(crate) async fn next(
        &mut self,
        reader: &StripeReader,
    ) -> Result<Option<Vec<Value>>, SyncError> {
        if !self.has_more {
            return Ok(None);
        }
        let page = reader
            .page(self.path, &self.query, self.starting_after.as_deref())
            .await?;
        self.starting_after = page
            .objects
            .last()
            .and_then(|object| object.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.has_more = page.has_more && self.starting_after.is_some();
        Ok(Some(page.objects))
    }

    /// Whether pages remain after those read.
    pub(crate) fn has_more(&self) -> bool {
        self.has_more
    }
}

/// Whether `id` can be a Stripe object id (letters, digits, `_` and `-`, at most 255 bytes):
/// anything else is not sent to Stripe (it cannot name an object, and must not reach another
/// path).
pub(crate) fn stripe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_be_a_stripe_id_is_sent_to_stripe() {
        assert!(stripe_id("cus_NffrFeUfNV2Hib"));
        assert!(stripe_id("in_1MtHbELkdIwHu7ixl4OzzPMv"));
        for id in [
            "",
            "cus_1/../../v1/charges",
            "cus 1",
            "cus_1?expand=x",
            "cus_é",
        ] {
            assert!(!stripe_id(id), "{id:?}");
        }
        assert!(!stripe_id(&"c".repeat(256)));
    }
}
