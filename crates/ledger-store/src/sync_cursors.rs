//! Where `ledger sync <provider>` stopped in each of a provider's lists
//! (`provider_sync_cursors`, migrations V9 and V13), and which listed objects the inbox already
//! holds.

use std::collections::HashSet;

use ledger_domain::Provider;
use time::OffsetDateTime;

use crate::Store;
use crate::error::StoreError;
use crate::writer::text_problem;

/// Where a list's last run stopped: the position its next page starts after, and the
/// `--since` that run read the list with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCursor {
    /// The provider's paging position (Stripe's and Xendit's: the last object id of the page;
    /// PayPal's: `<window start>:<page>`), 1 to 255 bytes.
    pub cursor: String,
    /// The `--since` of the run that saved it, to the microsecond; `None`: no `--since`.
    pub since: Option<OffsetDateTime>,
}

impl Store {
    /// Where the list of `object_kind` stopped after the last page whose objects were all
    /// recorded; `None` when the list was never read or was read to its end.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn sync_cursor(
        &self,
        provider: Provider,
        object_kind: &str,
    ) -> Result<Option<SyncCursor>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT cursor, since FROM provider_sync_cursors \
                 WHERE provider = $1 AND object_kind = $2 AND cursor IS NOT NULL",
                &[&provider.as_str(), &object_kind],
            )
            .await?;
        Ok(row.map(|row| SyncCursor {
            cursor: row.get(0),
            since: row.get(1),
        }))
    }

    /// Records where the list of `object_kind`, read with `since` (the run's `--since`),
    /// stands: `Some(position)` after a page whose objects were all recorded (1 to 255 bytes),
    /// `None` once the list was read to its end.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or the position is longer than 255 bytes.
    pub async fn save_sync_cursor(
        &self,
        provider: Provider,
        object_kind: &str,
        cursor: Option<&str>,
        since: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let client = self.connection().await?;
        client
            .execute(
                "INSERT INTO provider_sync_cursors \
                   (provider, object_kind, cursor, since, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, object_kind) \
                 DO UPDATE SET cursor = EXCLUDED.cursor, since = EXCLUDED.since, \
                   updated_at = EXCLUDED.updated_at",
                &[
                    &provider.as_str(),
                    &object_kind,
                    &cursor,
                    &since,
                    &OffsetDateTime::now_utc(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Which of `event_ids` of `provider` the inbox already holds (one query, one probe of the
    /// inbox's `(provider, provider_event_id)` index per id, which the `LIMIT` keeps the planner
    /// from turning into a scan of the whole inbox): a backfill skips them rather than have the
    /// writer record each as a duplicate again. An id the inbox cannot hold ([`text_problem`]: NUL,
    /// over 255 bytes) is not recorded and not sent to PostgreSQL, which refuses NUL in text.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn recorded_event_ids(
        &self,
        provider: Provider,
        event_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let event_ids: Vec<&str> = event_ids
            .iter()
            .map(String::as_str)
            .filter(|id| text_problem(id, false).is_none())
            .collect();
        if event_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let client = self.connection().await?;
        let rows = client
            .query(
                "SELECT i.provider_event_id FROM unnest($2::text[]) AS e(id) CROSS JOIN LATERAL \
                 (SELECT provider_event_id FROM provider_inbox \
                 WHERE provider = $1 AND provider_event_id = e.id LIMIT 1) AS i",
                &[&provider.as_str(), &event_ids],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }
}
