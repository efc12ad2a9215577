//! Prometheus text exposition (format 0.0.4), written by hand: request counts and latency
//! histograms per route, cache hits and misses, projection positions.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_US.len()],
    count: u64,
    sum_us: u64,
}

#[derive(Debug, Default)]
struct Route {
    /// status -> requests.
    statuses: BTreeMap<u16, u64>,
    latencies: Histogram,
}

#[derive(Debug, Default)]
struct Inner {
    /// Looked up by `&str`, so a request allocates nothing here once its route is known.
    routes: BTreeMap<String, Route>,
}

/// Request figures since the process started.
#[derive(Debug, Default)]
pub(crate) struct RequestMetrics {
    inner: Mutex<Inner>,
}

impl RequestMetrics {
    pub(crate) fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.routes.contains_key(route) {
            inner.routes.insert(route.to_owned(), Route::default());
        }
        let Some(stats) = inner.routes.get_mut(route) else {
            return;
        };
        *stats.statuses.entry(status).or_insert(0) += 1;
        let histogram = &mut stats.latencies;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS_US) {
            if elapsed_us <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum_us = histogram.sum_us.saturating_add(elapsed_us);
    }

    /// Appends the request metrics to `out`.
    pub(crate) fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        out.push_str(
            "# HELP ledger_query_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE ledger_query_requests_total counter\n");
        for (route, stats) in &inner.routes {
            for (status, count) in &stats.statuses {
                let _ = writeln!(
                    out,
                    "ledger_query_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP ledger_query_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE ledger_query_request_duration_seconds histogram\n");
        for (route, stats) in &inner.routes {
            let histogram = &stats.latencies;
            let route = escape(route);
            for (bucket, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS_US) {
                let _ = writeln!(
                    out,
                    "ledger_query_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {bucket}",
                    seconds(bound)
                );
            }
            let _ = writeln!(
                out,
                "ledger_query_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "ledger_query_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                seconds(histogram.sum_us)
            );
            let _ = writeln!(
                out,
                "ledger_query_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
    }
}

/// `microseconds` as decimal seconds, e.g. `0.0025`.
fn seconds(microseconds: u64) -> String {
    let whole = microseconds / 1_000_000;
    let fraction = microseconds % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let metrics = RequestMetrics::default();
        metrics.record("/v1/metrics/summary", 200, Duration::from_micros(300));
        metrics.record("/v1/metrics/summary", 200, Duration::from_millis(3));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains(
            "ledger_query_requests_total{route=\"/v1/metrics/summary\",status=\"200\"} 2\n"
        ));
        assert!(out.contains(
            "ledger_query_request_duration_seconds_bucket{route=\"/v1/metrics/summary\",le=\"0.0005\"} 1\n"
        ));
        assert!(out.contains(
            "ledger_query_request_duration_seconds_bucket{route=\"/v1/metrics/summary\",le=\"0.005\"} 2\n"
        ));
        assert!(out.contains(
            "ledger_query_request_duration_seconds_sum{route=\"/v1/metrics/summary\"} 0.0033\n"
        ));
    }
}
