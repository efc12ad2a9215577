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

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_domain::Provider;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use crate::SyncError;
use crate::outbox::{Action, Answer, Call};

/// How long a start-up check waits for a provider's base URL to answer.
const REACHABLE_TIMEOUT_MS: u64 = 5_000;
/// A PayPal token is renewed this long before it expires.
const PAYPAL_TOKEN_MARGIN_SECONDS: u64 = 60;
/// PayPal's limit on a cancellation's `reason`.
const PAYPAL_REASON_CHARS_MAX: usize = 128;
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
    /// PayPal's bearer token and when to renew it.
    paypal_token: Mutex<Option<(String, Instant)>>,
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
                let parsed = Url::parse(base).map_err(|error| {
                    SyncError::Config(format!("{name} {base:?} is not a URL: {error}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(SyncError::Config(format!(
                        "{name} {base:?} is not an http(s):// URL with a host"
                    )));
                }
            }
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|error| SyncError::Config(format!("the HTTP client: {error}")))?;
        let permits = || Arc::new(Semaphore::new(concurrent_requests_per_provider.max(1)));
        Ok(ProviderApis {
            stripe: stripe.map(|api| (api, permits())),
            paypal: paypal.map(|api| (api, permits())),
            xendit: xendit.map(|api| (api, permits())),
            http,
            paypal_token: Mutex::new(None),
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
            (Provider::Paypal, _, Some((api, _)), _) => match self.paypal_token(api).await {
                Ok(token) => builder
                    .bearer_auth(token)
                    .header("PayPal-Request-Id", &request.idempotency_key),
                Err(error) => return Exchange::Failed(error),
            },
            (Provider::Xendit, _, _, Some((api, _))) => builder
                .basic_auth(api.api_key.expose(), Some(""))
                .header("Idempotency-key", &request.idempotency_key),
            _ => builder,
        };
        builder = match &request.body {
            Body::None => builder,
            Body::Form(form) => builder.form(form),
            Body::Json(value) => builder
                .header("Content-Type", "application/json")
                .body(value.to_string()),
        };
        match builder.send().await {
            Err(error) => Exchange::Failed(error_chain(&error)),
            Ok(answer) => {
                let status = answer.status();
                if provider == Provider::Paypal && status == StatusCode::UNAUTHORIZED {
                    // The token was revoked early: fetch a new one for the next request.
                    *self.paypal_token.lock().await = None;
                }
                let retry_after = retry_after(answer.headers());
                let mut body = match answer.bytes().await {
                    Ok(body) => body.to_vec(),
                    Err(error) => return Exchange::Failed(error_chain(&error)),
                };
                body.truncate(ANSWER_BYTES_MAX);
                Exchange::Answered {
                    status: status.as_u16(),
                    retry_after,
                    body,
                }
            }
        }
    }

    /// `POST /v1/oauth2/token` (client credentials), or the cached token.
    async fn paypal_token(&self, api: &PaypalApi) -> Result<String, String> {
        let mut cached = self.paypal_token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let answer = self
            .http
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
        let body = answer
            .bytes()
            .await
            .map_err(|error| format!("PayPal's token answer: {}", error_chain(&error)))?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|error| format!("PayPal's token answer is not JSON: {error}"))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or("PayPal's token answer has no access_token")?
            .to_owned();
        let expires_in = body.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
        let renew_at = Instant::now()
            + Duration::from_secs(expires_in.saturating_sub(PAYPAL_TOKEN_MARGIN_SECONDS));
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }
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
    Form(Vec<(&'static str, &'static str)>),
    Json(Value),
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
/// start when it has none.
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
    (
        code.unwrap_or_else(|| format!("http_{status}")),
        message.unwrap_or_else(fallback),
    )
}

/// The requests of a call: an optional look at the object's state (made only when an earlier
/// request may have reached the provider), and the action; or why the provider cannot do it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) check: ProviderRequest,
    pub(crate) act: ProviderRequest,
}

/// The requests carrying out `call`, or the answer when the provider has no such operation.
pub(crate) fn plan(call: &Call) -> Result<Plan, Answer> {
    let id = utf8_percent_encode(&call.subscription_id);
    let key = format!("ledger:{}:{}", call.request_event_id, call.action.as_str());
    let request = |method: Method, path: String, body: Body| ProviderRequest {
        method,
        path,
        body,
        idempotency_key: key.clone(),
    };
    match (call.provider, call.action) {
        (Provider::Stripe, action) => Ok(Plan {
            check: request(Method::GET, format!("/v1/subscriptions/{id}"), Body::None),
            act: match action {
                Action::CancelNow => request(
                    Method::DELETE,
                    format!("/v1/subscriptions/{id}"),
                    Body::None,
                ),
                Action::CancelAtPeriodEnd => request(
                    Method::POST,
                    format!("/v1/subscriptions/{id}"),
                    Body::Form(vec![("cancel_at_period_end", "true")]),
                ),
            },
        }),
        (Provider::Paypal, Action::CancelNow) => {
            let reason: String = if call.reason.trim().is_empty() {
                "Cancelled by the merchant".to_owned()
            } else {
                call.reason.chars().take(PAYPAL_REASON_CHARS_MAX).collect()
            };
            Ok(Plan {
                check: request(
                    Method::GET,
                    format!("/v1/billing/subscriptions/{id}"),
                    Body::None,
                ),
                act: request(
                    Method::POST,
                    format!("/v1/billing/subscriptions/{id}/cancel"),
                    Body::Json(json!({ "reason": reason })),
                ),
            })
        }
        (Provider::Xendit, Action::CancelNow) => Ok(Plan {
            check: request(Method::GET, format!("/recurring/plans/{id}"), Body::None),
            act: request(
                Method::POST,
                format!("/recurring/plans/{id}/deactivate"),
                Body::None,
            ),
        }),
        (provider, Action::CancelAtPeriodEnd) => Err(Answer::NotSupported {
            message: format!(
                "{provider} cancels a subscription only now, not at the period end: request \
                 the cancellation with at_period_end false, or when the period ends"
            ),
        }),
        (Provider::Internal, Action::CancelNow) => Err(Answer::NotSupported {
            message: "the subscription is held by the company's own billing, not a provider"
                .to_owned(),
        }),
    }
}

/// The answer already given, when a look at the object (the `check` request's 2xx body) shows
/// the action done: a request before a crash reached the provider.
pub(crate) fn already_done(provider: Provider, action: Action, body: &[u8]) -> Option<Answer> {
    let object: Value = serde_json::from_slice(body).ok()?;
    let status = object.get("status").and_then(Value::as_str)?;
    match (provider, action) {
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

/// What the action's success means.
pub(crate) fn success(action: Action) -> Answer {
    match action {
        Action::CancelNow => Answer::Confirmed,
        Action::CancelAtPeriodEnd => Answer::Scheduled,
    }
}

/// Percent-encodes an id for a path segment (ids never need it at the three providers, but a
/// `/` in one must not reach another endpoint).
fn utf8_percent_encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            already_done(Provider::Stripe, Action::CancelNow, canceled),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(Provider::Stripe, Action::CancelNow, pending),
            None
        );
        assert_eq!(
            already_done(Provider::Stripe, Action::CancelAtPeriodEnd, pending),
            Some(Answer::Scheduled)
        );
        assert_eq!(
            already_done(Provider::Stripe, Action::CancelAtPeriodEnd, active),
            None
        );
        assert_eq!(
            already_done(
                Provider::Paypal,
                Action::CancelNow,
                br#"{"status": "CANCELLED"}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(
                Provider::Paypal,
                Action::CancelNow,
                br#"{"status": "ACTIVE"}"#
            ),
            None
        );
        assert_eq!(
            already_done(
                Provider::Xendit,
                Action::CancelNow,
                br#"{"status": "INACTIVE"}"#
            ),
            Some(Answer::Confirmed)
        );
        assert_eq!(
            already_done(Provider::Xendit, Action::CancelNow, b"not json"),
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
}
