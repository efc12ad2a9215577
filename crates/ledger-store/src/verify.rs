//! Recomputing the hash chain to detect tampering.

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

impl Store {
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
        let client = self.connection().await?;
        let row = client
            .query_opt(
                "SELECT hash FROM customer_payment_events WHERE global_position = $1",
                &[&position_to_sql(position - 1)?],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::Corrupt {
                global_position: position - 1,
                reason: "the event before the verified range is missing".to_owned(),
            });
        };
        let bytes: &[u8] = row.try_get(0)?;
        bytes.try_into().map_err(|_| StoreError::Corrupt {
            global_position: position - 1,
            reason: "hash is not 32 bytes".to_owned(),
        })
    }
}
