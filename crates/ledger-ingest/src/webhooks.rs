//! `POST /v1/webhooks/{stripe|paypal|xendit}`: payment providers' webhook deliveries.
//!
//! No bearer token: the provider's signature authenticates the delivery, checked on the raw
//! body as received (Stripe: `Stripe-Signature` HMAC under any configured secret, within the
//! tolerance; PayPal: PayPal's verify-webhook-signature API for any configured webhook id;
//! Xendit: the `x-callback-token`). The verified body, unchanged, goes to the writer as a
//! `ledger.v1.ProviderDelivery`; the writer records it in the inbox and normalizes it.
//!
//! Answers (JSON): 200 `{"outcome", "inbox_id", "global_positions", "reason"}` once the writer
//! recorded the delivery (appended, duplicate, ignored, stale, failed or waiting: all are
//! durable, so the provider must not retry); 400 not a message of the provider; 401 no or a wrong signature,
//! or a timestamp outside the tolerance; 404 a provider without configured secrets; 413 a body
//! over [`ledger_connectors::WEBHOOK_BYTES_MAX`]; 408 a body not received within
//! [`BODY_READ_SECONDS_MAX`]; 415 a `Content-Type` other than JSON (none is accepted); 503 with
//! `Retry-After` when the writer does not answer or the store is unavailable (nothing
//! recorded: the provider's retry delivers it), or when [`PAYPAL_VERIFICATIONS_MAX`] PayPal
//! verifications are already in flight.
//!
//! Before any call to PayPal's API, a PayPal delivery must be a PayPal event (400 otherwise)
//! whose transmission headers are plausible (`ledger_connectors::paypal::plausible_transmission`,
//! 401 otherwise): unauthenticated requests cannot make ingest spend PayPal API calls beyond
//! that cap.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, RETRY_AFTER};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use ledger_bus::{Client, SendError};
use ledger_connectors::{ProviderMessage, VerifyError, paypal, stripe, xendit};
use ledger_domain::Provider;
use ledger_domain::proto::{self, RejectionKind};
use provider_sync::{ApiSecret, PaypalApi, PaypalToken};

use crate::reply::UNAVAILABLE_RETRY_AFTER_SECONDS;

/// How long ingest waits for PayPal's token and verification answers.
const PAYPAL_TIMEOUT_SECONDS: u64 = 10;
/// PayPal verifications (token and postback calls) in flight at once; a delivery arriving
/// when all are taken gets 503 with `Retry-After` (PayPal retries) instead of another call.
pub const PAYPAL_VERIFICATIONS_MAX: usize = 8;
/// How long a delivery's body may take to arrive once its headers are in: a client trickling
/// its body (slowloris) is cut off with 408 instead of holding a connection for ever.
pub const BODY_READ_SECONDS_MAX: u64 = 10;

/// The providers' webhook secrets. A provider left `None` has no endpoint (404).
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// Stripe endpoint secrets (`whsec_...`, several during a rotation) and tolerance.
    pub stripe: Option<stripe::WebhookSecrets>,
    /// PayPal webhook ids and API credentials for the postback verification.
    pub paypal: Option<PaypalConfig>,
    /// Xendit callback verification tokens.
    pub xendit: Option<xendit::CallbackTokens>,
    /// Stripe's API (`LEDGER_STRIPE_API_BASE`, `LEDGER_STRIPE_API_KEY`), read by the
    /// on-demand sync (`POST /v1/sync/stripe/customers/{account_id}`); `None`: that route
    /// answers 501 `not_configured`.
    pub stripe_api: Option<ledger_sync::StripeReader>,
}

impl WebhookConfig {
    /// Logs, once, each provider whose endpoint is off for want of a secret.
    pub fn log_unconfigured(&self) {
        for (provider, configured, variable) in [
            (
                "stripe",
                self.stripe.is_some(),
                "LEDGER_STRIPE_WEBHOOK_SECRETS",
            ),
            ("paypal", self.paypal.is_some(), "LEDGER_PAYPAL_WEBHOOK_IDS"),
            (
                "xendit",
                self.xendit.is_some(),
                "LEDGER_XENDIT_CALLBACK_TOKENS",
            ),
        ] {
            if !configured {
                tracing::info!(
                    provider,
                    "POST /v1/webhooks/{provider} answers 404: set {variable} to enable it"
                );
            }
        }
    }
}

/// PayPal's postback verification settings.
#[derive(Clone)]
pub struct PaypalConfig {
    /// Webhook ids (`WH-...` of the webhook, not of an event); a delivery verified for any is
    /// accepted.
    pub webhook_ids: Vec<String>,
    /// `https://api-m.paypal.com` (live) or `https://api-m.sandbox.paypal.com`.
    pub api_base: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for PaypalConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PaypalConfig")
            .field("webhook_ids", &self.webhook_ids)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// A delivery's headers for `ledger_connectors` (names are case-insensitive in actix).
struct HttpHeaders<'a>(&'a HeaderMap);

impl ledger_connectors::Headers for HttpHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|value| value.to_str().ok())
    }
}

/// PayPal's API: the app's credentials and its OAuth2 token (one [`PaypalToken`] for the
/// ledger's calls to PayPal: cached until shortly before it expires, refused when a header
/// cannot hold it).
struct PaypalVerifier {
    /// The webhook ids a delivery may be verified for (`PaypalConfig::webhook_ids`).
    webhook_ids: Vec<String>,
    api: PaypalApi,
    http: reqwest::Client,
    token: PaypalToken,
    /// [`PAYPAL_VERIFICATIONS_MAX`] permits, one per verification in flight.
    in_flight: tokio::sync::Semaphore,
}

impl PaypalVerifier {
    fn new(config: PaypalConfig) -> PaypalVerifier {
        PaypalVerifier {
            webhook_ids: config.webhook_ids,
            api: PaypalApi {
                api_base: config.api_base,
                client_id: config.client_id,
                client_secret: ApiSecret::new(config.client_secret),
            },
            http: provider_sync::http_client(Duration::from_secs(PAYPAL_TIMEOUT_SECONDS))
                .unwrap_or_default(),
            token: PaypalToken::default(),
            in_flight: tokio::sync::Semaphore::new(PAYPAL_VERIFICATIONS_MAX),
        }
    }

    /// Asks PayPal whether `raw` with `headers` is genuine, for each webhook id in turn, and
    /// parses it. A body that is not a PayPal event, implausible transmission headers, or
    /// all [`PAYPAL_VERIFICATIONS_MAX`] verifications in flight: refused before any call to
    /// PayPal.
    async fn verify(
        &self,
        headers: &HttpHeaders<'_>,
        raw: &[u8],
    ) -> Result<ProviderMessage, WebhookError> {
        let message = paypal::parse(raw)?;
        paypal::plausible_transmission(headers)?;
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| WebhookError::VerifierBusy)?;
        let bodies = self
            .webhook_ids
            .iter()
            .map(|webhook_id| paypal::postback_request(headers, raw, webhook_id))
            .collect::<Result<Vec<_>, _>>()?;
        let token = self
            .token
            .bearer(&self.http, &self.api)
            .await
            .map_err(WebhookError::VerifierUnavailable)?;
        let mut last = VerifyError::Signature("no PayPal webhook id is configured".to_owned());
        for body in bodies {
            let response = self
                .http
                .post(format!(
                    "{}/v1/notifications/verify-webhook-signature",
                    self.api.api_base
                ))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|error| {
                    WebhookError::VerifierUnavailable(format!("PayPal's verify endpoint: {error}"))
                })?;
            if response.status() == StatusCode::UNAUTHORIZED.as_u16() {
                // The token was revoked early: fetch a new one on the next delivery.
                self.token.forget().await;
            }
            if response.status().is_server_error() || response.status() == 401 {
                return Err(WebhookError::VerifierUnavailable(format!(
                    "PayPal's verify endpoint answered {}",
                    response.status()
                )));
            }
            let answer = provider_sync::body_start(response)
                .await
                .map_err(|error| WebhookError::VerifierUnavailable(error.to_string()))?;
            match paypal::postback_verdict(&answer) {
                Ok(()) => return Ok(message),
                Err(error) => last = error,
            }
        }
        Err(last.into())
    }
}

/// Why a delivery got no 200.
#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error("no webhook secret is configured for this provider")]
    NotConfigured,
    #[error(
        "the body is larger than {} bytes",
        ledger_connectors::WEBHOOK_BYTES_MAX
    )]
    TooLarge,
    #[error("cannot read the body: {0}")]
    Unreadable(String),
    #[error("the body did not arrive within {BODY_READ_SECONDS_MAX} s")]
    BodyTimeout,
    #[error("Content-Type {0:?} is not JSON")]
    NotJson(String),
    /// [`PAYPAL_VERIFICATIONS_MAX`] PayPal verifications are in flight (503).
    #[error("too many PayPal verifications in flight")]
    VerifierBusy,
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// PayPal's API did not answer: the delivery cannot be checked now (503).
    #[error("cannot verify the delivery now: {0}")]
    VerifierUnavailable(String),
    #[error(transparent)]
    Send(#[from] SendError),
}

impl WebhookError {
    /// The HTTP status and the error code of the answer.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            WebhookError::NotConfigured => (StatusCode::NOT_FOUND, "not_configured"),
            WebhookError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            WebhookError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            WebhookError::NotJson(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json"),
            WebhookError::VerifierBusy => (StatusCode::SERVICE_UNAVAILABLE, "verifier_busy"),
            WebhookError::Unreadable(_) | WebhookError::Verify(VerifyError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "malformed")
            }
            WebhookError::Verify(VerifyError::Signature(_)) => {
                (StatusCode::UNAUTHORIZED, "signature_rejected")
            }
            WebhookError::VerifierUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable")
            }
            WebhookError::Send(SendError::Rejected(rejected)) => match rejected.kind() {
                RejectionKind::Malformed => (StatusCode::BAD_REQUEST, "malformed"),
                RejectionKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "writer_unavailable"),
            },
            WebhookError::Send(_) => (StatusCode::SERVICE_UNAVAILABLE, "writer_unavailable"),
        }
    }
}

/// The verifiers, shared by the workers ([`verifiers`]).
pub(crate) struct Verifiers {
    stripe: Option<stripe::WebhookSecrets>,
    paypal: Option<PaypalVerifier>,
    xendit: Option<xendit::CallbackTokens>,
}

/// Counts a delivery answered, by provider (as the path names it, when known) and outcome (the
/// writer's, or why ingest refused it): `ledger_connectors_deliveries_total`.
fn count(provider: &str, outcome: &'static str) {
    let provider = match provider {
        "stripe" => "stripe",
        "paypal" => "paypal",
        "xendit" => "xendit",
        _ => "unknown",
    };
    metrics::counter!(
        crate::observe::CONNECTOR_DELIVERIES,
        "provider" => provider,
        "outcome" => outcome
    )
    .increment(1);
}

/// The verifiers of `webhooks`, made once and shared by every worker's routes.
pub(crate) fn verifiers(webhooks: WebhookConfig) -> web::Data<Arc<Verifiers>> {
    web::Data::new(Arc::new(Verifiers {
        stripe: webhooks.stripe,
        paypal: webhooks.paypal.map(PaypalVerifier::new),
        xendit: webhooks.xendit,
    }))
}

pub(crate) fn configure(
    config: &mut web::ServiceConfig,
    client: Client,
    verifiers: web::Data<Arc<Verifiers>>,
) {
    config.service(
        web::resource("/v1/webhooks/{provider}")
            .app_data(web::Data::new(client))
            .app_data(verifiers)
            .wrap(from_fn(crate::observe::observe))
            .route(web::post().to(receive)),
    );
}

/// `POST /v1/webhooks/{provider}`: see the module's documentation.
async fn receive(
    request: HttpRequest,
    body: web::Payload,
    client: web::Data<Client>,
    verifiers: web::Data<Arc<Verifiers>>,
) -> HttpResponse {
    let provider = request.match_info().get("provider").unwrap_or_default();
    match deliver(&request, provider, body, &client, &verifiers).await {
        Ok(recorded) => {
            let outcome = ledger_bus::delivery_outcome_name(recorded.outcome());
            count(provider, outcome);
            HttpResponse::Ok().json(serde_json::json!({
                "outcome": outcome,
                "inbox_id": recorded.inbox_id,
                "global_positions": recorded.global_positions,
                "reason": recorded.reason,
            }))
        }
        Err(error) => {
            tracing::info!(provider, %error, "webhook delivery refused");
            let (status, code) = error.status_and_code();
            count(provider, code);
            let mut response = HttpResponse::build(status);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response.insert_header((RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECONDS.to_string()));
            }
            response.json(serde_json::json!({"error": code, "message": error.to_string()}))
        }
    }
}

/// The body, up to [`ledger_connectors::WEBHOOK_BYTES_MAX`] bytes, received within
/// [`BODY_READ_SECONDS_MAX`].
async fn read_body(body: web::Payload) -> Result<Bytes, WebhookError> {
    let read = body.to_bytes_limited(ledger_connectors::WEBHOOK_BYTES_MAX);
    match tokio::time::timeout(Duration::from_secs(BODY_READ_SECONDS_MAX), read).await {
        Err(_) => Err(WebhookError::BodyTimeout),
        Ok(Err(_)) => Err(WebhookError::TooLarge),
        Ok(Ok(read)) => read.map_err(|error| WebhookError::Unreadable(error.to_string())),
    }
}

/// Refuses a `Content-Type` that is not JSON (`application/json`, with any parameters, or
/// `application/<something>+json`); a delivery without one is read as JSON.
fn check_content_type(request: &HttpRequest) -> Result<(), WebhookError> {
    let Some(value) = request.headers().get(actix_web::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let media_type = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(WebhookError::NotJson(text.into_owned()))
    }
}

async fn deliver(
    request: &HttpRequest,
    provider: &str,
    body: web::Payload,
    client: &Client,
    verifiers: &Verifiers,
) -> Result<proto::DeliveryRecorded, WebhookError> {
    let provider = match provider {
        "stripe" if verifiers.stripe.is_some() => Provider::Stripe,
        "paypal" if verifiers.paypal.is_some() => Provider::Paypal,
        "xendit" if verifiers.xendit.is_some() => Provider::Xendit,
        _ => return Err(WebhookError::NotConfigured),
    };
    check_content_type(request)?;
    let body = read_body(body).await?;
    let headers = HttpHeaders(request.headers());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let message: ProviderMessage = match provider {
        Provider::Stripe => stripe::verify(
            &headers,
            &body,
            verifiers
                .stripe
                .as_ref()
                .ok_or(WebhookError::NotConfigured)?,
            i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        )?,
        Provider::Xendit => xendit::verify(
            &headers,
            &body,
            verifiers
                .xendit
                .as_ref()
                .ok_or(WebhookError::NotConfigured)?,
        )?,
        Provider::Paypal | Provider::Internal => {
            let verifier = verifiers
                .paypal
                .as_ref()
                .ok_or(WebhookError::NotConfigured)?;
            verifier.verify(&headers, &body).await?
        }
    };
    tracing::debug!(
        %provider,
        event_id = message.event_id,
        event_type = message.event_type,
        "verified webhook delivery"
    );
    let delivery = proto::ProviderDelivery {
        provider: proto::PaymentProvider::from(provider) as i32,
        body,
        received_at_unix_micros: i64::try_from(now.as_micros()).unwrap_or(i64::MAX),
        correlation_id: crate::observe::correlation_id(request).id.to_string(),
        renormalizes_inbox_id: String::new(),
        source: proto::DeliverySource::Webhook as i32,
    };
    Ok(client.deliver(&delivery).await?)
}
