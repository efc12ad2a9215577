//! The provider inbox (`provider_inbox`, migration V6): every verified webhook delivery with
//! its body verbatim and what the writer made of it. Rows are written only by the [`Writer`]
//! (crate::Writer), in the transaction of the events they led to, and never changed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use ledger_domain::Provider;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::Store;

use crate::error::StoreError;
use crate::event::RequestFingerprint;
use crate::read::{fingerprint_from_sql, position_from_sql};
use crate::writer::{KEY_OWNERS_SQL, STORED_KEYS_SQL};

/// The holder of one provider object.
const OBJECT_HOLDER_SQL: &str = "SELECT customer_id FROM provider_objects WHERE object_key = $1";

/// The holders of the provider objects of `$1` that are held: one primary-key probe per key,
/// as `KEY_OWNERS_SQL`.
const OBJECT_HOLDERS_SQL: &str = "SELECT k.key, o.customer_id \
     FROM unnest($1::text[]) AS k(key) CROSS JOIN LATERAL \
     (SELECT customer_id FROM provider_objects WHERE object_key = k.key LIMIT 1) AS o";

/// `latest`: the latest row (itself or its latest re-run, by `recorded_at`, then id) of each
/// original that has a waiting row, with its outcome, awaited object and `recorded_at`.
const LATEST_ROWS: &str = "WITH originals AS ( \
         SELECT coalesce(renormalizes_inbox_id, id) AS original FROM provider_inbox \
         WHERE outcome = 'waiting'), \
     latest AS ( \
         SELECT DISTINCT ON (coalesce(i.renormalizes_inbox_id, i.id)) \
             coalesce(i.renormalizes_inbox_id, i.id) AS original, i.outcome, \
             i.awaited_object, i.recorded_at \
         FROM provider_inbox i \
         WHERE i.id IN (SELECT original FROM originals) \
            OR i.renormalizes_inbox_id IN (SELECT original FROM originals) \
         ORDER BY coalesce(i.renormalizes_inbox_id, i.id), i.recorded_at DESC, i.id DESC)";

/// Rows `Store::inbox_rows` returns at most.
pub const INBOX_ROWS_MAX: u32 = 10_000;

/// What became of a delivery (the `outcome` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxOutcome {
    /// Its commands appended events.
    Appended,
    /// Its provider event id was recorded before, or its commands were all appended before:
    /// nothing appended.
    Duplicate,
    /// Nothing the ledger uses, or already applied.
    Ignored,
    /// Older than what the ledger applied for its object.
    Stale,
    /// A command was rejected; nothing of the delivery was appended.
    Failed,
    /// About an object the ledger has not seen yet ([`NewInboxRow::awaited_object`]): nothing
    /// appended; the writer normalizes it again (a new row that `renormalizes_inbox_id` it) in
    /// the batch that makes the object known.
    Waiting,
}

impl InboxOutcome {
    /// Every outcome.
    pub const ALL: [InboxOutcome; 6] = [
        InboxOutcome::Appended,
        InboxOutcome::Duplicate,
        InboxOutcome::Ignored,
        InboxOutcome::Stale,
        InboxOutcome::Failed,
        InboxOutcome::Waiting,
    ];

    /// The stored name: `appended`, `duplicate`, `ignored`, `stale`, `failed`, `waiting`.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxOutcome::Appended => "appended",
            InboxOutcome::Duplicate => "duplicate",
            InboxOutcome::Ignored => "ignored",
            InboxOutcome::Stale => "stale",
            InboxOutcome::Failed => "failed",
            InboxOutcome::Waiting => "waiting",
        }
    }
}

impl fmt::Display for InboxOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for InboxOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<InboxOutcome, String> {
        InboxOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown outcome {text:?}: expected appended, duplicate, ignored, stale, \
                     failed or waiting"
                )
            })
    }
}

/// Where a delivery came from (the `source` column, migration V9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InboxSource {
    /// A webhook verified by ingest.
    #[default]
    Webhook,
    /// An object read from a provider's list endpoint by `ledger sync <provider>`.
    Backfill,
    /// A command of the reconciliation (`--repair`).
    Repair,
    /// An on-demand re-read of one customer's objects.
    Sync,
}

impl InboxSource {
    /// Every source.
    pub const ALL: [InboxSource; 4] = [
        InboxSource::Webhook,
        InboxSource::Backfill,
        InboxSource::Repair,
        InboxSource::Sync,
    ];

    /// The stored name: `webhook`, `backfill`, `repair`, `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxSource::Webhook => "webhook",
            InboxSource::Backfill => "backfill",
            InboxSource::Repair => "repair",
            InboxSource::Sync => "sync",
        }
    }
}

impl fmt::Display for InboxSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for InboxSource {
    type Err = String;

    fn from_str(text: &str) -> Result<InboxSource, String> {
        InboxSource::ALL
            .into_iter()
            .find(|source| source.as_str() == text)
            .ok_or_else(|| {
                format!("unknown source {text:?}: expected webhook, backfill, repair or sync")
            })
    }
}

/// A delivery as the writer records it; the store adds `recorded_at` and the positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInboxRow {
    /// UUID v7 chosen by the writer: the causation id of the delivery's events.
    pub id: Uuid,
    pub provider: Provider,
    /// The provider's id of the event (`evt_...`); 1 to 255 bytes.
    pub provider_event_id: String,
    /// The provider's event type; at most 255 bytes.
    pub event_type: String,
    /// When ingest received the delivery.
    pub received_at: OffsetDateTime,
    /// The body exactly as received.
    pub body: Bytes,
    pub outcome: InboxOutcome,
    /// Why it was not appended; empty when appended.
    pub reason: String,
    /// The customer the message resolved to, if any.
    pub customer_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    /// The row whose body this re-normalizes (`ledger connectors renormalize`).
    pub renormalizes_inbox_id: Option<Uuid>,
    /// The provider object whose whole snapshot the message carries, if any
    /// (`ledger_connectors::snapshot_object`); at most 255 bytes.
    pub snapshot_object: Option<String>,
    /// The message's time, when its snapshot counts as seen: its commands were appended, it
    /// was already applied, or it was stale.
    pub snapshot_seen_at: Option<OffsetDateTime>,
    /// The object a `waiting` delivery waits for, `<provider>:<kind>:<id>`
    /// (`ledger_connectors::AwaitedObject::key`); `None` for every other outcome. 1 to 255
    /// bytes.
    pub awaited_object: Option<String>,
    /// The payment the delivery's events recorded as succeeded, if any (a Stripe charge, a
    /// PayPal sale). 1 to 255 bytes.
    pub payment_id: Option<String>,
    /// Where the delivery came from (a re-run: its original's source).
    pub source: InboxSource,
}

/// A row to insert with a batch: `requests` are the indexes, in the batch, of the append
/// requests the delivery led to; the events they append become the row's `global_positions`.
#[derive(Debug, Clone)]
pub struct InboxWrite {
    pub row: NewInboxRow,
    pub requests: Vec<usize>,
    /// The provider objects the delivery shows its customer (`row.customer_id`) holds besides
    /// what its requests' events show (the subscription of a snapshot it saw that appended
    /// nothing), as [`AppendRequest::provider_objects`]; ignored when a request of the row is
    /// refused.
    ///
    /// [`AppendRequest::provider_objects`]: crate::AppendRequest::provider_objects
    pub provider_objects: Vec<String>,
}

/// A stored inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub row: NewInboxRow,
    /// When the writer's transaction recorded it.
    pub recorded_at: OffsetDateTime,
    /// Global positions of the events appended for the delivery, in order.
    pub global_positions: Vec<u64>,
}

/// Which rows [`Store::inbox_rows`] returns.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub provider: Option<Provider>,
    pub outcome: Option<InboxOutcome>,
    /// Only rows received at or after this time.
    pub received_since: Option<OffsetDateTime>,
    /// At most this many rows (capped at [`INBOX_ROWS_MAX`]).
    pub limit: u32,
    /// Oldest first (re-normalization) instead of newest first (listing).
    pub oldest_first: bool,
}

const INBOX_COLUMNS: &str = "id, provider, provider_event_id, event_type, received_at, body, \
     outcome, reason, customer_id, correlation_id, renormalizes_inbox_id, recorded_at, \
     global_positions, snapshot_object, snapshot_seen_at, awaited_object, payment_id, source";

/// All inbox rows of a batch in one statement, one array per column (as the events are
/// inserted). A row's `global_positions` travels as the text of its array (`{1,2}`): arrays of
/// arrays must be rectangular, and a row may have any number of positions.
pub(crate) const INSERT_INBOX: &str = "INSERT INTO provider_inbox (id, provider, \
     provider_event_id, event_type, received_at, body, outcome, reason, customer_id, \
     correlation_id, renormalizes_inbox_id, recorded_at, global_positions, snapshot_object, \
     snapshot_seen_at, awaited_object, payment_id, source) \
     SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, $12, c13::int8[], c14, c15, c16, c17, \
     c18 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
     $6::bytea[], $7::text[], $8::text[], $9::uuid[], $10::uuid[], $11::uuid[], $13::text[], \
     $14::text[], $15::timestamptz[], $16::text[], $17::text[], $18::text[]) \
     AS t(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c13, c14, c15, c16, c17, c18)";

fn inbox_row(row: &Row) -> Result<InboxRow, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        global_position: 0,
        reason: format!("provider_inbox row: {reason}"),
    };
    let provider: &str = row.try_get(1)?;
    let outcome: &str = row.try_get(6)?;
    let body: &[u8] = row.try_get(5)?;
    let source: &str = row.try_get(17)?;
    Ok(InboxRow {
        row: NewInboxRow {
            id: row.try_get(0)?,
            provider: provider
                .parse()
                .map_err(|error| corrupt(format!("{error}")))?,
            provider_event_id: row.try_get(2)?,
            event_type: row.try_get(3)?,
            received_at: row.try_get(4)?,
            body: Bytes::copy_from_slice(body),
            outcome: outcome.parse().map_err(corrupt)?,
            reason: row.try_get(7)?,
            customer_id: row.try_get(8)?,
            correlation_id: row.try_get(9)?,
            renormalizes_inbox_id: row.try_get(10)?,
            snapshot_object: row.try_get(13)?,
            snapshot_seen_at: row.try_get(14)?,
            awaited_object: row.try_get(15)?,
            payment_id: row.try_get(16)?,
            source: source.parse().map_err(corrupt)?,
        },
        recorded_at: row.try_get(11)?,
        global_positions: row
            .try_get::<_, Vec<i64>>(12)?
            .into_iter()
            .map(position_from_sql)
            .collect::<Result<_, _>>()?,
    })
}

/// A delivery still waiting for an object ([`Store::waiting_deliveries`]): its original row
/// and the object its latest row waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingDelivery {
    /// The original row (not a re-run): what a re-run `renormalizes_inbox_id`.
    pub inbox_id: Uuid,
    pub provider: Provider,
    /// The original's `received_at` and `correlation_id`, kept by its re-runs.
    pub received_at: OffsetDateTime,
    pub correlation_id: Option<Uuid>,
    /// `<provider>:<kind>:<id>`.
    pub awaited_object: String,
}

/// What the writer looks up before it decides a batch's deliveries, one query each.
#[derive(Debug, Clone, Default)]
pub struct DeliveryLookups {
    /// The `(provider, event id)` pairs asked about that have an inbox row with an outcome
    /// other than `duplicate`.
    pub recorded_events: HashSet<(Provider, String)>,
    /// The owners of the unique keys asked about (storage form); a key without one is absent.
    pub owners: HashMap<String, Uuid>,
    /// The idempotency keys asked about that were used, with the fingerprint of their request
    /// (`None`: recorded before fingerprints were).
    pub stored_keys: HashMap<String, Option<RequestFingerprint>>,
    /// The latest time a snapshot was seen (Unix microseconds) of the `(provider, snapshot
    /// object)` pairs asked about, as [`Store::snapshot_seen`] answers; a pair never seen is
    /// absent.
    pub snapshots_seen: HashMap<(Provider, String), i64>,
    /// The holders of the provider objects asked about, as [`Store::object_holder`] answers;
    /// an object no one holds is absent.
    pub holders: HashMap<String, Uuid>,
}

/// A provider named in an inbox row.
fn provider_from_sql(provider: &str) -> Result<Provider, StoreError> {
    provider.parse().map_err(|error| StoreError::Corrupt {
        global_position: 0,
        reason: format!("provider_inbox row: {error}"),
    })
}

impl Store {
    /// Looks up, pipelined on one connection, which of `events` are in the inbox (with an
    /// outcome other than `duplicate`), who owns `unique_keys` (storage form, e.g.
    /// `account:stripe:cus_1`), which of `idempotency_keys` were used, when a snapshot of
    /// each of `snapshot_objects` was last seen and who holds `provider_objects`
    /// (`paypal:subscription:I-1`).
    pub async fn delivery_lookups(
        &self,
        events: &[(Provider, String)],
        unique_keys: &[String],
        idempotency_keys: &[String],
        snapshot_objects: &[(Provider, String)],
        provider_objects: &[String],
    ) -> Result<DeliveryLookups, StoreError> {
        let client = self.connection().await?;
        let providers: Vec<&str> = events
            .iter()
            .map(|(provider, _)| provider.as_str())
            .collect();
        let event_ids: Vec<&str> = events
            .iter()
            .map(|(_, event_id)| event_id.as_str())
            .collect();
        let events_parameters: [&(dyn ToSql + Sync); 2] = [&providers, &event_ids];
        let owners_parameters: [&(dyn ToSql + Sync); 1] = [&unique_keys];
        let keys_parameters: [&(dyn ToSql + Sync); 1] = [&idempotency_keys];
        let snapshot_providers: Vec<&str> = snapshot_objects
            .iter()
            .map(|(provider, _)| provider.as_str())
            .collect();
        let snapshot_ids: Vec<&str> = snapshot_objects
            .iter()
            .map(|(_, object)| object.as_str())
            .collect();
        let snapshots_parameters: [&(dyn ToSql + Sync); 2] = [&snapshot_providers, &snapshot_ids];
        let holders = async {
            if provider_objects.is_empty() {
                return Ok(Vec::new());
            }
            client.query(OBJECT_HOLDERS_SQL, &[&provider_objects]).await
        };
        let (recorded, owners, stored, snapshots, holders) = tokio::try_join!(
            client.query(
                "SELECT i.provider, i.provider_event_id \
                 FROM unnest($1::text[], $2::text[]) AS e(provider, event_id) CROSS JOIN LATERAL \
                 (SELECT provider, provider_event_id FROM provider_inbox \
                 WHERE provider = e.provider AND provider_event_id = e.event_id \
                 AND outcome <> 'duplicate' LIMIT 1) AS i",
                &events_parameters,
            ),
            client.query(KEY_OWNERS_SQL, &owners_parameters),
            client.query(STORED_KEYS_SQL, &keys_parameters),
            client.query(
                "SELECT e.provider, e.object, s.seen \
                 FROM unnest($1::text[], $2::text[]) AS e(provider, object) CROSS JOIN LATERAL \
                 (SELECT max(snapshot_seen_at) AS seen FROM provider_inbox \
                 WHERE provider = e.provider AND snapshot_object = e.object \
                 AND snapshot_seen_at IS NOT NULL) AS s WHERE s.seen IS NOT NULL",
                &snapshots_parameters,
            ),
            holders,
        )?;
        let mut lookups = DeliveryLookups::default();
        for row in recorded {
            lookups
                .recorded_events
                .insert((provider_from_sql(row.try_get(0)?)?, row.try_get(1)?));
        }
        for row in owners {
            lookups.owners.insert(row.try_get(0)?, row.try_get(1)?);
        }
        for row in stored {
            let global_position = position_from_sql(row.try_get(1)?)?;
            let fingerprint = fingerprint_from_sql(global_position, row.try_get(2)?)?;
            lookups.stored_keys.insert(row.try_get(0)?, fingerprint);
        }
        for row in snapshots {
            let seen: OffsetDateTime = row.try_get(2)?;
            lookups.snapshots_seen.insert(
                (provider_from_sql(row.try_get(0)?)?, row.try_get(1)?),
                crate::hash::unix_micros(seen),
            );
        }
        for row in holders {
            lookups.holders.insert(row.try_get(0)?, row.try_get(1)?);
        }
        Ok(lookups)
    }

    /// True when a delivery of `provider`'s event `provider_event_id` was recorded with an
    /// outcome other than `duplicate` (a redelivery is then a duplicate).
    pub async fn inbox_has_event(
        &self,
        provider: Provider,
        provider_event_id: &str,
    ) -> Result<bool, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM provider_inbox WHERE provider = $1 AND provider_event_id = $2 \
                 AND outcome <> 'duplicate' LIMIT 1",
                &[&provider.as_str(), &provider_event_id],
            )
            .await?;
        Ok(row.is_some())
    }

    /// The latest time a snapshot of `provider`'s object `snapshot_object` was seen (see
    /// [`NewInboxRow::snapshot_seen_at`]), in Unix microseconds.
    pub async fn snapshot_seen(
        &self,
        provider: Provider,
        snapshot_object: &str,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_one(
                "SELECT max(snapshot_seen_at) FROM provider_inbox \
                 WHERE provider = $1 AND snapshot_object = $2 AND snapshot_seen_at IS NOT NULL",
                &[&provider.as_str(), &snapshot_object],
            )
            .await?;
        let seen: Option<OffsetDateTime> = row.try_get(0)?;
        Ok(seen.map(crate::hash::unix_micros))
    }

    /// The customer holding the provider object `object_key` (`<provider>:<kind>:<id>`, see
    /// [`AppendRequest::provider_objects`]), if one does.
    ///
    /// [`AppendRequest::provider_objects`]: crate::AppendRequest::provider_objects
    pub async fn object_holder(&self, object_key: &str) -> Result<Option<Uuid>, StoreError> {
        let client = self.connection().await?;
        let row = client.query_opt(OBJECT_HOLDER_SQL, &[&object_key]).await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// Where the leading writer's one pass over the events recorded before it kept
    /// `provider_objects` itself resumes (migration V15, docs/decisions/0037); `None` once the
    /// pass is done.
    pub async fn provider_objects_fill_from(&self) -> Result<Option<u64>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt("SELECT from_position FROM provider_objects_fill", &[])
            .await?;
        row.map(|row| position_from_sql(row.try_get(0)?))
            .transpose()
    }

    /// The deliveries still waiting: each original row (a delivery that is not a re-run) whose
    /// latest row (itself or its latest re-run, by `recorded_at`, then id) is `waiting`, with
    /// the object that latest row waits for. Oldest first.
    pub async fn waiting_deliveries(&self) -> Result<Vec<WaitingDelivery>, StoreError> {
        let client = self.connection().await?;
        let rows = client
            .query(
                &format!(
                    "{LATEST_ROWS} \
                     SELECT o.id, o.provider, o.received_at, o.correlation_id, \
                         latest.awaited_object \
                     FROM latest JOIN provider_inbox o ON o.id = latest.original \
                     WHERE latest.outcome = 'waiting' ORDER BY o.id"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let provider: &str = row.try_get(1)?;
                Ok(WaitingDelivery {
                    inbox_id: row.try_get(0)?,
                    provider: provider.parse().map_err(|error| StoreError::Corrupt {
                        global_position: 0,
                        reason: format!("provider_inbox row: {error}"),
                    })?,
                    received_at: row.try_get(2)?,
                    correlation_id: row.try_get(3)?,
                    awaited_object: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The waiting deliveries (their original rows' ids) whose awaited object was recorded
    /// as held (`provider_objects`) after they last waited: no batch made it known while they
    /// waited (the writer's pass over older events recorded it, or a release stopped at its
    /// depth), so nothing else would decide them again. Oldest first.
    pub async fn waiting_for_held_objects(&self) -> Result<Vec<Uuid>, StoreError> {
        let client = self.connection().await?;
        let rows = client
            .query(
                &format!(
                    "{LATEST_ROWS} \
                     SELECT latest.original FROM latest \
                     JOIN provider_objects p ON p.object_key = latest.awaited_object \
                     WHERE latest.outcome = 'waiting' AND p.recorded_at > latest.recorded_at \
                     ORDER BY latest.original"
                ),
                &[],
            )
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// One inbox row by id.
    pub async fn inbox_row(&self, id: Uuid) -> Result<Option<InboxRow>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt(
                &format!("SELECT {INBOX_COLUMNS} FROM provider_inbox WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(inbox_row).transpose()
    }

    /// Inbox rows matching `filter`, newest first unless `filter.oldest_first`.
    pub async fn inbox_rows(&self, filter: &InboxFilter) -> Result<Vec<InboxRow>, StoreError> {
        let client = self.connection().await?;
        let order = if filter.oldest_first { "ASC" } else { "DESC" };
        let limit = i64::from(filter.limit.min(INBOX_ROWS_MAX));
        let rows = client
            .query(
                &format!(
                    "SELECT {INBOX_COLUMNS} FROM provider_inbox \
                     WHERE ($1::text IS NULL OR provider = $1) \
                     AND ($2::text IS NULL OR outcome = $2) \
                     AND ($3::timestamptz IS NULL OR received_at >= $3) \
                     ORDER BY received_at {order}, id {order} LIMIT $4"
                ),
                &[
                    &filter.provider.map(Provider::as_str),
                    &filter.outcome.map(InboxOutcome::as_str),
                    &filter.received_since,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(inbox_row).collect()
    }
}
