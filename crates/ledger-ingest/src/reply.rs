//! Responses: a `CommandReply` in the request's encoding, with the HTTP status its outcome
//! maps to.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use ledger_access::Denied;
use ledger_bus::{CodecError, Encoding, SendError};
use ledger_domain::proto::{self, RejectionKind};

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
pub(crate) const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;
/// The longest piece of a request (a path segment, a content type) echoed in a message.
const ECHO_BYTES_MAX: usize = 64;

/// Why a request got no acceptance. Each variant says the HTTP status it becomes; every one
/// is answered with a `CommandReply { rejected }`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// No or an unknown token (HTTP 401, kind UNAUTHENTICATED, code `unauthorized`), a token
    /// without the command's scope (403, FORBIDDEN, `forbidden`), or over its rate limit
    /// (429, RATE_LIMITED, `rate_limited`, with `Retry-After`).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The body claims an issuer the credential cannot write (a token writes `internal`
    /// only). HTTP 403, kind FORBIDDEN, code `issuer_not_allowed`.
    #[error(
        "metadata.issuer {claimed} is not allowed: a bearer token issues commands as \
         ISSUER_INTERNAL (leave it unset); only verified provider webhooks issue as \
         ISSUER_PAYMENT_PROVIDER"
    )]
    IssuerNotAllowed { claimed: i32 },
    /// The `Content-Type` is neither protobuf nor JSON. HTTP 415, kind MALFORMED.
    #[error(
        "unsupported Content-Type {content_type:?}: send application/x-protobuf or application/json"
    )]
    UnsupportedContentType { content_type: String },
    /// The body is larger than [`ledger_bus::COMMAND_BYTES_MAX`]. HTTP 413, kind TOO_LARGE.
    #[error("the body is larger than {} bytes", ledger_bus::COMMAND_BYTES_MAX)]
    TooLarge,
    /// The body could not be read (the connection broke, a bad length). HTTP 400, MALFORMED.
    #[error("cannot read the body: {reason}")]
    UnreadableBody { reason: String },
    /// The body is not a protobuf or JSON `ledger.v1.Command`. HTTP 400, kind MALFORMED.
    #[error("{0}")]
    Malformed(CodecError),
    /// The command has no kind (no body of any command). HTTP 400, kind MALFORMED.
    #[error("the command has no body: set one of its kinds, e.g. register_customer")]
    MissingCommand,
    /// The path names another command than the body holds, or no command at all. HTTP 400,
    /// kind MALFORMED.
    #[error(
        "the path names command {path_name:?} but the body is a {body_name} command: \
         send it to /v1/commands/{body_name}"
    )]
    CommandMismatch {
        path_name: String,
        body_name: &'static str,
    },
    /// The writer answered, refused, or could not be reached.
    #[error(transparent)]
    Send(#[from] SendError),
}

impl IngestError {
    /// The HTTP status and the rejection sent back.
    fn status_and_rejection(&self) -> (StatusCode, proto::Rejected) {
        let rejected = |kind: RejectionKind, code: &str, message: String| proto::Rejected {
            kind: kind as i32,
            code: code.to_owned(),
            message,
        };
        let message = self.to_string();
        match self {
            IngestError::Denied(Denied::Unauthenticated(_)) => (
                StatusCode::UNAUTHORIZED,
                rejected(RejectionKind::Unauthenticated, "unauthorized", message),
            ),
            IngestError::Denied(Denied::Forbidden(_)) => (
                StatusCode::FORBIDDEN,
                rejected(RejectionKind::Forbidden, "forbidden", message),
            ),
            IngestError::Denied(Denied::RateLimited(_)) => (
                StatusCode::TOO_MANY_REQUESTS,
                rejected(RejectionKind::RateLimited, "rate_limited", message),
            ),
            IngestError::IssuerNotAllowed { .. } => (
                StatusCode::FORBIDDEN,
                rejected(RejectionKind::Forbidden, "issuer_not_allowed", message),
            ),
            IngestError::UnsupportedContentType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                rejected(
                    RejectionKind::Malformed,
                    "unsupported_content_type",
                    message,
                ),
            ),
            IngestError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                rejected(RejectionKind::TooLarge, "too_large", message),
            ),
            IngestError::UnreadableBody { .. } | IngestError::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                rejected(RejectionKind::Malformed, "malformed", message),
            ),
            IngestError::MissingCommand
            | IngestError::Send(SendError::MissingCommand | SendError::MissingProvider) => (
                StatusCode::BAD_REQUEST,
                rejected(RejectionKind::Malformed, "missing_command", message),
            ),
            IngestError::CommandMismatch { .. } => (
                StatusCode::BAD_REQUEST,
                rejected(RejectionKind::Malformed, "command_mismatch", message),
            ),
            IngestError::Send(SendError::Rejected(rejection)) => {
                (rejection_status(rejection.kind()), rejection.clone())
            }
            IngestError::Send(SendError::Unavailable { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                rejected(RejectionKind::Unavailable, "writer_unavailable", message),
            ),
            // The command may have been appended: retrying with the same idempotency key is
            // safe and returns the outcome.
            IngestError::Send(SendError::Codec(_)) => (
                StatusCode::BAD_GATEWAY,
                rejected(RejectionKind::Unspecified, "writer_reply_invalid", message),
            ),
        }
    }

    /// The response: the rejection in `encoding` (JSON when the request's is unknown), with
    /// `Retry-After` on 503 and 429 and `WWW-Authenticate` on 401.
    pub(crate) fn into_response(self, encoding: Encoding) -> HttpResponse {
        let (status, rejected) = self.status_and_rejection();
        let retry_after_seconds = match &self {
            IngestError::Denied(Denied::RateLimited(limited)) => Some(limited.retry_after_seconds),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(UNAVAILABLE_RETRY_AFTER_SECONDS),
            _ => None,
        };
        if status.is_server_error() {
            tracing::warn!(%status, code = rejected.code, message = rejected.message, "command not accepted");
        } else {
            tracing::debug!(%status, code = rejected.code, message = rejected.message, "command rejected");
        }
        let reply = proto::CommandReply {
            result: Some(proto::command_reply::Result::Rejected(rejected)),
        };
        let mut response = respond(status, encoding, &reply, retry_after_seconds);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The HTTP status of a writer's rejection (the statuses `bus.proto` documents per kind).
pub(crate) fn rejection_status(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::Malformed => StatusCode::BAD_REQUEST,
        RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        RejectionKind::Conflict => StatusCode::CONFLICT,
        RejectionKind::NotFound => StatusCode::NOT_FOUND,
        RejectionKind::Busy | RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RejectionKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RejectionKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RejectionKind::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// 201 for newly appended events, 200 for a repeated idempotency key (nothing appended now).
pub(crate) fn accepted_response(encoding: Encoding, accepted: proto::Accepted) -> HttpResponse {
    let status = if accepted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    tracing::debug!(
        %status,
        customer_id = accepted.customer_id,
        events = accepted.events.len(),
        "command accepted"
    );
    let reply = proto::CommandReply {
        result: Some(proto::command_reply::Result::Accepted(accepted)),
    };
    respond(status, encoding, &reply, None)
}

fn respond(
    status: StatusCode,
    encoding: Encoding,
    reply: &proto::CommandReply,
    retry_after_seconds: Option<u64>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((CONTENT_TYPE, encoding.content_type()));
    if let Some(seconds) = retry_after_seconds {
        response.insert_header((RETRY_AFTER, seconds.to_string()));
    }
    response.body(ledger_bus::encode_reply(encoding, reply))
}

/// `text` cut to at most [`ECHO_BYTES_MAX`] bytes on a character boundary, for messages.
pub(crate) fn echoed(text: &str) -> String {
    let mut end = text.len().min(ECHO_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use ledger_access::{RateLimited, Scope, Unauthenticated};

    use super::*;

    fn status_kind_code(error: IngestError) -> (u16, RejectionKind, String) {
        let (status, rejected) = error.status_and_rejection();
        (status.as_u16(), rejected.kind(), rejected.code)
    }

    #[test]
    fn rejection_kinds_map_to_the_documented_statuses() {
        let expected = [
            (RejectionKind::Unspecified, 500),
            (RejectionKind::Malformed, 400),
            (RejectionKind::Invalid, 422),
            (RejectionKind::Conflict, 409),
            (RejectionKind::NotFound, 404),
            (RejectionKind::Busy, 503),
            (RejectionKind::TooLarge, 413),
            (RejectionKind::Unavailable, 503),
            (RejectionKind::Unauthenticated, 401),
            (RejectionKind::Forbidden, 403),
            (RejectionKind::RateLimited, 429),
        ];
        for (kind, status) in expected {
            assert_eq!(rejection_status(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn writer_rejections_pass_through_unchanged() {
        let rejection = proto::Rejected {
            kind: RejectionKind::Conflict as i32,
            code: "version_conflict".to_owned(),
            message: "expected 1, at 2".to_owned(),
        };
        let (status, rejected) =
            IngestError::Send(SendError::Rejected(rejection.clone())).status_and_rejection();
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(rejected, rejection);
        // A kind this build does not know is treated as unspecified.
        let unknown = proto::Rejected {
            kind: 99,
            ..rejection
        };
        let (status, _) = IngestError::Send(SendError::Rejected(unknown)).status_and_rejection();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn local_errors_have_stable_kinds_and_codes() {
        let malformed_json = serde_json::from_slice::<serde_json::Value>(b"{")
            .map_err(CodecError::from)
            .unwrap_err();
        let cases = [
            (
                IngestError::Denied(Denied::Unauthenticated(Unauthenticated::MissingToken)),
                (401, RejectionKind::Unauthenticated, "unauthorized"),
            ),
            (
                IngestError::Denied(Denied::Forbidden(Scope::IntegrationsAdmin)),
                (403, RejectionKind::Forbidden, "forbidden"),
            ),
            (
                IngestError::Denied(Denied::RateLimited(RateLimited {
                    retry_after_seconds: 3,
                })),
                (429, RejectionKind::RateLimited, "rate_limited"),
            ),
            (
                IngestError::IssuerNotAllowed { claimed: 2 },
                (403, RejectionKind::Forbidden, "issuer_not_allowed"),
            ),
            (
                IngestError::UnsupportedContentType {
                    content_type: "text/plain".to_owned(),
                },
                (415, RejectionKind::Malformed, "unsupported_content_type"),
            ),
            (
                IngestError::TooLarge,
                (413, RejectionKind::TooLarge, "too_large"),
            ),
            (
                IngestError::UnreadableBody {
                    reason: "incomplete".to_owned(),
                },
                (400, RejectionKind::Malformed, "malformed"),
            ),
            (
                IngestError::Malformed(malformed_json),
                (400, RejectionKind::Malformed, "malformed"),
            ),
            (
                IngestError::MissingCommand,
                (400, RejectionKind::Malformed, "missing_command"),
            ),
            (
                IngestError::Send(SendError::MissingCommand),
                (400, RejectionKind::Malformed, "missing_command"),
            ),
            (
                IngestError::CommandMismatch {
                    path_name: "refund".to_owned(),
                    body_name: "refund_payment",
                },
                (400, RejectionKind::Malformed, "command_mismatch"),
            ),
            (
                IngestError::Send(SendError::Unavailable {
                    subject: "ledger.cmd.register_customer".to_owned(),
                    attempts: 4,
                    last_error: "timed out".to_owned(),
                }),
                (503, RejectionKind::Unavailable, "writer_unavailable"),
            ),
            (
                IngestError::Send(SendError::Codec(CodecError::EmptyReply)),
                (502, RejectionKind::Unspecified, "writer_reply_invalid"),
            ),
        ];
        for (error, (status, kind, code)) in cases {
            assert_eq!(status_kind_code(error), (status, kind, code.to_owned()));
        }
    }

    #[test]
    fn service_unavailable_says_when_to_retry() {
        let response = IngestError::Send(SendError::Unavailable {
            subject: "ledger.cmd.register_customer".to_owned(),
            attempts: 4,
            last_error: "no responders".to_owned(),
        })
        .into_response(Encoding::Json);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .map(|value| value.as_bytes()),
            Some(&b"1"[..])
        );
        assert_eq!(
            response
                .headers()
                .get(CONTENT_TYPE)
                .map(|value| value.as_bytes()),
            Some(ledger_bus::CONTENT_TYPE_JSON.as_bytes())
        );
        let response = IngestError::TooLarge.into_response(Encoding::Protobuf);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn rate_limited_says_when_to_retry_and_unauthorized_names_the_scheme() {
        let response = IngestError::Denied(Denied::RateLimited(RateLimited {
            retry_after_seconds: 3,
        }))
        .into_response(Encoding::Protobuf);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        let response = IngestError::Denied(Denied::Unauthenticated(Unauthenticated::UnknownToken))
            .into_response(Encoding::Json);
        assert_eq!(
            response
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn echoed_text_is_cut_on_a_character_boundary() {
        assert_eq!(echoed("abc"), "abc");
        let long = "é".repeat(ECHO_BYTES_MAX);
        let cut = echoed(&long);
        assert!(cut.len() <= ECHO_BYTES_MAX && cut.chars().all(|char| char == 'é'));
    }
}
