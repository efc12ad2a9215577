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
