//! Reading an integration's configuration: its channel, whether it wants a notification, and
//! its target described with the secrets masked.

use ledger_domain::{IntegrationConfig, Provider, proto};
use ledger_secrets::sealed_key_id;

use crate::NotificationKind;
use crate::derive::Notification;

pub(crate) use proto::integration_registered::Target;

/// The channel's name: `slack`, `webhook` or `email`.
pub(crate) fn channel(target: &Target) -> &'static str {
    match target {
        Target::Slack(_) => "slack",
        Target::Webhook(_) => "webhook",
        Target::Email(_) => "email",
    }
}

/// Whether the integration asked for `notification` (its kinds and filter).
pub(crate) fn wants(
    config: &IntegrationConfig,
    notification: &Notification,
    provider: Provider,
) -> bool {
    let kind_wanted = config
        .kinds
        .iter()
        .any(|kind| NotificationKind::from_proto(*kind) == Some(notification.kind));
    if !kind_wanted {
        return false;
    }
    let Some(filter) = config.filter.as_ref() else {
        return true;
    };
    let provider_wanted = filter.providers.is_empty()
        || filter
            .providers
            .iter()
            .any(|wanted| *wanted == proto::PaymentProvider::from(provider) as i32);
    let currency = notification.amount.map(|amount| amount.currency.code());
    let currency_wanted = filter.currencies.is_empty()
        || filter
            .currencies
            .iter()
            .any(|wanted| Some(wanted.as_str()) == currency);
    let amount_wanted = filter.amount_min.as_ref().is_none_or(|minimum| {
        notification.amount.is_some_and(|amount| {
            amount.currency.code() == minimum.currency
                && amount.amount_minor >= minimum.amount_minor
        })
    });
    provider_wanted && currency_wanted && amount_wanted
}

/// The target for people and logs: no signing secret, no SMTP password, and URLs through
/// [`masked_url`] (a Slack webhook URL is a credential itself).
pub(crate) fn masked_target(target: &Target) -> String {
    match target {
        Target::Slack(slack) => match sealed_key_id(&slack.webhook_url) {
            Some(key_id) => format!("Slack webhook URL sealed with key {key_id}"),
            None => masked_url(&slack.webhook_url),
        },
        Target::Webhook(webhook) => {
            format!(
                "{} (signing secret {})",
                masked_url(&webhook.url),
                masked_secret(&webhook.signing_secret)
            )
        }
        Target::Email(email) => format!(
            "{} via {}:{}{}",
            email.to.join(", "),
            email.smtp_host,
            email.smtp_port,
            if email.smtp_username.is_empty() {
                String::new()
            } else {
                format!(
                    " as {} (password {})",
                    email.smtp_username,
                    masked_secret(&email.smtp_password)
                )
            }
        ),
    }
}

/// What is masked.
const MASK: &str = "****";

/// `sealed with key <id>`, or `****` for a secret recorded in clear text before sealing.
fn masked_secret(secret: &str) -> String {
    sealed_key_id(secret).map_or_else(
        || MASK.to_owned(),
        |key_id| format!("sealed with key {key_id}"),
    )
}

/// Webhook services whose URL path carries the credential: the host (or a parent domain) and
/// how many leading path segments are not secret. Slack's incoming webhooks
/// (`hooks.slack.com/services/T…/B…/<token>`, api.slack.com/messaging/webhooks), Discord's
/// (`discord.com/api/webhooks/<id>/<token>`, discord.com/developers/docs/resources/webhook),
/// Zapier's catch hooks (`hooks.zapier.com/hooks/catch/<account>/<token>`), Microsoft Teams'
/// incoming webhooks (`*.webhook.office.com/webhookb2/…`) and Telegram bots
/// (`api.telegram.org/bot<token>/…`).
const PATH_TOKEN_SERVICES: [(&str, usize); 6] = [
    ("hooks.slack.com", 3),
    ("discord.com", 2),
    ("discordapp.com", 2),
    ("hooks.zapier.com", 3),
    ("webhook.office.com", 1),
    ("api.telegram.org", 0),
];

/// A URL for people and logs: user info, query and fragment (where tokens travel, percent-
/// encoded or not) replaced by `****`, and for the services in [`PATH_TOKEN_SERVICES`] every
/// path segment after the public ones. A URL that does not parse is masked whole.
pub(crate) fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return MASK.to_owned();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Cannot fail on a URL with a host, which one with user info has.
        let _ = parsed.set_username(MASK);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        parsed.set_query(Some(MASK));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let public_segments = PATH_TOKEN_SERVICES
        .iter()
        .find(|(service, _)| {
            host == *service
                || host
                    .strip_suffix(service)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
        .map(|(_, public_segments)| *public_segments);
    if let Some(public_segments) = public_segments {
        let segments: Vec<String> = parsed
            .path_segments()
            .map(|segments| segments.map(str::to_owned).collect())
            .unwrap_or_default();
        if segments.len() > public_segments {
            let mut path: Vec<&str> = segments[..public_segments]
                .iter()
                .map(String::as_str)
                .collect();
            path.push(MASK);
            parsed.set_path(&path.join("/"));
        }
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let slack = Target::Slack(proto::SlackTarget {
            webhook_url: "https://hooks.slack.com/services/T000/B000/XXXXSECRET".to_owned(),
        });
        assert_eq!(
            masked_target(&slack),
            "https://hooks.slack.com/services/T000/B000/****"
        );
        let webhook = Target::Webhook(proto::WebhookTarget {
            url: "https://example.com/hooks".to_owned(),
            signing_secret: "whsec_supersecret_value".to_owned(),
        });
        assert_eq!(
            masked_target(&webhook),
            "https://example.com/hooks (signing secret ****)"
        );
        let email = Target::Email(proto::EmailTarget {
            to: vec!["ops@example.com".to_owned()],
            smtp_host: "smtp.example.com".to_owned(),
            smtp_port: 587,
            smtp_username: "ledger".to_owned(),
            smtp_password: "hunter2hunter2".to_owned(),
            ..proto::EmailTarget::default()
        });
        assert_eq!(
            masked_target(&email),
            "ops@example.com via smtp.example.com:587 as ledger (password ****)"
        );
    }

    #[test]
    fn credentials_anywhere_in_a_url_are_masked() {
        let cases = [
            (
                "https://user:p%40ssw0rd@example.com/hooks",
                "https://****@example.com/hooks",
            ),
            (
                "https://api%3Akey@example.com/hooks",
                "https://****@example.com/hooks",
            ),
            (
                "https://example.com/hooks?token=s3cr3t&x=1",
                "https://example.com/hooks?****",
            ),
            (
                "https://example.com/hooks?access_token=a%2Bb%3D#sig=abc",
                "https://example.com/hooks?****#****",
            ),
            (
                "https://HOOKS.SLACK.COM/services/T0/B0/xoxb%2Dtoken",
                "https://hooks.slack.com/services/T0/B0/****",
            ),
            (
                "https://hooks.slack.com/workflows/T0/A0/123/token",
                "https://hooks.slack.com/workflows/T0/A0/****",
            ),
            (
                "https://discord.com/api/webhooks/123456/abcDEF-token",
                "https://discord.com/api/webhooks/****",
            ),
            (
                "https://ptb.discordapp.com/api/webhooks/123/tok",
                "https://ptb.discordapp.com/api/webhooks/****",
            ),
            (
                "https://contoso.webhook.office.com/webhookb2/guid@guid/IncomingWebhook/id/guid",
                "https://contoso.webhook.office.com/webhookb2/****",
            ),
            (
                "https://api.telegram.org/bot123:ABC/sendMessage",
                "https://api.telegram.org/****",
            ),
            (
                "https://hooks.zapier.com/hooks/catch/123/abc/",
                "https://hooks.zapier.com/hooks/catch/123/****",
            ),
            (
                "https://notslack.com/services/T0/B0/visible",
                "https://notslack.com/services/T0/B0/visible",
            ),
            ("not a url with secret", "****"),
        ];
        for (url, masked) in cases {
            assert_eq!(masked_url(url), masked, "{url}");
        }
    }
}

#[cfg(test)]
mod filter_tests {
    use ledger_domain::{Currency, Money};

    use super::*;

    fn notification(amount_minor: i64, currency: &str) -> Notification {
        Notification {
            kind: NotificationKind::PaymentFailed,
            dedupe_key: String::new(),
            subscription_id: None,
            amount: Currency::parse(currency)
                .ok()
                .map(|currency| Money::new(amount_minor, currency)),
            summary: String::new(),
            details: Vec::new(),
        }
    }

    fn config(filter: Option<proto::NotificationFilter>) -> IntegrationConfig {
        IntegrationConfig {
            name: "x".to_owned(),
            target: None,
            kinds: vec![proto::NotificationKind::PaymentFailed as i32],
            filter,
        }
    }

    #[test]
    fn kinds_providers_currencies_and_minimum_amount_filter() {
        let usd_100 = notification(10_000, "USD");
        assert!(wants(&config(None), &usd_100, Provider::Stripe));
        let mut refund = usd_100.clone();
        refund.kind = NotificationKind::RefundIssued;
        assert!(!wants(&config(None), &refund, Provider::Stripe));

        let filter = config(Some(proto::NotificationFilter {
            providers: vec![proto::PaymentProvider::Stripe as i32],
            currencies: vec!["USD".to_owned()],
            amount_min: Some(proto::Money {
                amount_minor: 10_000,
                currency: "USD".to_owned(),
            }),
        }));
        assert!(wants(&filter, &usd_100, Provider::Stripe));
        assert!(!wants(&filter, &usd_100, Provider::Paypal));
        assert!(!wants(
            &filter,
            &notification(9_999, "USD"),
            Provider::Stripe
        ));
        assert!(!wants(
            &filter,
            &notification(50_000, "EUR"),
            Provider::Stripe
        ));
        let mut no_amount = usd_100;
        no_amount.amount = None;
        assert!(!wants(&filter, &no_amount, Provider::Stripe));
    }
}
