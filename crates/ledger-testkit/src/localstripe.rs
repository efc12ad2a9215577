//! localstripe (PyPI `localstripe`): a stateful fake of Stripe's API that signs and delivers
//! webhooks like Stripe, for the Stripe connector's end-to-end tests. This module installs
//! nothing: it finds the `localstripe` executable on `PATH` (`python3 -m pip install
//! localstripe`), starts it on a free loopback port, and stops it on `Drop`.
//!
//! The client speaks Stripe's API as Stripe's own libraries do: form-encoded POSTs
//! (`items[0][plan]=...`), a secret key as the Basic user. Webhook endpoints are registered
//! with localstripe's own `POST /_config/webhooks/<name>` (`url`, `secret`); it then POSTs each
//! event, one second after it happened, as JSON signed with `Stripe-Signature:
//! t=<event created>,v1=<HMAC-SHA256 of "<t>.<body>" keyed with the secret>`.
//!
//! What localstripe emits: `customer.created` / `updated` / `deleted`,
//! `customer.subscription.created` / `deleted`, `invoice.created`, `invoice.payment_succeeded`,
//! `invoice.payment_failed`, `plan.created`, `product.created`, `payment_intent.*`. What it does
//! not: `customer.subscription.updated` (plan changes, `cancel_at_period_end`, trial ends),
//! `invoice.paid`, `invoice.finalized`, `charge.refunded`, disputes; and a subscription with a
//! trial keeps status `incomplete` instead of `trialing`.
//!
//! The clock: localstripe dates every object and event with Python's `time.time()`, and signs
//! each delivery with the event's date as `t`. [`LocalStripe::set_clock`] moves that clock, as
//! Stripe's test clocks do, so that a test can spread a history over several days: localstripe
//! runs with `time.time` offset by a value a `POST /_config/clock` added here sets. The
//! deliveries of an event dated in the past carry that past `t`, so the receiving endpoint
//! needs a tolerance that covers the offset.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long localstripe may take to answer after it was started.
const START_MS: u64 = 20_000;
/// The secret key the client uses (localstripe accepts any `sk_...`).
const API_KEY: &str = "sk_test_ledger";
/// Runs localstripe (arguments as for its executable) with `time.time()` offset by the last
/// `offset_seconds` posted to `/_config/clock`.
const START_WITH_CLOCK: &str = r#"
import sys, time
from aiohttp import web
from localstripe import server

offset_seconds = [0]
real_time = time.time
time.time = lambda: real_time() + offset_seconds[0]

async def set_clock(request):
    offset_seconds[0] = int((await request.post())["offset_seconds"])
    return web.Response()

server.app.router.add_post("/_config/clock", set_clock)
sys.argv = ["localstripe"] + sys.argv[1:]
server.start()
"#;

/// A running localstripe, stopped on `Drop`.
#[derive(Debug)]
pub struct LocalStripe {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    client: reqwest::Client,
    child: Child,
}

/// The `localstripe` executable on `PATH`.
fn executable() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("localstripe"))
            .find(|candidate| candidate.is_file())
    })
}

/// The Python that runs `executable`: its `#!` line's interpreter when that is a Python (a
/// pip-installed script), else `python3` on `PATH` (a pyenv shim).
fn python_of(executable: &std::path::Path) -> PathBuf {
    std::fs::read_to_string(executable)
        .ok()
        .and_then(|script| {
            let interpreter = script.lines().next()?.strip_prefix("#!")?.trim();
            let interpreter = PathBuf::from(interpreter.split_whitespace().next()?);
            interpreter
                .file_name()?
                .to_str()?
                .starts_with("python")
                .then_some(interpreter)
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}

impl LocalStripe {
    /// Starts localstripe on a free loopback port, with an empty store, and waits until it
    /// answers.
    ///
    /// # Panics
    /// If `localstripe` is not installed (the message says how to install it), or does not
    /// answer within 20 s.
    pub async fn start() -> LocalStripe {
        let program = executable().unwrap_or_else(|| {
            panic!(
                "the Stripe end-to-end tests need localstripe on PATH: \
                 `python3 -m pip install localstripe` (`just test` does it)"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free local port")
            .port();
        let python = python_of(&program);
        let child = Command::new(&python)
            .args(["-c", START_WITH_CLOCK])
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "{} (the Python of {}) does not start: {error}",
                    python.display(),
                    program.display()
                )
            });
        let server = LocalStripe {
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
        };
        let deadline = Instant::now() + Duration::from_millis(START_MS);
        loop {
            let answer = server
                .client
                .get(format!("{}/v1/customers", server.url))
                .basic_auth(API_KEY, Some(""))
                .send()
                .await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "localstripe did not answer on port {port} within {START_MS} ms"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Value {
        let answer = request
            .basic_auth(API_KEY, Some(""))
            .send()
            .await
            .unwrap_or_else(|error| panic!("localstripe {what}: {error}"));
        let status = answer.status();
        let body = answer.bytes().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "localstripe {what}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        if body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&body)
            .unwrap_or_else(|error| panic!("localstripe {what}: not JSON ({error})"))
    }

    /// `POST <path>` with a form body; the answer's JSON.
    ///
    /// # Panics
    /// On a transport error or a non-2xx answer (with its body).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let request = self.client.post(format!("{}{path}", self.url)).form(form);
        self.call(request, &format!("POST {path}")).await
    }

    /// `GET <path>`; the answer's JSON.
    ///
    /// # Panics
    /// On a transport error or a non-2xx answer.
    pub async fn get(&self, path: &str) -> Value {
        let request = self.client.get(format!("{}{path}", self.url));
        self.call(request, &format!("GET {path}")).await
    }

    /// `DELETE <path>`; the answer's JSON.
    ///
    /// # Panics
    /// On a transport error or a non-2xx answer.
    pub async fn delete(&self, path: &str) -> Value {
        let request = self.client.delete(format!("{}{path}", self.url));
        self.call(request, &format!("DELETE {path}")).await
    }

    /// Sets localstripe's clock to `offset_seconds` from now (negative: in the past): what is
    /// created from now on is dated, and its events are dated and signed, at that time.
    pub async fn set_clock(&self, offset_seconds: i64) {
        let offset_seconds = offset_seconds.to_string();
        self.post("/_config/clock", &[("offset_seconds", &offset_seconds)])
            .await;
    }

    /// The ids of every event localstripe has emitted (`evt_...`), in the order it lists them
    /// (oldest first), read page by page: one page of 100 held only the oldest events, so a
    /// test waiting for "every" delivery went on before the latest ones were recorded.
    pub async fn event_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        loop {
            let path = match ids.last() {
                Some(last) => format!("/v1/events?limit=100&starting_after={last}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let page = self.get(&path).await;
            let events = page
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            ids.extend(events.iter().map(id));
            if events.is_empty() || page.get("has_more") != Some(&Value::Bool(true)) {
                return ids;
            }
        }
    }

    /// Has localstripe deliver every event to `url`, signed with `secret`.
    pub async fn register_webhook(&self, name: &str, url: &str, secret: &str) {
        self.post(
            &format!("/_config/webhooks/{name}"),
            &[("url", url), ("secret", secret)],
        )
        .await;
    }

    /// Creates a customer; returns its id (`cus_...`).
    pub async fn create_customer(&self, email: &str, name: &str) -> String {
        id(&self
            .post("/v1/customers", &[("email", email), ("name", name)])
            .await)
    }

    /// Creates a plan (a recurring price) `plan_id` of `amount` (Stripe's smallest unit) in
    /// `currency` (lower case) every `interval`.
    pub async fn create_plan(&self, plan_id: &str, amount: i64, currency: &str, interval: &str) {
        let amount = amount.to_string();
        self.post(
            "/v1/plans",
            &[
                ("id", plan_id),
                ("amount", &amount),
                ("currency", currency),
                ("interval", interval),
                ("product[name]", plan_id),
            ],
        )
        .await;
    }

    /// Attaches a card to the customer and makes it the default for invoices: `4242...` pays,
    /// `4000000000000341` attaches but its charges are declined, `4000002760003184` requires
    /// authentication.
    pub async fn use_card(&self, customer: &str, number: &str) {
        let card = id(&self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2040"),
                    ("card[cvc]", "123"),
                ],
            )
            .await);
        self.post(
            &format!("/v1/payment_methods/{card}/attach"),
            &[("customer", customer)],
        )
        .await;
        self.post(
            &format!("/v1/customers/{customer}"),
            &[("invoice_settings[default_payment_method]", &card)],
        )
        .await;
    }

    /// Subscribes the customer to `quantity` x `plan`, with a trial until `trial_end` (Unix
    /// seconds) when given; returns the subscription.
    pub async fn create_subscription(
        &self,
        customer: &str,
        plan: &str,
        quantity: u32,
        trial_end: Option<i64>,
    ) -> Value {
        let quantity = quantity.to_string();
        let trial_end = trial_end.map(|seconds| seconds.to_string());
        let mut form = vec![
            ("customer", customer),
            ("items[0][plan]", plan),
            ("items[0][quantity]", quantity.as_str()),
        ];
        if let Some(trial_end) = &trial_end {
            form.push(("trial_end", trial_end));
        }
        self.post("/v1/subscriptions", &form).await
    }

    /// Changes the subscription's only item to `quantity` x `plan`.
    pub async fn change_plan(&self, subscription: &Value, plan: &str, quantity: u32) -> Value {
        let item = subscription
            .pointer("/items/data/0/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let quantity = quantity.to_string();
        self.post(
            &format!("/v1/subscriptions/{}", id(subscription)),
            &[
                ("items[0][id]", item),
                ("items[0][plan]", plan),
                ("items[0][quantity]", &quantity),
            ],
        )
        .await
    }

    /// Creates an invoice of the subscription's pending period and tries to pay it with the
    /// customer's default card; returns the invoice after the attempt.
    pub async fn invoice_and_pay(&self, customer: &str, subscription: &str) -> Value {
        let invoice = id(&self
            .post(
                "/v1/invoices",
                &[("customer", customer), ("subscription", subscription)],
            )
            .await);
        self.post(&format!("/v1/invoices/{invoice}/pay"), &[]).await
    }

    /// Fails the 3-D Secure authentication an invoice's payment waits for (a card such as
    /// `4000002760003184` requires one): localstripe then sends `invoice.payment_failed`.
    pub async fn fail_authentication(&self, invoice: &Value) -> Value {
        let intent = invoice
            .get("payment_intent")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let secret = self.get(&format!("/v1/payment_intents/{intent}")).await;
        let secret = secret
            .get("client_secret")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.post(
            &format!("/v1/payment_intents/{intent}/_authenticate"),
            &[("client_secret", &secret), ("success", "false")],
        )
        .await
    }

    /// Tries again to pay an open invoice.
    pub async fn pay(&self, invoice: &str) -> Value {
        self.post(&format!("/v1/invoices/{invoice}/pay"), &[]).await
    }

    /// Refunds `amount` of a charge.
    pub async fn refund(&self, charge: &str, amount: i64) -> Value {
        let amount = amount.to_string();
        self.post("/v1/refunds", &[("charge", charge), ("amount", &amount)])
            .await
    }

    /// Cancels the subscription now.
    pub async fn cancel(&self, subscription: &str) -> Value {
        self.delete(&format!("/v1/subscriptions/{subscription}"))
            .await
    }
}

/// An object's `id`.
fn id(object: &Value) -> String {
    object
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
