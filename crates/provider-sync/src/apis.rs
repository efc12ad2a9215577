//! The providers' APIs as provider-sync calls them: configuration, one HTTP exchange at a time
//! (timeout, concurrency cap, authentication, idempotency key), and what their answers mean.
//!
//! - Stripe (<https://docs.stripe.com/api/subscriptions/cancel>,
//!   <https://docs.stripe.com/api/subscriptions/update>): `DELETE /v1/subscriptions/{id}`
//!   cancels now, `POST /v1/subscriptions/{id}` with `cancel_at_period_end=true` at the period
//!   end; secret key as bearer token; `Idempotency-Key`
//!   (<https://docs.stripe.com/api/idempotent_requests>); errors
//!   `{"error": {"code", "message", "type"}}`.
//! - PayPal (<https://developer.paypal.com/docs/api/subscriptions/v1/#subscriptions_cancel>):
//!   `POST /v1/billing/subscriptions/{id}/cancel` with `{"reason"}` answers 204; an OAuth2
//!   client-credentials token from `POST /v1/oauth2/token`; `PayPal-Request-Id`; errors
//!   `{"name", "message", "details": [{"issue", "description"}]}`.
//! - Xendit (<https://docs.xendit.co/apidocs/deactivate-subscription-plan-2>):
//!   `POST /recurring/plans/{id}/deactivate`; the secret API key as the Basic user;
//!   `Idempotency-key`; errors `{"error_code", "message"}`.
//!
//! Pause, resume and plan changes (`subscription_update_requested`, decision 0032):
//! - Stripe (<https://docs.stripe.com/billing/subscriptions/pause-payment>,
//!   <https://docs.stripe.com/api/subscriptions/update>): `POST /v1/subscriptions/{id}` with
//!   `pause_collection[behavior]=void` (and `pause_collection[resumes_at]`, Unix seconds) pauses
//!   collection, with `pause_collection=` (empty) resumes it; a plan change first reads the
//!   subscription (`GET`) for its single item's id, then posts `items[0][id]`,
//!   `items[0][price]` (the ledger's plan id is the Stripe price id), `items[0][quantity]` and
//!   `proration_behavior=create_prorations` (Stripe's default, written out). A subscription
//!   of several items (the ledger's plan id `price_a+price_b`) is not changed: not supported.
//! - PayPal (<https://developer.paypal.com/docs/api/subscriptions/v1/#subscriptions_suspend>,
//!   `#subscriptions_activate`, `#subscriptions_revise`): `POST
//!   /v1/billing/subscriptions/{id}/suspend` and `/activate` with `{"reason"}` answer 204 (a
//!   pause with a resume date is not supported: PayPal's suspend has none);
//!   `/revise` with `{"plan_id", "quantity"}` answers 200, and "requires the buyer's consent":
//!   an answer with an `approve` link is scheduled (the request stays processing until
//!   PayPal's webhook shows the change), one without is done.
//! - Xendit: its recurring plans API (<https://docs.xendit.co/apidocs/update-subscription-plan-2>)
//!   has no pause, resume or switch of plan (`PATCH /recurring/plans/{id}` changes the
//!   amount, payment methods and notifications): not supported, answered as such.
//!
//! Refunds (`refund_requested`):
//! - Stripe (<https://docs.stripe.com/api/refunds/create>): `POST /v1/refunds` with `charge`
//!   (a `ch_` payment id) or `payment_intent` (a `pi_` one), `amount` in minor units and
//!   `metadata[ledger_refund_request_id]`; the refund's `id` is the answer. After a crash,
//!   `GET /v1/refunds?charge=` (or `payment_intent=`) finds a refund carrying that metadata.
//! - PayPal (<https://developer.paypal.com/docs/api/payments/v1/#sale_refund>): the ledger
//!   records a PayPal payment under its sale id (`PAYMENT.SALE.COMPLETED`), so
//!   `POST /v1/payments/sale/{sale_id}/refund` with `{"amount": {"total": "15.00",
//!   "currency"}}` (major units); the refund's `id` is the answer. PayPal answers a repeated
//!   `PayPal-Request-Id` with the first answer, so no look is needed after a crash.
//! - Xendit (<https://docs.xendit.co/apidocs/refund-payment-request>): `POST /refunds` with
//!   `invoice_id` (the invoice the payment paid, else the payment id), `reference_id` (the
//!   ledger's refund request id), `amount` (major units), `currency` and `reason`
//!   `REQUESTED_BY_CUSTOMER`; after a crash `GET /refunds?invoice_id=` finds the refund by its
//!   `reference_id`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_domain::{Money, Provider, proto};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use crate::SyncError;
use crate::outbox::{Action, Answer, Call, RefundOrder};

/// How long a start-up check waits for a provider's base URL to answer.
const REACHABLE_TIMEOUT_MS: u64 = 5_000;
/// A PayPal token is renewed this long before it expires.
const PAYPAL_TOKEN_MARGIN_SECONDS: u64 = 60;
/// A PayPal token is kept at most this long, whatever its `expires_in` says (PayPal's last
/// about 9 hours): an answer cannot make the process keep a token for ever, nor overflow the
/// clock.
const PAYPAL_TOKEN_SECONDS_MAX: u64 = 24 * 60 * 60;
/// PayPal's limit on a cancellation's `reason`.
const PAYPAL_REASON_CHARS_MAX: usize = 128;
/// Stripe's limit on a metadata value.
const STRIPE_METADATA_CHARS_MAX: usize = 500;
/// The metadata key a Stripe refund carries the ledger's refund request id in.
const STRIPE_REFUND_REQUEST_KEY: &str = "ledger_refund_request_id";
/// Answer bodies read at most (an error's code and message are at the start).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// A secret from the configuration (an API key, a client secret): never printed.
#[derive(Clone)]
pub struct ApiSecret(String);

impl ApiSecret {
    pub fn new(secret: String) -> ApiSecret {
        ApiSecret(secret)
    }

    /// The secret itself, for the request's authorization header only (never for a log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiSecret(****)")
    }
}

/// Stripe's API: `LEDGER_STRIPE_API_BASE` (default `https://api.stripe.com`) and the secret
/// key `LEDGER_STRIPE_API_KEY`.
#[derive(Debug, Clone)]
pub struct StripeApi {
    pub api_base: String,
    pub api_key: ApiSecret,
}

/// PayPal's REST API: `LEDGER_PAYPAL_API_BASE` and the app's client id and secret.
#[derive(Debug, Clone)]
pub struct PaypalApi {
    pub api_base: String,
    pub client_id: String,
    pub client_secret: ApiSecret,
}

/// Xendit's API: `LEDGER_XENDIT_API_BASE` (default `https://api.xendit.co`) and the secret
/// API key `LEDGER_XENDIT_API_KEY`.
#[derive(Debug, Clone)]
pub struct XenditApi {
    pub api_base: String,
    pub api_key: ApiSecret,
}

/// The configured providers and the HTTP client that calls them.
#[derive(Debug)]
pub struct ProviderApis {
    stripe: Option<(StripeApi, Arc<Semaphore>)>,
    paypal: Option<(PaypalApi, Arc<Semaphore>)>,
    xendit: Option<(XenditApi, Arc<Semaphore>)>,
    http: reqwest::Client,
    /// PayPal's bearer token.
    paypal_token: PaypalToken,
    request_timeout: Duration,
}

impl ProviderApis {
    /// The providers to call, each request bounded by `request_timeout` and at most
    /// `concurrent_requests_per_provider` at once per provider.
    ///
    /// # Errors
    /// [`SyncError::Config`] when no provider is configured or a base URL is not an
    /// `http(s)://` URL.
    pub fn new(
        stripe: Option<StripeApi>,
        paypal: Option<PaypalApi>,
        xendit: Option<XenditApi>,
        request_timeout: Duration,
        concurrent_requests_per_provider: usize,
    ) -> Result<ProviderApis, SyncError> {
        if stripe.is_none() && paypal.is_none() && xendit.is_none() {
            return Err(SyncError::Config(
                "provider-sync has no provider to call: set LEDGER_STRIPE_API_KEY, \
                 LEDGER_PAYPAL_CLIENT_ID with LEDGER_PAYPAL_CLIENT_SECRET, or \
                 LEDGER_XENDIT_API_KEY (or their _FILE variables)"
                    .to_owned(),
            ));
        }
        let bases = [
            (
                "LEDGER_STRIPE_API_BASE",
                stripe.as_ref().map(|api| &api.api_base),
            ),
            (
                "LEDGER_PAYPAL_API_BASE",
                paypal.as_ref().map(|api| &api.api_base),
            ),
            (
                "LEDGER_XENDIT_API_BASE",
                xendit.as_ref().map(|api| &api.api_base),
            ),
        ];
        for (name, base) in bases {
            if let Some(base) = base {
                check_api_base(name, base).map_err(SyncError::Config)?;
            }
        }
        let http = http_client(request_timeout).map_err(SyncError::Config)?;
        let permits = || Arc::new(Semaphore::new(concurrent_requests_per_provider.max(1)));
        Ok(ProviderApis {
            stripe: stripe.map(|api| (api, permits())),
            paypal: paypal.map(|api| (api, permits())),
            xendit: xendit.map(|api| (api, permits())),
            http,
            paypal_token: PaypalToken::default(),
            request_timeout,
        })
    }

    /// The longest one request may take.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The configured providers, for the log.
    pub fn providers(&self) -> Vec<Provider> {
        [
            self.stripe.as_ref().map(|_| Provider::Stripe),
            self.paypal.as_ref().map(|_| Provider::Paypal),
            self.xendit.as_ref().map(|_| Provider::Xendit),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Checks at start that every configured base URL answers HTTP (any status), so a wrong
    /// address is an error now, not at the first request.
    ///
    /// # Errors
    /// [`SyncError::Config`] naming the variable and the cause.
    pub async fn check_reachable(&self) -> Result<(), SyncError> {
        let bases = [
            (
                "LEDGER_STRIPE_API_BASE",
                self.stripe.as_ref().map(|(api, _)| &api.api_base),
            ),
            (
                "LEDGER_PAYPAL_API_BASE",
                self.paypal.as_ref().map(|(api, _)| &api.api_base),
            ),
            (
                "LEDGER_XENDIT_API_BASE",
                self.xendit.as_ref().map(|(api, _)| &api.api_base),
            ),
        ];
        for (name, base) in bases {
            let Some(base) = base else { continue };
            self.http
                .get(base.as_str())
                .timeout(Duration::from_millis(REACHABLE_TIMEOUT_MS))
                .send()
                .await
                .map_err(|error| {
                    SyncError::Config(format!(
                        "{name} {base} does not answer: {}; check the URL and the network",
                        error_chain(&error)
                    ))
                })?;
        }
        Ok(())
    }

    /// Sends one request to `provider`, within the provider's concurrency cap.
    pub(crate) async fn exchange(&self, provider: Provider, request: &ProviderRequest) -> Exchange {
        let (base, permits) = match (provider, &self.stripe, &self.paypal, &self.xendit) {
            (Provider::Stripe, Some((api, permits)), _, _) => (&api.api_base, permits),
            (Provider::Paypal, _, Some((api, permits)), _) => (&api.api_base, permits),
            (Provider::Xendit, _, _, Some((api, permits))) => (&api.api_base, permits),
            _ => {
                return Exchange::Failed(format!(
                    "{provider} is not configured in provider-sync (see docs/connectors.md, \
                     \"Outbound: provider-sync\")"
                ));
            }
        };
        let Ok(_permit) = permits.acquire().await else {
            return Exchange::Failed("the request permits were closed".to_owned());
        };
        let url = format!("{}{}", base.trim_end_matches('/'), request.path);
        let mut builder = self.http.request(request.method.clone(), url);
        builder = match (provider, &self.stripe, &self.paypal, &self.xendit) {
            (Provider::Stripe, Some((api, _)), _, _) => builder
                .bearer_auth(api.api_key.expose())
                .header("Idempotency-Key", &request.idempotency_key),
            (Provider::Paypal, _, Some((api, _)), _) => {
                match self.paypal_token.bearer(&self.http, api).await {
                    Ok(token) => builder
                        .bearer_auth(token)
                        .header("PayPal-Request-Id", &request.idempotency_key),
                    Err(error) => return Exchange::Failed(error),
                }
            }
            (Provider::Xendit, _, _, Some((api, _))) => builder
                .basic_auth(api.api_key.expose(), Some(""))
                .header("Idempotency-key", &request.idempotency_key),
            _ => builder,
        };
        builder = match &request.body {
            Body::None => builder,
            Body::Form(form) => builder.form(form),
            Body::Json(text) => builder
                .header("Content-Type", "application/json")
                .body(text.clone()),
        };
        match builder.send().await {
            Err(error) => Exchange::Failed(error_chain(&error)),
            Ok(answer) => {
                let status = answer.status();
                if provider == Provider::Paypal && status == StatusCode::UNAUTHORIZED {
                    // The token was revoked early: fetch a new one for the next request.
                    self.paypal_token.forget().await;
                }
                let retry_after = retry_after(answer.headers());
                let body = match body_start(answer).await {
                    Ok(body) => body,
                    Err(error) => return Exchange::Failed(error_chain(&error)),
                };
                Exchange::Answered {
                    status: status.as_u16(),
                    retry_after,
                    body,
                }
            }
        }
    }
}

/// PayPal's OAuth2 bearer token for one app (client id and secret), cached until a minute
/// before it expires: what provider-sync and the backfill call PayPal with.
#[derive(Default)]
pub struct PaypalToken(Mutex<TokenState>);

/// What [`PaypalToken`] holds behind its lock.
#[derive(Default)]
struct TokenState {
    /// The token and when to renew it.
    token: Option<(String, Instant)>,
    /// The last fetch's failure and when it ended, until a fetch succeeds.
    failure: Option<(Instant, String)>,
}

impl fmt::Debug for PaypalToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("PaypalToken(****)")
    }
}

impl PaypalToken {
    /// `POST /v1/oauth2/token` (client credentials, <https://developer.paypal.com/api/rest/authentication/>),
    /// or the cached token while it has more than a minute to live. One fetch at a time: the
    /// callers that waited for a fetch that failed get its error at once instead of each
    /// fetching in turn (against a token endpoint that does not answer, each would wait for
    /// its own timeout, one after the other).
    ///
    /// # Errors
    /// What failed, naming the settings to check when PayPal refuses the credentials.
    pub async fn bearer(&self, http: &reqwest::Client, api: &PaypalApi) -> Result<String, String> {
        let asked = Instant::now();
        let mut state = self.0.lock().await;
        if let Some((token, renew_at)) = state.token.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        if let Some((ended, error)) = state.failure.as_ref()
            && *ended > asked
        {
            return Err(error.clone());
        }
        let fetched = Self::fetch(http, api).await;
        match &fetched {
            Ok((token, renew_at)) => {
                state.token = Some((token.clone(), *renew_at));
                state.failure = None;
            }
            Err(error) => state.failure = Some((Instant::now(), error.clone())),
        }
        fetched.map(|(token, _)| token)
    }

    /// A new token and when to renew it.
    async fn fetch(http: &reqwest::Client, api: &PaypalApi) -> Result<(String, Instant), String> {
        let answer = http
            .post(format!(
                "{}/v1/oauth2/token",
                api.api_base.trim_end_matches('/')
            ))
            .basic_auth(&api.client_id, Some(api.client_secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|error| format!("PayPal's token endpoint: {}", error_chain(&error)))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(format!(
                "PayPal's token endpoint answered {status}: check LEDGER_PAYPAL_CLIENT_ID and \
                 LEDGER_PAYPAL_CLIENT_SECRET"
            ));
        }
        let body = body_start(answer)
            .await
            .map_err(|error| format!("PayPal's token answer: {}", error_chain(&error)))?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|error| format!("PayPal's token answer is not JSON: {error}"))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or("PayPal's token answer has no access_token")?
            .to_owned();
        // Sent as `Authorization: Bearer <token>`: a token a header cannot hold would fail
        // every request as a builder error, retried as if PayPal were unreachable.
        if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(
                "PayPal's token answer holds an access_token that is not printable ASCII (it \
                 cannot be sent in a header); not used"
                    .to_owned(),
            );
        }
        let expires_in = body.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
        let renew_at = Instant::now()
            + Duration::from_secs(
                expires_in
                    .min(PAYPAL_TOKEN_SECONDS_MAX)
                    .saturating_sub(PAYPAL_TOKEN_MARGIN_SECONDS),
            );
        Ok((token, renew_at))
    }

    /// Drops the cached token (PayPal answered 401: it was revoked early), so the next
    /// [`PaypalToken::bearer`] asks for a new one.
    pub async fn forget(&self) {
        self.0.lock().await.token = None;
    }
}

/// Checks that `base`, the value of the setting `name`, is an `http(s)://` URL with a host.
///
/// # Errors
/// A sentence naming the setting.
pub fn check_api_base(name: &str, base: &str) -> Result<(), String> {
    let parsed =
        Url::parse(base).map_err(|error| format!("{name} {base:?} is not a URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!(
            "{name} {base:?} is not an http(s):// URL with a host"
        ));
    }
    // The API key or client secret goes in every request: in clear text only to this machine
    // (a local test server or a TLS-terminating proxy on loopback).
    let loopback = match parsed.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    if parsed.scheme() == "http" && !loopback {
        return Err(format!(
            "{name} {base:?} would send the provider's credentials unencrypted: use https://, \
             or http:// to a loopback address only"
        ));
    }
    Ok(())
}

/// The HTTP client providers are called with: each request bounded by `request_timeout`, no
/// redirect followed, no proxy.
///
/// # Errors
/// When the client cannot be built (no TLS backend).
pub fn http_client(request_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|error| format!("the HTTP client: {error}"))
}

/// The first [`ANSWER_BYTES_MAX`] bytes of an answer's body; the rest is not read. Whatever
/// answers at a base URL (a provider, a proxy, a wrong host) cannot make the process hold an
/// answer of any size: reading a whole body held all of it until the request's timeout.
pub async fn body_start(mut answer: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < ANSWER_BYTES_MAX {
        let Some(chunk) = answer.chunk().await? else {
            break;
        };
        let room = ANSWER_BYTES_MAX - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// The text of an error and its sources (reqwest's top level says only "error sending
/// request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` in seconds (the form the three providers send), if any.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Form(Vec<(String, String)>),
    /// JSON text (amounts in major units are written as decimal numbers, never floats).
    Json(String),
}

/// One request to a provider.
#[derive(Debug, Clone)]
pub(crate) struct ProviderRequest {
    pub(crate) method: Method,
    /// The path under the API base, ids percent-encoded.
    pub(crate) path: String,
    pub(crate) body: Body,
    /// Derived from the ledger event that asked for the call: the same on every retry.
    pub(crate) idempotency_key: String,
}

impl ProviderRequest {
    /// `DELETE /v1/subscriptions/sub_1`: what the attempt log shows.
    pub(crate) fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What one exchange came to.
#[derive(Debug, Clone)]
pub(crate) enum Exchange {
    /// An HTTP answer.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        body: Vec<u8>,
    },
    /// No answer: connection refused or reset, timeout, TLS, the token could not be had.
    Failed(String),
}

impl Exchange {
    /// The answer's body; empty without an answer.
    pub(crate) fn body(&self) -> &[u8] {
        match self {
            Exchange::Answered { body, .. } => body,
            Exchange::Failed(_) => &[],
        }
    }
}

/// An exchange's meaning for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx.
    Succeeded,
    /// A 4xx other than 408, 409, 425 and 429: the provider's code and message.
    Refused { code: String, message: String },
    /// Try again: no answer, 408, 409 (a concurrent request with the same key), 425, 429, 5xx,
    /// or PayPal's 401 (its token is renewed).
    Transient {
        retry_after: Option<Duration>,
        error: String,
    },
}

/// Judges an exchange with `provider`.
pub(crate) fn verdict(provider: Provider, exchange: &Exchange) -> Verdict {
    let (status, retry_after, body) = match exchange {
        Exchange::Failed(error) => {
            return Verdict::Transient {
                retry_after: None,
                error: error.clone(),
            };
        }
        Exchange::Answered {
            status,
            retry_after,
            body,
        } => (*status, *retry_after, body),
    };
    let transient = matches!(status, 408 | 409 | 425 | 429 | 500..=599)
        || (provider == Provider::Paypal && status == 401);
    if (200..300).contains(&status) {
        Verdict::Succeeded
    } else if transient || !(400..500).contains(&status) {
        let (code, message) = provider_error(provider, status, body);
        Verdict::Transient {
            retry_after,
            error: format!("{status}: {code}: {message}"),
        }
    } else {
        let (code, message) = provider_error(provider, status, body);
        Verdict::Refused { code, message }
    }
}

/// The provider's error code and message from an error answer; `http_<status>` and the body's
/// start when it has none. NUL characters are left out.
fn provider_error(provider: Provider, status: u16, body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let (code, message) = match (provider, parsed.as_ref()) {
        (Provider::Stripe, Some(value)) => {
            let error = value.get("error");
            (
                text(error.and_then(|e| e.get("code")))
                    .or_else(|| text(error.and_then(|e| e.get("type")))),
                text(error.and_then(|e| e.get("message"))),
            )
        }
        (Provider::Paypal, Some(value)) => (
            text(value.pointer("/details/0/issue")).or_else(|| text(value.get("name"))),
            text(value.pointer("/details/0/description")).or_else(|| text(value.get("message"))),
        ),
        (Provider::Xendit, Some(value)) => {
            (text(value.get("error_code")), text(value.get("message")))
        }
        _ => (None, None),
    };
    let fallback = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    };
    // Without NUL, which PostgreSQL text cannot hold (the attempts log, the call's answer): a
    // refusal holding one failed the worker's round and was asked again and again.
    let without_nul = |text: String| text.replace('\0', "");
    (
        without_nul(code.unwrap_or_else(|| format!("http_{status}"))),
        without_nul(message.unwrap_or_else(fallback)),
    )
}

/// The requests of a call: a look at the object's state (made only when an earlier request
/// may have reached the provider; none when the provider replays a repeated idempotency key),
/// and the action; or why the provider cannot do it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) check: Option<ProviderRequest>,
    pub(crate) act: Act,
}

/// The action of a plan.
#[derive(Debug, Clone)]
pub(crate) enum Act {
    /// The same request on every attempt.
    Request(ProviderRequest),
    /// A request built from a look at the object, made before every attempt (Stripe's plan
    /// change names the subscription item the look finds): `build` gets the look's 2xx body
    /// and gives the request, or the answer when the look shows it done or impossible.
    AfterLook {
        look: ProviderRequest,
        build: fn(&Call, &[u8]) -> Result<ProviderRequest, Answer>,
    },
}

/// The idempotency key of `call`'s requests: derived from the request event and the action.
fn idempotency_key(call: &Call) -> String {
    format!("ledger:{}:{}", call.request_event_id, call.action.as_str())
}

/// The requests carrying out `call`, or the answer when the provider has no such operation.
pub(crate) fn plan(call: &Call) -> Result<Plan, Answer> {
    let id = utf8_percent_encode(&call.subscription_id);
    let key = idempotency_key(call);
    let request = |method: Method, path: String, body: Body| ProviderRequest {
        method,
        path,
        body,
        idempotency_key: key.clone(),
    };
    let update_plan = |action| update_plan(call, action, &id, &request);
    match (call.provider, call.action, &call.refund) {
        (provider, Action::Refund, Some(refund)) => {
            refund_plan(provider, refund, &call.reason, &request)
        }
        (_, Action::Refund, None) => Err(Answer::NotSupported {
            message: "a refund call without its payment and amount".to_owned(),
        }),
        (_, action @ (Action::Pause | Action::Resume | Action::ChangePlan), _) => {
            update_plan(action)
        }
        (Provider::Stripe, action, _) => Ok(Plan {
            check: Some(request(
                Method::GET,
                format!("/v1/subscriptions/{id}"),
                Body::None,
            )),
            act: Act::Request(if action == Action::CancelAtPeriodEnd {
                request(
                    Method::POST,
                    format!("/v1/subscriptions/{id}"),
                    Body::Form(vec![("cancel_at_period_end".to_owned(), "true".to_owned())]),
                )
            } else {
                request(
                    Method::DELETE,
                    format!("/v1/subscriptions/{id}"),
                    Body::None,
                )
            }),
        }),
        (Provider::Paypal, Action::CancelNow, _) => {
            let reason: String = if call.reason.trim().is_empty() {
                "Cancelled by the merchant".to_owned()
            } else {
                call.reason.chars().take(PAYPAL_REASON_CHARS_MAX).collect()
            };
            Ok(Plan {
                check: Some(request(
                    Method::GET,
                    format!("/v1/billing/subscriptions/{id}"),
                    Body::None,
                )),
                act: Act::Request(request(
                    Method::POST,
                    format!("/v1/billing/subscriptions/{id}/cancel"),
                    Body::Json(json!({ "reason": reason }).to_string()),
                )),
            })
        }
        (Provider::Xendit, Action::CancelNow, _) => Ok(Plan {
            check: Some(request(
                Method::GET,
                format!("/recurring/plans/{id}"),
                Body::None,
            )),
            act: Act::Request(request(
                Method::POST,
                format!("/recurring/plans/{id}/deactivate"),
                Body::None,
            )),
        }),
        (provider, Action::CancelAtPeriodEnd, _) => Err(Answer::NotSupported {
            message: format!(
                "{provider} cancels a subscription only now, not at the period end: request \
                 the cancellation with at_period_end false, or when the period ends"
            ),
        }),
        (Provider::Internal, Action::CancelNow, _) => Err(Answer::NotSupported {
            message: "the subscription is held by the company's own billing, not a provider"
                .to_owned(),
        }),
    }
}

/// PayPal's reason for a suspension or activation: the ledger's, or a default; at most
/// PayPal's 128 characters.
fn paypal_reason(reason: &str, default: &str) -> String {
    if reason.trim().is_empty() {
        default.to_owned()
    } else {
        reason.chars().take(PAYPAL_REASON_CHARS_MAX).collect()
    }
}

/// The requests of a pause, resume or plan change (`call.update`) at the call's provider.
fn update_plan(
    call: &Call,
    action: Action,
    id: &str,
    request: &dyn Fn(Method, String, Body) -> ProviderRequest,
) -> Result<Plan, Answer> {
    use proto::subscription_update_requested::Change;
    let change = call
        .update
        .as_ref()
        .and_then(|update| update.change.as_ref());
    match (call.provider, change) {
        (_, None) => Err(Answer::NotSupported {
            message: "an update call without its change".to_owned(),
        }),
        (Provider::Stripe, Some(change)) => {
            let look = request(Method::GET, format!("/v1/subscriptions/{id}"), Body::None);
            let post = |form| {
                request(
                    Method::POST,
                    format!("/v1/subscriptions/{id}"),
                    Body::Form(form),
                )
            };
            let act = match change {
                Change::Pause(pause) => {
                    let mut form =
                        vec![("pause_collection[behavior]".to_owned(), "void".to_owned())];
                    if let Some(resumes_at) = pause.resumes_at_unix_seconds {
                        form.push((
                            "pause_collection[resumes_at]".to_owned(),
                            resumes_at.to_string(),
                        ));
                    }
                    Act::Request(post(form))
                }
                Change::Resume(_) => {
                    Act::Request(post(vec![("pause_collection".to_owned(), String::new())]))
                }
                Change::PlanChange(_) => {
                    return Ok(Plan {
                        check: None,
                        act: Act::AfterLook {
                            look,
                            build: stripe_plan_change,
                        },
                    });
                }
            };
            Ok(Plan {
                check: Some(look),
                act,
            })
        }
        (Provider::Paypal, Some(change)) => {
            let look = request(
                Method::GET,
                format!("/v1/billing/subscriptions/{id}"),
                Body::None,
            );
            let (verb, body) = match change {
                // PayPal's suspend has no resume date: the ledger would record a pause ending
                // on a date PayPal never resumes it.
                Change::Pause(pause) if pause.resumes_at_unix_seconds.is_some() => {
                    return Err(Answer::NotSupported {
                        message: "PayPal cannot resume a suspended subscription on a date (its \
                                  suspend has no resume date): pause it without one and resume \
                                  it then"
                            .to_owned(),
                    });
                }
                Change::Pause(_) => (
                    "suspend",
                    json!({ "reason": paypal_reason(&call.reason, "Paused by the merchant") }),
                ),
                Change::Resume(_) => (
                    "activate",
                    json!({ "reason": paypal_reason(&call.reason, "Resumed by the merchant") }),
                ),
                Change::PlanChange(change) => (
                    "revise",
                    json!({
                        "plan_id": change.plan.as_ref().map(|plan| plan.plan_id.as_str()),
                        "quantity": change.quantity.to_string(),
                    }),
                ),
            };
            Ok(Plan {
                check: Some(look),
                act: Act::Request(request(
                    Method::POST,
                    format!("/v1/billing/subscriptions/{id}/{verb}"),
                    Body::Json(body.to_string()),
                )),
            })
        }
        (Provider::Xendit, Some(_)) => Err(Answer::NotSupported {
            message: format!(
                "Xendit's recurring plans cannot be {}: its API has no such operation (deactivate \
                 the plan at Xendit and start another)",
                match action {
                    Action::Pause => "paused",
                    Action::Resume => "resumed",
                    _ => "moved to another plan",
                }
            ),
        }),
        (Provider::Internal, Some(_)) => Err(Answer::NotSupported {
            message: "the subscription is held by the company's own billing, not a provider"
                .to_owned(),
        }),
    }
}

/// Stripe's plan change, from a look at the subscription (`GET /v1/subscriptions/{id}`): its
/// one item moved to the requested price and quantity, or the answer when it already is, or
/// when the subscription has several items.
fn stripe_plan_change(call: &Call, body: &[u8]) -> Result<ProviderRequest, Answer> {
    use proto::subscription_update_requested::Change;
    let Some(Change::PlanChange(change)) = call.update.as_ref().and_then(|u| u.change.as_ref())
    else {
        return Err(Answer::NotSupported {
            message: "a plan change call without its plan".to_owned(),
        });
    };
    let price = change
        .plan
        .as_ref()
        .map(|plan| plan.plan_id.as_str())
        .unwrap_or_default();
    let object: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let items = object
        .pointer("/items/data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let item_id = match items {
        [item] => item.get("id").and_then(Value::as_str),
        _ => None,
    };
    let (Some(item_id), false) = (item_id, price.contains('+')) else {
        return Err(Answer::NotSupported {
            message: format!(
                "Stripe subscription {} has {} items (or the plan {price:?} several prices): \
                 provider-sync changes a subscription of one item only; change it at Stripe",
                call.subscription_id,
                items.len()
            ),
        });
    };
    Ok(ProviderRequest {
        method: Method::POST,
        path: format!(
            "/v1/subscriptions/{}",
            utf8_percent_encode(&call.subscription_id)
        ),
        body: Body::Form(vec![
            ("items[0][id]".to_owned(), item_id.to_owned()),
            ("items[0][price]".to_owned(), price.to_owned()),
            ("items[0][quantity]".to_owned(), change.quantity.to_string()),
            (
                "proration_behavior".to_owned(),
                "create_prorations".to_owned(),
            ),
        ]),
        idempotency_key: idempotency_key(call),
    })
}

/// The requests of a refund at `provider`.
fn refund_plan(
    provider: Provider,
    refund: &RefundOrder,
    reason: &str,
    request: &dyn Fn(Method, String, Body) -> ProviderRequest,
) -> Result<Plan, Answer> {
    let payment = utf8_percent_encode(&refund.payment_id);
    match provider {
        Provider::Stripe => {
            let target = if refund.payment_id.starts_with("pi_") {
                "payment_intent"
            } else {
                "charge"
            };
            let mut form = vec![
                (target.to_owned(), refund.payment_id.clone()),
                ("amount".to_owned(), refund.amount.amount_minor.to_string()),
                (
                    format!("metadata[{STRIPE_REFUND_REQUEST_KEY}]"),
                    refund.refund_request_id.clone(),
                ),
            ];
            if !reason.trim().is_empty() {
                form.push((
                    "metadata[reason]".to_owned(),
                    reason.chars().take(STRIPE_METADATA_CHARS_MAX).collect(),
                ));
            }
            Ok(Plan {
                check: Some(request(
                    Method::GET,
                    format!("/v1/refunds?{target}={payment}&limit=100"),
                    Body::None,
                )),
                act: Act::Request(request(
                    Method::POST,
                    "/v1/refunds".to_owned(),
                    Body::Form(form),
                )),
            })
        }
        Provider::Paypal => Ok(Plan {
            check: None,
            act: Act::Request(request(
                Method::POST,
                format!("/v1/payments/sale/{payment}/refund"),
                Body::Json(
                    json!({
                        "amount": {
                            "total": major_units(refund.amount),
                            "currency": refund.amount.currency.code(),
                        }
                    })
                    .to_string(),
                ),
            )),
        }),
        Provider::Xendit => {
            let invoice_id = refund.invoice_id.as_deref().unwrap_or(&refund.payment_id);
            let rest = json!({
                "invoice_id": invoice_id,
                "reference_id": refund.refund_request_id,
                "currency": refund.amount.currency.code(),
                "reason": "REQUESTED_BY_CUSTOMER",
            })
            .to_string();
            // `amount` is a JSON number in major units, written from the integer digits.
            let body = format!(
                "{{\"amount\":{},{}",
                major_units(refund.amount),
                rest.strip_prefix('{').unwrap_or(&rest)
            );
            Ok(Plan {
                check: Some(request(
                    Method::GET,
                    format!("/refunds?invoice_id={}", utf8_percent_encode(invoice_id)),
                    Body::None,
                )),
                act: Act::Request(request(
                    Method::POST,
                    "/refunds".to_owned(),
                    Body::Json(body),
                )),
            })
        }
        Provider::Internal => Err(Answer::NotSupported {
            message: "the payment was collected by the company's own billing, not a provider"
                .to_owned(),
        }),
    }
}

/// `amount` in major units as decimal text: 1500 USD cents are `15.00`, 500 JPY `500`.
fn major_units(amount: Money) -> String {
    let text = amount.to_string();
    text.split(' ').next().unwrap_or(&text).to_owned()
}

/// The answer already given, when a look at the object (the `check` request's 2xx body) shows
/// the action done: a request before a crash reached the provider.
pub(crate) fn already_done(call: &Call, body: &[u8]) -> Option<Answer> {
    let object: Value = serde_json::from_slice(body).ok()?;
    if let Some(refund) = &call.refund {
        return refund_found(call.provider, refund, &object);
    }
    if let Some(update) = &call.update {
        return update_found(call.provider, update, &object);
    }
    let status = object.get("status").and_then(Value::as_str)?;
    match (call.provider, call.action) {
        (_, Action::Refund | Action::Pause | Action::Resume | Action::ChangePlan) => None,
        (Provider::Stripe, Action::CancelNow) => {
            (status == "canceled").then_some(Answer::Confirmed)
        }
        (Provider::Stripe, Action::CancelAtPeriodEnd) => {
            let pending = object.get("cancel_at_period_end").and_then(Value::as_bool) == Some(true);
            (pending || status == "canceled").then_some(Answer::Scheduled)
        }
        (Provider::Paypal, _) => (status == "CANCELLED").then_some(Answer::Confirmed),
        (Provider::Xendit, _) => (status == "INACTIVE").then_some(Answer::Confirmed),
        (Provider::Internal, _) => None,
    }
}

/// Whether a subscription (Stripe's or PayPal's object) shows `update` done.
fn update_found(
    provider: Provider,
    update: &proto::SubscriptionUpdateRequested,
    subscription: &Value,
) -> Option<Answer> {
    use proto::subscription_update_requested::Change;
    let status = subscription.get("status").and_then(Value::as_str);
    let done = match (provider, update.change.as_ref()?) {
        (Provider::Stripe, Change::Pause(_)) => subscription
            .get("pause_collection")
            .is_some_and(|pause| !pause.is_null()),
        (Provider::Stripe, Change::Resume(_)) => {
            subscription
                .get("pause_collection")
                .is_some_and(Value::is_null)
                && status != Some("paused")
        }
        (Provider::Stripe, Change::PlanChange(change)) => {
            let items = subscription
                .pointer("/items/data")
                .and_then(Value::as_array)?;
            let [item] = items.as_slice() else {
                return None;
            };
            item.pointer("/price/id").and_then(Value::as_str)
                == change.plan.as_ref().map(|plan| plan.plan_id.as_str())
                && item.get("quantity").and_then(Value::as_u64) == Some(change.quantity.into())
        }
        (Provider::Paypal, Change::Pause(_)) => status == Some("SUSPENDED"),
        (Provider::Paypal, Change::Resume(_)) => status == Some("ACTIVE"),
        (Provider::Paypal, Change::PlanChange(change)) => {
            subscription.get("plan_id").and_then(Value::as_str)
                == change.plan.as_ref().map(|plan| plan.plan_id.as_str())
                && subscription.get("quantity").and_then(Value::as_str)
                    == Some(change.quantity.to_string().as_str())
        }
        (Provider::Xendit | Provider::Internal, _) => false,
    };
    done.then_some(Answer::Confirmed)
}

/// The refund of `refund` in a provider's list of refunds (Stripe `{"data": [...]}` with the
/// request id in `metadata`, Xendit `{"data": [...]}` with it as `reference_id`), unless it
/// failed or was cancelled.
fn refund_found(provider: Provider, refund: &RefundOrder, list: &Value) -> Option<Answer> {
    let found = list
        .get("data")
        .and_then(Value::as_array)?
        .iter()
        .find(|item| {
            let request_id = match provider {
                Provider::Stripe => item.pointer(&format!("/metadata/{STRIPE_REFUND_REQUEST_KEY}")),
                Provider::Xendit => item.get("reference_id"),
                Provider::Paypal | Provider::Internal => None,
            };
            let status = item
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            request_id.and_then(Value::as_str) == Some(refund.refund_request_id.as_str())
                && !matches!(
                    status.to_ascii_lowercase().as_str(),
                    "failed" | "canceled" | "cancelled"
                )
        })?;
    let refund_id = found.get("id").and_then(Value::as_str)?;
    Some(Answer::Refunded {
        refund_id: refund_id.to_owned(),
    })
}

/// What the action's success (a 2xx with `body`) means.
pub(crate) fn success(call: &Call, body: &[u8]) -> Answer {
    match call.action {
        Action::CancelNow | Action::Pause | Action::Resume => Answer::Confirmed,
        Action::CancelAtPeriodEnd => Answer::Scheduled,
        // PayPal's revision waits for the subscriber's approval when it answers with an
        // `approve` link.
        Action::ChangePlan => {
            let approval = serde_json::from_slice::<Value>(body)
                .ok()
                .is_some_and(|object| {
                    object
                        .get("links")
                        .and_then(Value::as_array)
                        .is_some_and(|links| {
                            links.iter().any(|link| {
                                link.get("rel").and_then(Value::as_str) == Some("approve")
                            })
                        })
                });
            if approval {
                Answer::Scheduled
            } else {
                Answer::Confirmed
            }
        }
        Action::Refund => {
            let refund_id = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|object| object.get("id").and_then(Value::as_str).map(str::to_owned));
            match refund_id {
                Some(refund_id) => Answer::Refunded { refund_id },
                // Accepted, but the answer names no refund: the ledger cannot record it as
                // refunded, and says so to the operator.
                None => Answer::Refused {
                    code: CODE_ANSWER_UNREADABLE.to_owned(),
                    message: format!(
                        "{} accepted the refund but its answer has no refund id; check the \
                         payment at the provider",
                        call.provider
                    ),
                },
            }
        }
    }
}

/// The failure code of a refund the provider accepted without naming it.
pub(crate) const CODE_ANSWER_UNREADABLE: &str = "provider_sync_answer_unreadable";

/// Percent-encodes an id for a path segment (ids never need it at the three providers, but a
/// `/` in one must not reach another endpoint).
pub fn utf8_percent_encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
    use ledger_domain::Currency;
    use proto::subscription_update_requested::Change;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn call(provider: Provider, action: Action) -> Call {
        Call {
            call_id: Uuid::nil(),
            provider,
            action,
            customer_id: Uuid::nil(),
            subscription_id: "sub_1".to_owned(),
            refund: None,
            update: None,
            account_id: "cus_1".to_owned(),
            reason: String::new(),
            request_event_id: Uuid::nil(),
            request_occurred_at: OffsetDateTime::UNIX_EPOCH,
            correlation_id: None,
            rounds: 0,
            attempted: false,
            answer: None,
        }
    }

    fn refund_call(provider: Provider, payment_id: &str, amount_minor: i64, code: &str) -> Call {
        Call {
            subscription_id: String::new(),
            action: Action::Refund,
            refund: Some(RefundOrder {
                refund_request_id: "rr_1".to_owned(),
                payment_id: payment_id.to_owned(),
                invoice_id: None,
                amount: Money::new(amount_minor, Currency::parse(code).expect("a currency")),
            }),
            reason: "customer asked".to_owned(),
            ..call(provider, Action::Refund)
        }
    }

    /// The action of a plan that acts without a look first.
    fn acting(plan: &Plan) -> &ProviderRequest {
        match &plan.act {
            Act::Request(request) => request,
            Act::AfterLook { .. } => panic!("acts after a look"),
        }
    }

    fn form(request: &ProviderRequest) -> Vec<(String, String)> {
        match &request.body {
            Body::Form(form) => form.clone(),
            other => panic!("not a form: {other:?}"),
        }
    }

    fn json_body(request: &ProviderRequest) -> Value {
        match &request.body {
            Body::Json(text) => serde_json::from_str(text).expect("JSON"),
            other => panic!("not JSON: {other:?}"),
        }
    }

    #[test]
    fn credentials_go_unencrypted_to_loopback_only() {
        for base in [
            "https://api.stripe.com",
            "https://api.example.com:8443/v1",
            "http://127.0.0.1:12111",
            "http://localhost:8080",
            "http://[::1]:9000",
        ] {
            assert_eq!(check_api_base("BASE", base), Ok(()), "{base}");
        }
        for (base, reason) in [
            ("http://api.xendit.co", "unencrypted"),
            ("http://10.0.0.5:8080", "unencrypted"),
            ("ftp://127.0.0.1", "not an http(s)"),
            ("not a url", "not a URL"),
        ] {
            let error = check_api_base("BASE", base).expect_err(base);
            assert!(error.contains(reason), "{base}: {error}");
        }
    }

    #[test]
    fn refunds_are_asked_of_each_provider_in_its_own_shape() {
        let stripe = plan(&refund_call(Provider::Stripe, "ch_1", 1_500, "USD")).expect("a plan");
        assert_eq!(acting(&stripe).describe(), "POST /v1/refunds");
        assert_eq!(
            form(acting(&stripe)),
            vec![
                ("charge".to_owned(), "ch_1".to_owned()),
                ("amount".to_owned(), "1500".to_owned()),
                (
                    "metadata[ledger_refund_request_id]".to_owned(),
                    "rr_1".to_owned()
                ),
                ("metadata[reason]".to_owned(), "customer asked".to_owned()),
            ]
        );
        assert_eq!(
            stripe.check.expect("a look").describe(),
            "GET /v1/refunds?charge=ch_1&limit=100"
        );
        let intent = plan(&refund_call(Provider::Stripe, "pi_1", 1_500, "USD")).expect("a plan");
        assert_eq!(
            form(acting(&intent))[0],
            ("payment_intent".to_owned(), "pi_1".to_owned())
        );

        let paypal =
            plan(&refund_call(Provider::Paypal, "8TT12345", 1_505, "USD")).expect("a plan");
        assert_eq!(
            acting(&paypal).describe(),
            "POST /v1/payments/sale/8TT12345/refund"
        );
        assert_eq!(
            json_body(acting(&paypal)),
            json!({"amount": {"total": "15.05", "currency": "USD"}})
        );
        assert!(
            paypal.check.is_none(),
            "PayPal replays a repeated PayPal-Request-Id"
        );
        let yen = plan(&refund_call(Provider::Paypal, "8TT12345", 500, "JPY")).expect("a plan");
        assert_eq!(json_body(acting(&yen))["amount"]["total"], "500");

        let xendit =
            plan(&refund_call(Provider::Xendit, "inv_1", 200_000_050, "IDR")).expect("a plan");
        assert_eq!(acting(&xendit).describe(), "POST /refunds");
        let Body::Json(text) = &acting(&xendit).body else {
            panic!("not JSON")
        };
        assert!(text.starts_with(r#"{"amount":2000000.50,"#), "{text}");
        assert_eq!(json_body(acting(&xendit))["invoice_id"], "inv_1");
        assert_eq!(json_body(acting(&xendit))["reference_id"], "rr_1");
        assert_eq!(
            json_body(acting(&xendit))["reason"],
            "REQUESTED_BY_CUSTOMER"
        );
        assert_eq!(
            xendit.check.expect("a look").describe(),
            "GET /refunds?invoice_id=inv_1"
        );
    }

    fn update_call(provider: Provider, action: Action, change: Change) -> Call {
        Call {
            update: Some(proto::SubscriptionUpdateRequested {
                subscription_id: "sub_1".to_owned(),
                change: Some(change),
                reason: String::new(),
            }),
            ..call(provider, action)
        }
    }

    fn plan_change(plan_id: &str, quantity: u32) -> Change {
        Change::PlanChange(proto::PlanChanged {
            subscription_id: "sub_1".to_owned(),
            plan: Some(proto::Plan {
                plan_id: plan_id.to_owned(),
                ..proto::Plan::default()
            }),
            quantity,
            discount: None,
        })
    }

    #[test]
    fn updates_are_asked_of_each_provider_in_its_own_shape_or_not_at_all() {
        let pause = Change::Pause(proto::SubscriptionPaused {
            subscription_id: "sub_1".to_owned(),
            resumes_at_unix_seconds: Some(1_800_000_000),
        });
        let stripe =
            plan(&update_call(Provider::Stripe, Action::Pause, pause.clone())).expect("a plan");
        assert_eq!(acting(&stripe).describe(), "POST /v1/subscriptions/sub_1");
        assert_eq!(
            form(acting(&stripe)),
            vec![
                ("pause_collection[behavior]".to_owned(), "void".to_owned()),
                (
                    "pause_collection[resumes_at]".to_owned(),
                    "1800000000".to_owned()
                ),
            ]
        );
        assert_eq!(
            acting(&stripe).idempotency_key,
            format!("ledger:{}:pause", Uuid::nil())
        );
        // PayPal's suspend has no resume date: a dated pause is not sent.
        assert!(matches!(
            plan(&update_call(Provider::Paypal, Action::Pause, pause.clone())),
            Err(Answer::NotSupported { message }) if message.contains("no resume date")
        ));
        let undated = Change::Pause(proto::SubscriptionPaused {
            subscription_id: "sub_1".to_owned(),
            resumes_at_unix_seconds: None,
        });
        let suspend = plan(&update_call(Provider::Paypal, Action::Pause, undated)).expect("a plan");
        assert_eq!(
            acting(&suspend).describe(),
            "POST /v1/billing/subscriptions/sub_1/suspend"
        );
        assert_eq!(
            json_body(acting(&suspend)),
            json!({"reason": "Paused by the merchant"})
        );
        let resume = Change::Resume(proto::SubscriptionResumed::default());
        let activate =
            plan(&update_call(Provider::Paypal, Action::Resume, resume)).expect("a plan");
        assert_eq!(
            acting(&activate).describe(),
            "POST /v1/billing/subscriptions/sub_1/activate"
        );
        let revise = plan(&update_call(
            Provider::Paypal,
            Action::ChangePlan,
            plan_change("P-2", 3),
        ))
        .expect("a plan");
        assert_eq!(
            json_body(acting(&revise)),
            json!({"plan_id": "P-2", "quantity": "3"})
        );
        assert!(matches!(
            plan(&update_call(Provider::Xendit, Action::Pause, pause)),
            Err(Answer::NotSupported { .. })
        ));
    }

    #[test]
    fn an_update_is_seen_done_in_the_subscription_and_a_plan_change_names_its_item() {
        let pause = update_call(
            Provider::Stripe,
            Action::Pause,
            Change::Pause(proto::SubscriptionPaused::default()),
        );
        assert_eq!(
            already_done(
                &pause,
                br#"{"status": "active", "pause_collection": {"behavior": "void"}}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(&pause, br#"{"status": "active", "pause_collection": null}"#),
            None
        );
        let suspended = update_call(
            Provider::Paypal,
            Action::Pause,
            Change::Pause(proto::SubscriptionPaused::default()),
        );
        assert_eq!(
            already_done(&suspended, br#"{"status": "SUSPENDED"}"#),
            Some(Answer::Confirmed)
        );
        let change = update_call(
            Provider::Stripe,
            Action::ChangePlan,
            plan_change("price_pro", 2),
        );
        let one_item = br#"{"items": {"data": [{"id": "si_1", "price": {"id": "price_basic"}, "quantity": 1}]}}"#;
        assert_eq!(already_done(&change, one_item), None);
        assert_eq!(
            already_done(
                &change,
                br#"{"items": {"data": [{"id": "si_1", "price": {"id": "price_pro"}, "quantity": 2}]}}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            form(&stripe_plan_change(&change, one_item).expect("a request"))[0],
            ("items[0][id]".to_owned(), "si_1".to_owned())
        );
        let two_items = br#"{"items": {"data": [{"id": "si_1"}, {"id": "si_2"}]}}"#;
        assert!(matches!(
            stripe_plan_change(&change, two_items),
            Err(Answer::NotSupported { .. })
        ));
        let revision = update_call(Provider::Paypal, Action::ChangePlan, plan_change("P-2", 1));
        assert_eq!(
            success(
                &revision,
                br#"{"plan_id": "P-2", "links": [{"href": "https://www.paypal.com/webapps/billing/subscriptions/update?ba_token=BA-1", "rel": "approve", "method": "GET"}]}"#
            ),
            Answer::Scheduled
        );
        assert_eq!(
            success(&revision, br#"{"plan_id": "P-2"}"#),
            Answer::Confirmed
        );
    }

    #[test]
    fn a_refund_is_found_by_the_request_id_it_carries_and_named_by_the_provider() {
        let stripe = refund_call(Provider::Stripe, "ch_1", 1_500, "USD");
        let listed = br#"{"object": "list", "data": [
            {"id": "re_other", "status": "succeeded", "metadata": {}},
            {"id": "re_failed", "status": "failed", "metadata": {"ledger_refund_request_id": "rr_1"}},
            {"id": "re_1", "status": "succeeded", "metadata": {"ledger_refund_request_id": "rr_1"}}
        ]}"#;
        assert_eq!(
            already_done(&stripe, listed),
            Some(Answer::Refunded {
                refund_id: "re_1".to_owned()
            })
        );
        assert_eq!(already_done(&stripe, br#"{"data": []}"#), None);
        let xendit = refund_call(Provider::Xendit, "inv_1", 1_500, "USD");
        assert_eq!(
            already_done(
                &xendit,
                br#"{"data": [{"id": "rfd-1", "reference_id": "rr_1", "status": "SUCCEEDED"}]}"#
            ),
            Some(Answer::Refunded {
                refund_id: "rfd-1".to_owned()
            })
        );
        assert_eq!(
            success(&stripe, br#"{"id": "re_9", "object": "refund"}"#),
            Answer::Refunded {
                refund_id: "re_9".to_owned()
            }
        );
        assert!(matches!(
            success(&stripe, b""),
            Answer::Refused { code, .. } if code == CODE_ANSWER_UNREADABLE
        ));
    }

    fn answered(status: u16, body: &str) -> Exchange {
        Exchange::Answered {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_judged_as_the_providers_document_them() {
        assert_eq!(
            verdict(Provider::Stripe, &answered(200, "{}")),
            Verdict::Succeeded
        );
        assert_eq!(
            verdict(
                Provider::Stripe,
                &answered(
                    404,
                    r#"{"error": {"code": "resource_missing", "message": "No such subscription: 'sub_x'", "type": "invalid_request_error"}}"#
                )
            ),
            Verdict::Refused {
                code: "resource_missing".to_owned(),
                message: "No such subscription: 'sub_x'".to_owned()
            }
        );
        assert_eq!(
            verdict(
                Provider::Paypal,
                &answered(
                    422,
                    r#"{"name": "UNPROCESSABLE_ENTITY", "message": "The requested action could not be performed.", "details": [{"issue": "SUBSCRIPTION_STATUS_INVALID", "description": "Invalid subscription status for cancel action; subscription status should be active or suspended."}]}"#
                )
            ),
            Verdict::Refused {
                code: "SUBSCRIPTION_STATUS_INVALID".to_owned(),
                message: "Invalid subscription status for cancel action; subscription status should be active or suspended.".to_owned()
            }
        );
        assert_eq!(
            verdict(
                Provider::Xendit,
                &answered(
                    404,
                    r#"{"error_code": "DATA_NOT_FOUND", "message": "Plan not found"}"#
                )
            ),
            Verdict::Refused {
                code: "DATA_NOT_FOUND".to_owned(),
                message: "Plan not found".to_owned()
            }
        );
        assert_eq!(
            verdict(Provider::Xendit, &answered(400, "nope")),
            Verdict::Refused {
                code: "http_400".to_owned(),
                message: "nope".to_owned()
            }
        );
        for status in [408, 409, 425, 429, 500, 502, 503] {
            assert!(
                matches!(
                    verdict(Provider::Stripe, &answered(status, "")),
                    Verdict::Transient { .. }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            verdict(Provider::Paypal, &answered(401, "")),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            verdict(Provider::Stripe, &answered(401, "")),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            verdict(Provider::Stripe, &Exchange::Failed("timed out".to_owned())),
            Verdict::Transient { .. }
        ));
    }

    #[test]
    fn a_look_at_the_object_tells_whether_the_action_happened() {
        let canceled = br#"{"id": "sub_1", "status": "canceled", "cancel_at_period_end": false}"#;
        let pending = br#"{"id": "sub_1", "status": "active", "cancel_at_period_end": true}"#;
        let active = br#"{"id": "sub_1", "status": "active", "cancel_at_period_end": false}"#;
        assert_eq!(
            already_done(&call(Provider::Stripe, Action::CancelNow), canceled),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(&call(Provider::Stripe, Action::CancelNow), pending),
            None
        );
        assert_eq!(
            already_done(&call(Provider::Stripe, Action::CancelAtPeriodEnd), pending),
            Some(Answer::Scheduled)
        );
        assert_eq!(
            already_done(&call(Provider::Stripe, Action::CancelAtPeriodEnd), active),
            None
        );
        assert_eq!(
            already_done(
                &call(Provider::Paypal, Action::CancelNow),
                br#"{"status": "CANCELLED"}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(
                &call(Provider::Paypal, Action::CancelNow),
                br#"{"status": "ACTIVE"}"#
            ),
            None
        );
        assert_eq!(
            already_done(
                &call(Provider::Xendit, Action::CancelNow),
                br#"{"status": "INACTIVE"}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(&call(Provider::Xendit, Action::CancelNow), b"not json"),
            None
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let api = StripeApi {
            api_base: "https://api.stripe.com".to_owned(),
            api_key: ApiSecret::new("sk_live_secret".to_owned()),
        };
        assert!(!format!("{api:?}").contains("sk_live_secret"));
    }

    #[test]
    fn no_provider_or_a_bad_base_url_is_a_configuration_error() {
        let timeout = Duration::from_secs(1);
        let error = ProviderApis::new(None, None, None, timeout, 1).unwrap_err();
        assert!(error.needs_operator());
        assert!(
            error.to_string().contains("LEDGER_STRIPE_API_KEY"),
            "{error}"
        );
        let bad = StripeApi {
            api_base: "api.stripe.com".to_owned(),
            api_key: ApiSecret::new("sk".to_owned()),
        };
        let error = ProviderApis::new(Some(bad), None, None, timeout, 1).unwrap_err();
        assert!(
            error.to_string().contains("LEDGER_STRIPE_API_BASE"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_paypal_token_a_header_cannot_hold_is_refused_not_cached() {
        let server = HttpReceiver::start().await;
        let api = PaypalApi {
            api_base: server.url.clone(),
            client_id: "client".to_owned(),
            client_secret: ApiSecret::new("secret".to_owned()),
        };
        let token = PaypalToken::default();
        for bad in ["tok\\nX-Evil: 1", "tok en", ""] {
            server.answer_path_next_with(
                "/v1/oauth2/token",
                [ScriptedAnswer {
                    status: 200,
                    body: format!(r#"{{"access_token":"{bad}","expires_in":3600}}"#),
                    ..ScriptedAnswer::default()
                }],
            );
            let error = token
                .bearer(&reqwest::Client::new(), &api)
                .await
                .expect_err(bad);
            assert!(error.contains("not printable ASCII"), "{error}");
        }
        server.answer_path_next_with(
            "/v1/oauth2/token",
            [ScriptedAnswer {
                status: 200,
                body: r#"{"access_token":"A21AA.good-token_1","expires_in":3600}"#.to_owned(),
                ..ScriptedAnswer::default()
            }],
        );
        let good = token.bearer(&reqwest::Client::new(), &api).await;
        assert_eq!(good.as_deref(), Ok("A21AA.good-token_1"));
        // A lifetime past what the clock can add (found by the try-it pass: it panicked
        // ingest's workers, provider-sync and `ledger sync paypal`) is taken, capped.
        token.forget().await;
        server.answer_path_next_with(
            "/v1/oauth2/token",
            [ScriptedAnswer {
                status: 200,
                body: r#"{"access_token":"A21AA.long","expires_in":18446744073709551615}"#
                    .to_owned(),
                ..ScriptedAnswer::default()
            }],
        );
        let long = token.bearer(&reqwest::Client::new(), &api).await;
        assert_eq!(long.as_deref(), Ok("A21AA.long"));
    }

    /// Callers waiting for a token fetch that fails get its error, not a fetch each in turn:
    /// against a token endpoint that does not answer, ten callers waited ten timeouts one
    /// after the other (found by the try-it pass of ingest's PayPal verification).
    #[tokio::test]
    async fn callers_waiting_for_a_failed_paypal_token_fetch_share_its_failure() {
        let server = HttpReceiver::start().await;
        let api = PaypalApi {
            api_base: server.url.clone(),
            client_id: "client".to_owned(),
            client_secret: ApiSecret::new("secret".to_owned()),
        };
        server.answer_path_next_with(
            "/v1/oauth2/token",
            [ScriptedAnswer {
                status: 503,
                body: "{}".to_owned(),
                delay: Duration::from_millis(300),
                ..ScriptedAnswer::default()
            }],
        );
        let token = PaypalToken::default();
        let http = reqwest::Client::new();
        let answers =
            futures_util::future::join_all((0..5).map(|_| token.bearer(&http, &api))).await;
        for answer in &answers {
            let error = answer.as_ref().expect_err("the fetch failed");
            assert!(error.contains("503"), "{error}");
        }
        assert_eq!(server.requests().len(), 1, "one fetch for the five callers");
        // A caller after the failure fetches again.
        server.answer_path_next_with(
            "/v1/oauth2/token",
            [ScriptedAnswer {
                status: 200,
                body: r#"{"access_token":"A21AA.again","expires_in":3600}"#.to_owned(),
                ..ScriptedAnswer::default()
            }],
        );
        assert_eq!(
            token.bearer(&http, &api).await.as_deref(),
            Ok("A21AA.again")
        );
        assert_eq!(server.requests().len(), 2);
    }

    /// A server on a loopback port that answers every connection `200` with a body that never
    /// ends (chunks of `x` until the client goes away).
    async fn endless_answer() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0_u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                connection: close\r\n\r\n{\"access_token\":\"";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    while socket.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn an_answer_without_end_is_read_only_to_its_limit() {
        let base = endless_answer().await;
        let stripe = StripeApi {
            api_base: base.clone(),
            api_key: ApiSecret::new("sk_test_1".to_owned()),
        };
        let apis = ProviderApis::new(Some(stripe), None, None, Duration::from_secs(60), 1)
            .expect("configured");
        let request = ProviderRequest {
            method: Method::DELETE,
            path: "/v1/subscriptions/sub_1".to_owned(),
            body: Body::None,
            idempotency_key: "key_1".to_owned(),
        };
        let exchange = tokio::time::timeout(
            Duration::from_secs(10),
            apis.exchange(Provider::Stripe, &request),
        )
        .await
        .expect("answered long before the request's timeout");
        match exchange {
            Exchange::Answered { status, body, .. } => {
                assert_eq!(status, 200);
                assert_eq!(body.len(), ANSWER_BYTES_MAX);
            }
            Exchange::Failed(error) => panic!("failed: {error}"),
        }

        let paypal = PaypalApi {
            api_base: base,
            client_id: "client".to_owned(),
            client_secret: ApiSecret::new("secret".to_owned()),
        };
        let token = tokio::time::timeout(
            Duration::from_secs(10),
            PaypalToken::default().bearer(
                &http_client(Duration::from_secs(60)).expect("a client"),
                &paypal,
            ),
        )
        .await
        .expect("answered long before the request's timeout");
        let error = token.expect_err("a token answer cut at the limit");
        assert!(error.contains("not JSON"), "{error}");
    }
}
