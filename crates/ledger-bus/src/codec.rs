use bytes::Bytes;
use ledger_domain::proto;
use ledger_store::{NewEvent, RecordedEvent};
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The encoding of a command or reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names; protobuf when there is none.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Encoding, CodecError> {
        let Some(content_type) = content_type else {
            return Ok(Encoding::Protobuf);
        };
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            Ok(Encoding::Json)
        } else if media_type.eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF)
            || media_type.eq_ignore_ascii_case("application/protobuf")
        {
            Ok(Encoding::Protobuf)
        } else {
            Err(CodecError::UnsupportedContentType {
                content_type: content_type.to_owned(),
            })
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => CONTENT_TYPE_PROTOBUF,
            Encoding::Json => CONTENT_TYPE_JSON,
        }
    }
}

/// A body that could not be decoded. Nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "unsupported Content-Type {content_type:?}: send application/x-protobuf or application/json"
    )]
    UnsupportedContentType { content_type: String },
    #[error("malformed protobuf: {0}")]
    Protobuf(prost::DecodeError),
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    #[error("the reply carries neither an acceptance nor a rejection")]
    EmptyReply,
    #[error("invalid published event: {reason}")]
    InvalidEvent { reason: String },
}

// Not `#[from]`: that would also report the inner error as the source, and a report of the
// chain would print its text twice.
impl From<prost::DecodeError> for CodecError {
    fn from(error: prost::DecodeError) -> CodecError {
        CodecError::Protobuf(error)
    }
}

impl From<serde_json::Error> for CodecError {
    fn from(error: serde_json::Error) -> CodecError {
        CodecError::Json(error)
    }
}

pub fn decode_command(encoding: Encoding, body: &[u8]) -> Result<proto::Command, CodecError> {
    decode(encoding, body)
}

pub fn encode_command(encoding: Encoding, command: &proto::Command) -> Bytes {
    encode(encoding, command)
}

pub fn decode_reply(encoding: Encoding, body: &[u8]) -> Result<proto::CommandReply, CodecError> {
    decode(encoding, body)
}

pub fn encode_reply(encoding: Encoding, reply: &proto::CommandReply) -> Bytes {
    encode(encoding, reply)
}

fn decode<T>(encoding: Encoding, body: &[u8]) -> Result<T, CodecError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    Ok(match encoding {
        Encoding::Protobuf => T::decode(body)?,
        Encoding::Json => serde_json::from_slice(body)?,
    })
}

fn encode<T>(encoding: Encoding, message: &T) -> Bytes
where
    T: Message + serde::Serialize,
{
    match encoding {
        Encoding::Protobuf => message.encode_to_vec().into(),
        // pbjson's serializers cannot fail on these plain data messages.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default().into(),
    }
}

/// The protobuf bytes of an appended event as published to JetStream.
pub fn encode_recorded_event(recorded: &RecordedEvent) -> Bytes {
    let event = &recorded.event;
    let optional = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    proto::RecordedEvent {
        global_position: recorded.global_position,
        event_id: event.event_id.to_string(),
        stream_id: recorded.stream_id.to_string(),
        stream_version: recorded.stream_version,
        event_type: event.event_type.clone(),
        account_id: event.account_id.clone(),
        payment_provider_type: event.payment_provider_type.as_str().to_owned(),
        status: event.status.as_str().to_owned(),
        issuer: event.issuer.as_str().to_owned(),
        occurred_at_unix_micros: unix_micros(event.occurred_at),
        recorded_at_unix_micros: unix_micros(recorded.recorded_at),
        idempotency_key: recorded.idempotency_key.clone(),
        correlation_id: optional(event.correlation_id),
        causation_id: optional(event.causation_id),
        schema_version: u32::try_from(event.schema_version).unwrap_or(0),
        payload: event.payload.clone(),
        prev_hash: Bytes::copy_from_slice(&recorded.prev_hash),
        hash: Bytes::copy_from_slice(&recorded.hash),
    }
    .encode_to_vec()
    .into()
}

/// An appended event from its published bytes, every field checked.
pub fn decode_recorded_event(body: &[u8]) -> Result<RecordedEvent, CodecError> {
    let message = proto::RecordedEvent::decode(body)?;
    let invalid = |reason: String| CodecError::InvalidEvent { reason };
    let uuid = |field: &str, text: &str| {
        Uuid::parse_str(text).map_err(|error| invalid(format!("{field}: {error}")))
    };
    let optional_uuid = |field: &str, text: &str| -> Result<Option<Uuid>, CodecError> {
        if text.is_empty() {
            Ok(None)
        } else {
            uuid(field, text).map(Some)
        }
    };
    let time = |field: &str, micros: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_err(|error| invalid(format!("{field}: {error}")))
    };
    let hash = |field: &str, bytes: &[u8]| {
        <[u8; 32]>::try_from(bytes).map_err(|_| invalid(format!("{field} is not 32 bytes")))
    };
    Ok(RecordedEvent {
        global_position: message.global_position,
        stream_id: uuid("stream_id", &message.stream_id)?,
        stream_version: message.stream_version,
        recorded_at: time("recorded_at", message.recorded_at_unix_micros)?,
        idempotency_key: message.idempotency_key,
        prev_hash: hash("prev_hash", &message.prev_hash)?,
        hash: hash("hash", &message.hash)?,
        event: NewEvent {
            event_id: uuid("event_id", &message.event_id)?,
            event_type: message.event_type,
            account_id: message.account_id,
            payment_provider_type: message
                .payment_provider_type
                .parse()
                .map_err(|error| invalid(format!("{error}")))?,
            status: message
                .status
                .parse()
                .map_err(|error| invalid(format!("{error}")))?,
            issuer: message
                .issuer
                .parse()
                .map_err(|error| invalid(format!("{error}")))?,
            occurred_at: time("occurred_at", message.occurred_at_unix_micros)?,
            correlation_id: optional_uuid("correlation_id", &message.correlation_id)?,
            causation_id: optional_uuid("causation_id", &message.causation_id)?,
            schema_version: i16::try_from(message.schema_version)
                .map_err(|_| invalid("schema_version out of range".to_owned()))?,
            payload: message.payload,
        },
    })
}

fn unix_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}
