//! Decoding requests and queueing them, or answering at once what cannot be queued.

use std::time::Instant;

use futures_util::StreamExt;
use ledger_bus::{
    BusConfig, COMMAND_BYTES_MAX, CONTENT_TYPE_HEADER, Encoding, PAGE_BYTES_MAX,
    PAGE_DELIVERIES_MAX, decode_command,
};
use ledger_domain::proto::{self, RejectionKind};
use tokio::sync::mpsc;

use crate::delivery::Admitted;
use crate::metrics::WriterMetrics;
use crate::pipeline::{
    Incoming, Request, delivery_rejected, page_rejected, rejected, reply, reply_to_delivery,
    reply_to_page,
};

/// Takes commands (`<prefix>.cmd.>`) and provider deliveries (`<prefix>.delivery.>`) into one
/// queue, in arrival order.
pub(crate) async fn run(
    commands: async_nats::Subscriber,
    deliveries: async_nats::Subscriber,
    queue: mpsc::Sender<Incoming>,
    nats: async_nats::Client,
    bus: BusConfig,
    metrics: WriterMetrics,
) {
    let mut messages = futures_util::stream::select(commands, deliveries);
    while let Some(message) = messages.next().await {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "request without a reply subject ignored");
            continue;
        };
        let admitted = if let Some(provider) = bus.delivery_page_provider(&message.subject) {
            admit_page(&message, provider).map_err(|rejection| (None, rejection))
        } else if bus.delivery_provider(&message.subject).is_some()
            || bus.command_name(&message.subject).is_none()
        {
            admit_delivery(&message, &bus).map_err(|rejection| (None, rejection))
        } else {
            admit(&message, &bus)
                .map(|(encoding, command)| (Request::Command(command), encoding))
                .map_err(|(encoding, rejection)| (Some(encoding), rejection))
        };
        match admitted {
            Ok((request, encoding)) => {
                let incoming = Incoming {
                    request,
                    reply_to: Some(reply_to),
                    encoding,
                    received_at: Instant::now(),
                };
                match queue.try_send(incoming) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(incoming)) => {
                        let busy = busy();
                        match incoming.request {
                            Request::Command(_) => {
                                metrics.answered(&busy);
                                reply(&nats, incoming.reply_to, incoming.encoding, &busy).await;
                            }
                            Request::Delivery(_) => {
                                reply_to_delivery(
                                    &nats,
                                    incoming.reply_to,
                                    &delivery_rejected(busy),
                                )
                                .await;
                            }
                            Request::DeliveryPage(_) => {
                                reply_to_page(&nats, incoming.reply_to, &page_rejected(busy)).await;
                            }
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            Err((Some(encoding), rejection)) => {
                metrics.answered(&rejection);
                reply(&nats, Some(reply_to), encoding, &rejection).await;
            }
            Err((None, rejection)) if bus.delivery_page_provider(&message.subject).is_some() => {
                reply_to_page(&nats, Some(reply_to), &page_rejected(rejection)).await;
            }
            Err((None, rejection)) => {
                reply_to_delivery(&nats, Some(reply_to), &delivery_rejected(rejection)).await;
            }
        }
    }
}

/// A provider delivery the writer can record, or the rejection to answer with: it must decode,
/// name the provider its subject names, and fit [`ledger_connectors::WEBHOOK_BYTES_MAX`].
fn admit_delivery(
    message: &async_nats::Message,
    bus: &BusConfig,
) -> Result<(Request, Encoding), proto::CommandReply> {
    let delivery = <proto::ProviderDelivery as prost::Message>::decode(&message.payload[..])
        .map_err(|error| malformed("malformed", format!("not a ProviderDelivery: {error}")))?;
    let subject_provider = bus.delivery_provider(&message.subject).ok_or_else(|| {
        malformed(
            "subject_mismatch",
            format!("the subject {} names no payment provider", message.subject),
        )
    })?;
    check_delivery(&delivery, subject_provider)?;
    Ok((
        Request::Delivery(Admitted::new(delivery)),
        Encoding::Protobuf,
    ))
}

/// A page of deliveries the writer can decide, or the rejection of the whole page: it must
/// decode and fit [`PAGE_DELIVERIES_MAX`] and [`PAGE_BYTES_MAX`]. Each of its deliveries is
/// checked as [`admit_delivery`] checks one; one that fails is refused alone (its answer in
/// the page's reply), as it would be if sent alone.
fn admit_page(
    message: &async_nats::Message,
    subject_provider: ledger_domain::Provider,
) -> Result<(Request, Encoding), proto::CommandReply> {
    if message.payload.len() > PAGE_BYTES_MAX {
        return Err(rejected(
            RejectionKind::TooLarge,
            "too_large",
            format!(
                "the page is {} bytes; at most {PAGE_BYTES_MAX} are accepted: send fewer \
                 deliveries per page",
                message.payload.len()
            ),
        ));
    }
    let page = <proto::ProviderDeliveryPage as prost::Message>::decode(&message.payload[..])
        .map_err(|error| malformed("malformed", format!("not a ProviderDeliveryPage: {error}")))?;
    if page.deliveries.len() > PAGE_DELIVERIES_MAX {
        return Err(rejected(
            RejectionKind::TooLarge,
            "too_large",
            format!(
                "the page holds {} deliveries; at most {PAGE_DELIVERIES_MAX} are accepted",
                page.deliveries.len()
            ),
        ));
    }
    let parts = page
        .deliveries
        .into_iter()
        .map(|delivery| {
            check_delivery(&delivery, subject_provider).map(|()| Admitted::new(delivery))
        })
        .collect();
    Ok((Request::DeliveryPage(parts), Encoding::Protobuf))
}

/// Whether a decoded delivery may be recorded: its body fits
/// [`ledger_connectors::WEBHOOK_BYTES_MAX`] and it names the provider its subject names.
fn check_delivery(
    delivery: &proto::ProviderDelivery,
    subject_provider: ledger_domain::Provider,
) -> Result<(), proto::CommandReply> {
    if delivery.body.len() > ledger_connectors::WEBHOOK_BYTES_MAX {
        return Err(rejected(
            RejectionKind::TooLarge,
            "too_large",
            format!(
                "the delivery's body is {} bytes; at most {} are accepted",
                delivery.body.len(),
                ledger_connectors::WEBHOOK_BYTES_MAX
            ),
        ));
    }
    let body_provider = ledger_domain::Provider::try_from(delivery.provider()).ok();
    if body_provider != Some(subject_provider) {
        return Err(malformed(
            "subject_mismatch",
            format!(
                "the subject names {} but the delivery's provider is {:?}",
                subject_provider.as_str(),
                delivery.provider()
            ),
        ));
    }
    Ok(())
}

fn malformed(code: &str, message: String) -> proto::CommandReply {
    rejected(RejectionKind::Malformed, code, message)
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
