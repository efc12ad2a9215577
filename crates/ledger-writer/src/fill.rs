//! The leading writer's one pass over the events recorded before it kept `provider_objects`
//! itself (migration V15, docs/decisions/0037): which customer holds a provider's subscription
//! or payment that only a command recorded. Until the pass is done, a PayPal sale for a
//! subscription the company started with `start_subscription` would find no customer and wait
//! for good. It runs before the writer takes any request, in position order, so an object it
//! records goes to the holder of its first event, as appending does (an object already held,
//! from V14's fill from the inbox or appended since, keeps its holder); then the deliveries
//! already waiting for an object it recorded are decided again ([`released`]).

use futures_util::TryStreamExt;
use ledger_domain::proto;
use ledger_store::{RecordedEvent, Store, StoreError, Writer};

use crate::WriterError;
use crate::envelope::held_objects;
use crate::waiting::Awaiting;

/// Events read and recorded in one transaction of the pass.
const FILL_STEP_EVENTS: u64 = 10_000;

/// Records the objects that the events from where the pass stopped through `last_position`
/// (the table's last event) show their customers hold, then ends the pass; `writer` is the
/// lock the pass runs under, and its connection records each step. Resumes where it stopped after a crash; does nothing once the
/// pass is done.
///
/// # Errors
/// [`WriterError::Store`] when PostgreSQL fails; [`WriterError::CorruptEvent`] when an event
/// cannot be decoded; [`WriterError::LockLost`] when the lock's connection closed (another
/// writer may be leading and running the pass).
pub(crate) async fn fill_provider_objects(
    store: &Store,
    writer: &Writer,
    last_position: u64,
) -> Result<(), WriterError> {
    let Some(mut from) = store.provider_objects_fill_from().await? else {
        return Ok(());
    };
    if from > last_position.max(1) {
        tracing::warn!(
            from_position = from,
            last_position,
            "the pass over older events (migration V15) was to start after the table's last \
             event; ended without reading"
        );
    } else if last_position > 0 {
        tracing::info!(
            from_position = from,
            last_position,
            "recording which customers hold the provider objects of the events recorded \
             before the writer kept them (once, after migration V15); the writer takes no \
             request until this is done"
        );
    }
    let started = std::time::Instant::now();
    let mut recorded = 0;
    loop {
        if writer.is_closed() {
            return Err(WriterError::LockLost);
        }
        let limit = FILL_STEP_EVENTS.min((last_position + 1).saturating_sub(from));
        let events: Vec<RecordedEvent> = store.read_all(from, limit).try_collect().await?;
        let mut held = Vec::new();
        for recorded in &events {
            let event = ledger_domain::decode_event(&recorded.event.payload).map_err(|error| {
                WriterError::CorruptEvent {
                    global_position: recorded.global_position,
                    reason: error.to_string(),
                }
            })?;
            held.extend(
                held_objects(
                    recorded.event.payment_provider_type,
                    std::slice::from_ref(&event),
                )
                .map(|object_key| (object_key, recorded.stream_id)),
            );
        }
        let next = from + events.len() as u64;
        let resume_from = (!events.is_empty() && next <= last_position).then_some(next);
        recorded += writer.fill_provider_objects(&held, resume_from).await?;
        match resume_from {
            Some(next) => {
                tracing::info!(
                    through_position = next - 1,
                    last_position,
                    percent = (next - 1) * 100 / last_position.max(1),
                    objects_recorded = recorded,
                    "provider objects of older events"
                );
                from = next;
            }
            None => {
                if last_position > 0 {
                    tracing::info!(
                        last_position,
                        objects_recorded = recorded,
                        seconds = started.elapsed().as_secs_f64(),
                        "provider objects of older events recorded; taking requests"
                    );
                }
                return Ok(());
            }
        }
    }
}

/// The deliveries waiting for an object recorded as held after they last waited
/// ([`Store::waiting_for_held_objects`]), taken out of `awaiting` as re-runs to decide: no
/// batch will make those objects known again, so they would wait for good. The pass records
/// such objects (a PayPal sale that waited for a subscription only a command had started);
/// asked at every start, so a writer stopped before its re-runs were decided leaves them to
/// the next, while a delivery that waits again for an object held before (another customer's
/// payment) is not re-run at every start.
pub(crate) async fn released(
    store: &Store,
    awaiting: &mut Awaiting,
) -> Result<Vec<proto::ProviderDelivery>, StoreError> {
    if awaiting.is_empty() {
        return Ok(Vec::new());
    }
    let released = awaiting.release_originals(&store.waiting_for_held_objects().await?);
    if !released.is_empty() {
        tracing::info!(
            deliveries = released.len(),
            "deliveries waiting for an object the ledger holds: decided again"
        );
    }
    Ok(released)
}
