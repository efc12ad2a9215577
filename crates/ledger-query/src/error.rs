//! The one error shape of every endpoint: `{"error": {"code", "message", "details"}}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use ledger_access::{Denied, Unauthenticated};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

/// What went wrong, classified by what the caller should do. Each variant names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is missing, malformed, unknown or out of its limits; `parameter`
    /// names it. Fix the request.
    #[error("parameter `{parameter}`: {reason}")]
    BadParameter {
        parameter: &'static str,
        reason: String,
    },
    /// 400: a query parameter the endpoint does not know.
    #[error("unknown parameter `{parameter}`")]
    UnknownParameter { parameter: String },
    /// 401: no bearer token, or one that is not configured.
    #[error(transparent)]
    Unauthorized(Unauthenticated),
    /// 403: the token lacks the scope the endpoint needs.
    #[error("the token lacks scope `{scope}`")]
    Forbidden { scope: &'static str },
    /// 429: the token is over its rate limit; retry after `retry_after_seconds` (also in
    /// `Retry-After`).
    #[error("too many requests for this token: retry after {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: every endpoint answers GET only.
    #[error("method {0} is not allowed: every endpoint answers GET")]
    MethodNotAllowed(String),
    /// 503: `?min_position=` was not reached in time; retry later.
    #[error(
        "projection `{projection}` is at position {current}, below the requested min_position \
         {requested}, after waiting {waited_ms} ms: retry later"
    )]
    PositionNotReached {
        projection: &'static str,
        requested: u64,
        current: u64,
        waited_ms: u64,
    },
    /// 503: a read model does not exist (its projector has not run yet).
    #[error("read model `{0}` is not available yet: start its projector (`ledger run projector`)")]
    ReadModelUnavailable(&'static str),
    /// 503: the database cannot be reached, is shutting down or out of resources (SQLSTATE
    /// classes 08, 53, 57P0x; no connection); retry later. The cause is logged, not answered.
    #[error("the read-model database is unavailable: retry later")]
    DatabaseUnavailable,
    /// 500: a failure that is not the caller's and not an outage (a data or programming error
    /// in a query, a read model of an unexpected shape). The cause is logged with the request
    /// id, never answered.
    #[error("internal error: report the request id to the operators")]
    Internal,
    /// 500: a read model holds a value the answer cannot represent (a SQL data exception,
    /// SQLSTATE class 22, such as 22003 `numeric_value_out_of_range`, or an amount beyond
    /// `i128`). Retrying does not help: the data or the service needs fixing. Never reported as
    /// an outage; the cause is logged with the request id, never answered.
    #[error(
        "read model `{projection}` holds data the answer cannot represent: report the request id \
         to the operators"
    )]
    ReadModelData { projection: &'static str },
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> ApiError {
        match denied {
            Denied::Unauthenticated(reason) => ApiError::Unauthorized(reason),
            Denied::Forbidden(scope) => ApiError::Forbidden {
                scope: scope.as_str(),
            },
            Denied::RateLimited(limited) => ApiError::RateLimited {
                retry_after_seconds: limited.retry_after_seconds,
            },
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_parameter`, `unknown_parameter`, `unauthorized`,
    /// `forbidden`, `rate_limited`, `not_found`, `method_not_allowed`, `position_not_reached`,
    /// `read_model_unavailable`, `database_unavailable`, `internal`, `read_model_data_error`.
    pub code: &'static str,
    /// For people. Never carries database error text.
    pub message: String,
    /// Structured context, e.g. `{"parameter": "limit"}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The request's id (a UUID), also in the `X-Request-Id` header and in the service's log
    /// lines about the request.
    pub request_id: String,
}

/// SQLSTATE class 22, data exception: the query met a value it cannot compute or convert.
const DATA_EXCEPTION_CLASS: &str = "22";

impl ApiError {
    pub(crate) fn bad(parameter: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            parameter,
            reason: reason.into(),
        }
    }

    /// The error's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadParameter { .. } => "bad_parameter",
            ApiError::UnknownParameter { .. } => "unknown_parameter",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PositionNotReached { .. } => "position_not_reached",
            ApiError::ReadModelUnavailable(_) => "read_model_unavailable",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::Internal => "internal",
            ApiError::ReadModelData { .. } => "read_model_data_error",
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            ApiError::BadParameter { parameter, .. } => {
                serde_json::json!({ "parameter": parameter })
            }
            ApiError::UnknownParameter { parameter } => {
                serde_json::json!({ "parameter": parameter })
            }
            ApiError::Forbidden { scope } => serde_json::json!({ "scope": scope }),
            ApiError::RateLimited {
                retry_after_seconds,
            } => serde_json::json!({ "retry_after_seconds": retry_after_seconds }),
            ApiError::PositionNotReached {
                projection,
                requested,
                current,
                waited_ms,
            } => serde_json::json!({
                "projection": projection,
                "min_position": requested,
                "position": current,
                "waited_ms": waited_ms,
            }),
            ApiError::ReadModelUnavailable(projection)
            | ApiError::ReadModelData { projection, .. } => {
                serde_json::json!({ "projection": projection })
            }
            ApiError::Unauthorized(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::DatabaseUnavailable
            | ApiError::Internal => {
                serde_json::json!({})
            }
        }
    }

    /// Classifies a failed read-model query by SQLSTATE: a missing table is a read model not
    /// built yet (503 `read_model_unavailable`); a lost connection or the classes of an outage
    /// (08 connection exception, 53 insufficient resources, 57P01-57P03 shutdown or not
    /// accepting connections) are 503 `database_unavailable`; a data exception (class 22) is
    /// 500 `read_model_data_error`; anything else (a programming error, a column of another
    /// type) is 500 `internal`. Neither is an outage. The error text is logged, never answered.
    pub(crate) fn database(error: &tokio_postgres::Error, projection: &'static str) -> ApiError {
        match error.code() {
            Some(code) if *code == SqlState::UNDEFINED_TABLE => {
                ApiError::ReadModelUnavailable(projection)
            }
            Some(code) if code.code().starts_with(DATA_EXCEPTION_CLASS) => {
                tracing::error!(error = %ledger_store::error_text(error), projection, "read model holds unrepresentable data");
                ApiError::ReadModelData { projection }
            }
            Some(code) if is_outage(code) => {
                tracing::warn!(error = %ledger_store::error_text(error), sqlstate = code.code(), "read-model database unavailable");
                ApiError::DatabaseUnavailable
            }
            None if error.is_closed() || has_io_source(error) => {
                tracing::warn!(error = %ledger_store::error_text(error), "read-model database connection lost");
                ApiError::DatabaseUnavailable
            }
            code => {
                tracing::error!(
                    error = %ledger_store::error_text(error),
                    sqlstate = code.map(SqlState::code),
                    "read-model query failed"
                );
                ApiError::Internal
            }
        }
    }

    /// A failure of ours that is not the database's: logged, answered 500 `internal`.
    pub(crate) fn internal(what: &str, error: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %ledger_store::error_text(error), "{what}");
        ApiError::Internal
    }

    /// The response, with `request_id` in the body (the middleware that numbers requests
    /// renders every error through here).
    pub(crate) fn response(&self, request_id: &str) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::RateLimited {
                retry_after_seconds,
            } => {
                response.insert_header((RETRY_AFTER, retry_after_seconds.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
                request_id: request_id.to_owned(),
            },
        })
    }
}

/// SQLSTATEs of a database that is down, going down or out of resources: retrying later may
/// work (PostgreSQL Appendix A, "PostgreSQL Error Codes").
fn is_outage(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Whether a SQLSTATE-less error came from the socket (a connection that broke).
fn has_io_source(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } | ApiError::UnknownParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PositionNotReached { .. }
            | ApiError::ReadModelUnavailable(_)
            | ApiError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal | ApiError::ReadModelData { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Without a request id: only answers produced outside the request-numbering middleware
    /// (none of the routes) come out this way.
    fn error_response(&self) -> HttpResponse {
        self.response("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outage_classes_are_database_unavailable() {
        for code in [
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::DISK_FULL,
            SqlState::OUT_OF_MEMORY,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ] {
            assert!(is_outage(&code), "{}", code.code());
        }
        for code in [
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::UNTRANSLATABLE_CHARACTER,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::DATA_EXCEPTION,
            SqlState::UNDEFINED_COLUMN,
            SqlState::SYNTAX_ERROR,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ] {
            assert!(!is_outage(&code), "{}", code.code());
        }
    }

    #[test]
    fn rate_limited_answers_carry_retry_after_and_every_error_its_request_id() {
        let response = ApiError::RateLimited {
            retry_after_seconds: 2,
        }
        .response("0190a0a0-0000-7000-8000-000000000000");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        let body = actix_web::body::to_bytes(response.into_body());
        let body = futures_util::FutureExt::now_or_never(body)
            .expect("a ready body")
            .expect("bytes");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "code": "rate_limited",
                "message": "too many requests for this token: retry after 2 s",
                "details": {"retry_after_seconds": 2},
                "request_id": "0190a0a0-0000-7000-8000-000000000000",
            }})
        );
    }
}
