//! Issue 16: the ledger on a three-node NATS JetStream cluster. The event stream keeps three
//! replicas; one node is killed with SIGKILL under load and restarted, and nothing
//! acknowledged is lost or doubled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use ledger_bus::{Client, NatsAuth, SendError};
use ledger_devenv::services::{
    PrivateNatsCluster, start_private_nats_cluster, start_private_postgres,
};
use ledger_testkit::commands;
use ledger_testkit::ledger::eventually;
use tokio::sync::Mutex;

use crate::staying_up::Deployment;

/// Nodes of the cluster, and replicas of the event stream.
const NODES: usize = 3;
/// Clients sending commands at the same time.
const CLIENTS: usize = 4;
/// Pause between two commands of one client.
const COMMAND_PAUSE: Duration = Duration::from_millis(20);
/// How long a client keeps sending the same command (same idempotency key) until it is
/// acknowledged.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Every this many commands, a client sends an acknowledged command again, as a client that
/// missed the answer would.
const RESEND_EVERY: usize = 10;

/// What the clients saw: per idempotency key, when it was first acknowledged.
#[derive(Default)]
struct Acknowledged {
    at: BTreeMap<String, Instant>,
    /// Commands never acknowledged within [`RETRY_FOR`] (allowed, but counted).
    given_up: usize,
    /// Resent acknowledged commands whose answer named other events than the first.
    resend_mismatches: Vec<String>,
}

/// Sends registrations `client-n` until `stop` is set, each retried with its idempotency key
/// until acknowledged, and every [`RESEND_EVERY`]th one sent again once acknowledged.
async fn send_load(
    client: Client,
    id: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = format!("cluster-{id}-{n}");
        let command = commands::register(&key, &format!("c{id}-{n}@example.com"));
        let deadline = Instant::now() + RETRY_FOR;
        let answer = loop {
            match client.send(&command).await {
                Ok(answer) => break Some(answer),
                Err(SendError::Unavailable { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(COMMAND_PAUSE).await;
                }
                Err(SendError::Unavailable { .. }) => break None,
                Err(error) => panic!("{key}: {error}"),
            }
        };
        let mut record = acknowledged.lock().await;
        match answer {
            Some(answer) => {
                record.at.entry(key.clone()).or_insert_with(Instant::now);
                drop(record);
                if n % RESEND_EVERY == 0
                    && let Ok(again) = client.send(&command).await
                    && again.events != answer.events
                {
                    acknowledged.lock().await.resend_mismatches.push(key);
                }
            }
            None => record.given_up += 1,
        }
        n += 1;
        tokio::time::sleep(COMMAND_PAUSE).await;
    }
}

/// The index of the node whose connections include one named `name` (from its `/connz`).
async fn node_serving(cluster: &PrivateNatsCluster, name: &str) -> Option<usize> {
    let http = reqwest::Client::new();
    for (index, node) in cluster.nodes().iter().enumerate() {
        let port = node.cluster_node()?.monitoring_port;
        let Ok(answer) = http
            .get(format!("http://127.0.0.1:{port}/connz"))
            .send()
            .await
        else {
            continue;
        };
        let Ok(body) = answer.bytes().await else {
            continue;
        };
        let Ok(connections) = serde_json::from_slice::<serde_json::Value>(&body) else {
            continue;
        };
        let serves = connections["connections"]
            .as_array()
            .is_some_and(|list| list.iter().any(|connection| connection["name"] == name));
        if serves {
            return Some(index);
        }
    }
    None
}

/// Every message of the stream equals the table's event at its sequence.
async fn assert_stream_equals_table(deployment: &Deployment<PrivateNatsCluster>, last: u64) {
    let nats = ledger_bus::connect(deployment.nats.url(), &NatsAuth::default(), "test")
        .await
        .expect("NATS");
    let stream = async_nats::jetstream::new(nats)
        .get_stream(&deployment.bus.stream_name)
        .await
        .expect("the event stream");
    let store = ledger_store::Store::connect(deployment.postgres.url()).expect("store");
    let table: Vec<_> = store
        .read_all(1, last)
        .try_collect()
        .await
        .expect("the event table");
    assert_eq!(table.len() as u64, last);
    for event in table {
        let message = stream
            .get_raw_message(event.global_position)
            .await
            .unwrap_or_else(|error| panic!("message {}: {error}", event.global_position));
        let published =
            ledger_bus::decode_recorded_event(&message.payload).expect("an event message");
        assert_eq!(
            published, event,
            "message {} equals the table",
            event.global_position
        );
    }
}

/// Three NATS nodes, the stream with three replicas, a writer, its standby and the customers
/// projector; four clients append registrations (retrying with the same idempotency keys, and
/// resending some acknowledged ones) while the node serving the writer is killed with SIGKILL,
/// appending goes on, and the node comes back. Every acknowledged command is stored once, the
/// positions have no gap, the stream equals the table, the projection equals a rebuild, and the
/// processes reconnected by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_a_node_under_load_and_nothing_acknowledged_is_lost() {
    let postgres = start_private_postgres().await.expect("private PostgreSQL");
    let cluster = start_private_nats_cluster(NODES)
        .await
        .expect("a private NATS cluster");
    let mut deployment = Deployment::start_with(postgres, cluster).await;
    let replicas = NODES.to_string();
    let writer_args = ["run", "writer", "--stream-replicas", replicas.as_str()];
    deployment.spawn("writer", &writer_args);
    deployment
        .wait_for_log("writer", "writer is the leader")
        .await;
    // Before the standby connects under the same name.
    let victim = node_serving(&deployment.nats, "ledger-writer")
        .await
        .expect("a node serves the writer");
    deployment.spawn("standby", &writer_args);
    deployment.spawn("projector", &["run", "projector", "customers"]);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut load = Vec::new();
    for id in 0..CLIENTS {
        let client = deployment.client().await;
        load.push(tokio::spawn(send_load(
            client,
            id,
            stop.clone(),
            acknowledged.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let nats = ledger_bus::connect(deployment.nats.url(), &NatsAuth::default(), "test")
        .await
        .expect("NATS");
    let mut stream = async_nats::jetstream::new(nats)
        .get_stream(&deployment.bus.stream_name)
        .await
        .expect("the writer created the stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, NODES, "one copy per node");
    let stream_leader = info.cluster.clone().and_then(|cluster| cluster.leader);
    let victim_name = deployment.nats.nodes()[victim]
        .cluster_node()
        .expect("a cluster node")
        .server_name
        .clone();
    let acked_before = acknowledged.lock().await.at.len();
    let killed_at = Instant::now();
    deployment.nats.node_mut(victim).stop_server();
    tokio::time::sleep(Duration::from_secs(6)).await;
    deployment
        .nats
        .node_mut(victim)
        .start_server()
        .await
        .expect("the node back");
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in load {
        client.await.expect("a client task");
    }

    let acknowledged = Arc::into_inner(acknowledged)
        .expect("the clients are done")
        .into_inner();
    // The longest time without an acknowledgement from the kill on.
    let mut acks_after_kill: Vec<Instant> = acknowledged
        .at
        .values()
        .copied()
        .filter(|at| *at > killed_at)
        .collect();
    acks_after_kill.sort();
    let longest_stall = std::iter::once(killed_at)
        .chain(acks_after_kill.iter().copied())
        .zip(acks_after_kill.iter().copied())
        .map(|(earlier, later)| later.duration_since(earlier))
        .max();
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    for key in acknowledged.at.keys() {
        let stored = deployment
            .query_i64(&format!(
                "SELECT count(*) FROM customer_payment_events WHERE idempotency_key = '{key}'"
            ))
            .await
            .expect("a count");
        match stored {
            0 => lost.push(key.clone()),
            1 => {}
            _ => duplicated.push(key.clone()),
        }
    }
    let recovery = longest_stall.map_or("never".to_owned(), |time| {
        format!("{} ms", time.as_millis())
    });
    eprintln!(
        "\ncluster test: {NODES} nodes, stream replicas {NODES}, {CLIENTS} clients; killed \
         {victim_name} (served the writer; stream leader was {})\n\
         | acknowledged | before kill | given up | lost | duplicated | resend mismatches | \
         recovery (longest time without an ack after the kill) |\n\
         |---|---|---|---|---|---|---|\n\
         | {} | {acked_before} | {} | {} | {} | {} | {recovery} |\n",
        stream_leader.as_deref().unwrap_or("unknown"),
        acknowledged.at.len(),
        acknowledged.given_up,
        lost.len(),
        duplicated.len(),
        acknowledged.resend_mismatches.len(),
    );
    // How the writer lived through it, for the reader of the table.
    for line in deployment
        .log("writer")
        .lines()
        .filter(|line| line.contains("NATS") || line.contains("JetStream") || line.contains("WARN"))
    {
        eprintln!("writer: {line}");
    }
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(duplicated.is_empty(), "stored twice: {duplicated:?}");
    assert!(
        acknowledged.resend_mismatches.is_empty(),
        "a resent command was answered with other events: {:?}",
        acknowledged.resend_mismatches
    );
    assert!(
        acknowledged.at.len() > acked_before,
        "commands were acknowledged after the kill"
    );
    assert!(
        eventually(20_000, || async {
            deployment.log("writer").contains("NATS is back; connected")
        })
        .await,
        "the writer reconnected by itself; its log:\n{}",
        deployment.log("writer")
    );

    let keys: Vec<String> = acknowledged.at.into_keys().collect();
    // Stored once, no gap, stream head == table head, projection caught up and equals a
    // rebuild, and no process exited.
    let last = {
        deployment.assert_intact(&keys).await;
        deployment
            .query_i64("SELECT max(global_position) FROM customer_payment_events")
            .await
            .expect("the last position")
    };
    assert_stream_equals_table(&deployment, u64::try_from(last).expect("a position")).await;
}
