//! The endpoints: admit the token, decode the body as a command, check it is the command the
//! path names and that the token may send it, set its issuer, send it to the writer, answer
//! with the writer's reply.

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use ledger_access::{Access, Scope};
use ledger_bus::{Client, Encoding};
use ledger_domain::proto;

use crate::cors::AllowedOrigins;
use crate::observe::{self, observe};
use crate::reply::{IngestError, accepted_response, echoed};

/// The command `POST /v1/customers` takes.
const REGISTER_CUSTOMER: &str = "register_customer";

pub(crate) fn configure(
    config: &mut web::ServiceConfig,
    client: Client,
    access: Access,
    origins: &AllowedOrigins,
) {
    let client = web::Data::new(client);
    let access = web::Data::new(access);
    let payload = web::PayloadConfig::new(ledger_bus::COMMAND_BYTES_MAX);
    config
        .service(
            web::resource("/v1/customers")
                .app_data(client.clone())
                .app_data(access.clone())
                .app_data(payload.clone())
                .wrap(origins.middleware())
                .wrap(from_fn(observe))
                .route(web::post().to(register_customer)),
        )
        .service(
            web::resource("/v1/commands/{name}")
                .app_data(client)
                .app_data(access.clone())
                .app_data(payload)
                .wrap(origins.middleware())
                .wrap(from_fn(observe))
                .route(web::post().to(send_command)),
        )
        .service(
            web::resource("/v1/token")
                .app_data(access)
                .wrap(origins.middleware())
                .wrap(from_fn(observe))
                .route(web::get().to(token)),
        )
        .service(
            web::resource("/healthz")
                .wrap(from_fn(observe))
                .route(web::get().to(healthz)),
        );
}

/// `POST /v1/customers`: registers a customer.
///
/// The body is a whole `ledger.v1.Command` (metadata and body) whose kind is
/// `register_customer`; any other kind is refused with 400 (`command_mismatch`). Leave
/// `metadata.customer_id` empty to let the ledger assign the customer's id; the reply's
/// `accepted.customer_id` carries it. Otherwise the same as
/// `POST /v1/commands/register_customer`.
async fn register_customer(
    request: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    client: web::Data<Client>,
    access: web::Data<Access>,
) -> HttpResponse {
    forward(&request, body, &client, &access, REGISTER_CUSTOMER).await
}

/// `POST /v1/commands/{name}`: sends any command, e.g. `POST /v1/commands/refund_payment`.
///
/// The body is a whole `ledger.v1.Command`, as protobuf (`Content-Type:
/// application/x-protobuf`, also assumed when there is no `Content-Type`) or proto3 JSON
/// (`application/json`), at most 64 KiB. `{name}` must be the body's kind (the field name in
/// the `kind` oneof); otherwise 400 (`command_mismatch`).
///
/// Needs `Authorization: Bearer <token>` with scope `integrations:admin` for the integration
/// commands and `commands:write` for every other. `metadata.issuer` is set to
/// `ISSUER_INTERNAL` (unset or `ISSUER_INTERNAL` in the body); a token may still set
/// `metadata.payment_provider` and `metadata.account_id` (a service recording a payment its
/// own Stripe integration received).
///
/// The response, in the request's encoding, is the writer's `ledger.v1.CommandReply`:
/// - 201 `accepted`: the events appended; 200 `accepted` with `duplicate: true`: the
///   idempotency key was used before and these are the events first appended for it;
/// - a `rejected` reply otherwise, with the status of its kind: MALFORMED 400, INVALID 422,
///   CONFLICT 409, NOT_FOUND 404, TOO_LARGE 413, BUSY and UNAVAILABLE 503 (with
///   `Retry-After: 1`; retry with the same idempotency key), UNSPECIFIED 500. Refused here
///   before reaching the writer, in this order: no or an unknown token 401 UNAUTHENTICATED
///   (`unauthorized`, with `WWW-Authenticate: Bearer`); the token over its rate limit 429
///   RATE_LIMITED (`rate_limited`, with `Retry-After` in whole seconds); a body over 64 KiB
///   413 (`too_large`) or unreadable 400 (`malformed`); another `Content-Type` 415
///   (`unsupported_content_type`, answered in JSON); an undecodable body 400 (`malformed`); no
///   command kind 400 (`missing_command`); the path naming another command 400
///   (`command_mismatch`); a token without the command's scope 403 FORBIDDEN (`forbidden`);
///   an issuer other than internal 403 FORBIDDEN (`issuer_not_allowed`). After sending: no
///   writer answering 503
///   (`writer_unavailable`); an undecodable writer reply 502 (`writer_reply_invalid`).
async fn send_command(
    request: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    client: web::Data<Client>,
    access: web::Data<Access>,
) -> HttpResponse {
    let path_name = request.match_info().get("name").unwrap_or_default();
    forward(&request, body, &client, &access, path_name).await
}

/// `GET /v1/token`: what the presented token may do here, `{"scopes": ["commands:write"]}`,
/// so a page (the dashboard) offers only the actions ingest would accept. It sends nothing to
/// the writer and counts against the token's rate limit. Refused like a command: no or an
/// unknown token 401 (`unauthorized`), over the rate limit 429 (`rate_limited`), each a JSON
/// `CommandReply { rejected }`.
async fn token(request: HttpRequest, access: web::Data<Access>) -> HttpResponse {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match access.admit(authorization) {
        Ok(caller) => HttpResponse::Ok().json(serde_json::json!({
            "scopes": caller.scopes().iter().map(|scope| scope.as_str()).collect::<Vec<_>>(),
        })),
        Err(denied) => IngestError::from(denied).into_response(Encoding::Json),
    }
}

/// `GET /healthz`: 200 `ok` while the server runs. It does not ask the writer.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

/// Answers a command request: the writer's reply in the request's encoding, or the rejection
/// of a request that never reached it (in JSON when the request's encoding is unknown).
async fn forward(
    request: &HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    client: &Client,
    access: &Access,
    path_name: &str,
) -> HttpResponse {
    let encoding = request_encoding(request);
    let reply_encoding = encoding.as_ref().copied().unwrap_or(Encoding::Json);
    match send(request, encoding, body, client, access, path_name).await {
        Ok(accepted) => accepted_response(reply_encoding, accepted),
        Err(error) => error.into_response(reply_encoding),
    }
}

/// The body's encoding, from the `Content-Type` header (protobuf when there is none).
fn request_encoding(request: &HttpRequest) -> Result<Encoding, IngestError> {
    let unsupported = |content_type: &str| IngestError::UnsupportedContentType {
        content_type: echoed(content_type),
    };
    let content_type = match request.headers().get(CONTENT_TYPE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| unsupported(&String::from_utf8_lossy(value.as_bytes())))?,
        ),
    };
    Encoding::from_content_type(content_type)
        .map_err(|_| unsupported(content_type.unwrap_or_default()))
}

async fn send(
    request: &HttpRequest,
    encoding: Result<Encoding, IngestError>,
    body: Result<Bytes, actix_web::Error>,
    client: &Client,
    access: &Access,
    path_name: &str,
) -> Result<proto::Accepted, IngestError> {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let caller = access.admit(authorization)?;
    let body = body.map_err(body_error)?;
    let mut command =
        ledger_bus::decode_command(encoding?, &body).map_err(IngestError::Malformed)?;
    let kind = command.kind.as_ref().ok_or(IngestError::MissingCommand)?;
    let body_name = ledger_domain::command_name(kind);
    if body_name != path_name {
        return Err(IngestError::CommandMismatch {
            path_name: echoed(path_name),
            body_name,
        });
    }
    caller.require(if ledger_domain::is_integration_command(kind) {
        Scope::IntegrationsAdmin
    } else {
        Scope::CommandsWrite
    })?;
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.issuer = issuer_of_token(metadata.issuer)? as i32;
        carry_correlation_id(request, metadata);
    }
    tracing::debug!(
        command = body_name,
        token = %caller.token,
        idempotency_key = command
            .metadata
            .as_ref()
            .map(|metadata| metadata.idempotency_key.as_str()),
        "sending command"
    );
    Ok(client.send(&command).await?)
}

/// Sets the command's `metadata.correlation_id`: the id the client sent in `X-Correlation-Id`
/// (or `X-Request-Id`) wins; else the body's own is kept; else the one ingest made for the
/// request. The answer's `X-Correlation-Id` names the one the events carry.
fn carry_correlation_id(request: &HttpRequest, metadata: &mut proto::CommandMetadata) {
    let request_id = observe::correlation_id(request);
    if request_id.from_client || metadata.correlation_id.is_empty() {
        metadata.correlation_id = request_id.id.to_string();
        observe::settle(request, request_id.id);
    } else if let Ok(id) = uuid::Uuid::try_parse(&metadata.correlation_id) {
        observe::settle(request, id);
    }
}

/// The issuer of a command sent with a bearer token, given the body's `claimed` one: always
/// `internal` (unset is taken as internal). Any other claim is refused: only a verified
/// provider webhook writes `payment_provider` (docs/decisions/0016).
fn issuer_of_token(claimed: i32) -> Result<proto::Issuer, IngestError> {
    match proto::Issuer::try_from(claimed) {
        Ok(proto::Issuer::Unspecified | proto::Issuer::Internal) => Ok(proto::Issuer::Internal),
        _ => Err(IngestError::IssuerNotAllowed { claimed }),
    }
}

/// A body that could not be read: over the limit (413), or broken.
fn body_error(error: actix_web::Error) -> IngestError {
    match error.as_error::<actix_web::error::PayloadError>() {
        Some(actix_web::error::PayloadError::Overflow) => IngestError::TooLarge,
        _ => IngestError::UnreadableBody {
            reason: error.to_string(),
        },
    }
}
