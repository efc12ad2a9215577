//! The query service's Prometheus metrics, recorded through the `metrics` facade and served by
//! the process's `--metrics-bind` endpoint (docs/observability.md): requests and latencies per
//! route, cache hits, misses and entries, and each read model's latest known position. Without
//! an installed recorder every call here is a no-op.

use std::time::Duration;

use crate::positions::Projection;

/// HTTP requests answered, by `route` (the matched pattern, e.g. `/v1/customers/{id}`, or
/// `unmatched`) and `status` (counter).
pub const REQUESTS: &str = "ledger_query_requests_total";
/// Seconds to answer a request, by `route` (histogram).
pub const REQUEST_SECONDS: &str = "ledger_query_request_seconds";
/// Answers served from the cache, by `projection` (counter).
pub const CACHE_HITS: &str = "ledger_query_cache_hits_total";
/// Answers computed from a read model, by `projection` (counter).
pub const CACHE_MISSES: &str = "ledger_query_cache_misses_total";
/// Answers cached, by `projection` (gauge; moka's count, which settles shortly after a change).
pub const CACHE_ENTRIES: &str = "ledger_query_cache_entries";
/// The latest global position known of each read model, by `projection` (gauge).
pub const PROJECTION_POSITION: &str = "ledger_query_projection_position";

/// Counts one answered request. `route` comes from the router's closed set of patterns, so the
/// number of series is bounded whatever the paths clients send.
pub(crate) fn request(route: String, status: u16, elapsed: Duration) {
    metrics::counter!(REQUESTS, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route).record(elapsed);
}

/// Registers the route's series at zero, so each shows from the start.
pub(crate) fn register_route(route: &'static str) {
    metrics::counter!(REQUESTS, "route" => route, "status" => "200").increment(0);
    let _registered = metrics::histogram!(REQUEST_SECONDS, "route" => route);
}

pub(crate) fn cache_lookup(projection: Projection, hit: bool) {
    let name = if hit { CACHE_HITS } else { CACHE_MISSES };
    metrics::counter!(name, "projection" => projection.name()).increment(1);
}

pub(crate) fn cache_entries(projection: Projection, entries: u64) {
    #[allow(clippy::cast_precision_loss)] // exact below 2^53 entries
    metrics::gauge!(CACHE_ENTRIES, "projection" => projection.name()).set(entries as f64);
}

pub(crate) fn position(projection: Projection, position: u64) {
    #[allow(clippy::cast_precision_loss)] // exact below 2^53 events
    metrics::gauge!(PROJECTION_POSITION, "projection" => projection.name()).set(position as f64);
}

/// Describes the metrics and registers the per-projection series at zero (once per service).
pub(crate) fn describe() {
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
    metrics::describe_counter!(CACHE_HITS, Unit::Count, "Answers served from the cache.");
    metrics::describe_counter!(
        CACHE_MISSES,
        Unit::Count,
        "Answers computed from a read model."
    );
    metrics::describe_gauge!(CACHE_ENTRIES, Unit::Count, "Answers cached, by read model.");
    metrics::describe_gauge!(
        PROJECTION_POSITION,
        "Latest known global position of each read model."
    );
    for projection in Projection::ALL {
        for name in [CACHE_HITS, CACHE_MISSES] {
            metrics::counter!(name, "projection" => projection.name()).increment(0);
        }
        cache_entries(projection, 0);
        position(projection, 0);
    }
}
