//! Routing, the answer pipeline every `/v1` endpoint shares (scope, parameters,
//! `min_position`, cache, position header), and the operational endpoints.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::ResponseError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue,
};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use ledger_access::Scope;
use serde::Serialize;
use tracing::Instrument;

use crate::State;
use crate::cache::Answer;
use crate::error::ApiError;
use crate::params::Params;
use crate::positions::Projection;
use crate::{customers, dashboard, messages, openapi, revenue};

/// The header carrying the position an answer reflects.
pub(crate) const POSITION_HEADER: &str = "X-Ledger-Position";
/// `hit` or `miss`: whether the answer came from the cache.
pub(crate) const CACHE_HEADER: &str = "X-Ledger-Cache";
/// The header carrying the request's id (a UUID the service assigns; also in error bodies and
/// in the log lines about the request).
pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn configure(config: &mut web::ServiceConfig, state: web::Data<State>) {
    config.service(
        web::scope("")
            .app_data(state)
            .app_data(
                web::PathConfig::default()
                    .error_handler(|error, _| ApiError::bad("path", error.to_string()).into()),
            )
            .wrap(from_fn(record_request))
            .service(get("/healthz", healthz))
            .service(get("/readyz", readyz))
            .service(get("/v1/openapi.json", openapi::serve))
            .service(get("/v1/customers", customers::list))
            .service(get("/v1/customers/{id}", customers::single))
            .service(get("/v1/customers/{id}/timeline", customers::timeline))
            .service(get("/v1/provider-messages/{id}", messages::single))
            .service(get("/v1/customers/{id}/mrr", revenue::customer_mrr))
            .service(get("/v1/metrics/currencies", revenue::currencies))
            .service(get("/v1/metrics/summary", revenue::summary))
            .service(get("/v1/metrics/mrr", revenue::mrr))
            .service(get("/v1/metrics/churn", revenue::churn))
            .service(get("/v1/metrics/cohorts", revenue::cohorts))
            .service(get("/", dashboard::page))
            .default_service(web::to(not_found)),
    );
}

/// A resource answering GET with `handler`; other methods get 405 in the one error shape. Its
/// request metrics are registered at zero.
fn get<F, Args>(path: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    crate::metrics::register_route(path);
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(request.method().to_string()))
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no endpoint {} {}",
        request.method(),
        request.path()
    )))
}

/// Numbers the request (a UUIDv7 in `X-Request-Id`, in the span of every log line about it
/// and in error bodies), then counts it and its latency under its route pattern.
async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, path = request.path());
    let response = next.call(request).instrument(span.clone()).await?;
    let rendered = response
        .response()
        .error()
        .and_then(|error| error.as_error::<ApiError>())
        .map(|error| {
            if error.status_code().is_server_error() {
                span.in_scope(|| tracing::warn!(code = error.code(), "request failed"));
            }
            error.response(&request_id)
        });
    let mut response = match rendered {
        Some(rendered) => {
            let (request, _) = response.into_parts();
            ServiceResponse::new(request, rendered.map_into_boxed_body())
        }
        None => response.map_into_boxed_body(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    crate::metrics::request(route, response.status().as_u16(), started.elapsed());
    Ok(response)
}

/// Admits the request's token (401, then 429 over its rate limit), checks `scope` (403) and
/// parses the query string against `allowed` (400): a bad parameter without a token is 401.
pub(crate) fn authorise(
    state: &State,
    request: &HttpRequest,
    scope: Scope,
    allowed: &[&'static str],
) -> Result<Params, ApiError> {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    state.access.admit(authorization)?.require(scope)?;
    Params::parse(request.query_string(), allowed)
}

/// The shared pipeline: waits for `?min_position=`, serves a cached answer that reflects the
/// latest known position, or computes one with `compute` (which returns the position it read
/// with the figures) and caches it.
pub(crate) async fn answer<T, F, Fut>(
    state: &State,
    request: &HttpRequest,
    projection: Projection,
    params: &Params,
    compute: F,
) -> Result<HttpResponse, ApiError>
where
    T: Serialize,
    F: FnOnce(deadpool_postgres::Object) -> Fut,
    Fut: Future<Output = Result<(u64, T), ApiError>>,
{
    if let Some(min_position) = params.min_position()? {
        state
            .positions
            .wait_for(projection, min_position, state.config.min_position_wait)
            .await?;
    }
    let key = format!("{}?{}", request.path(), params.normalised());
    let bypass = request
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("no-cache"));
    if !bypass
        && let Some(hit) = state
            .cache
            .get(projection, &key, state.positions.get(projection))
    {
        return Ok(respond(&hit, "hit"));
    }
    let client = state.client().await?;
    let (position, value) = compute(client).await?;
    state.advance(projection, position);
    let body = serde_json::to_vec(&value)
        .map_err(|error| ApiError::internal("cannot encode the answer", &error))?;
    let answer = Arc::new(Answer {
        position,
        body: Bytes::from(body),
    });
    if position >= state.positions.get(projection) {
        state.cache.insert(projection, key, answer.clone());
    }
    Ok(respond(&answer, "miss"))
}

fn respond(answer: &Answer, cache: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((POSITION_HEADER, answer.position.to_string()))
        .insert_header((CACHE_HEADER, cache))
        .body(answer.body.clone())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain"))
        .body("ok\n")
}

/// Readiness of one projection.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProjectionReadiness {
    name: &'static str,
    /// Its checkpoint; null when its schema does not exist yet.
    position: Option<u64>,
    /// Events behind the stream's last sequence (the event table's last position).
    lag_events: Option<u64>,
    ready: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    ready: bool,
    /// `ok`, or why the database cannot be read.
    database: String,
    /// The last global position in the event stream, if NATS answered.
    stream_last_position: Option<u64>,
    projections: Vec<ProjectionReadiness>,
}

/// Readiness: the database answers and every required projection is at most
/// `ready_lag_events_max` events behind the event stream.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Readiness),
              (status = 503, description = "Not ready; the body says why", body = Readiness)))]
pub(crate) async fn readyz(state: web::Data<State>) -> HttpResponse {
    let checkpoints = state.poll_checkpoints().await;
    let stream_last_position = stream_last_position(&state).await;
    let (database, checkpoints) = match checkpoints {
        Ok(checkpoints) => ("ok".to_owned(), checkpoints),
        Err(error) => (error.to_string(), Vec::new()),
    };
    let mut ready = database == "ok" && stream_last_position.is_some();
    let mut projections = Vec::new();
    for projection in &state.config.ready_projections {
        let position = checkpoints
            .iter()
            .find(|(candidate, _)| candidate == projection)
            .and_then(|(_, position)| *position);
        let lag_events = position
            .zip(stream_last_position)
            .map(|(position, last)| last.saturating_sub(position));
        let projection_ready =
            lag_events.is_some_and(|lag| lag <= state.config.ready_lag_events_max);
        ready &= projection_ready;
        projections.push(ProjectionReadiness {
            name: projection.name(),
            position,
            lag_events,
            ready: projection_ready,
        });
    }
    let body = Readiness {
        ready,
        database,
        stream_last_position,
        projections,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn stream_last_position(state: &State) -> Option<u64> {
    let jetstream = async_nats::jetstream::new(state.nats.clone());
    let lookup = async {
        let mut stream = jetstream
            .get_stream(&state.config.bus.stream_name)
            .await
            .ok()?;
        stream
            .info()
            .await
            .ok()
            .map(|info| info.state.last_sequence)
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), lookup)
        .await
        .ok()
        .flatten()
}
