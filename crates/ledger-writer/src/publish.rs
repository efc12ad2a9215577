//! Ordered publication to JetStream and recovery of the unpublished tail.

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream;
use futures_util::TryStreamExt;
use ledger_bus::{BusConfig, encode_recorded_event, ensure_event_stream};
use ledger_store::{RecordedEvent, Store};

use crate::WriterError;

/// Events republished per round of acknowledgements during recovery.
const RECOVERY_CHUNK_EVENTS: u64 = 1_000;

pub(crate) struct Publisher {
    jetstream: jetstream::Context,
    bus: BusConfig,
}

impl Publisher {
    /// Connects to JetStream and makes sure the event stream exists.
    pub(crate) async fn connect(
        nats: &async_nats::Client,
        bus: &BusConfig,
    ) -> Result<Publisher, WriterError> {
        let jetstream = jetstream::new(nats.clone());
        ensure_event_stream(&jetstream, bus)
            .await
            .map_err(|error| {
                WriterError::Nats(format!(
                    "creating stream {}: {}",
                    bus.stream_name,
                    ledger_store::error_text(&error)
                ))
            })?;
        Ok(Publisher {
            jetstream,
            bus: bus.clone(),
        })
    }

    /// Publishes `events` (consecutive positions, in order) so that each one's stream sequence
    /// is its global position: all are sent, then all acknowledgements are awaited.
    pub(crate) async fn publish(&self, events: &[&RecordedEvent]) -> Result<(), WriterError> {
        let failed = |error: &dyn std::fmt::Display| WriterError::Publish(error.to_string());
        let mut acknowledgements = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, event.event.event_id.to_string().as_str());
            headers.insert(
                NATS_EXPECTED_LAST_SEQUENCE,
                (event.global_position - 1).to_string().as_str(),
            );
            let acknowledgement = self
                .jetstream
                .publish_with_headers(
                    self.bus.event_subject(&event.event.event_type),
                    headers,
                    encode_recorded_event(event),
                )
                .await
                .map_err(|error| failed(&error))?;
            acknowledgements.push((event.global_position, acknowledgement));
        }
        for (global_position, acknowledgement) in acknowledgements {
            let acknowledgement = acknowledgement.await.map_err(|error| failed(&error))?;
            if acknowledgement.sequence != global_position {
                return Err(WriterError::Publish(format!(
                    "event at global position {global_position} got stream sequence {}",
                    acknowledgement.sequence
                )));
            }
        }
        Ok(())
    }

    /// Brings the stream level with the table: republishes every event the stream lacks and
    /// returns the position both now end at. Fails if the stream is ahead of the table.
    pub(crate) async fn reconcile(&self, store: &Store) -> Result<u64, WriterError> {
        let mut stream = self
            .jetstream
            .get_stream(&self.bus.stream_name)
            .await
            .map_err(|error| WriterError::Nats(ledger_store::error_text(&error)))?;
        let stream_last = stream
            .info()
            .await
            .map_err(|error| WriterError::Nats(ledger_store::error_text(&error)))?
            .state
            .last_sequence;
        let table_last = store.last_position().await?;
        if stream_last > table_last {
            return Err(WriterError::StreamAhead {
                stream: self.bus.stream_name.clone(),
                stream_last,
                table_last,
            });
        }
        let missing = table_last - stream_last;
        if missing > 0 {
            tracing::warn!(
                stream_last,
                table_last,
                "republishing the events the stream lacks"
            );
        }
        let mut next = stream_last + 1;
        while next <= table_last {
            let chunk: Vec<RecordedEvent> = store
                .read_all(next, RECOVERY_CHUNK_EVENTS.min(table_last + 1 - next))
                .try_collect()
                .await?;
            self.publish(&chunk.iter().collect::<Vec<_>>()).await?;
            next += chunk.len() as u64;
            if chunk.is_empty() {
                break;
            }
        }
        Ok(table_last)
    }
}
