//! The integration aggregate: a monitoring receiver's configuration as a stream of its own
//! (`integration_registered`, `_updated`, `_paused`, `_resumed`, `_removed`).

use std::net::IpAddr;

use crate::address::AddressScope;
use crate::decide::{Metadata, check_metadata, customer_name, id, money, text};
use crate::email::email;
use crate::limits::{
    EMAIL_RECIPIENTS_MAX, SECRET_BYTES_MAX, SIGNING_SECRET_BYTES_MIN, TEXT_BYTES_MAX, URL_BYTES_MAX,
};
use crate::money::Currency;
use crate::names::{storage_enum, truncated};
use crate::proto::command::Kind as Command;
use crate::rejection::Rejection;
use crate::{Event, command_name, proto};

storage_enum! {
    /// Whether an integration receives notifications.
    IntegrationStatus, "integration status" {
        /// Notifications of its kinds are decided for it.
        Active => "active",
        /// No new notifications until it is resumed; decided deliveries are still sent.
        Paused => "paused",
        /// Final.
        Removed => "removed",
    }
}

/// An integration's configuration: the body of its registration or last update.
pub type IntegrationConfig = proto::IntegrationRegistered;

/// A registered integration's state, folded from its stream by [`evolve_integration`].
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// The stream version: the number of events applied.
    pub version: u64,
    /// `None` until `integration_registered`.
    pub config: Option<IntegrationConfig>,
    pub status: IntegrationStatus,
}

impl Default for Integration {
    fn default() -> Self {
        Integration {
            version: 0,
            config: None,
            status: IntegrationStatus::Active,
        }
    }
}

/// Whether `event` belongs to an integration's stream.
pub fn is_integration_event(event: &Event) -> bool {
    matches!(
        event,
        Event::IntegrationRegistered(_)
            | Event::IntegrationUpdated(_)
            | Event::IntegrationPaused(_)
            | Event::IntegrationResumed(_)
            | Event::IntegrationRemoved(_)
    )
}

/// Whether `command` is for an integration's stream.
pub fn is_integration_command(command: &Command) -> bool {
    matches!(
        command,
        Command::RegisterIntegration(_)
            | Command::UpdateIntegration(_)
            | Command::PauseIntegration(_)
            | Command::ResumeIntegration(_)
            | Command::RemoveIntegration(_)
    )
}

/// Applies one event to the integration and increments `version`. Events that do not fit
/// (a customer's, an update before the registration) change nothing else.
pub fn evolve_integration(mut state: Integration, event: &Event) -> Integration {
    match event {
        Event::IntegrationRegistered(registered) if state.config.is_none() => {
            state.config = Some(registered.clone());
            state.status = IntegrationStatus::Active;
        }
        Event::IntegrationUpdated(updated) if state.config.is_some() => {
            state.config = Some(config_of_update(updated));
        }
        Event::IntegrationPaused(_) if state.status == IntegrationStatus::Active => {
            state.status = IntegrationStatus::Paused;
        }
        Event::IntegrationResumed(_) if state.status == IntegrationStatus::Paused => {
            state.status = IntegrationStatus::Active;
        }
        Event::IntegrationRemoved(_) if state.config.is_some() => {
            state.status = IntegrationStatus::Removed;
        }
        _ => {}
    }
    state.version = state.version.saturating_add(1);
    state
}

fn config_of_update(updated: &proto::IntegrationUpdated) -> IntegrationConfig {
    IntegrationConfig {
        name: updated.name.clone(),
        target: updated.target.clone().map(|target| match target {
            proto::integration_updated::Target::Slack(slack) => {
                proto::integration_registered::Target::Slack(slack)
            }
            proto::integration_updated::Target::Webhook(webhook) => {
                proto::integration_registered::Target::Webhook(webhook)
            }
            proto::integration_updated::Target::Email(email) => {
                proto::integration_registered::Target::Email(email)
            }
        }),
        kinds: updated.kinds.clone(),
        filter: updated.filter.clone(),
    }
}

/// Checks an integration command against the integration's state; returns the event to
/// append (the body made canonical) or why nothing may be recorded. Same metadata and
/// `expected_version` rules as [`decide`](crate::decide).
pub fn decide_integration(
    state: &Integration,
    command: &proto::Command,
) -> Result<Vec<Event>, Rejection> {
    let kind = command
        .kind
        .as_ref()
        .ok_or(Rejection::MissingField { field: "kind" })?;
    let is_registration = matches!(kind, Command::RegisterIntegration(_));
    let metadata: Metadata = check_metadata(command.metadata.as_ref(), is_registration)?;
    if let Some(expected) = metadata.expected_version
        && expected != state.version
    {
        return Err(Rejection::VersionConflict {
            expected,
            actual: state.version,
        });
    }
    let name = command_name(kind);
    if is_registration {
        if state.config.is_some() {
            return Err(Rejection::IntegrationAlreadyRegistered);
        }
    } else if state.config.is_none() {
        return Err(Rejection::IntegrationNotRegistered);
    }
    let refuse = |allowed: bool| {
        if allowed {
            Ok(())
        } else {
            Err(Rejection::IntegrationInvalidTransition {
                status: state.status,
                command: name,
            })
        }
    };
    let not_removed = state.status != IntegrationStatus::Removed;
    let event = match kind {
        Command::RegisterIntegration(body) => Event::IntegrationRegistered(config(body)?),
        Command::UpdateIntegration(body) => {
            refuse(not_removed)?;
            let checked = config(&config_of_update(body))?;
            Event::IntegrationUpdated(proto::IntegrationUpdated {
                name: checked.name,
                target: checked.target.map(updated_target),
                kinds: checked.kinds,
                filter: checked.filter,
            })
        }
        Command::PauseIntegration(body) => {
            refuse(state.status == IntegrationStatus::Active)?;
            text("reason", &body.reason, TEXT_BYTES_MAX)?;
            Event::IntegrationPaused(body.clone())
        }
        Command::ResumeIntegration(body) => {
            refuse(state.status == IntegrationStatus::Paused)?;
            Event::IntegrationResumed(*body)
        }
        Command::RemoveIntegration(body) => {
            refuse(not_removed)?;
            text("reason", &body.reason, TEXT_BYTES_MAX)?;
            Event::IntegrationRemoved(body.clone())
        }
        _ => {
            return Err(Rejection::WrongStream {
                stream: "integration",
                command: name,
            });
        }
    };
    Ok(vec![event])
}

fn updated_target(
    target: proto::integration_registered::Target,
) -> proto::integration_updated::Target {
    match target {
        proto::integration_registered::Target::Slack(slack) => {
            proto::integration_updated::Target::Slack(slack)
        }
        proto::integration_registered::Target::Webhook(webhook) => {
            proto::integration_updated::Target::Webhook(webhook)
        }
        proto::integration_registered::Target::Email(email) => {
            proto::integration_updated::Target::Email(email)
        }
    }
}

/// The configuration made canonical: trimmed name and emails, kinds sorted without
/// duplicates, the SMTP port defaulted from the TLS mode.
fn config(body: &IntegrationConfig) -> Result<IntegrationConfig, Rejection> {
    use proto::integration_registered::Target;

    let name = customer_name("name", &body.name)?;
    if name.is_empty() {
        return Err(Rejection::MissingField { field: "name" });
    }
    let target = match &body.target {
        None => return Err(Rejection::MissingField { field: "target" }),
        Some(Target::Slack(slack)) => Target::Slack(proto::SlackTarget {
            webhook_url: url("slack.webhook_url", &slack.webhook_url)?,
        }),
        Some(Target::Webhook(webhook)) => {
            let secret = &webhook.signing_secret;
            if secret.len() < SIGNING_SECRET_BYTES_MIN {
                return Err(Rejection::InvalidField {
                    field: "webhook.signing_secret",
                    reason: "shorter than SIGNING_SECRET_BYTES_MIN (16 bytes)",
                });
            }
            secret_text("webhook.signing_secret", secret)?;
            Target::Webhook(proto::WebhookTarget {
                url: url("webhook.url", &webhook.url)?,
                signing_secret: secret.clone(),
            })
        }
        Some(Target::Email(target)) => Target::Email(email_target(target)?),
    };
    let mut kinds = Vec::with_capacity(body.kinds.len());
    for kind in &body.kinds {
        match proto::NotificationKind::try_from(*kind) {
            Ok(proto::NotificationKind::Unspecified) | Err(_) => {
                return Err(Rejection::InvalidField {
                    field: "kinds",
                    reason: "unspecified or unknown notification kind",
                });
            }
            Ok(_) => kinds.push(*kind),
        }
    }
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        return Err(Rejection::MissingField { field: "kinds" });
    }
    let filter = body.filter.as_ref().map(filter).transpose()?;
    Ok(IntegrationConfig {
        name,
        target: Some(target),
        kinds,
        filter,
    })
}

fn email_target(target: &proto::EmailTarget) -> Result<proto::EmailTarget, Rejection> {
    if target.to.is_empty() {
        return Err(Rejection::MissingField { field: "email.to" });
    }
    if target.to.len() > EMAIL_RECIPIENTS_MAX {
        return Err(Rejection::InvalidField {
            field: "email.to",
            reason: "more than EMAIL_RECIPIENTS_MAX (20) addresses",
        });
    }
    let to = target
        .to
        .iter()
        .map(|address| email("email.to", address))
        .collect::<Result<Vec<_>, _>>()?;
    let smtp_tls = match proto::SmtpTls::try_from(target.smtp_tls) {
        Ok(proto::SmtpTls::Unspecified) => {
            return Err(Rejection::MissingField {
                field: "email.smtp_tls",
            });
        }
        Err(_) => {
            return Err(Rejection::InvalidField {
                field: "email.smtp_tls",
                reason: "unknown TLS mode",
            });
        }
        Ok(tls) => tls,
    };
    let smtp_port = match (target.smtp_port, smtp_tls) {
        (0, proto::SmtpTls::None) => 25,
        (0, proto::SmtpTls::Starttls) => 587,
        (0, _) => 465,
        (port, _) if port > u32::from(u16::MAX) => {
            return Err(Rejection::InvalidField {
                field: "email.smtp_port",
                reason: "not a TCP port (1-65535)",
            });
        }
        (port, _) => port,
    };
    smtp_host("email.smtp_host", &target.smtp_host)?;
    if !target.smtp_username.is_empty() {
        id("email.smtp_username", &target.smtp_username)?;
    }
    secret_text("email.smtp_password", &target.smtp_password)?;
    Ok(proto::EmailTarget {
        to,
        from: email("email.from", &target.from)?,
        smtp_host: target.smtp_host.clone(),
        smtp_port,
        smtp_tls: smtp_tls as i32,
        smtp_username: target.smtp_username.clone(),
        smtp_password: target.smtp_password.clone(),
    })
}

fn filter(filter: &proto::NotificationFilter) -> Result<proto::NotificationFilter, Rejection> {
    for provider in &filter.providers {
        crate::customer::provider_from_proto(*provider).map_err(|_| Rejection::InvalidField {
            field: "filter.providers",
            reason: "unspecified or unknown payment provider",
        })?;
    }
    for code in &filter.currencies {
        Currency::parse(code).map_err(|_| Rejection::InvalidCurrency {
            field: "filter.currencies",
            code: truncated(code, 32),
        })?;
    }
    if filter.amount_min.is_some() {
        let amount_min = money("filter.amount_min", filter.amount_min.as_ref())?;
        if amount_min.amount_minor < 0 {
            return Err(Rejection::InvalidAmount {
                field: "filter.amount_min",
                amount: amount_min.amount_minor,
                reason: "a minimum amount is zero or more",
            });
        }
    }
    Ok(filter.clone())
}

/// An `http://` or `https://` URL with a host, at most [`URL_BYTES_MAX`] bytes, no whitespace
/// or control characters, whose host is not an address that can never be a receiver
/// ([`AddressScope::is_never_a_receiver`], in any spelling the WHATWG URL parser accepts:
/// `http://0/`, `http://0x0.0/`, `http://[::]/`, `http://[::ffff:0.0.0.0]/`). Whether the
/// host is internal (loopback, private, link-local) depends on the delivery worker's
/// allowlist, so that is checked when sending.
fn url(field: &'static str, value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Rejection::MissingField { field });
    }
    if value.len() > URL_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field,
            reason: "longer than URL_BYTES_MAX (2048 bytes)",
        });
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Rejection::InvalidField {
            field,
            reason: "contains whitespace or control characters",
        });
    }
    let not_http = Rejection::InvalidField {
        field,
        reason: "not an http:// or https:// URL with a host",
    };
    // The WHATWG parser forgives `https:///host` and `https:\\host`; a receiver's URL is
    // spelled out.
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    if !rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '\\'])) {
        return Err(not_http);
    }
    let parsed = url::Url::parse(value).map_err(|_| not_http.clone())?;
    match parsed.host() {
        None => Err(not_http),
        Some(host) => receiver_host(field, host).map(|()| value.to_owned()),
    }
}

/// An SMTP relay's host: a DNS name or an IP address (IPv6 with or without brackets) that can
/// be a receiver.
fn smtp_host(field: &'static str, value: &str) -> Result<(), Rejection> {
    id(field, value)?;
    if let Ok(address) = value.parse::<IpAddr>() {
        return receiver_address(field, address);
    }
    let host = url::Host::parse(value).map_err(|_| Rejection::InvalidField {
        field,
        reason: "not a host name or IP address",
    })?;
    receiver_host(field, host)
}

fn receiver_host<S>(field: &'static str, host: url::Host<S>) -> Result<(), Rejection> {
    match host {
        url::Host::Domain(_) => Ok(()),
        url::Host::Ipv4(address) => receiver_address(field, IpAddr::V4(address)),
        url::Host::Ipv6(address) => receiver_address(field, IpAddr::V6(address)),
    }
}

fn receiver_address(field: &'static str, address: IpAddr) -> Result<(), Rejection> {
    if AddressScope::of(address).is_never_a_receiver() {
        return Err(Rejection::InvalidField {
            field,
            reason: "an unspecified (0.0.0.0, ::), multicast or broadcast address, which is never a receiver",
        });
    }
    Ok(())
}

fn secret_text(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.len() > SECRET_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field,
            reason: "longer than SECRET_BYTES_MAX (255 bytes)",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::InvalidField {
            field,
            reason: "contains NUL or another control character",
        });
    }
    Ok(())
}
