//! Deliveries waiting for an object (docs/decisions/0022-waiting-deliveries.md): the writer
//! keeps in memory which deliveries wait for which object, so that the batch that makes an
//! object known (a delivery or a command: a customer registered with or linked to an account, a
//! subscription started, an invoice issued, a payment recorded) normalizes them again right
//! after, in the same transaction, and a batch that makes nothing awaited known does no I/O for
//! it. The set is loaded from the inbox when the writer takes the lock
//! ([`ledger_store::Store::waiting_deliveries`]), so it survives restarts and failover.

use std::collections::HashMap;

use ledger_domain::proto;
use ledger_store::{InboxOutcome, InboxWrite, Store, StoreError, WaitingDelivery};
use uuid::Uuid;

/// Rounds of releases one request of a batch may set off: a released invoice may release a
/// charge, which may release a dispute. A cycle cannot form (an object is made known once), so
/// the bound only caps the work of one request; what is left waits for the next object.
pub(crate) const RELEASE_DEPTH_MAX: usize = 8;

/// The deliveries still waiting, by the key of the object they wait for
/// (`ledger_connectors::AwaitedObject::key`).
#[derive(Debug, Default)]
pub(crate) struct Awaiting {
    by_object: HashMap<String, Vec<WaitingDelivery>>,
    /// The object each waiting original (inbox id) waits for.
    object_of: HashMap<Uuid, String>,
    /// Set when a batch's append failed after the set was changed for it: reloaded from the
    /// inbox before the next batch.
    stale: bool,
}

impl Awaiting {
    /// The deliveries still waiting, from the inbox.
    pub(crate) async fn load(store: &Store) -> Result<Awaiting, StoreError> {
        let mut awaiting = Awaiting::default();
        for waiting in store.waiting_deliveries().await? {
            awaiting.insert(waiting);
        }
        if !awaiting.object_of.is_empty() {
            tracing::info!(
                deliveries = awaiting.object_of.len(),
                objects = awaiting.by_object.len(),
                "deliveries waiting for an object"
            );
        }
        Ok(awaiting)
    }

    /// Reloads the set when a failed append left it ahead of the inbox.
    pub(crate) async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.stale {
            *self = Awaiting::load(store).await?;
        }
        Ok(())
    }

    /// Marks the set as changed for a batch that was not appended.
    pub(crate) fn mark_stale(&mut self) {
        self.stale = true;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.object_of.is_empty()
    }

    /// Whether a delivery waits for any of `objects` (keys).
    pub(crate) fn awaits_any(&self, objects: &[String]) -> bool {
        objects
            .iter()
            .any(|object| self.by_object.contains_key(object))
    }

    fn insert(&mut self, waiting: WaitingDelivery) {
        self.object_of
            .insert(waiting.inbox_id, waiting.awaited_object.clone());
        self.by_object
            .entry(waiting.awaited_object.clone())
            .or_default()
            .push(waiting);
    }

    fn remove(&mut self, original: Uuid) {
        let Some(object) = self.object_of.remove(&original) else {
            return;
        };
        if let Some(waiting) = self.by_object.get_mut(&object) {
            waiting.retain(|waiting| waiting.inbox_id != original);
            if waiting.is_empty() {
                self.by_object.remove(&object);
            }
        }
    }

    /// Follows the inbox rows a batch records: the latest row of an original decides whether
    /// it still waits, and for what.
    pub(crate) fn record(&mut self, rows: &[InboxWrite]) {
        for write in rows {
            let row = &write.row;
            if row.outcome == InboxOutcome::Duplicate {
                continue;
            }
            let original = row.renormalizes_inbox_id.unwrap_or(row.id);
            self.remove(original);
            if let (InboxOutcome::Waiting, Some(object)) = (row.outcome, &row.awaited_object) {
                self.insert(WaitingDelivery {
                    inbox_id: original,
                    provider: row.provider,
                    received_at: row.received_at,
                    correlation_id: row.correlation_id,
                    awaited_object: object.clone(),
                });
            }
        }
    }

    /// Takes out the deliveries waiting for the objects `known` names, as re-runs to decide
    /// (`renormalizes_inbox_id` = the original); a re-run that waits again is put back by
    /// [`Awaiting::record`].
    pub(crate) fn release(&mut self, known: &[String]) -> Vec<proto::ProviderDelivery> {
        let mut released = Vec::new();
        for object in known {
            let Some(waiting) = self.by_object.remove(object) else {
                continue;
            };
            for waiting in waiting {
                self.object_of.remove(&waiting.inbox_id);
                released.push(rerun(&waiting));
            }
        }
        released
    }

    /// Takes out the waiting deliveries of the original rows `originals` (inbox ids), as
    /// [`Awaiting::release`] does; an id that does not wait is skipped.
    pub(crate) fn release_originals(&mut self, originals: &[Uuid]) -> Vec<proto::ProviderDelivery> {
        let mut released = Vec::new();
        for original in originals {
            let Some(object) = self.object_of.get(original).cloned() else {
                continue;
            };
            if let Some(waiting) = self.by_object.get(&object) {
                released.extend(
                    waiting
                        .iter()
                        .filter(|waiting| waiting.inbox_id == *original)
                        .map(rerun),
                );
            }
            self.remove(*original);
        }
        released
    }
}

/// The re-run of a waiting delivery: its original row to normalize again.
fn rerun(waiting: &WaitingDelivery) -> proto::ProviderDelivery {
    proto::ProviderDelivery {
        provider: proto::PaymentProvider::from(waiting.provider) as i32,
        body: bytes::Bytes::new(),
        received_at_unix_micros: i64::try_from(waiting.received_at.unix_timestamp_nanos() / 1_000)
            .unwrap_or_default(),
        correlation_id: waiting
            .correlation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        renormalizes_inbox_id: waiting.inbox_id.to_string(),
        // A re-run keeps its original row's source.
        source: proto::DeliverySource::Unspecified as i32,
    }
}
