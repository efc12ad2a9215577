//! Sending one delivery through its channel: Slack (Block Kit, paced per webhook), a signed
//! webhook, or email over SMTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_domain::proto;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::egress::{CheckedResolver, EgressPolicy};
use crate::integration::Target;
use crate::outbox::{Attempt, Claimed};
use crate::render::{self, Message};
use crate::signature::{SIGNATURE_HEADER, sign};
use crate::worker::DeliveryConfig;

/// Bytes of a receiver's answer kept in the delivery log's error, at most.
const ERROR_BYTES_MAX: usize = 500;

/// Sends deliveries; one per worker, shared by its concurrent sends.
#[derive(Debug)]
pub(crate) struct Sender {
    http: reqwest::Client,
    egress: Arc<EgressPolicy>,
    secrets: Option<Arc<ledger_secrets::SecretKeys>>,
    timeout: Duration,
    slack_interval: Duration,
    /// When each Slack webhook may next be used.
    slack_next: Mutex<HashMap<String, Instant>>,
}

impl Sender {
    /// A sender with `config`'s timeout, egress policy and keys, pacing Slack webhooks by
    /// `slack_interval`.
    pub(crate) fn new(config: &DeliveryConfig, slack_interval: Duration) -> Result<Sender, String> {
        let timeout = config.send_timeout;
        let egress = Arc::new(config.egress.clone());
        // No redirects: a receiver answers itself, or the attempt fails (as Stripe does), and
        // a redirect cannot lead to an address the policy did not check. No proxy from the
        // environment: the resolver must see the receiver's name, not a proxy's.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: egress.clone(),
            }))
            .user_agent(concat!("ledger-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Sender {
            http,
            egress,
            secrets: config.secrets.clone(),
            timeout,
            slack_interval,
            slack_next: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `claimed` to `target` once and says how it went; sealed secrets are opened here,
    /// for this send only.
    pub(crate) async fn send(&self, claimed: &Claimed, target: &Target) -> Attempt {
        let target = match self.opened(claimed.integration_id, target) {
            Ok(target) => target,
            Err(error) => {
                return Attempt {
                    started_at: OffsetDateTime::now_utc(),
                    latency_ms: 0,
                    status_code: None,
                    error: Some(error),
                };
            }
        };
        let target = &target;
        let message = Message {
            delivery_id: claimed.delivery_id,
            kind: &claimed.kind,
            created_unix_seconds: claimed.created_at.unix_timestamp(),
            data: &claimed.data,
        };
        if let Target::Slack(slack) = target {
            self.wait_for_slack(&slack.webhook_url).await;
        }
        let started_at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let result = match target {
            Target::Slack(slack) => {
                let body = render::slack_message(&message).to_string();
                self.post(&slack.webhook_url, body, None).await
            }
            Target::Webhook(webhook) => {
                let body = render::webhook_body(&message);
                match sign(
                    &webhook.signing_secret,
                    started_at.unix_timestamp(),
                    body.as_bytes(),
                ) {
                    Some(signature) => self.post(&webhook.url, body, Some(signature)).await,
                    None => Err((None, "cannot sign with this secret".to_owned())),
                }
            }
            Target::Email(email) => self.email(email, &message).await,
        };
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (status_code, error) = match result {
            Ok(status_code) => (status_code, None),
            Err((status_code, error)) => (status_code, Some(error)),
        };
        Attempt {
            started_at,
            latency_ms,
            status_code,
            error,
        }
    }

    /// The target with its secrets in clear text: opened with the worker's keys, or as
    /// recorded when it was recorded before sealing existed.
    fn opened(&self, integration_id: uuid::Uuid, target: &Target) -> Result<Target, String> {
        match &self.secrets {
            Some(keys) => keys
                .open_target(integration_id, target.clone())
                .map_err(|error| error.to_string()),
            None if ledger_secrets::target_is_sealed(target) => Err(
                "the integration's secrets are sealed and the worker has no key: start it with LEDGER_SECRETS_KEYS or LEDGER_SECRETS_KEY_FILE"
                    .to_owned(),
            ),
            None => Ok(target.clone()),
        }
    }

    /// Waits until the webhook's next slot (Slack allows about one message per second per
    /// webhook) and takes it.
    async fn wait_for_slack(&self, webhook_url: &str) {
        let now = Instant::now();
        let slot = {
            let mut next = self.slack_next.lock().await;
            let slot = next.get(webhook_url).copied().unwrap_or(now).max(now);
            next.insert(webhook_url.to_owned(), slot + self.slack_interval);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    /// POSTs JSON; Ok(status) for 2xx, otherwise the status and the start of the answer.
    /// Errors never contain the URL (a Slack webhook URL is a credential).
    async fn post(
        &self,
        url: &str,
        body: String,
        signature: Option<String>,
    ) -> Result<Option<i32>, (Option<i32>, String)> {
        let url = self
            .egress
            .check_url(url)
            .map_err(|refused| (None, refused.to_string()))?;
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = request
            .send()
            .await
            .map_err(|error| (None, error_chain(&error.without_url())))?;
        let status = response.status();
        let code = Some(i32::from(status.as_u16()));
        if status.is_success() {
            return Ok(code);
        }
        // Only the start of the answer: a receiver's body is not ours to hold.
        let mut response = response;
        let mut text = Vec::new();
        while text.len() < ERROR_BYTES_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        Err((
            code,
            format!("HTTP {status}: {}", cut(&String::from_utf8_lossy(&text))),
        ))
    }

    async fn email(
        &self,
        target: &proto::EmailTarget,
        message: &Message<'_>,
    ) -> Result<Option<i32>, (Option<i32>, String)> {
        let (subject, text, html) = render::email(message);
        let fail = |error: String| (None, error);
        let mut builder = lettre::Message::builder()
            .message_id(Some(format!("<{}@ledger>", message.delivery_id)))
            .from(parse_mailbox(&target.from).map_err(fail)?)
            .subject(subject);
        for to in &target.to {
            builder = builder.to(parse_mailbox(to).map_err(fail)?);
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|error| fail(error.to_string()))?;
        let port = u16::try_from(target.smtp_port).unwrap_or(0);
        self.egress
            .check_smtp_port(port)
            .map_err(|refused| fail(refused.to_string()))?;
        // Connect to the address checked here, not to a name lettre would resolve again; TLS
        // still verifies the certificate against the relay's name.
        let address = self
            .egress
            .resolve(&target.smtp_host, port)
            .await
            .map_err(|refused| fail(refused.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| fail(format!("no address for {}", target.smtp_host)))?;
        let tls_name = target.smtp_host.trim_matches(['[', ']']).to_owned();
        let tls = match proto::SmtpTls::try_from(target.smtp_tls) {
            Ok(proto::SmtpTls::Starttls) => Tls::Required(
                TlsParameters::new(tls_name).map_err(|error| fail(error.to_string()))?,
            ),
            Ok(proto::SmtpTls::Implicit) => {
                Tls::Wrapper(TlsParameters::new(tls_name).map_err(|error| fail(error.to_string()))?)
            }
            _ => Tls::None,
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(port)
                .tls(tls)
                .timeout(Some(self.timeout));
        if !target.smtp_username.is_empty() {
            transport = transport.credentials(Credentials::new(
                target.smtp_username.clone(),
                target.smtp_password.clone(),
            ));
        }
        let response = transport
            .build()
            .send(email)
            .await
            .map_err(|error| fail(error_chain(&error)))?;
        Ok(Some(i32::from(u16::from(response.code()))))
    }
}

fn parse_mailbox(address: &str) -> Result<Mailbox, String> {
    address
        .parse()
        .map_err(|error| format!("email address {address:?}: {error}"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    cut(&ledger_store::error_text(error)).to_owned()
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(ERROR_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
