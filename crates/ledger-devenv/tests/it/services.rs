use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use ledger_devenv::services::{
    ServicesError, ensure, find_nats_server, find_postgres_bin_dir, start_private_nats,
    start_private_postgres,
};
use tokio_postgres::NoTls;

/// How long to wait for the INFO line a NATS server sends on connect.
const NATS_INFO_TIMEOUT_MS: u64 = 5_000;

fn port_answers(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first line a NATS server sends on connect, `INFO {...}`.
fn nats_info(address: &str) -> String {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(NATS_INFO_TIMEOUT_MS)))
        .unwrap();
    let mut info = String::new();
    BufReader::new(stream).read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
    info
}

/// Whichever servers `ensure` picks (configured, shared or private), they answer.
#[tokio::test]
async fn ensured_services_answer() {
    let services = ensure().await.unwrap();

    let (client, connection) = tokio_postgres::connect(services.database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    let address = services.nats_url().strip_prefix("nats://").unwrap();
    assert!(nats_info(address).contains(r#""jetstream":true"#));
}

#[tokio::test]
async fn private_postgres_serves_queries_with_deploy_settings_and_is_removed_on_drop() {
    let started_at = Instant::now();
    let postgres = start_private_postgres().await.unwrap();
    eprintln!(
        "private PostgreSQL started in {} ms",
        started_at.elapsed().as_millis()
    );
    let port = postgres.port();
    let instance_dir = postgres.instance_dir().to_owned();
    assert_ne!(port, 5432, "must not take the shared server's port");
    assert!(instance_dir.join("data").is_dir());

    let (client, connection) = tokio_postgres::connect(postgres.url(), NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // deploy/postgresql.conf is applied.
    let shared_buffers: String = client
        .query_one("SHOW shared_buffers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shared_buffers, "256MB");
    drop(client);
    connection.await.unwrap().unwrap();

    let stopping_at = Instant::now();
    drop(postgres);
    eprintln!(
        "private PostgreSQL stopped in {} ms",
        stopping_at.elapsed().as_millis()
    );
    assert!(!port_answers(port), "port {port} still answers");
    assert!(
        !instance_dir.exists(),
        "{} still exists",
        instance_dir.display()
    );
}

#[tokio::test]
async fn private_nats_has_jetstream_and_is_removed_on_drop() {
    let started_at = Instant::now();
    let nats = start_private_nats().await.unwrap();
    eprintln!(
        "private nats-server started in {} ms",
        started_at.elapsed().as_millis()
    );
    let port = nats.port();
    let instance_dir = nats.instance_dir().to_owned();
    assert_ne!(port, 4222, "must not take the shared server's port");
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));

    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(NATS_INFO_TIMEOUT_MS)))
        .unwrap();
    let mut info = String::new();
    BufReader::new(stream).read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains(r#""jetstream":true"#), "{info}");
    assert!(info.contains(r#""max_payload":1048576"#), "{info}");

    drop(nats);
    assert!(!port_answers(port), "port {port} still answers");
    assert!(
        !instance_dir.exists(),
        "{} still exists",
        instance_dir.display()
    );
}

#[test]
fn missing_binaries_are_typed_errors() {
    assert!(matches!(
        find_postgres_bin_dir(&[]),
        Err(ServicesError::PostgresNotInstalled)
    ));
    assert!(matches!(
        find_nats_server(&[]),
        Err(ServicesError::NatsNotInstalled)
    ));
}
