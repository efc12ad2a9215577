//! Issue 16: the chaos scenario. Under a steady load of commands from several clients that
//! retry with the same idempotency key (registrations, a failed payment for every third
//! customer, and signed Stripe `customer.created` webhooks through `ledger run ingest`), each component is killed in turn (SIGKILL), or crashed for PostgreSQL
//! (`pg_ctl stop -m immediate`), and brought back the way a supervisor would: the leading
//! writer (the standby takes over; a new standby starts), the projectors' process (customers,
//! revenue, notify and its delivery worker), the query service, one node of the three-node NATS
//! cluster (the stream has three replicas), PostgreSQL. Then:
//! every acknowledged command is stored exactly once, every failed payment reached the webhook
//! receiver under one delivery id, positions have no gap, the stream holds the table,
//! `ledger audit verify` passes, and the customers read model equals a fresh rebuild
//! (`Deployment::assert_intact`).
//!
//! `CHAOS_ROUNDS` (default 1, what `just test` runs) repeats the faults; `just chaos` runs 3.
//! The table printed at the end (run with `--nocapture`) gives each fault's time to recover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ledger_bus::Client;
use ledger_domain::proto;
use ledger_testkit::commands;
use tokio::sync::Mutex;

use ledger_devenv::services::{
    PrivateNatsCluster, start_private_nats_cluster, start_private_postgres,
};

use super::staying_up::{Deployment, STRIPE_SECRET, stripe_delivery};

/// The NATS cluster's nodes; the event stream has a copy on each.
const NATS_NODES: usize = 3;
/// Clients sending commands concurrently during the faults.
const CLIENTS: usize = 4;
/// How long a client keeps retrying one command (same idempotency key) before counting it
/// as not acknowledged.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// Every process's settings besides the deployment's own: integration secrets sealed and
/// opened with the test keys, notifications allowed to the local receiver.
const ENV: [(&str, &str); 3] = [
    ("LEDGER_SECRETS_KEYS", ledger_testkit::ledger::SECRETS_KEYS),
    ("LEDGER_NOTIFY_ALLOW_HTTP", "true"),
    ("LEDGER_NOTIFY_ALLOW_INTERNAL", "127.0.0.1"),
];
/// The longest any component may take to recover.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// What the clients sent: acknowledged keys, the failed payments among them (each must be
/// notified), and commands given up on.
#[derive(Default)]
struct Sent {
    acknowledged: Vec<String>,
    failed_payments: Vec<String>,
    given_up: usize,
    retries: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ledger_survives_each_component_killed_in_turn_under_load() {
    let rounds: usize = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(1);
    let postgres = start_private_postgres().await.expect("private PostgreSQL");
    let cluster = start_private_nats_cluster(NATS_NODES)
        .await
        .expect("a private NATS cluster");
    let mut deployment = Deployment::start_with(postgres, cluster).await;
    let replicas = NATS_NODES.to_string();
    let writer_args = ["run", "writer", "--stream-replicas", replicas.as_str()];
    let query_role_url = query_role(&deployment).await;
    let query_port = super::free_port();
    let mut leader = deployment.spawn_with("writer-0", &writer_args, &ENV);
    deployment
        .wait_for_log("writer-0", "writer is the leader")
        .await;
    let mut standby = deployment.spawn_with("writer-1", &writer_args, &ENV);
    let mut standby_log = "writer-1".to_owned();
    let projector_args = ["run", "projector", "customers", "revenue", "notify"];
    let projector = deployment.spawn_with("projector", &projector_args, &ENV);
    let query_env = [
        ("LEDGER_QUERY_DATABASE_URL", query_role_url.as_str()),
        (
            "LEDGER_QUERY_TOKENS",
            "chaos-test-token-0123456789:metrics:read",
        ),
    ];
    let query_bind = format!("127.0.0.1:{query_port}");
    let query_args = ["run", "query", "--bind", &query_bind];
    let query = deployment.spawn_with("query", &query_args, &[ENV.as_slice(), &query_env].concat());
    let ingest_port = super::free_port();
    let ingest_bind = format!("127.0.0.1:{ingest_port}");
    deployment.spawn_with(
        "ingest",
        &["run", "ingest", "--bind", &ingest_bind],
        &[
            ENV.as_slice(),
            &[
                (
                    "LEDGER_INGEST_TOKENS",
                    "chaos-token-0123456789:commands:write",
                ),
                ("LEDGER_STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET),
            ],
        ]
        .concat(),
    );
    let webhooks = format!("http://{ingest_bind}/v1/webhooks/stripe");
    let client = deployment.client().await;
    // Every failed payment is notified to this receiver, through the outbox and the worker of
    // the projectors' process.
    let receiver = ledger_devenv::receivers::HttpReceiver::start().await;
    client
        .send(&commands::register_webhook(
            "chaos-webhook",
            &format!("{}/hook", receiver.url),
            "whsec_chaos_0123456789",
        ))
        .await
        .expect("the webhook integration is registered");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let load: Vec<_> = (0..CLIENTS)
        .map(|index| {
            tokio::spawn(send_until_stopped(
                client.clone(),
                webhooks.clone(),
                index,
                Arc::clone(&stop),
                Arc::clone(&sent),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut recoveries: Vec<(String, Duration)> = Vec::new();
    for round in 0..rounds {
        // The leading writer: the standby must take over; a new standby takes its place.
        let new_standby_log = format!("writer-{}", round + 2);
        restart(&mut deployment, leader, &new_standby_log, &writer_args, &[]);
        let recovered = until_a_command_is_acknowledged(&client, &format!("writer-{round}")).await;
        deployment
            .wait_for_log(&standby_log, "writer is the leader")
            .await;
        recoveries.push(("writer (leader), kill -9".to_owned(), recovered));
        std::mem::swap(&mut leader, &mut standby);
        standby_log = new_standby_log;

        // The projectors: restarted, they must apply a command sent after the restart.
        let killed = Instant::now();
        restart(
            &mut deployment,
            projector,
            &format!("projector-{round}"),
            &projector_args,
            &[],
        );
        until_a_command_is_acknowledged(&client, &format!("projector-{round}")).await;
        let head = head(&deployment).await;
        wait(&format!("projector {round} caught up"), || async {
            deployment
                .query_i64("SELECT global_position FROM customers.projector_checkpoint")
                .await
                .is_some_and(|checkpoint| checkpoint >= head)
        })
        .await;
        recoveries.push(("projectors, kill -9".to_owned(), killed.elapsed()));

        // The query service: restarted, it must be ready again.
        let killed = Instant::now();
        restart(
            &mut deployment,
            query,
            &format!("query-{round}"),
            &query_args,
            &query_env,
        );
        wait(&format!("query {round} ready"), || async {
            tokio::task::spawn_blocking(move || {
                super::http_get(query_port, "/readyz", None)
                    .is_some_and(|(status, _)| status == 200)
            })
            .await
            .unwrap_or(false)
        })
        .await;
        recoveries.push(("query, kill -9".to_owned(), killed.elapsed()));

        // One of the NATS nodes: killed and restarted with its JetStream store; the stream
        // has a copy on each node.
        let node = round % NATS_NODES;
        deployment.nats.node_mut(node).stop_server();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        deployment
            .nats
            .node_mut(node)
            .start_server()
            .await
            .expect("the NATS node back");
        until_a_command_is_acknowledged(&client, &format!("nats-{round}")).await;
        recoveries.push((
            format!("NATS node {} of {NATS_NODES}, kill -9", node + 1),
            killed.elapsed(),
        ));

        // PostgreSQL: crashed (immediate stop) and restarted with crash recovery.
        deployment.postgres.crash_server().await;
        let crashed = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        deployment
            .postgres
            .start_server()
            .await
            .expect("PostgreSQL back");
        until_a_command_is_acknowledged(&client, &format!("postgres-{round}")).await;
        recoveries.push(("PostgreSQL, immediate stop".to_owned(), crashed.elapsed()));
    }

    stop.store(true, Ordering::Relaxed);
    for client in load {
        client.await.expect("client task");
    }
    let sent = std::mem::take(&mut *sent.lock().await);
    let (stored_once, lost, duplicated) = stored(&deployment, &sent.acknowledged).await;

    println!("chaos: {rounds} round(s), {CLIENTS} clients retrying with the same key");
    println!("{:<32} {:>12}", "fault", "recovered in");
    for (fault, recovered) in &recoveries {
        println!("{fault:<32} {:>10.1} s", recovered.as_secs_f64());
    }
    println!(
        "acknowledged {}, stored once {stored_once}, lost {lost}, duplicated {duplicated}, \
         retried {}, given up (never acknowledged) {}",
        sent.acknowledged.len(),
        sent.retries,
        sent.given_up
    );

    // Each failed payment notified: one delivery id per payment, every payment reached the
    // receiver (sends are at least once with a stable id: decision 0008).
    let notified = || {
        let requests = receiver.requests();
        let ids: std::collections::HashSet<String> = requests
            .iter()
            .map(|request| request.json()["id"].to_string())
            .collect();
        let bodies: Vec<String> = requests
            .iter()
            .map(|request| String::from_utf8_lossy(&request.body).into_owned())
            .collect();
        (requests.len(), ids.len(), bodies)
    };
    let all_notified = ledger_testkit::ledger::eventually(60_000, || async {
        let (_, _, bodies) = notified();
        sent.failed_payments
            .iter()
            .all(|payment| bodies.iter().any(|body| body.contains(payment.as_str())))
    })
    .await;
    let (received, distinct, _) = notified();
    println!(
        "failed payments {}, notifications received {received}, distinct delivery ids {distinct}, \
         resent after a kill {}",
        sent.failed_payments.len(),
        received - distinct
    );
    assert!(all_notified, "every failed payment is notified");
    assert_eq!(
        distinct,
        sent.failed_payments.len(),
        "one delivery per failed payment"
    );
    assert_eq!((lost, duplicated), (0, 0), "nothing lost, nothing doubled");
    assert!(
        recoveries
            .iter()
            .all(|(_, recovered)| *recovered < RECOVERY_LIMIT),
        "every component recovers within {RECOVERY_LIMIT:?}: {recoveries:?}"
    );
    let verify = deployment
        .ledger(&["audit", "verify"])
        .output()
        .expect("ledger audit verify");
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // No gap, stream == table, the projector caught up and equals a fresh rebuild.
    let mut acknowledged = sent.acknowledged;
    acknowledged.sort_unstable();
    deployment.assert_intact(&acknowledged).await;
}

/// One client: registrations with fresh keys, each retried with the same key until the
/// writer acknowledges it (or [`RETRY_FOR`] passes), until `stop`.
async fn send_until_stopped(
    client: Client,
    webhooks: String,
    index: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Sent>>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("chaos-{index}-{n}");
        let register = commands::register(&key, &format!("{key}@example.com"));
        let Some(customer_id) = send_with_retries(&client, &register, &key, &sent).await else {
            continue;
        };
        // Every third customer has a failed payment, which must be notified.
        if n.is_multiple_of(3) {
            let payment_id = format!("py_{key}");
            let failed_key = format!("{key}-failed");
            let failed = commands::command(
                &failed_key,
                &customer_id,
                proto::command::Kind::RecordPaymentFailed(proto::PaymentFailed {
                    payment_id: payment_id.clone(),
                    amount: Some(commands::money(4_900, "USD")),
                    failure_code: "card_declined".to_owned(),
                    ..proto::PaymentFailed::default()
                }),
            );
            if send_with_retries(&client, &failed, &failed_key, &sent)
                .await
                .is_some()
            {
                sent.lock().await.failed_payments.push(payment_id);
            }
        }
        // And a customer created at Stripe, delivered by its signed webhook until answered 200.
        let event_id = format!("evt_chaos_{index}_{n}");
        deliver_until_accepted(
            &webhooks,
            &event_id,
            &format!("cus_chaos_{index}_{n}"),
            &sent,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Posts the signed Stripe `customer.created` `event_id` (signed anew each time, as Stripe
/// does) until ingest answers 200 or [`RETRY_FOR`] passes; its command's idempotency key
/// (`stripe:<event id>`) then counts as acknowledged.
async fn deliver_until_accepted(endpoint: &str, event_id: &str, account: &str, sent: &Mutex<Sent>) {
    let http = reqwest::Client::new();
    let first = Instant::now();
    let mut retries = 0;
    let accepted = loop {
        let (body, signature) = stripe_delivery(event_id, account);
        let answer = http
            .post(endpoint)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signature)
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if answer.is_ok_and(|answer| answer.status() == 200) {
            break true;
        }
        if first.elapsed() > RETRY_FOR {
            break false;
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sent = sent.lock().await;
    sent.retries += retries;
    if accepted {
        sent.acknowledged.push(format!("stripe:{event_id}"));
    } else {
        sent.given_up += 1;
    }
}

/// Sends `command` until the writer acknowledges it or [`RETRY_FOR`] passes, always with its
/// idempotency key `key`; the customer id of the reply, or `None` when given up.
async fn send_with_retries(
    client: &Client,
    command: &proto::Command,
    key: &str,
    sent: &Mutex<Sent>,
) -> Option<String> {
    let first = Instant::now();
    let mut retries = 0;
    let answer = loop {
        if let Ok(reply) = client.send(command).await {
            break Some(reply.customer_id);
        }
        if first.elapsed() > RETRY_FOR {
            break None;
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sent = sent.lock().await;
    sent.retries += retries;
    match answer {
        Some(_) => sent.acknowledged.push(key.to_owned()),
        None => sent.given_up += 1,
    }
    answer
}

/// Sends a probe registration until it is acknowledged; the time it took.
async fn until_a_command_is_acknowledged(client: &Client, probe: &str) -> Duration {
    let started = Instant::now();
    let key = format!("probe-{probe}");
    let command = commands::register(&key, &format!("{key}@example.com"));
    while client.send(&command).await.is_err() {
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "no command acknowledged {RECOVERY_LIMIT:?} after the fault ({probe})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Waits for `condition` up to [`RECOVERY_LIMIT`], panicking with `what` otherwise.
async fn wait<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        ledger_testkit::ledger::eventually(
            u64::try_from(RECOVERY_LIMIT.as_millis()).unwrap_or(u64::MAX),
            condition
        )
        .await,
        "{what}: not within {RECOVERY_LIMIT:?}"
    );
}

/// How many acknowledged keys are stored exactly once, missing, or stored more than once.
async fn stored(
    deployment: &Deployment<PrivateNatsCluster>,
    acknowledged: &[String],
) -> (usize, usize, usize) {
    let (mut once, mut lost, mut duplicated) = (0, 0, 0);
    for key in acknowledged {
        match deployment
            .query_i64(&format!(
                "SELECT count(*) FROM customer_payment_events WHERE idempotency_key = '{key}'"
            ))
            .await
        {
            Some(1) => once += 1,
            Some(0) => lost += 1,
            _ => duplicated += 1,
        }
    }
    (once, lost, duplicated)
}

async fn head(deployment: &Deployment<PrivateNatsCluster>) -> i64 {
    deployment
        .query_i64("SELECT coalesce(max(global_position), 0) FROM customer_payment_events")
        .await
        .expect("the table's head")
}

/// Kills the process in `slot` (SIGKILL) and starts `ledger <args>` in its place (with
/// [`ENV`] and `env`), as a supervisor (systemd, compose) would.
fn restart(
    deployment: &mut Deployment<PrivateNatsCluster>,
    slot: usize,
    log: &str,
    args: &[&str],
    env: &[(&str, &str)],
) {
    let child = &mut deployment.children[slot];
    let _ = child.kill();
    let _ = child.wait();
    deployment.spawn_with(log, args, &[ENV.as_slice(), env].concat());
    let started = deployment.children.pop().expect("the process just started");
    deployment.children[slot] = started;
}

/// A login role in `ledger_query` (the query service's restricted role); its URL.
async fn query_role(deployment: &Deployment<PrivateNatsCluster>) -> String {
    let (client, connection) =
        tokio_postgres::connect(deployment.postgres.url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE ROLE ledger_query_chaos LOGIN IN ROLE ledger_query")
        .await
        .expect("query role");
    deployment
        .postgres
        .url()
        .replacen("postgres@", "ledger_query_chaos@", 1)
}
