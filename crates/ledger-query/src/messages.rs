//! `GET /v1/provider-messages/{id}`: a payment provider's webhook delivery as the ledger
//! received and recorded it (table `provider_inbox`, docs/connectors.md): the evidence behind
//! a provider-issued event, whose timeline entry names it as `causation_id`.

use actix_web::{HttpRequest, HttpResponse, web};
use ledger_access::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::State;
use crate::error::ApiError;
use crate::handlers::authorise;

/// What the database errors of this endpoint are reported as.
const SOURCE: &str = "provider_inbox";

const MESSAGE_SQL: &str = "SELECT row_to_json(m)::text FROM (SELECT id, provider, \
     provider_event_id, event_type, \
     to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS received_at, \
     outcome, reason, customer_id, global_positions, renormalizes_inbox_id, \
     convert_from(body, 'UTF8') AS body FROM provider_inbox WHERE id = $1) m";

/// One recorded webhook delivery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProviderMessage {
    /// The inbox row (UUID): the `causation_id` of the events it led to.
    id: String,
    /// `stripe`, `paypal` or `xendit`.
    provider: String,
    /// The provider's event id (`evt_...`).
    provider_event_id: String,
    event_type: String,
    received_at: String,
    /// `appended`, `duplicate`, `ignored`, `stale` or `failed`.
    outcome: String,
    reason: String,
    customer_id: Option<String>,
    /// Global positions of the events appended for it.
    global_positions: Vec<i64>,
    /// For a re-normalization: the row it re-ran.
    renormalizes_inbox_id: Option<String>,
    /// The body exactly as the provider sent it (JSON text).
    body: String,
}

/// A provider's webhook delivery, as received.
#[utoipa::path(get, path = "/v1/provider-messages/{id}", tag = "connectors",
    params(("id" = String, Path, description = "The inbox id (a timeline event's causation_id)")),
    responses(
        (status = 200, description = "The delivery", body = ProviderMessage),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["connectors:read"])))]
pub(crate) async fn single(
    state: web::Data<State>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorise(&state, &request, Scope::ConnectorsRead, &[])?;
    let id = Uuid::parse_str(&path).map_err(|_| {
        ApiError::bad(
            "id",
            format!(
                "`{}` is not a provider message id (a UUID)",
                path.chars().take(64).collect::<String>()
            ),
        )
    })?;
    let client = state.client().await?;
    let row = client
        .query_opt(MESSAGE_SQL, &[&id])
        .await
        .map_err(|error| ApiError::database(&error, SOURCE))?
        .ok_or_else(|| ApiError::NotFound(format!("no provider message {id}")))?;
    let json: String = row
        .try_get(0)
        .map_err(|error| ApiError::database(&error, SOURCE))?;
    let message: ProviderMessage = serde_json::from_str(&json).map_err(|error| {
        tracing::error!(%error, "a provider message has an unexpected shape");
        ApiError::ReadModelData { projection: SOURCE }
    })?;
    Ok(HttpResponse::Ok().json(message))
}
