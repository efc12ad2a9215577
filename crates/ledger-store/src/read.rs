//! Reading the log: a stream, everything from a position (paged), look-ups.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use ledger_domain::UniqueKey;
use tokio_postgres::{GenericClient, Row, RowStream};
use uuid::Uuid;

use crate::Store;
use crate::error::StoreError;
use crate::event::{NewEvent, RecordedEvent, RequestFingerprint, StoredRequest};
use crate::hash::Hash;

/// Events `read_all` fetches per query.
pub(crate) const READ_PAGE_EVENTS_MAX: u64 = 10_000;

const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, stream_version, event_type, \
     account_id, payment_provider_type, status, issuer, occurred_at, recorded_at, idempotency_key, \
     correlation_id, causation_id, schema_version, payload, prev_hash, hash";
/// The number of [`EVENT_COLUMNS`]: the index of a column selected after them.
const EVENT_COLUMNS_COUNT: usize = 18;

impl Store {
    /// The events of one stream with `stream_version >= from_version`, in order.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM customer_payment_events \
                 WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
            ))
            .await?;
        let rows = client
            .query(&statement, &[&stream_id, &position_to_sql(from_version)?])
            .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        check_versions(&events, from_version.max(1))?;
        Ok(events)
    }

    /// The events of `stream_ids` before `global_position`, stream by stream, each stream in
    /// version order (from 1): what a reader needs to rebuild many streams' states as of a
    /// position, in one query. One probe of the `(stream_id, stream_version)` index per stream
    /// (the inner `ORDER BY` keeps the planner from turning it into a join): `stream_id =
    /// ANY($1)` was planned as a walk of the whole table by position, 11 ms per writer batch in
    /// `ledger bench sync` at 300,000 events. The bound is written `global_position + 0` so that
    /// it stays a filter: as an index condition the planner and-ed each probe with a range scan
    /// of the primary key (1 ms per stream at 40,000 events), though the bound is hardly ever
    /// selective (the writer reads whole streams, a projector the streams before its batch).
    pub async fn read_streams_before(
        &self,
        stream_ids: &[Uuid],
        global_position: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if stream_ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT e.* FROM unnest($1::uuid[]) AS s(stream_id) CROSS JOIN LATERAL \
                 (SELECT {EVENT_COLUMNS} FROM customer_payment_events \
                 WHERE stream_id = s.stream_id AND global_position + 0 < $2 \
                 ORDER BY stream_version) AS e \
                 ORDER BY e.stream_id, e.stream_version"
            ))
            .await?;
        let rows = client
            .query(
                &statement,
                &[&stream_ids, &position_to_sql(global_position)?],
            )
            .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for stream in events.chunk_by(|a, b| a.stream_id == b.stream_id) {
            check_versions(stream, 1)?;
        }
        Ok(events)
    }

    /// At most `limit` events from `from_position` (inclusive) on, in position order, read in
    /// pages of [`READ_PAGE_EVENTS_MAX`]. Fails with [`StoreError::Corrupt`] if a position is
    /// missing: readers never silently skip an event.
    pub fn read_all(
        &self,
        from_position: u64,
        limit: u64,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + '_ {
        let state = ReadAll {
            store: self,
            next_position: from_position.max(1),
            remaining: limit,
            page: None,
            page_rows_left: 0,
            finished: false,
        };
        stream::try_unfold(state, ReadAll::next_event)
    }

    /// The position of the last appended event, 0 for an empty store.
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(global_position), 0) FROM customer_payment_events",
                &[],
            )
            .await?;
        position_from_sql(row.try_get(0)?)
    }

    /// The events first appended for `idempotency_key` and the fingerprint of the request
    /// that appended them, if the key was ever used. A key the store cannot hold
    /// ([`crate::text_problem`]: empty, NUL, over 255 bytes) was never used: `None`, without
    /// asking PostgreSQL, which refuses NUL in text.
    pub async fn find_by_idempotency_key(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        if crate::text_problem(idempotency_key, false).is_some() {
            return Ok(None);
        }
        let client = self.connection().await?;
        stored_request(&**client, idempotency_key).await
    }

    /// The customer (stream) that owns an email or provider account.
    pub async fn find_stream_by_unique_key(
        &self,
        unique_key: &UniqueKey,
    ) -> Result<Option<Uuid>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT stream_id FROM customer_unique_keys WHERE unique_key = $1",
                &[&unique_key.storage_key()],
            )
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }
}

/// Fails unless `events` (of one stream) have the versions `from_version`, `from_version + 1`, ...
fn check_versions(events: &[RecordedEvent], from_version: u64) -> Result<(), StoreError> {
    for (expected_version, event) in (from_version..).zip(events) {
        if event.stream_version != expected_version {
            return Err(StoreError::Corrupt {
                global_position: event.global_position,
                reason: format!(
                    "stream {} skips from version {} to {}",
                    event.stream_id,
                    expected_version - 1,
                    event.stream_version
                ),
            });
        }
    }
    Ok(())
}

struct ReadAll<'a> {
    store: &'a Store,
    next_position: u64,
    remaining: u64,
    /// The open page: the pooled connection is kept with the rows it is streaming.
    page: Option<(deadpool_postgres::Object, Pin<Box<RowStream>>)>,
    page_rows_left: u64,
    finished: bool,
}

impl ReadAll<'_> {
    async fn next_event(mut self) -> Result<Option<(RecordedEvent, Self)>, StoreError> {
        loop {
            if self.remaining == 0 || self.finished {
                return Ok(None);
            }
            if let Some((_, rows)) = &mut self.page {
                match rows.next().await {
                    Some(row) => {
                        let event = event_from_row(&row?)?;
                        if event.global_position != self.next_position {
                            return Err(StoreError::Corrupt {
                                global_position: self.next_position,
                                reason: format!(
                                    "position {} is missing (the next stored one is {})",
                                    self.next_position, event.global_position
                                ),
                            });
                        }
                        self.next_position += 1;
                        self.remaining -= 1;
                        self.page_rows_left -= 1;
                        return Ok(Some((event, self)));
                    }
                    None => {
                        self.page = None;
                        // A short page means the end of the log.
                        self.finished = self.page_rows_left > 0;
                        continue;
                    }
                }
            }
            let page_limit = self.remaining.min(READ_PAGE_EVENTS_MAX);
            let client = self.store.connection().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM customer_payment_events \
                     WHERE global_position >= $1 ORDER BY global_position LIMIT $2"
                ))
                .await?;
            let parameters = [
                position_to_sql(self.next_position)?,
                position_to_sql(page_limit)?,
            ];
            let rows = client.query_raw(&statement, parameters).await?;
            self.page = Some((client, Box::pin(rows)));
            self.page_rows_left = page_limit;
        }
    }
}

/// A stored `request_fingerprint` column (NULL before migration V3).
pub(crate) fn fingerprint_from_sql(
    global_position: u64,
    bytes: Option<&[u8]>,
) -> Result<Option<RequestFingerprint>, StoreError> {
    bytes
        .map(|bytes| {
            bytes
                .try_into()
                .map(RequestFingerprint)
                .map_err(|_| StoreError::Corrupt {
                    global_position,
                    reason: format!("request_fingerprint is {} bytes, not 32", bytes.len()),
                })
        })
        .transpose()
}

/// The events appended for `idempotency_key`, in order, with the request's fingerprint
/// (`None` if the key was never used).
pub(crate) async fn stored_request(
    client: &impl GenericClient,
    idempotency_key: &str,
) -> Result<Option<StoredRequest>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, request_fingerprint FROM customer_payment_events \
                 WHERE idempotency_key = $1 ORDER BY global_position"
            ),
            &[&idempotency_key],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let first_position = position_from_sql(first.try_get(0)?)?;
    let request_fingerprint =
        fingerprint_from_sql(first_position, first.try_get(EVENT_COLUMNS_COUNT)?)?;
    Ok(Some(StoredRequest {
        events: rows.iter().map(event_from_row).collect::<Result<_, _>>()?,
        request_fingerprint,
    }))
}

fn event_from_row(row: &Row) -> Result<RecordedEvent, StoreError> {
    let global_position = position_from_sql(row.try_get(0)?)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        global_position,
        reason,
    };
    let parse_column = |index: usize, name: &str| -> Result<&str, StoreError> {
        row.try_get::<_, &str>(index)
            .map_err(|error| corrupt(format!("{name}: {error}")))
    };
    let hash_column = |index: usize, name: &str| -> Result<Hash, StoreError> {
        let bytes: &[u8] = row.try_get(index)?;
        bytes
            .try_into()
            .map_err(|_| corrupt(format!("{name} is {} bytes, not 32", bytes.len())))
    };
    let payload: &[u8] = row.try_get(15)?;
    Ok(RecordedEvent {
        global_position,
        stream_id: row.try_get(2)?,
        stream_version: position_from_sql(row.try_get(3)?)?,
        recorded_at: row.try_get(10)?,
        idempotency_key: row.try_get(11)?,
        prev_hash: hash_column(16, "prev_hash")?,
        hash: hash_column(17, "hash")?,
        event: NewEvent {
            event_id: row.try_get(1)?,
            event_type: row.try_get(4)?,
            account_id: row.try_get(5)?,
            payment_provider_type: parse_column(6, "payment_provider_type")?
                .parse()
                .map_err(|error| corrupt(format!("{error}")))?,
            status: parse_column(7, "status")?
                .parse()
                .map_err(|error| corrupt(format!("{error}")))?,
            issuer: parse_column(8, "issuer")?
                .parse()
                .map_err(|error| corrupt(format!("{error}")))?,
            occurred_at: row.try_get(9)?,
            correlation_id: row.try_get(12)?,
            causation_id: row.try_get(13)?,
            schema_version: row.try_get(14)?,
            payload: Bytes::copy_from_slice(payload),
        },
    })
}

/// Positions and versions are u64 in the API and bigint in PostgreSQL.
pub(crate) fn position_to_sql(position: u64) -> Result<i64, StoreError> {
    i64::try_from(position).map_err(|_| StoreError::Corrupt {
        global_position: position,
        reason: "position exceeds bigint".to_owned(),
    })
}

pub(crate) fn position_from_sql(position: i64) -> Result<u64, StoreError> {
    u64::try_from(position).map_err(|_| StoreError::Corrupt {
        global_position: 0,
        reason: format!("negative position or version {position}"),
    })
}
