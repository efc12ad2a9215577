//! How a `ledger` process is watched (docs/observability.md): its log format (`LOG_FORMAT`) and
//! its Prometheus endpoint (`--metrics-bind`).

use std::fmt;
use std::net::SocketAddr;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Where and to whom a process serves `GET /metrics`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://<address>/metrics (e.g. 127.0.0.1:9464); unset: no
    /// metrics endpoint. It has no token: bind it to loopback or a monitoring network, or
    /// restrict it with --metrics-allow. Only `ledger run` and `ledger replay` use it.
    #[arg(long, env = "LEDGER_METRICS_BIND", global = true)]
    pub(crate) metrics_bind: Option<SocketAddr>,
    /// The addresses or networks (CIDR) whose scrapes are answered, comma-separated, e.g.
    /// `10.0.5.0/24,127.0.0.1`; others get 403. Unset: every client that reaches the address.
    #[arg(
        long,
        env = "LEDGER_METRICS_ALLOW",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) metrics_allow: Vec<String>,
}

/// Bucket bounds of every `*_seconds` histogram: 0.5 ms to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of the writer's commands per batch.
const BATCH_BUCKETS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0,
];

impl MetricsArgs {
    /// Installs the process's metrics recorder and starts its endpoint, when --metrics-bind is
    /// set (without it the libraries' metrics cost nothing). Call inside the runtime.
    ///
    /// # Errors
    /// --metrics-allow without --metrics-bind (a restriction of an endpoint that is not served:
    /// a deployment that meant to serve it would silently not), an allowed value that is not an
    /// address or a network, a port that cannot be bound.
    pub(crate) fn install(&self, service: &'static str) -> anyhow::Result<()> {
        let Some(bind) = self.metrics_bind else {
            anyhow::ensure!(
                self.metrics_allow.is_empty(),
                "--metrics-allow / LEDGER_METRICS_ALLOW restricts the metrics endpoint, which \
                 --metrics-bind / LEDGER_METRICS_BIND does not open: set both, or neither"
            );
            return Ok(());
        };
        let mut builder = PrometheusBuilder::new()
            .with_http_listener(bind)
            .add_global_label("service", service)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)?
            .set_buckets_for_metric(
                Matcher::Full(ledger_writer::metrics::BATCH_COMMANDS.to_owned()),
                &BATCH_BUCKETS,
            )?;
        for allowed in &self.metrics_allow {
            builder = builder.add_allowed_address(network(allowed)).with_context(|| {
                format!(
                    "--metrics-allow / LEDGER_METRICS_ALLOW: {allowed:?} is not an address or a \
                     network (e.g. 10.0.5.0/24)"
                )
            })?;
        }
        // The listener binds in the background; bind here first so a taken port fails the
        // start with a clear error instead of a log line.
        std::net::TcpListener::bind(bind).with_context(|| {
            format!("cannot serve metrics on {bind} (--metrics-bind / LEDGER_METRICS_BIND)")
        })?;
        builder
            .install()
            .context("cannot start the metrics endpoint")?;
        tracing::info!(address = %bind, "serving Prometheus metrics at /metrics");
        Ok(())
    }
}

/// `allowed` as a network: a plain address is the network of that address alone (`/32` or
/// `/128`), since the exporter takes networks only.
fn network(allowed: &str) -> String {
    let allowed = allowed.trim();
    match allowed.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{allowed}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{allowed}/128"),
        Err(_) => allowed.to_owned(),
    }
}

/// Sets up logging to stderr: plain text (the default, coloured at a terminal), or one JSON
/// object a line with `LOG_FORMAT=json` (fields: `timestamp`, `level`, `service`, `message`,
/// `target`, `context`). `RUST_LOG` filters either.
pub(crate) fn init_logging(service: &'static str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,async_nats=warn,tokio_postgres=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => builder
            // Colour only for a person at a terminal: a redirected log stays plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok("json") => builder
            .fmt_fields(JsonFields::new())
            .event_format(DesignJson { service })
            .init(),
        Ok(other) => anyhow::bail!("LOG_FORMAT={other:?}: use `json` or `text` (the default)"),
    }
    Ok(())
}

/// Reports the error that ends the process: `error: <text>` on stderr, or an ERROR line with
/// `LOG_FORMAT=json` (so a log collector parses every line).
pub(crate) fn fatal(text: &str) {
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        tracing::error!("{text}");
    } else {
        eprintln!("error: {text}");
    }
}

/// One JSON object per event: `{"timestamp": RFC 3339 UTC, "level": "INFO", "service": the
/// role, "message": ..., "target": the module, "context": {the event's other fields and those
/// of its spans, the innermost winning}}`.
#[derive(Debug)]
struct DesignJson {
    service: &'static str,
}

impl<S, N> FormatEvent<S, N> for DesignJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // JsonFields stores each span's fields as a JSON object.
                if let Some(Value::Object(span_fields)) = extensions
                    .get::<FormattedFields<N>>()
                    .and_then(|formatted| serde_json::from_str(formatted.as_str()).ok())
                {
                    fields.extend(span_fields);
                }
            }
        }
        let mut visitor = FieldsVisitor(Map::new());
        event.record(&mut visitor);
        let mut event_fields = visitor.0;
        let message = event_fields.remove("message").unwrap_or_default();
        fields.extend(event_fields);
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "timestamp": timestamp,
            "level": event.metadata().level().as_str(),
            "service": self.service,
            "message": message,
            "target": event.metadata().target(),
            "context": fields,
        });
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values (numbers and booleans kept, the rest as text).
struct FieldsVisitor(Map<String, Value>);

impl Visit for FieldsVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        // Durations in microseconds are u128: a number while it fits.
        let value = u64::try_from(value).map_or_else(|_| value.to_string().into(), Value::from);
        self.0.insert(field.name().to_owned(), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}
