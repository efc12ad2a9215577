//! What each channel sends for a delivery: pure functions of the delivery's data.

use serde_json::{Value, json};

/// A delivery as the channels see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message<'a> {
    /// The delivery id: receivers dedupe on it.
    pub(crate) delivery_id: uuid::Uuid,
    /// The kind's name (`payment_failed`).
    pub(crate) kind: &'a str,
    /// When the notification was decided (the event's recording time), Unix seconds.
    pub(crate) created_unix_seconds: i64,
    /// The notification's data (docs/notifications.md lists the fields).
    pub(crate) data: &'a Value,
}

impl Message<'_> {
    fn text(&self, field: &str) -> &str {
        self.data.get(field).and_then(Value::as_str).unwrap_or("")
    }

    fn amount(&self) -> &str {
        self.data
            .pointer("/amount/display")
            .and_then(Value::as_str)
            .unwrap_or("-")
    }

    /// (label, value) lines shown by Slack and email.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("Customer", self.text("customer_email").to_owned()),
            ("Amount", self.amount().to_owned()),
        ];
        let subscription = self.text("subscription_id");
        if !subscription.is_empty() {
            facts.push(("Subscription", subscription.to_owned()));
        }
        facts.push(("Provider", self.text("provider").to_owned()));
        facts.push(("Occurred", self.text("occurred_at").to_owned()));
        facts
    }
}

/// The webhook body: `{id, type, created, data}`.
pub(crate) fn webhook_body(message: &Message<'_>) -> String {
    json!({
        "id": message.delivery_id.to_string(),
        "type": message.kind,
        "created": message.created_unix_seconds,
        "data": message.data,
    })
    .to_string()
}

/// A Slack Block Kit message: `text` is the fallback for notifications, `blocks` the layout.
pub(crate) fn slack_message(message: &Message<'_>) -> Value {
    let title = message.text("title");
    let summary = message.text("summary");
    let fields: Vec<Value> = message
        .facts()
        .into_iter()
        .map(|(label, value)| json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")}))
        .collect();
    json!({
        "text": format!("{title}: {summary}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{
                "type": "mrkdwn",
                "text": format!(
                    "ledger delivery `{}` · event `{}` at position {}",
                    message.delivery_id,
                    message.text("event_id"),
                    message.data.get("global_position").and_then(Value::as_i64).unwrap_or(0)
                ),
            }]},
        ],
    })
}

/// An email: (subject, plain text, HTML).
pub(crate) fn email(message: &Message<'_>) -> (String, String, String) {
    let title = message.text("title");
    let summary = message.text("summary");
    let subject = format!("[ledger] {title}: {}", message.text("customer_email"));
    let facts = message.facts();
    let mut text = format!("{summary}\n\n");
    for (label, value) in &facts {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text.push_str(&format!(
        "\nDelivery {} (event {})\n",
        message.delivery_id,
        message.text("event_id")
    ));
    let mut html = format!(
        "<html><body><h2>{}</h2><p>{}</p><table>",
        escape(title),
        escape(summary)
    );
    for (label, value) in &facts {
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>",
            escape(value)
        ));
    }
    html.push_str(&format!(
        "</table><p><small>Delivery {} (event {})</small></p></body></html>",
        message.delivery_id,
        escape(message.text("event_id"))
    ));
    (subject, text, html)
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Value {
        json!({
            "kind": "payment_failed",
            "title": "Payment failed",
            "summary": "Payment of 49.00 USD failed for ada@example.com: card_declined",
            "customer_id": "0190d6a2-7c1e-7b4a-9f00-4c2b8e1d3a55",
            "customer_email": "ada@example.com",
            "customer_name": "Ada Lovelace",
            "subscription_id": "sub_1",
            "amount": {"amount_minor": 4900, "currency": "USD", "display": "49.00 USD"},
            "provider": "stripe",
            "event_id": "0190d6a3-0b4f-7d21-8a3c-51e9f0c2b7d4",
            "event_type": "payment_failed",
            "global_position": 1042,
            "occurred_at": "2026-01-01T00:00:00Z",
            "details": {"payment_id": "py_1", "failure_code": "card_declined",
                        "failure_message": "Your card was declined.", "attempt_count": "1"},
        })
    }

    fn message(data: &Value) -> Message<'_> {
        Message {
            delivery_id: uuid::Uuid::from_u128(0x6b1f_0c5e_2d4a_5b7e_9c3f_1a2b_3c4d_5e6f),
            kind: "payment_failed",
            created_unix_seconds: 1_767_225_600,
            data,
        }
    }

    /// The samples in docs/notifications.md.
    #[test]
    fn each_channel_renders_the_documented_sample() {
        let data = data();
        let message = message(&data);
        let slack = slack_message(&message);
        assert_eq!(
            slack,
            json!({
                "text": "Payment failed: Payment of 49.00 USD failed for ada@example.com: card_declined",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "Payment failed"}},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "Payment of 49.00 USD failed for ada@example.com: card_declined"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Customer*\nada@example.com"},
                        {"type": "mrkdwn", "text": "*Amount*\n49.00 USD"},
                        {"type": "mrkdwn", "text": "*Subscription*\nsub_1"},
                        {"type": "mrkdwn", "text": "*Provider*\nstripe"},
                        {"type": "mrkdwn", "text": "*Occurred*\n2026-01-01T00:00:00Z"},
                    ]},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                        "text": "ledger delivery `6b1f0c5e-2d4a-5b7e-9c3f-1a2b3c4d5e6f` · event `0190d6a3-0b4f-7d21-8a3c-51e9f0c2b7d4` at position 1042"}]},
                ],
            })
        );
        let body: Value = serde_json::from_str(&webhook_body(&message)).expect("JSON");
        assert_eq!(
            body,
            json!({
                "id": "6b1f0c5e-2d4a-5b7e-9c3f-1a2b3c4d5e6f",
                "type": "payment_failed",
                "created": 1_767_225_600,
                "data": data,
            })
        );
        let (subject, text, html) = email(&message);
        assert_eq!(subject, "[ledger] Payment failed: ada@example.com");
        assert_eq!(
            text,
            "Payment of 49.00 USD failed for ada@example.com: card_declined\n\n\
             Customer: ada@example.com\nAmount: 49.00 USD\nSubscription: sub_1\n\
             Provider: stripe\nOccurred: 2026-01-01T00:00:00Z\n\n\
             Delivery 6b1f0c5e-2d4a-5b7e-9c3f-1a2b3c4d5e6f \
             (event 0190d6a3-0b4f-7d21-8a3c-51e9f0c2b7d4)\n"
        );
        assert!(
            html.starts_with("<html><body><h2>Payment failed</h2>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><th align=\"left\">Amount</th><td>49.00 USD</td></tr>"),
            "{html}"
        );
    }

    #[test]
    fn html_is_escaped() {
        let mut data = data();
        data["customer_email"] = json!("<script>@example.com");
        let (_, _, html) = email(&message(&data));
        assert!(html.contains("&lt;script&gt;@example.com"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
