//! Answers kept in process, one moka cache per read model, keyed by the normalised request
//! (path and sorted parameters). Each entry is tagged with the position it reflects: an entry
//! below the projection's latest known position is never served, and a new position empties
//! that read model's cache. The TTL bounds staleness should an announcement be missed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;

use crate::positions::Projection;

/// One computed answer: the JSON body and the position it reflects.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) position: u64,
    pub(crate) body: Bytes,
}

#[derive(Debug)]
pub(crate) struct AnswerCache {
    caches: [Cache<String, Arc<Answer>>; 2],
}

impl AnswerCache {
    /// `bytes_max` bounds each read model's cache by the size of its bodies.
    pub(crate) fn new(bytes_max: u64, ttl: Duration) -> AnswerCache {
        let cache = || {
            Cache::builder()
                .max_capacity(bytes_max)
                .weigher(|key: &String, answer: &Arc<Answer>| {
                    u32::try_from(key.len() + answer.body.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build()
        };
        AnswerCache {
            caches: [cache(), cache()],
        }
    }

    fn cache(&self, projection: Projection) -> &Cache<String, Arc<Answer>> {
        match projection {
            Projection::Customers => &self.caches[0],
            Projection::Revenue => &self.caches[1],
        }
    }

    /// The cached answer for `key` if it reflects at least `latest`.
    pub(crate) fn get(
        &self,
        projection: Projection,
        key: &str,
        latest: u64,
    ) -> Option<Arc<Answer>> {
        let found = self
            .cache(projection)
            .get(key)
            .filter(|answer| answer.position >= latest);
        crate::metrics::cache_lookup(projection, found.is_some());
        found
    }

    pub(crate) fn insert(&self, projection: Projection, key: String, answer: Arc<Answer>) {
        self.cache(projection).insert(key, answer);
        self.count_entries(projection);
    }

    /// Drops every answer of `projection` (it moved to a new position).
    pub(crate) fn invalidate(&self, projection: Projection) {
        self.cache(projection).invalidate_all();
        self.count_entries(projection);
    }

    /// Sets the entries gauge; moka counts its pending writes first (a miss or a new position
    /// only, never on a hit).
    fn count_entries(&self, projection: Projection) {
        let cache = self.cache(projection);
        cache.run_pending_tasks();
        crate::metrics::cache_entries(projection, cache.entry_count());
    }
}
