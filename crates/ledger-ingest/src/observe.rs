//! What every ingest request leaves behind: a correlation id (taken from the request or made
//! here, answered in `X-Correlation-Id`, carried into the command's metadata and so into the
//! events), a `request` span around its handling, and the Prometheus request metrics
//! (docs/observability.md).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest};
use tracing::Instrument as _;
use uuid::Uuid;

/// The header a client may send its correlation id in, and that every answer carries.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";
/// Read as well when [`CORRELATION_ID_HEADER`] is absent (proxies and load balancers set it).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// HTTP requests answered, by `route` (the matched pattern, e.g. `/v1/commands/{name}`) and
/// `status` (counter).
pub const REQUESTS: &str = "ledger_ingest_requests_total";
/// Seconds to answer a request, by `route` (histogram).
pub const REQUEST_SECONDS: &str = "ledger_ingest_request_seconds";
/// Verified webhook deliveries answered, by `provider` and `outcome` (the writer's outcome or
/// ingest's refusal; counter).
pub const CONNECTOR_DELIVERIES: &str = "ledger_connectors_deliveries_total";

/// The routes ingest serves, as label values. The middleware wraps these resources only, so a
/// scan of random paths adds no series (`other` stands for a pattern missing here).
const ROUTES: [&str; 5] = [
    "/v1/customers",
    "/v1/commands/{name}",
    "/v1/token",
    "/v1/webhooks/{provider}",
    "/healthz",
];

/// The correlation id of the request being handled (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CorrelationId {
    pub(crate) id: Uuid,
    /// Whether the client sent it (it then wins over one in a command's metadata).
    pub(crate) from_client: bool,
}

/// The id a client sent in [`CORRELATION_ID_HEADER`] or [`REQUEST_ID_HEADER`], when it is a
/// UUID (the form of the events' `correlation_id`); anything else is ignored.
fn sent_id(headers: &HeaderMap) -> Option<Uuid> {
    [CORRELATION_ID_HEADER, REQUEST_ID_HEADER]
        .into_iter()
        .find_map(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .filter(|text| text.len() <= 36)
        .and_then(|text| Uuid::try_parse(text.trim()).ok())
}

/// The request's correlation id; a new one when the middleware did not run.
pub(crate) fn correlation_id(request: &HttpRequest) -> CorrelationId {
    request
        .extensions()
        .get::<CorrelationId>()
        .copied()
        .unwrap_or(CorrelationId {
            id: Uuid::now_v7(),
            from_client: false,
        })
}

/// Settles the request's correlation id (a handler that found one in the command) for the
/// answer's header and the span.
pub(crate) fn settle(request: &HttpRequest, id: Uuid) {
    let settled = CorrelationId {
        id,
        from_client: true,
    };
    request.extensions_mut().insert(settled);
    tracing::Span::current().record("correlation_id", tracing::field::display(id));
}

/// The middleware of every ingest resource (`.wrap(from_fn(observe))`).
pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let sent = sent_id(request.headers());
    let correlation = CorrelationId {
        id: sent.unwrap_or_else(Uuid::now_v7),
        from_client: sent.is_some(),
    };
    request.extensions_mut().insert(correlation);
    let pattern = request.match_pattern();
    let route = ROUTES
        .into_iter()
        .find(|route| pattern.as_deref() == Some(*route))
        .unwrap_or("other");
    let span = tracing::info_span!(
        "request",
        route,
        correlation_id = %correlation.id,
    );
    let answered = next.call(request).instrument(span).await;
    let mut response = match answered {
        Ok(response) => response,
        Err(error) => {
            record(route, error.as_response_error().status_code(), started);
            return Err(error);
        }
    };
    let id = response
        .request()
        .extensions()
        .get::<CorrelationId>()
        .map_or(correlation.id, |settled| settled.id);
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(CORRELATION_ID_HEADER), value);
    }
    record(route, response.status(), started);
    Ok(response)
}

fn record(route: &'static str, status: StatusCode, started: Instant) {
    metrics::counter!(REQUESTS, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route).record(started.elapsed());
}

/// Describes ingest's metrics and registers those with known labels at zero, so each shows
/// from the start (called once per server).
pub(crate) fn register_metrics(providers: &[&'static str]) {
    use metrics::Unit;
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route and status."
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request, by route."
    );
    metrics::describe_counter!(
        CONNECTOR_DELIVERIES,
        Unit::Count,
        "Webhook deliveries answered, by provider and outcome."
    );
    for route in ROUTES {
        metrics::counter!(REQUESTS, "route" => route, "status" => "200").increment(0);
        let _registered = metrics::histogram!(REQUEST_SECONDS, "route" => route);
    }
    for &provider in providers {
        metrics::counter!(CONNECTOR_DELIVERIES, "provider" => provider, "outcome" => "appended")
            .increment(0);
    }
}
