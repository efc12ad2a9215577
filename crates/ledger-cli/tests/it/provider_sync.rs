//! `ledger run provider-sync` as a process: killed between its call to Stripe and the record
//! of the answer, it cancels (or refunds) once and records once after a restart; a bad
//! configuration stops it at start with the cause.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_domain::proto::{self, command::Kind};
use ledger_testkit::commands::{NOW_MICROS, metadata, money, register, start_subscription};
use ledger_testkit::ledger::{TestLedger, eventually};
use ledger_testkit::localstripe::LocalStripe;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How long the process may take to start, call and record.
const WAIT_MS: u64 = 60_000;

/// `ledger run provider-sync <extra>` on this test's ledger, calling Stripe at `stripe_base`.
pub(super) fn provider_sync(ledger: &TestLedger, stripe_base: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["run", "provider-sync"])
        .args(extra)
        .env("DATABASE_URL", ledger.database().url())
        .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
        .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
        .env("LEDGER_STRIPE_API_BASE", stripe_base)
        .env("LEDGER_STRIPE_API_KEY", "sk_test_ledger")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ledger run provider-sync")
}

/// Runs provider-sync behind a [`KillingProxy`] to `stripe` until the proxy kills it, right
/// after Stripe answered `action`; returns the proxy disarmed, for the restart.
async fn killed_once_stripe_acted(
    ledger: &TestLedger,
    stripe: &LocalStripe,
    action: Action,
) -> KillingProxy {
    let proxy = KillingProxy::start(stripe.url.clone(), action).await;
    let mut first = provider_sync(ledger, &proxy.url, &[]);
    proxy.pid.store(first.id(), Ordering::SeqCst);
    let status = wait_exit(&mut first);
    assert!(!status.success(), "killed: {status}");
    proxy.kill.store(false, Ordering::SeqCst);
    proxy
}

/// Waits for `child` to exit, for at most [`WAIT_MS`].
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback proxy in front of localstripe that records every request's method and path and,
/// while `kill` is armed, kills the process whose id is in `pid` with SIGKILL as soon as
/// localstripe has answered the action (a request of `action`'s method whose path starts with
/// `action`'s path),
/// before the answer is passed on: the provider acted, and the process never learns it.
struct KillingProxy {
    url: String,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    kill: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
}

/// The request a [`KillingProxy`] kills after: its method and the start of its path.
type Action = (&'static str, &'static str);

impl KillingProxy {
    async fn start(upstream: String, action: Action) -> KillingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let proxy = KillingProxy {
            url,
            requests: Arc::default(),
            kill: Arc::new(AtomicBool::new(true)),
            pid: Arc::default(),
        };
        let (requests, kill, pid) = (
            proxy.requests.clone(),
            proxy.kill.clone(),
            proxy.pid.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream) = (client.clone(), upstream.clone());
                let (requests, kill, pid) = (requests.clone(), kill.clone(), pid.clone());
                tokio::spawn(async move {
                    forward(stream, &client, &upstream, &requests, (action, &kill), &pid).await;
                });
            }
        });
        proxy
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().expect("requests").clone()
    }
}

async fn forward(
    mut stream: TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    requests: &Mutex<Vec<(String, String)>>,
    (action, kill): (Action, &AtomicBool),
    pid: &AtomicU32,
) {
    let Some(ledger_devenv::receivers::HttpRequest {
        method,
        path,
        headers,
        body,
    }) = ledger_devenv::receivers::read_request(&mut stream).await
    else {
        return;
    };
    requests
        .lock()
        .expect("requests")
        .push((method.clone(), path.clone()));
    let mut request = client.request(
        method.parse().expect("a method"),
        format!("{upstream}{path}"),
    );
    for (name, value) in &headers {
        if matches!(
            name.as_str(),
            "authorization" | "content-type" | "idempotency-key"
        ) {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.body(body).send().await else {
        return;
    };
    let status = answer.status().as_u16();
    let answer_body = answer.bytes().await.unwrap_or_default();
    let acted = method == action.0 && path.starts_with(action.1);
    if acted && kill.load(Ordering::SeqCst) {
        let killed = Command::new("kill")
            .args(["-KILL", &pid.load(Ordering::SeqCst).to_string()])
            .status()
            .expect("kill -KILL");
        assert!(killed.success());
        return;
    }
    let head = format!(
        "HTTP/1.1 {status} Proxied\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        answer_body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&answer_body).await;
}

/// How many events of `event_type` the table holds.
async fn recorded(ledger: &TestLedger, event_type: &str) -> usize {
    ledger
        .table_events()
        .await
        .iter()
        .filter(|event| event.event.event_type == event_type)
        .count()
}

async fn cancellations(ledger: &TestLedger) -> usize {
    recorded(ledger, "subscription_cancelled").await
}

async fn refunds(ledger: &TestLedger) -> usize {
    recorded(ledger, "payment_refunded").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sync_killed_after_its_call_cancels_once_and_records_once_after_restart() {
    let stripe = LocalStripe::start().await;
    let account = stripe.create_customer("ada@example.com", "Ada").await;
    stripe.create_plan("pro", 4_900, "usd", "month").await;
    stripe.use_card(&account, "4242424242424242").await;
    let subscription = stripe.create_subscription(&account, "pro", 1, None).await;
    let subscription_id = subscription["id"].as_str().expect("an id").to_owned();

    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = client
        .send(&register("register", "ada@example.com"))
        .await
        .expect("registered")
        .customer_id;
    client
        .send(&start_subscription(
            "start",
            &customer_id,
            &subscription_id,
            "USD",
        ))
        .await
        .expect("started");
    let mut request = metadata("cancel", &customer_id);
    request.occurred_at_unix_micros = NOW_MICROS + 1_000_000;
    client
        .send(&proto::Command {
            metadata: Some(request),
            kind: Some(Kind::RequestCancellation(proto::CancellationRequested {
                subscription_id: subscription_id.clone(),
                at_period_end: false,
                reason: "customer asked".to_owned(),
            })),
        })
        .await
        .expect("requested");

    let proxy = killed_once_stripe_acted(&ledger, &stripe, ("DELETE", "/v1/subscriptions/")).await;
    let at_stripe = stripe
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await;
    assert_eq!(at_stripe["status"], "canceled", "Stripe acted");
    assert_eq!(
        cancellations(&ledger).await,
        0,
        "the answer was not recorded"
    );

    let mut second = provider_sync(&ledger, &proxy.url, &[]);
    let recorded = eventually(WAIT_MS, || async { cancellations(&ledger).await == 1 }).await;
    assert!(recorded, "the restarted process recorded the cancellation");
    // Some time for a second, wrong, cancellation to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().expect("stop the second process");
    let _ = second.wait();

    assert_eq!(cancellations(&ledger).await, 1, "one event");
    let calls: Vec<(String, String)> = proxy
        .requests()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/v1/subscriptions/"))
        .collect();
    let delete = (
        "DELETE".to_owned(),
        format!("/v1/subscriptions/{subscription_id}"),
    );
    let look = (
        "GET".to_owned(),
        format!("/v1/subscriptions/{subscription_id}"),
    );
    assert_eq!(
        calls,
        vec![delete, look],
        "one cancellation at Stripe; after the restart a look showed it done"
    );
    let attempts = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["provider-sync", "attempts"])
        .env("DATABASE_URL", ledger.database().url())
        .output()
        .expect("ledger provider-sync attempts");
    let listed = String::from_utf8_lossy(&attempts.stdout);
    assert!(attempts.status.success(), "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains("\tGET /v1/subscriptions/") && lines[0].contains("\tsucceeded\t200\t"),
        "{listed}"
    );
    assert!(
        lines[1].contains("\tDELETE /v1/subscriptions/") && lines[1].contains("\tin_flight\t"),
        "{listed}"
    );
    let failed = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["provider-sync", "attempts", "--failed"])
        .env("DATABASE_URL", ledger.database().url())
        .output()
        .expect("ledger provider-sync attempts --failed");
    let failed = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(
        failed.lines().count(),
        1,
        "only the one in flight: {failed}"
    );
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sync_killed_after_its_refund_refunds_once_and_records_once_after_restart() {
    let stripe = LocalStripe::start().await;
    let account = stripe.create_customer("ada@example.com", "Ada").await;
    stripe.create_plan("pro", 4_900, "usd", "month").await;
    stripe.use_card(&account, "4242424242424242").await;
    stripe.create_subscription(&account, "pro", 1, None).await;
    let charges = stripe.get(&format!("/v1/charges?customer={account}")).await;
    let charge_id = charges["data"][0]["id"]
        .as_str()
        .expect("the first invoice's charge")
        .to_owned();

    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let customer_id = client
        .send(&register("register", "ada@example.com"))
        .await
        .expect("registered")
        .customer_id;
    client
        .send(&proto::Command {
            metadata: Some(metadata("paid", &customer_id)),
            kind: Some(Kind::RecordPaymentSucceeded(proto::PaymentSucceeded {
                payment_id: charge_id.clone(),
                invoice_id: String::new(),
                subscription_id: String::new(),
                amount: Some(money(4_900, "USD")),
            })),
        })
        .await
        .expect("paid");
    let mut request = metadata("refund", &customer_id);
    request.occurred_at_unix_micros = NOW_MICROS + 1_000_000;
    client
        .send(&proto::Command {
            metadata: Some(request),
            kind: Some(Kind::RequestRefund(proto::RefundRequested {
                refund_request_id: "rr_1".to_owned(),
                payment_id: charge_id.clone(),
                amount: Some(money(1_500, "USD")),
                reason: "customer asked".to_owned(),
            })),
        })
        .await
        .expect("requested");

    let proxy = killed_once_stripe_acted(&ledger, &stripe, ("POST", "/v1/refunds")).await;
    let at_stripe = stripe.get(&format!("/v1/refunds?charge={charge_id}")).await;
    assert_eq!(
        at_stripe["data"].as_array().map(Vec::len),
        Some(1),
        "Stripe refunded"
    );
    assert_eq!(refunds(&ledger).await, 0, "the answer was not recorded");

    let mut second = provider_sync(&ledger, &proxy.url, &[]);
    let recorded = eventually(WAIT_MS, || async { refunds(&ledger).await == 1 }).await;
    assert!(recorded, "the restarted process recorded the refund");
    // Some time for a second, wrong, refund to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().expect("stop the second process");
    let _ = second.wait();

    assert_eq!(refunds(&ledger).await, 1, "one event");
    let at_stripe = stripe.get(&format!("/v1/refunds?charge={charge_id}")).await;
    assert_eq!(
        at_stripe["data"].as_array().map(Vec::len),
        Some(1),
        "one refund at Stripe"
    );
    let calls: Vec<(String, String)> = proxy
        .requests()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/v1/refunds"))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST".to_owned(), "/v1/refunds".to_owned()),
            (
                "GET".to_owned(),
                format!("/v1/refunds?charge={charge_id}&limit=100")
            ),
        ],
        "one refund asked; after the restart a look found it by its request id"
    );
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sync_without_a_key_or_with_an_unreachable_base_url_stops_at_start() {
    let ledger = TestLedger::new().await;
    // A history to catch up with: the projector is in its table catch-up when the worker's
    // start fails (a stop there once panicked).
    let writer = ledger.start_writer();
    for n in 0..3 {
        ledger
            .client()
            .send(&register(&format!("c{n}"), &format!("c{n}@example.com")))
            .await
            .expect("registered");
    }
    writer.stop().await.expect("writer");
    let run = |settings: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(["run", "provider-sync"])
            .env("DATABASE_URL", ledger.database().url())
            .env("LEDGER_SUBJECT_PREFIX", &ledger.bus.subject_prefix)
            .env("LEDGER_STREAM_NAME", &ledger.bus.stream_name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for variable in [
            "LEDGER_STRIPE_API_KEY",
            "LEDGER_STRIPE_API_BASE",
            "LEDGER_PAYPAL_CLIENT_ID",
            "LEDGER_PAYPAL_CLIENT_SECRET",
            "LEDGER_XENDIT_API_KEY",
            "LEDGER_XENDIT_API_BASE",
        ] {
            command.env_remove(variable);
        }
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start ledger run provider-sync");
        let status = wait_exit(&mut child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert_eq!(
            status.code(),
            Some(1),
            "a configuration error, not a panic: {stderr}"
        );
        stderr
    };
    let none = run(&[]);
    assert!(none.contains("no provider to call"), "{none}");
    // A key variable that expanded to nothing is no key.
    let empty = run(&[("LEDGER_STRIPE_API_KEY", "")]);
    assert!(empty.contains("no provider to call"), "{empty}");
    let keyless = run(&[("LEDGER_STRIPE_API_BASE", "http://127.0.0.1:9")]);
    assert!(
        keyless.contains("LEDGER_STRIPE_API_BASE is set, so LEDGER_STRIPE_API_KEY"),
        "{keyless}"
    );
    let half_paypal = run(&[("LEDGER_PAYPAL_CLIENT_ID", "client")]);
    assert!(
        half_paypal.contains("LEDGER_PAYPAL_CLIENT_SECRET"),
        "{half_paypal}"
    );
    // A credential with a line break could go in no request's header: every request would
    // fail and be retried as if the provider were unreachable.
    for (name, value) in [
        ("LEDGER_STRIPE_API_KEY", "sk_test_\nkey"),
        ("LEDGER_PAYPAL_CLIENT_SECRET", "secret\r"),
    ] {
        let broken = run(&[("LEDGER_PAYPAL_CLIENT_ID", "client"), (name, value)]);
        assert!(
            broken.contains(&format!(
                "{name} (or {name}_FILE) holds a space, a line break"
            )),
            "{broken}"
        );
    }
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let unreachable = run(&[
        ("LEDGER_XENDIT_API_BASE", base.as_str()),
        ("LEDGER_XENDIT_API_KEY", "xnd_development_key"),
    ]);
    assert!(
        unreachable.contains(&format!("LEDGER_XENDIT_API_BASE {base} does not answer")),
        "{unreachable}"
    );
    assert!(
        !unreachable.contains("xnd_development_key"),
        "{unreachable}"
    );
}
