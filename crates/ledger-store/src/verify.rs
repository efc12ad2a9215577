//! Recomputing the hash chain to detect tampering, and comparing the table's head with the
//! copies that recorded it (the JetStream stream, projectors' checkpoints) to detect a
//! truncated tail, which the chain alone cannot show.

use futures_util::TryStreamExt;

use crate::Store;
use crate::error::StoreError;
use crate::hash::{GENESIS_HASH, Hash, chain_hash};
use crate::read::position_to_sql;

/// The first position where the stored log stops being what the writer wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub global_position: u64,
    pub reason: String,
}

/// The verdict of [`Store::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerification {
    /// Events whose hash was recomputed and matched.
    pub verified_events: u64,
    /// `None`: every event in the range is intact.
    pub first_break: Option<ChainBreak>,
    /// The hash of the last intact event (the predecessor's hash if none was verified): an
    /// auditor who records it can later detect a rewritten tail.
    pub last_verified_hash: Hash,
}

/// Where the table ends: its last event's position and hash (0 and [`GENESIS_HASH`] when
/// empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableHead {
    pub global_position: u64,
    pub hash: Hash,
}

/// Another record of how far the log went: the position and chain hash of the last event a
/// copy saw (the stream's last message, a projector's checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadCopy {
    /// What the copy is, for the report: `stream LEDGER_EVENTS`, `checkpoint revenue`.
    pub name: String,
    pub global_position: u64,
    pub hash: Hash,
}

/// How a [`HeadCopy`] compares with the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyVerdict {
    /// At the table's head, with the same hash.
    Level,
    /// Behind the table's head by `events`, with the hash the table has at its position: fine
    /// (a projector catching up, a stream being republished).
    Behind { events: u64 },
    /// Ahead of the table's head: the copy saw events the table no longer has (its tail was
    /// deleted).
    Ahead { events: u64 },
    /// The table's event at the copy's position has another hash: history was rewritten.
    HashMismatch,
}

impl CopyVerdict {
    /// True when the copy shows that the table lost or changed events.
    pub fn is_evidence_of_tampering(self) -> bool {
        matches!(self, CopyVerdict::Ahead { .. } | CopyVerdict::HashMismatch)
    }
}

impl Store {
    /// The table's head: its last event's position and hash.
    pub async fn head(&self) -> Result<TableHead, StoreError> {
        let global_position = self.last_position().await?;
        let hash = self.hash_at(global_position).await?.unwrap_or(GENESIS_HASH);
        Ok(TableHead {
            global_position,
            hash,
        })
    }

    /// Compares `copy` with the table whose head is `head`: ahead, level, behind, or pointing
    /// at an event whose hash the table no longer has.
    pub async fn compare_head_copy(
        &self,
        head: &TableHead,
        copy: &HeadCopy,
    ) -> Result<CopyVerdict, StoreError> {
        if copy.global_position > head.global_position {
            return Ok(CopyVerdict::Ahead {
                events: copy.global_position - head.global_position,
            });
        }
        let table_hash = if copy.global_position == head.global_position {
            Some(head.hash)
        } else {
            self.hash_at(copy.global_position).await?
        };
        Ok(if table_hash != Some(copy.hash) {
            CopyVerdict::HashMismatch
        } else if copy.global_position == head.global_position {
            CopyVerdict::Level
        } else {
            CopyVerdict::Behind {
                events: head.global_position - copy.global_position,
            }
        })
    }

    /// Recomputes the hash chain over positions `from..=to` and names the first position whose
    /// stored hash, link to its predecessor or contiguity does not hold. `progress` is called
    /// with the number of events checked so far, once per page.
    pub async fn verify_chain(
        &self,
        from: u64,
        to: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<ChainVerification, StoreError> {
        let from = from.max(1);
        let mut expected_prev_hash = self.hash_before(from).await?;
        let mut verified_events: u64 = 0;
        let mut buffer = Vec::new();
        let limit = (to + 1).saturating_sub(from);
        let events = self.read_all(from, limit);
        futures_util::pin_mut!(events);
        let first_break = loop {
            let event = match events.try_next().await {
                Ok(Some(event)) => event,
                Ok(None) => break None,
                Err(StoreError::Corrupt {
                    global_position,
                    reason,
                }) => {
                    break Some(ChainBreak {
                        global_position,
                        reason,
                    });
                }
                Err(other) => return Err(other),
            };
            let chain_break = |reason: &str| {
                Some(ChainBreak {
                    global_position: event.global_position,
                    reason: reason.to_owned(),
                })
            };
            if event.prev_hash != expected_prev_hash {
                break chain_break("prev_hash does not match the hash of the previous event");
            }
            if chain_hash(&expected_prev_hash, &event, &mut buffer) != event.hash {
                break chain_break("the stored event does not match its hash: it was changed");
            }
            expected_prev_hash = event.hash;
            verified_events += 1;
            if verified_events.is_multiple_of(crate::read::READ_PAGE_EVENTS_MAX) {
                progress(verified_events);
            }
        };
        progress(verified_events);
        Ok(ChainVerification {
            verified_events,
            first_break,
            last_verified_hash: expected_prev_hash,
        })
    }

    async fn hash_before(&self, position: u64) -> Result<Hash, StoreError> {
        if position <= 1 {
            return Ok(GENESIS_HASH);
        }
        self.hash_at(position - 1)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                global_position: position - 1,
                reason: "the event before the verified range is missing".to_owned(),
            })
    }

    /// The stored hash of the event at `global_position` ([`GENESIS_HASH`] at 0), if the
    /// table has that event.
    async fn hash_at(&self, global_position: u64) -> Result<Option<Hash>, StoreError> {
        if global_position == 0 {
            return Ok(Some(GENESIS_HASH));
        }
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT hash FROM customer_payment_events WHERE global_position = $1",
                &[&position_to_sql(global_position)?],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let bytes: &[u8] = row.try_get(0)?;
        bytes.try_into().map(Some).map_err(|_| StoreError::Corrupt {
            global_position,
            reason: "hash is not 32 bytes".to_owned(),
        })
    }
}
