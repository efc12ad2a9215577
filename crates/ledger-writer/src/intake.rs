//! Decoding requests and queueing them, or answering at once what cannot be queued.

use std::time::Instant;

use futures_util::StreamExt;
use ledger_bus::{BusConfig, COMMAND_BYTES_MAX, CONTENT_TYPE_HEADER, Encoding, decode_command};
use ledger_domain::proto::{self, RejectionKind};
use tokio::sync::mpsc;

use crate::pipeline::{Incoming, rejected, reply};

pub(crate) async fn run(
    mut subscription: async_nats::Subscriber,
    queue: mpsc::Sender<Incoming>,
    nats: async_nats::Client,
    bus: BusConfig,
) {
    while let Some(message) = subscription.next().await {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "command without a reply subject ignored");
            continue;
        };
        match admit(&message, &bus) {
            Ok((encoding, command)) => {
                let incoming = Incoming {
                    command,
                    reply_to,
                    encoding,
                    received_at: Instant::now(),
                };
                match queue.try_send(incoming) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(incoming)) => {
                        reply(&nats, incoming.reply_to, incoming.encoding, &busy()).await;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            Err((encoding, rejection)) => reply(&nats, reply_to, encoding, &rejection).await,
        }
    }
}

/// A request the writer can decide, or the rejection to answer with.
fn admit(
    message: &async_nats::Message,
    bus: &BusConfig,
) -> Result<(Encoding, proto::Command), (Encoding, proto::CommandReply)> {
    let content_type = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(CONTENT_TYPE_HEADER))
        .map(|value| value.as_str());
    let encoding = Encoding::from_content_type(content_type).map_err(|error| {
        let reply = rejected(RejectionKind::Malformed, "unsupported_content_type", error);
        (Encoding::Protobuf, reply)
    })?;
    let reject = |kind, code, message: String| (encoding, rejected(kind, code, message));
    if message.payload.len() > COMMAND_BYTES_MAX {
        return Err(reject(
            RejectionKind::TooLarge,
            "too_large",
            format!(
                "the command is {} bytes; at most {COMMAND_BYTES_MAX} are accepted",
                message.payload.len()
            ),
        ));
    }
    let command = decode_command(encoding, &message.payload)
        .map_err(|error| reject(RejectionKind::Malformed, "malformed", error.to_string()))?;
    let Some(kind) = &command.kind else {
        return Err(reject(
            RejectionKind::Malformed,
            "missing_command",
            "the command has no body: set one of its kinds".to_owned(),
        ));
    };
    let body_name = ledger_domain::command_name(kind);
    let subject_name = bus.command_name(&message.subject).unwrap_or_default();
    if subject_name != body_name {
        return Err(reject(
            RejectionKind::Malformed,
            "subject_mismatch",
            format!(
                "the subject names command {subject_name:?} but the body is {body_name:?}; \
                 send it to {}",
                bus.command_subject(body_name)
            ),
        ));
    }
    Ok((encoding, command))
}

fn busy() -> proto::CommandReply {
    rejected(
        RejectionKind::Busy,
        "busy",
        "the writer's queue is full: retry shortly with the same idempotency key",
    )
}
