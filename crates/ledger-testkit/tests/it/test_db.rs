use std::env;
use std::time::{Duration, Instant};

use ledger_testkit::{TestDb, unique_name};
use tokio_postgres::NoTls;

/// How long a dropped test database may take to disappear from `pg_database`.
const DROP_WAIT_MS: u64 = 5_000;

async fn database_exists(name: &str) -> bool {
    let server_url = env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let (admin, connection) = tokio_postgres::connect(&server_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) == 1
}

#[tokio::test]
async fn each_test_db_is_its_own_reachable_database() {
    let first = TestDb::new().await;
    let second = TestDb::new().await;
    assert_ne!(first.name(), second.name());
    assert!(first.name().starts_with("ledger_test_"), "{}", first.name());
    assert!(
        first.url().ends_with(&format!("/{}", first.name())),
        "{}",
        first.url()
    );

    for db in [&first, &second] {
        let client = db.client().await;
        let row = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), db.name());
    }
    // Connected by URL too, and the tables of one are not in the other.
    let (client, connection) = tokio_postgres::connect(first.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE only_in_first (id int)")
        .await
        .unwrap();
    let second_client = second.client().await;
    let row = second_client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_first'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
}

#[tokio::test]
async fn dropping_a_test_db_drops_its_database() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    // An open connection must not keep the database alive.
    let _client = db.client().await;
    assert!(database_exists(&name).await);

    drop(db);

    let deadline = Instant::now() + Duration::from_millis(DROP_WAIT_MS);
    while database_exists(&name).await {
        assert!(
            Instant::now() < deadline,
            "database {name} still exists after {DROP_WAIT_MS} ms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn unique_names_differ_and_are_valid_stream_names() {
    let first = unique_name("LEDGER");
    let second = unique_name("LEDGER");
    assert_ne!(first, second);
    for name in [&first, &second] {
        let suffix = name.strip_prefix("LEDGER_").unwrap();
        assert_eq!(suffix.len(), 32, "{name}");
        assert!(
            suffix
                .chars()
                .all(|char| char.is_ascii_digit() || char.is_ascii_uppercase())
        );
    }
}
