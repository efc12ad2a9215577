//! The endpoints: decode the body as a command, check it is the command the path names, send it
//! to the writer, answer with the writer's reply.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use ledger_bus::{Client, Encoding};
use ledger_domain::proto;

use crate::reply::{IngestError, accepted_response, echoed};

/// The command `POST /v1/customers` takes.
const REGISTER_CUSTOMER: &str = "register_customer";

pub(crate) fn configure(config: &mut web::ServiceConfig, client: Client) {
    let client = web::Data::new(client);
    let payload = web::PayloadConfig::new(ledger_bus::COMMAND_BYTES_MAX);
    config
        .service(
            web::resource("/v1/customers")
                .app_data(client.clone())
                .app_data(payload.clone())
                .route(web::post().to(register_customer)),
        )
        .service(
            web::resource("/v1/commands/{name}")
                .app_data(client)
                .app_data(payload)
                .route(web::post().to(send_command)),
        )
        .service(web::resource("/healthz").route(web::get().to(healthz)));
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
) -> HttpResponse {
    forward(&request, body, &client, REGISTER_CUSTOMER).await
}

/// `POST /v1/commands/{name}`: sends any command, e.g. `POST /v1/commands/refund_payment`.
///
/// The body is a whole `ledger.v1.Command`, as protobuf (`Content-Type:
/// application/x-protobuf`, also assumed when there is no `Content-Type`) or proto3 JSON
/// (`application/json`), at most 64 KiB. `{name}` must be the body's kind (the field name in
/// the `kind` oneof); otherwise 400 (`command_mismatch`).
///
/// The response, in the request's encoding, is the writer's `ledger.v1.CommandReply`:
/// - 201 `accepted`: the events appended; 200 `accepted` with `duplicate: true`: the
///   idempotency key was used before and these are the events first appended for it;
/// - a `rejected` reply otherwise, with the status of its kind: MALFORMED 400, INVALID 422,
///   CONFLICT 409, NOT_FOUND 404, TOO_LARGE 413, BUSY and UNAVAILABLE 503 (with
///   `Retry-After: 1`; retry with the same idempotency key), UNSPECIFIED 500. Refused here
///   before reaching the writer: an undecodable body 400 (`malformed`), no command kind 400
///   (`missing_command`), a body over 64 KiB 413 (`too_large`), another `Content-Type` 415
///   (`unsupported_content_type`, answered in JSON); no writer answering 503
///   (`writer_unavailable`); an undecodable writer reply 502 (`writer_reply_invalid`).
async fn send_command(
    request: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    client: web::Data<Client>,
) -> HttpResponse {
    let path_name = request.match_info().get("name").unwrap_or_default();
    forward(&request, body, &client, path_name).await
}

/// `GET /healthz`: 200 `ok` while the server runs. It does not ask the writer.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

/// Answers a command request: the writer's reply in the request's encoding, or the rejection
/// of a request that never reached it (415 answered in JSON: the request's encoding is
/// unknown).
async fn forward(
    request: &HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    client: &Client,
    path_name: &str,
) -> HttpResponse {
    let encoding = match request_encoding(request) {
        Ok(encoding) => encoding,
        Err(error) => return error.into_response(Encoding::Json),
    };
    match send(encoding, body, client, path_name).await {
        Ok(accepted) => accepted_response(encoding, accepted),
        Err(error) => error.into_response(encoding),
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
    encoding: Encoding,
    body: Result<Bytes, actix_web::Error>,
    client: &Client,
    path_name: &str,
) -> Result<proto::Accepted, IngestError> {
    let body = body.map_err(body_error)?;
    let command = ledger_bus::decode_command(encoding, &body).map_err(IngestError::Malformed)?;
    let kind = command.kind.as_ref().ok_or(IngestError::MissingCommand)?;
    let body_name = ledger_domain::command_name(kind);
    if body_name != path_name {
        return Err(IngestError::CommandMismatch {
            path_name: echoed(path_name),
            body_name,
        });
    }
    tracing::debug!(
        command = body_name,
        idempotency_key = command
            .metadata
            .as_ref()
            .map(|metadata| metadata.idempotency_key.as_str()),
        "sending command"
    );
    Ok(client.send(&command).await?)
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
