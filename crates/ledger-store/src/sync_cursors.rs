//! Where `ledger sync <provider>` stopped in each of a provider's lists
//! (`provider_sync_cursors`, migration V9), and which listed objects the inbox already holds.

use std::collections::HashSet;

use ledger_domain::Provider;
use time::OffsetDateTime;

use crate::Store;
use crate::error::StoreError;

impl Store {
    /// The id of the last object of the last page of `object_kind`'s list whose objects were
    /// all recorded (the next page is the one `starting_after` it); `None` when the list was
    /// never read or was read to its end.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn sync_cursor(
        &self,
        provider: Provider,
        object_kind: &str,
    ) -> Result<Option<String>, StoreError> {
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT cursor FROM provider_sync_cursors WHERE provider = $1 AND object_kind = $2",
                &[&provider.as_str(), &object_kind],
            )
            .await?;
        Ok(row.and_then(|row| row.get::<_, Option<String>>(0)))
    }

    /// Records where the list of `object_kind` stands: `Some(id)` after a page whose objects
    /// were all recorded (1 to 255 bytes), `None` once the list was read to its end.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or the id is longer than 255 bytes.
    pub async fn save_sync_cursor(
        &self,
        provider: Provider,
        object_kind: &str,
        cursor: Option<&str>,
    ) -> Result<(), StoreError> {
        let client = self.connection().await?;
        client
            .execute(
                "INSERT INTO provider_sync_cursors (provider, object_kind, cursor, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (provider, object_kind) \
                 DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = EXCLUDED.updated_at",
                &[
                    &provider.as_str(),
                    &object_kind,
                    &cursor,
                    &OffsetDateTime::now_utc(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Which of `event_ids` of `provider` the inbox already holds (one query, one probe of the
    /// inbox's `(provider, provider_event_id)` index per id, which the `LIMIT` keeps the planner
    /// from turning into a scan of the whole inbox): a backfill skips them rather than have the writer
    /// record each as a duplicate again.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn recorded_event_ids(
        &self,
        provider: Provider,
        event_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
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
