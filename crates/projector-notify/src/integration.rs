//! Reading an integration's configuration: its channel, whether it wants a notification, and
//! its target described with the secrets masked.

use ledger_domain::{IntegrationConfig, Provider, proto};

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

/// The target for people and logs: no signing secret, no SMTP password, and a Slack webhook
/// URL (a credential itself) cut after its host.
pub(crate) fn masked_target(target: &Target) -> String {
    match target {
        Target::Slack(slack) => format!("{}/…", origin(&slack.webhook_url)),
        Target::Webhook(webhook) => {
            format!("{} (signing secret ****)", webhook.url)
        }
        Target::Email(email) => format!(
            "{} via {}:{}{}",
            email.to.join(", "),
            email.smtp_host,
            email.smtp_port,
            if email.smtp_username.is_empty() {
                String::new()
            } else {
                format!(" as {} (password ****)", email.smtp_username)
            }
        ),
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |index| index + 3);
    url.get(after_scheme..)
        .and_then(|rest| rest.find('/'))
        .and_then(|slash| url.get(..after_scheme + slash))
        .unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let slack = Target::Slack(proto::SlackTarget {
            webhook_url: "https://hooks.slack.com/services/T000/B000/XXXXSECRET".to_owned(),
        });
        assert_eq!(masked_target(&slack), "https://hooks.slack.com/…");
        let webhook = Target::Webhook(proto::WebhookTarget {
            url: "https://example.com/hooks".to_owned(),
            signing_secret: "whsec_supersecret_value".to_owned(),
        });
        let shown = masked_target(&webhook);
        assert!(!shown.contains("supersecret"), "{shown}");
        let email = Target::Email(proto::EmailTarget {
            to: vec!["ops@example.com".to_owned()],
            smtp_host: "smtp.example.com".to_owned(),
            smtp_port: 587,
            smtp_username: "ledger".to_owned(),
            smtp_password: "hunter2hunter2".to_owned(),
            ..proto::EmailTarget::default()
        });
        let shown = masked_target(&email);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            shown,
            "ops@example.com via smtp.example.com:587 as ledger (password ****)"
        );
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
