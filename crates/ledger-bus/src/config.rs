use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Names and settings of the ledger's subjects and event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// First token of every subject (`ledger`).
    pub subject_prefix: String,
    /// The JetStream stream holding every appended event (`LEDGER_EVENTS`).
    pub stream_name: String,
    /// Copies JetStream keeps of each event: 1 on a single server, 3 in a cluster.
    pub stream_replicas: usize,
    /// How long events stay in the stream; zero keeps them forever (the event table remains
    /// the source of truth either way).
    pub stream_max_age: Duration,
    /// Window in which JetStream drops a republished event with the same `Nats-Msg-Id`; it
    /// must cover the writer's recovery after a crash.
    pub duplicate_window: Duration,
}

impl Default for BusConfig {
    fn default() -> BusConfig {
        BusConfig {
            subject_prefix: "ledger".to_owned(),
            stream_name: "LEDGER_EVENTS".to_owned(),
            stream_replicas: 1,
            stream_max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(10 * 60),
        }
    }
}

impl BusConfig {
    /// The subject of command `name`, e.g. `ledger.cmd.refund_payment`.
    pub fn command_subject(&self, name: &str) -> String {
        format!("{}.cmd.{name}", self.subject_prefix)
    }

    /// Every command subject, for the writer's subscription.
    pub fn command_wildcard(&self) -> String {
        format!("{}.cmd.>", self.subject_prefix)
    }

    /// The command name in `subject`, if it is a command subject of this prefix.
    pub fn command_name<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.subject_prefix.as_str())?
            .strip_prefix(".cmd.")
    }

    /// The subject ingest sends a verified webhook delivery of `provider` on, e.g.
    /// `ledger.delivery.stripe` (`ledger.v1.ProviderDelivery`, protobuf).
    pub fn delivery_subject(&self, provider: ledger_domain::Provider) -> String {
        format!("{}.delivery.{}", self.subject_prefix, provider.as_str())
    }

    /// Every delivery subject, for the writer's subscription.
    pub fn delivery_wildcard(&self) -> String {
        format!("{}.delivery.>", self.subject_prefix)
    }

    /// The provider named by `subject`, if it is a delivery subject of this prefix.
    pub fn delivery_provider(&self, subject: &str) -> Option<ledger_domain::Provider> {
        subject
            .strip_prefix(self.subject_prefix.as_str())?
            .strip_prefix(".delivery.")?
            .parse()
            .ok()
    }

    /// The subject a page of deliveries of `provider` is sent on, e.g.
    /// `ledger.delivery.stripe.page` (`ledger.v1.ProviderDeliveryPage`, protobuf); under
    /// [`BusConfig::delivery_wildcard`], so the same NATS permissions cover it.
    pub fn delivery_page_subject(&self, provider: ledger_domain::Provider) -> String {
        format!("{}.page", self.delivery_subject(provider))
    }

    /// The provider named by `subject`, if it is a delivery page subject of this prefix.
    pub fn delivery_page_provider(&self, subject: &str) -> Option<ledger_domain::Provider> {
        subject
            .strip_prefix(self.subject_prefix.as_str())?
            .strip_prefix(".delivery.")?
            .strip_suffix(".page")?
            .parse()
            .ok()
    }

    /// The subject an event of `event_type` is published on, e.g.
    /// `ledger.events.payment_succeeded`.
    pub fn event_subject(&self, event_type: &str) -> String {
        format!("{}.events.{event_type}", self.subject_prefix)
    }

    /// Every event subject: what the stream captures.
    pub fn events_wildcard(&self) -> String {
        format!("{}.events.>", self.subject_prefix)
    }

    /// The subject on which projection `name` announces its position.
    pub fn projection_subject(&self, name: &str) -> String {
        format!("{}.projections.{name}", self.subject_prefix)
    }
}

/// Creates the event stream if it does not exist (file storage, the configured replicas,
/// retention and duplicate window) and returns it.
pub async fn ensure_event_stream(
    jetstream: &jetstream::Context,
    config: &BusConfig,
) -> Result<stream::Stream, async_nats::jetstream::context::CreateStreamError> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: config.stream_name.clone(),
            subjects: vec![config.events_wildcard()],
            storage: stream::StorageType::File,
            num_replicas: config.stream_replicas,
            max_age: config.stream_max_age,
            duplicate_window: config.duplicate_window,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
}
