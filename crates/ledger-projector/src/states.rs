//! Per-stream states a projector keeps in memory between batches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use ledger_store::Store;
use uuid::Uuid;

use crate::{Projected, ProjectorError, streams_before};

/// The bytes of states each projector keeps between batches by default ([`StreamStates`],
/// `ProjectorConfig::states_bytes_max`, `--states-mib`): 128 MiB, about 100,000 customers of a
/// year's monthly history each.
pub const STATES_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The states of recently projected streams (customers), bounded by an estimate of their bytes
/// (a customer's state grows with its history, so a count of customers would not bound
/// memory): when a batch leaves more than that, the whole cache is emptied, and later batches
/// replay the states they need from the store (one query per batch). That costs a few reloads
/// after a flush instead of an LRU's bookkeeping on every access, which a rebuild of millions
/// of events would pay on every event.
///
/// It holds the states as of the last applied batch, valid only for the run that filled it: a
/// batch whose transaction fails stops the runtime, and the projector (with its states) is
/// dropped.
#[derive(Debug)]
pub struct StreamStates<T> {
    bytes_max: usize,
    /// The estimate of a state's bytes.
    weigh: fn(&T) -> usize,
    kept: Mutex<Kept<T>>,
}

#[derive(Debug)]
struct Kept<T> {
    states: HashMap<Uuid, T>,
    /// The sum of `weigh` over `states`.
    bytes: usize,
}

impl<T: Default + Send> StreamStates<T> {
    /// Keeps states up to `bytes_max` bytes as `weigh` estimates them.
    pub fn new(bytes_max: usize, weigh: fn(&T) -> usize) -> StreamStates<T> {
        StreamStates {
            bytes_max,
            weigh,
            kept: Mutex::new(Kept {
                states: HashMap::new(),
                bytes: 0,
            }),
        }
    }

    /// Changes the bound; takes effect at the next [`StreamStates::keep`].
    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
    }

    /// The states of the streams of `events` (a batch) just before each stream's first event
    /// in it: the kept state when `version(state)` is the event's stream version - 1, a default
    /// one for a new stream, and otherwise `replay(the stream's events before the batch)`,
    /// read from `store` in one query for all of them.
    pub async fn before_batch<'a>(
        &self,
        store: &Store,
        events: impl IntoIterator<Item = &'a Projected>,
        version: impl Fn(&T) -> u64,
        replay: impl Fn(&[Projected]) -> T,
    ) -> Result<BTreeMap<Uuid, T>, ProjectorError> {
        let mut states = BTreeMap::new();
        let mut missing = BTreeSet::new();
        let mut first_position = None;
        {
            let mut kept = self.lock();
            for projected in events {
                let recorded = &projected.recorded;
                first_position.get_or_insert(recorded.global_position);
                if states.contains_key(&recorded.stream_id) || missing.contains(&recorded.stream_id)
                {
                    continue;
                }
                let taken = kept.states.remove(&recorded.stream_id);
                if let Some(state) = &taken {
                    kept.bytes = kept.bytes.saturating_sub((self.weigh)(state));
                }
                match taken {
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
        if let Some(first_position) = first_position {
            let missing: Vec<Uuid> = missing.into_iter().collect();
            let replayed = streams_before(store, &missing, first_position).await?;
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
        for (stream_id, state) in states {
            kept.bytes = kept.bytes.saturating_add((self.weigh)(&state));
            if let Some(replaced) = kept.states.insert(stream_id, state) {
                kept.bytes = kept.bytes.saturating_sub((self.weigh)(&replaced));
            }
        }
        if kept.bytes > self.bytes_max {
            kept.states.clear();
            kept.bytes = 0;
        }
    }

    /// The states kept and the estimate of their bytes.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let kept = self.lock();
        (kept.states.len(), kept.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<T>> {
        // A panic while holding the lock cannot leave a half-updated map behind: every update
        // is a single insert, remove or clear, each with its change of `bytes`.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_are_bounded_by_their_bytes_not_their_number() {
        let states: StreamStates<Vec<u8>> = StreamStates::new(1_000, Vec::len);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        states.keep([(a, vec![0; 400]), (b, vec![0; 400])]);
        assert_eq!(states.kept(), (2, 800));
        // A state kept again replaces its earlier weight.
        states.keep([(a, vec![0; 100])]);
        assert_eq!(states.kept(), (2, 500));
        // Two states that grew past the bound empty the cache.
        states.keep([(a, vec![0; 600]), (b, vec![0; 500])]);
        assert_eq!(states.kept(), (0, 0));
    }
}
