use std::time::Duration;

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use ledger_domain::proto;
use prost::Message;

use crate::codec::{CodecError, Encoding, decode_reply, encode_command};
use crate::{BusConfig, CONTENT_TYPE_HEADER};

/// How long one attempt waits for the writer's reply.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Attempts per command; every retry resends the same command, idempotency key included.
const SEND_ATTEMPTS_MAX: u32 = 4;
/// Pause before retry n is n times this.
const RETRY_BACKOFF_MS: u64 = 250;

/// Why a command got no acceptance.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The writer answered with a rejection; `kind` says what to do.
    #[error("rejected ({}): {}", .0.code, .0.message)]
    Rejected(proto::Rejected),
    /// No writer answered within the attempts (timeouts or no writer subscribed). Retrying later
    /// with the same command is safe.
    #[error(
        "no answer on {subject} after {attempts} attempts: {last_error}; is `ledger run writer` running, with the same subject prefix (--subject-prefix / LEDGER_SUBJECT_PREFIX)?"
    )]
    Unavailable {
        /// The NATS subject the request went to (`<prefix>.cmd.<command>`, ...).
        subject: String,
        attempts: u32,
        last_error: String,
    },
    /// The command has no body.
    #[error("the command has no body: set one of its kinds")]
    MissingCommand,
    /// The delivery names no payment provider.
    #[error("the delivery names no payment provider")]
    MissingProvider,
    #[error("cannot decode the writer's reply: {0}")]
    Codec(CodecError),
}

// Not `#[from]`: that would also report the inner error as the source, and a report of the
// chain would print its text twice.
impl From<CodecError> for SendError {
    fn from(error: CodecError) -> SendError {
        SendError::Codec(error)
    }
}

impl SendError {
    /// The rejection's kind, if the writer rejected the command.
    pub fn rejection_kind(&self) -> Option<proto::RejectionKind> {
        match self {
            SendError::Rejected(rejected) => Some(rejected.kind()),
            _ => None,
        }
    }
}

/// The name of a delivery's outcome, as the inbox stores it and ingest answers it:
/// `appended`, `duplicate`, `ignored`, `stale`, `failed`, `waiting` (`unspecified` for an unset
/// one).
pub fn delivery_outcome_name(outcome: proto::DeliveryOutcome) -> &'static str {
    match outcome {
        proto::DeliveryOutcome::Appended => "appended",
        proto::DeliveryOutcome::Duplicate => "duplicate",
        proto::DeliveryOutcome::Ignored => "ignored",
        proto::DeliveryOutcome::Stale => "stale",
        proto::DeliveryOutcome::Failed => "failed",
        proto::DeliveryOutcome::Waiting => "waiting",
        proto::DeliveryOutcome::Unspecified => "unspecified",
    }
}

/// Sends commands to the writer over NATS request/reply, retrying on timeout with the same
/// idempotency key, and returns the typed answer.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    config: BusConfig,
    encoding: Encoding,
    request_timeout: Duration,
}

impl Client {
    pub fn new(nats: async_nats::Client, config: BusConfig) -> Client {
        Client {
            nats,
            config,
            encoding: Encoding::Protobuf,
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        }
    }

    /// Sends commands as proto3 JSON instead of protobuf.
    pub fn with_encoding(mut self, encoding: Encoding) -> Client {
        self.encoding = encoding;
        self
    }

    pub fn with_request_timeout(mut self, request_timeout: Duration) -> Client {
        self.request_timeout = request_timeout;
        self
    }

    /// Sends `command` and waits for the writer's answer: the appended events (or, for a
    /// repeated idempotency key, the ones first appended), or a typed rejection.
    pub async fn send(&self, command: &proto::Command) -> Result<proto::Accepted, SendError> {
        let kind = command.kind.as_ref().ok_or(SendError::MissingCommand)?;
        let subject = self
            .config
            .command_subject(ledger_domain::command_name(kind));
        let body = encode_command(self.encoding, command);
        let message = self.request(subject, body, self.encoding).await?;
        let reply = decode_reply(self.encoding, &message.payload)?;
        match reply.result {
            Some(proto::command_reply::Result::Accepted(accepted)) => Ok(accepted),
            Some(proto::command_reply::Result::Rejected(rejected)) => {
                Err(SendError::Rejected(rejected))
            }
            None => Err(SendError::Codec(CodecError::EmptyReply)),
        }
    }

    /// Sends a verified webhook delivery to the writer on `<prefix>.delivery.<provider>`
    /// (protobuf) and waits for what it recorded. Retrying is safe: a delivery already
    /// recorded comes back as a duplicate.
    ///
    /// # Errors
    /// [`SendError::Rejected`] when the writer recorded nothing (malformed, busy, store
    /// unavailable); [`SendError::Unavailable`] when no writer answered.
    pub async fn deliver(
        &self,
        delivery: &proto::ProviderDelivery,
    ) -> Result<proto::DeliveryRecorded, SendError> {
        let provider = ledger_domain::Provider::try_from(delivery.provider())
            .map_err(|_| SendError::MissingProvider)?;
        let subject = self.config.delivery_subject(provider);
        let body = Bytes::from(delivery.encode_to_vec());
        let message = self.request(subject, body, Encoding::Protobuf).await?;
        let reply = proto::DeliveryReply::decode(&message.payload[..]).map_err(CodecError::from)?;
        match reply.result {
            Some(proto::delivery_reply::Result::Recorded(recorded)) => Ok(recorded),
            Some(proto::delivery_reply::Result::Rejected(rejected)) => {
                Err(SendError::Rejected(rejected))
            }
            None => Err(SendError::Codec(CodecError::EmptyReply)),
        }
    }

    /// Sends `deliveries` of `provider` to the writer as one page on
    /// `<prefix>.delivery.<provider>.page` (protobuf) and waits for what it recorded: one
    /// answer per delivery, in order, each what [`Client::deliver`] would have answered
    /// (`Err`: that delivery alone was refused, e.g. malformed, and nothing of it recorded).
    /// The writer decides the page's deliveries in one group commit. Retrying is safe: the
    /// deliveries already recorded come back as duplicates.
    ///
    /// # Errors
    /// [`SendError::Rejected`] when the writer recorded nothing of the page (more than
    /// [`crate::PAGE_DELIVERIES_MAX`] deliveries or [`crate::PAGE_BYTES_MAX`] bytes, busy,
    /// store unavailable); [`SendError::Unavailable`] when no writer answered.
    pub async fn deliver_page(
        &self,
        provider: ledger_domain::Provider,
        deliveries: Vec<proto::ProviderDelivery>,
    ) -> Result<Vec<Result<proto::DeliveryRecorded, proto::Rejected>>, SendError> {
        let subject = self.config.delivery_page_subject(provider);
        let body = Bytes::from(proto::ProviderDeliveryPage { deliveries }.encode_to_vec());
        let message = self.request(subject, body, Encoding::Protobuf).await?;
        let reply =
            proto::DeliveryPageReply::decode(&message.payload[..]).map_err(CodecError::from)?;
        match reply.result {
            Some(proto::delivery_page_reply::Result::Recorded(recorded)) => Ok(recorded
                .replies
                .into_iter()
                .map(|reply| match reply.result {
                    Some(proto::delivery_reply::Result::Recorded(recorded)) => Ok(recorded),
                    Some(proto::delivery_reply::Result::Rejected(rejected)) => Err(rejected),
                    None => Err(proto::Rejected {
                        kind: proto::RejectionKind::Unspecified as i32,
                        code: "empty_reply".to_owned(),
                        message: "the writer's answer to this delivery is empty".to_owned(),
                    }),
                })
                .collect()),
            Some(proto::delivery_page_reply::Result::Rejected(rejected)) => {
                Err(SendError::Rejected(rejected))
            }
            None => Err(SendError::Codec(CodecError::EmptyReply)),
        }
    }

    /// One request, retried on timeout and when no writer is subscribed.
    async fn request(
        &self,
        subject: String,
        body: Bytes,
        encoding: Encoding,
    ) -> Result<async_nats::Message, SendError> {
        let mut last_error = String::new();
        let mut attempts = 0;
        for attempt in 1..=SEND_ATTEMPTS_MAX {
            attempts = attempt;
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE_HEADER, encoding.content_type());
            let request = async_nats::Request::new()
                .payload(body.clone())
                .headers(headers)
                .timeout(Some(self.request_timeout));
            match self.nats.send_request(subject.clone(), request).await {
                Ok(message) => return Ok(message),
                Err(error) => {
                    let retryable = matches!(
                        error.kind(),
                        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
                    );
                    last_error = ledger_store::error_text(&error);
                    if !retryable {
                        break;
                    }
                    tracing::debug!(attempt, %error, subject, "command not answered; retrying");
                    tokio::time::sleep(Duration::from_millis(
                        RETRY_BACKOFF_MS * u64::from(attempt),
                    ))
                    .await;
                }
            }
        }
        Err(SendError::Unavailable {
            subject,
            attempts,
            last_error,
        })
    }
}

#[cfg(test)]
mod unavailable_tests {
    use super::SendError;

    /// A writer on another subject prefix looks like no writer at all: the message names the
    /// subject and the setting to check (found by a new-user trial against the demo).
    #[test]
    fn no_answer_names_the_subject_and_the_prefix_setting() {
        let error = SendError::Unavailable {
            subject: "ledger.cmd.register_customer".to_owned(),
            attempts: 4,
            last_error: "no responders".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "no answer on ledger.cmd.register_customer after 4 attempts: no responders; is \
             `ledger run writer` running, with the same subject prefix (--subject-prefix / \
             LEDGER_SUBJECT_PREFIX)?"
        );
    }
}
