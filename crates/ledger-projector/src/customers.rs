//! [`CustomerStates`]: customers' aggregates between batches, for projectors whose rows are
//! derived from the domain's customer aggregate.

use ledger_domain::{Customer, Event, evolve, proto};
use ledger_store::{RecordedEvent, Store};
use prost::Message;
use uuid::Uuid;

use crate::ProjectorError;

/// The aggregates of recently seen customers, in a bounded cache, replayed from the store on a
/// miss.
///
/// It is only valid for the run it was filled in: if a batch's transaction fails, the runtime
/// stops and the projector (with this cache) is dropped; a new run starts empty.
#[derive(Debug)]
pub struct CustomerStates {
    store: Store,
    cache: moka::sync::Cache<Uuid, Customer>,
}

impl CustomerStates {
    /// `store` is read on a cache miss; at most `customers_max` aggregates are kept.
    pub fn new(store: Store, customers_max: u64) -> CustomerStates {
        CustomerStates {
            store,
            cache: moka::sync::Cache::new(customers_max),
        }
    }

    /// The customer's aggregate just before `first` (its first event in the batch being
    /// applied): taken out of the cache, or replayed from the store.
    pub async fn before(&self, first: &RecordedEvent) -> Result<Customer, ProjectorError> {
        if first.stream_version == 1 {
            return Ok(Customer::default());
        }
        if let Some(state) = self.cache.remove(&first.stream_id)
            && state.version + 1 == first.stream_version
        {
            return Ok(state);
        }
        let earlier = self.store.read_stream(first.stream_id, 1).await?;
        let mut state = Customer::default();
        for recorded in earlier
            .iter()
            .take_while(|recorded| recorded.global_position < first.global_position)
        {
            state = evolve(state, &decode(recorded)?);
        }
        Ok(state)
    }

    /// Keeps the customer's aggregate as of the end of the batch, for the next batch.
    pub fn keep(&self, stream_id: Uuid, state: Customer) {
        self.cache.insert(stream_id, state);
    }
}

/// The event in a stored envelope's payload.
pub(crate) fn decode(recorded: &RecordedEvent) -> Result<Event, ProjectorError> {
    let corrupt = |reason: String| ProjectorError::CorruptEvent {
        global_position: recorded.global_position,
        reason,
    };
    proto::Event::decode(&recorded.event.payload[..])
        .map_err(|error| corrupt(error.to_string()))?
        .kind
        .ok_or_else(|| corrupt("the payload has no event".to_owned()))
}
