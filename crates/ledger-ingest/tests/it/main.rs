//! The ingest endpoints against a real writer, PostgreSQL and NATS: each test has its own
//! database, subjects and JetStream stream, and mounts the endpoints with
//! `actix_web::test::init_service`.

mod accepted;
mod refused;

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderMap};
use actix_web::test::{self, TestRequest};
use ledger_bus::{BusConfig, Client, Encoding};
use ledger_domain::proto;
use ledger_store::Store;
use ledger_testkit::{TestDb, unique_name};
use ledger_writer::{WriterConfig, WriterError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2026-01-01T00:00:00Z in microseconds.
const NOW_MICROS: i64 = 1_767_225_600_000_000;
/// How long the test client waits for one answer; the writer answers in milliseconds.
const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// One test's ledger: a migrated database, a NATS connection with unique subjects and stream,
/// and a running writer.
struct Ledger {
    _database: TestDb,
    store: Store,
    nats: async_nats::Client,
    bus: BusConfig,
    writer: Option<RunningWriter>,
}

struct RunningWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WriterError>>,
}

impl Ledger {
    /// A fresh database and bus names, and a writer serving them.
    async fn start() -> Ledger {
        let mut ledger = Ledger::without_writer().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ledger_writer::run(
            ledger.store.clone(),
            ledger.nats.clone(),
            WriterConfig {
                bus: ledger.bus.clone(),
                ..WriterConfig::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        ledger.writer = Some(RunningWriter { stop, task });
        ledger
    }

    /// A fresh database and bus names, and no writer listening.
    async fn without_writer() -> Ledger {
        let database = TestDb::new().await;
        let store = Store::connect(database.url()).expect("store");
        let nats_url = std::env::var("NATS_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let nats = async_nats::connect(&nats_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to NATS at {nats_url}: {error}"));
        let bus = BusConfig {
            subject_prefix: unique_name("t").to_lowercase(),
            stream_name: unique_name("LEDGER_EVENTS"),
            ..BusConfig::default()
        };
        Ledger {
            _database: database,
            store,
            nats,
            bus,
            writer: None,
        }
    }

    fn client(&self) -> Client {
        Client::new(self.nats.clone(), self.bus.clone())
            .with_request_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
    }

    async fn last_position(&self) -> u64 {
        self.store.last_position().await.expect("last_position")
    }

    /// Stops the writer (it must stop cleanly) and deletes the test's JetStream stream.
    async fn stop(mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.stop.send(());
            writer
                .task
                .await
                .expect("writer task")
                .expect("the writer stops cleanly");
        }
        let _ = async_nats::jetstream::new(self.nats.clone())
            .delete_stream(&self.bus.stream_name)
            .await;
    }
}

/// A response: status, headers and the `CommandReply` decoded in the response's encoding.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    encoding: Encoding,
    reply: proto::CommandReply,
}

impl Answer {
    fn accepted(&self) -> &proto::Accepted {
        match &self.reply.result {
            Some(proto::command_reply::Result::Accepted(accepted)) => accepted,
            other => panic!("expected an acceptance, got {other:?} ({})", self.status),
        }
    }

    fn rejected(&self) -> &proto::Rejected {
        match &self.reply.result {
            Some(proto::command_reply::Result::Rejected(rejected)) => rejected,
            other => panic!("expected a rejection, got {other:?} ({})", self.status),
        }
    }

    /// Status, rejection kind and code, for one-line assertions.
    fn refusal(&self) -> (StatusCode, proto::RejectionKind, &str) {
        let rejected = self.rejected();
        (self.status, rejected.kind(), rejected.code.as_str())
    }
}

/// Sends a [`TestRequest`] to a service from `test::init_service` and decodes its reply into
/// an [`Answer`] (a macro: the request type `init_service` wants is not nameable here).
macro_rules! call {
    ($app:expr, $request:expr) => {
        $crate::answer(actix_web::test::call_service(&$app, $request.to_request()).await).await
    };
}
pub(crate) use call;

/// The status, headers and decoded `CommandReply` of `response`.
async fn answer<B: MessageBody>(response: ServiceResponse<B>) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .expect("every command response has a Content-Type");
    let encoding = Encoding::from_content_type(Some(content_type)).expect("a reply encoding");
    let body = test::read_body(response).await;
    let reply = ledger_bus::decode_reply(encoding, &body)
        .unwrap_or_else(|error| panic!("{status}: the body is not a CommandReply: {error}"));
    Answer {
        status,
        headers,
        encoding,
        reply,
    }
}

/// `POST path` with `body` as `content_type`.
fn post(path: &str, content_type: &str, body: impl Into<bytes::Bytes>) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header((CONTENT_TYPE, content_type))
        .set_payload(body.into())
}

/// `POST path` with `command` in proto3 JSON.
fn post_json(path: &str, command: &proto::Command) -> TestRequest {
    post(
        path,
        ledger_bus::CONTENT_TYPE_JSON,
        ledger_bus::encode_command(Encoding::Json, command),
    )
}

/// `POST path` with `command` in protobuf.
fn post_protobuf(path: &str, command: &proto::Command) -> TestRequest {
    post(
        path,
        ledger_bus::CONTENT_TYPE_PROTOBUF,
        ledger_bus::encode_command(Encoding::Protobuf, command),
    )
}

fn metadata(idempotency_key: &str, customer_id: &str) -> proto::CommandMetadata {
    proto::CommandMetadata {
        idempotency_key: idempotency_key.to_owned(),
        customer_id: customer_id.to_owned(),
        expected_version: None,
        occurred_at_unix_micros: NOW_MICROS,
        issuer: proto::Issuer::Internal as i32,
        payment_provider: proto::PaymentProvider::Stripe as i32,
        account_id: "cus_test".to_owned(),
        correlation_id: String::new(),
        causation_id: String::new(),
    }
}

/// `register_customer` with no customer id: the ledger assigns one.
fn register(idempotency_key: &str, email: &str) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, "")),
        kind: Some(proto::command::Kind::RegisterCustomer(
            proto::CustomerRegistered {
                email: email.to_owned(),
                name: "Ada Lovelace".to_owned(),
                provider_account: None,
            },
        )),
    }
}

fn start_subscription(
    idempotency_key: &str,
    customer_id: &str,
    subscription_id: &str,
    currency: &str,
) -> proto::Command {
    proto::Command {
        metadata: Some(metadata(idempotency_key, customer_id)),
        kind: Some(proto::command::Kind::StartSubscription(
            proto::SubscriptionStarted {
                subscription_id: subscription_id.to_owned(),
                plan: Some(proto::Plan {
                    plan_id: "pro-monthly".to_owned(),
                    unit_price: Some(money(4_900, currency)),
                    interval: proto::BillingInterval::Month as i32,
                    interval_count: 1,
                }),
                quantity: 1,
                trial_end_unix_seconds: None,
                current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 30 * 86_400,
                discount: None,
            },
        )),
    }
}

fn money(amount_minor: i64, currency: &str) -> proto::Money {
    proto::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

fn with_expected_version(mut command: proto::Command, expected_version: u64) -> proto::Command {
    if let Some(metadata) = command.metadata.as_mut() {
        metadata.expected_version = Some(expected_version);
    }
    command
}
