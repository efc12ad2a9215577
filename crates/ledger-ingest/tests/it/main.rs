//! The ingest endpoints against a real writer, PostgreSQL and NATS: each test has its own
//! database, subjects and JetStream stream (`ledger_testkit::ledger::TestLedger`), and mounts the
//! endpoints with `actix_web::test::init_service`, admitting the tokens below.

mod accepted;
mod dashboard;
mod on_demand;
mod refused;
mod security;
mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use actix_web::test::{self, TestRequest};
use ledger_access::{Access, RateLimit, Scope, Tokens};
use ledger_bus::Encoding;
use ledger_domain::proto;

/// `commands:write` and `integrations:admin`.
const TOKEN_ADMIN: &str = "ingest-admin-token-0123456789";
/// `commands:write` only.
const TOKEN_COMMANDS: &str = "ingest-commands-token-0123456789";

/// The tests' tokens, each limited to `rate_limit`.
fn access(rate_limit: Option<RateLimit>) -> Access {
    let mut tokens = Tokens::default();
    tokens.add(
        TOKEN_ADMIN,
        &[Scope::CommandsWrite, Scope::IntegrationsAdmin],
    );
    tokens.add(TOKEN_COMMANDS, &[Scope::CommandsWrite]);
    Access::new(tokens, rate_limit)
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

/// The ingest endpoints sending commands with `client`, admitting [`access`] (unlimited
/// unless a rate limit is given), mounted with `test::init_service` (a macro: the service type
/// `init_service` returns is not nameable here).
macro_rules! ingest_app {
    ($client:expr) => {
        ingest_app!($client, None)
    };
    ($client:expr, $rate_limit:expr) => {
        ingest_app!(
            $client,
            $rate_limit,
            ledger_ingest::AllowedOrigins::default()
        )
    };
    ($client:expr, $rate_limit:expr, $origins:expr) => {
        actix_web::test::init_service(actix_web::App::new().configure(ledger_ingest::app_config(
            $client,
            $crate::access($rate_limit),
            $origins,
        )))
        .await
    };
}
pub(crate) use ingest_app;

/// Sends a [`TestRequest`] to a service from `test::init_service` with `Authorization: Bearer
/// <token>` ([`TOKEN_ADMIN`] unless another or `None` is given) and decodes its reply into an
/// [`Answer`] (a macro: the request type `init_service` wants is not nameable here).
macro_rules! call {
    ($app:expr, $request:expr) => {
        call!($app, $request, Some($crate::TOKEN_ADMIN))
    };
    ($app:expr, $request:expr, $token:expr) => {
        $crate::answer(
            actix_web::test::call_service(&$app, $crate::with_token($request, $token).to_request())
                .await,
        )
        .await
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

/// `request` with `Authorization: Bearer <token>`, or without the header.
fn with_token(request: TestRequest, token: Option<&str>) -> TestRequest {
    match token {
        Some(token) => request.insert_header((AUTHORIZATION, format!("Bearer {token}"))),
        None => request,
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
