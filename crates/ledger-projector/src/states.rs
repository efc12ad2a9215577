//! Per-stream states a projector keeps in memory between batches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use ledger_store::Store;
use uuid::Uuid;

use crate::{Projected, ProjectorError, streams_before};

/// The states of recently projected streams (customers), bounded by a capacity: when a batch
/// leaves more streams than that, the whole cache is emptied, and later batches replay the
/// states they need from the store (one query per batch). That costs a few reloads after a
/// flush instead of an LRU's bookkeeping on every access, which a rebuild of millions of events
/// would pay on every event.
///
/// It holds the states as of the last applied batch, valid only for the run that filled it: a
/// batch whose transaction fails stops the runtime, and the projector (with its states) is
/// dropped.
#[derive(Debug)]
pub struct StreamStates<T> {
    capacity: usize,
    states: Mutex<HashMap<Uuid, T>>,
}

impl<T: Default> StreamStates<T> {
    pub fn new(capacity: usize) -> StreamStates<T> {
        StreamStates {
            capacity,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// The states of the streams of `events` (a batch) just before each stream's first event
    /// in it: the kept state when `version(state)` is the event's stream version - 1, a default
    /// one for a new stream, and otherwise `replay(the stream's events before the batch)`,
    /// read from `store` in one query for all of them.
    pub async fn before_batch(
        &self,
        store: &Store,
        events: &[Projected],
        version: impl Fn(&T) -> u64,
        replay: impl Fn(&[Projected]) -> T,
    ) -> Result<BTreeMap<Uuid, T>, ProjectorError> {
        let mut states = BTreeMap::new();
        let mut missing = BTreeSet::new();
        {
            let mut kept = self.lock();
            for projected in events {
                let recorded = &projected.recorded;
                if states.contains_key(&recorded.stream_id) || missing.contains(&recorded.stream_id)
                {
                    continue;
                }
                match kept.remove(&recorded.stream_id) {
                    _ if recorded.stream_version == 1 => {
                        states.insert(recorded.stream_id, T::default());
                    }
                    Some(state) if version(&state) + 1 == recorded.stream_version => {
                        states.insert(recorded.stream_id, state);
                    }
                    _ => {
                        missing.insert(recorded.stream_id);
                    }
                }
            }
        }
        if let Some(first) = events.first() {
            let missing: Vec<Uuid> = missing.into_iter().collect();
            let replayed = streams_before(store, &missing, first.recorded.global_position).await?;
            for stream_id in missing {
                let earlier = replayed.get(&stream_id).map_or(&[][..], Vec::as_slice);
                states.insert(stream_id, replay(earlier));
            }
        }
        Ok(states)
    }

    /// Keeps `states` (as of the batch just applied) for the next batches.
    pub fn keep(&self, states: impl IntoIterator<Item = (Uuid, T)>) {
        let mut kept = self.lock();
        kept.extend(states);
        if kept.len() > self.capacity {
            kept.clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, T>> {
        // A panic while holding the lock cannot leave a half-updated map behind: every update
        // is a single insert, remove or clear.
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
