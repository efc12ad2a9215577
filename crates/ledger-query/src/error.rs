//! The one error shape of every endpoint: `{"error": {"code", "message", "details"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
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
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token lacks the scope the endpoint needs.
    #[error("the token lacks scope `{scope}`")]
    Forbidden { scope: &'static str },
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
    /// 503: the database cannot be reached or failed; retry later.
    #[error("the read-model database is unavailable: {0}")]
    Database(String),
    /// 500: a read model holds a value the answer cannot represent (a SQL data exception,
    /// SQLSTATE class 22, such as 22003 `numeric_value_out_of_range`, or an amount beyond
    /// `i128`). Retrying does not help: the data or the service needs fixing. Never reported as
    /// an outage.
    #[error("read model `{projection}` holds data the answer cannot represent: {reason}")]
    ReadModelData {
        projection: &'static str,
        reason: String,
    },
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_parameter`, `unknown_parameter`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `position_not_reached`, `read_model_unavailable`,
    /// `database_unavailable`, `read_model_data_error`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Structured context, e.g. `{"parameter": "limit"}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
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
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PositionNotReached { .. } => "position_not_reached",
            ApiError::ReadModelUnavailable(_) => "read_model_unavailable",
            ApiError::Database(_) => "database_unavailable",
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
            | ApiError::Database(_) => {
                serde_json::json!({})
            }
        }
    }

    pub(crate) fn database(error: &tokio_postgres::Error, projection: &'static str) -> ApiError {
        if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
            return ApiError::ReadModelUnavailable(projection);
        }
        if error
            .code()
            .is_some_and(|code| code.code().starts_with(DATA_EXCEPTION_CLASS))
        {
            tracing::error!(error = %error_chain(error), projection, "read model holds unrepresentable data");
            return ApiError::ReadModelData {
                projection,
                reason: error_chain(error),
            };
        }
        tracing::warn!(error = %error_chain(error), "read-model query failed");
        ApiError::Database(error_chain(error))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } | ApiError::UnknownParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PositionNotReached { .. }
            | ApiError::ReadModelUnavailable(_)
            | ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReadModelData { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
            },
        })
    }
}

/// `error` and its sources on one line (`tokio_postgres::Error` shows only its kind).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
