use ledger_devenv::services::{database_url_with_name, database_url_with_user};

#[test]
fn database_url_with_name_replaces_only_the_database() {
    let cases = [
        (
            "postgres://postgres@127.0.0.1:5432",
            "postgres://postgres@127.0.0.1:5432/ledger",
        ),
        (
            "postgres://postgres@127.0.0.1:5432/",
            "postgres://postgres@127.0.0.1:5432/ledger",
        ),
        (
            "postgres://u:p%40ss@db:5432/postgres",
            "postgres://u:p%40ss@db:5432/ledger",
        ),
        (
            "postgresql://db/postgres?sslmode=disable",
            "postgresql://db/ledger?sslmode=disable",
        ),
        (
            "postgres://db?connect_timeout=5",
            "postgres://db/ledger?connect_timeout=5",
        ),
        (
            "postgres:///postgres?host=/run/postgresql",
            "postgres:///ledger?host=/run/postgresql",
        ),
        (
            "host=127.0.0.1 user=postgres",
            "host=127.0.0.1 user=postgres dbname='ledger'",
        ),
    ];
    for (base_url, expected) in cases {
        assert_eq!(
            database_url_with_name(base_url, "ledger"),
            expected,
            "base_url {base_url}"
        );
    }
}

#[test]
fn database_url_with_name_encodes_the_name() {
    assert_eq!(
        database_url_with_name("postgres://db", "a b/c"),
        "postgres://db/a%20b%2Fc"
    );
    assert_eq!(
        database_url_with_name("host=db", "it's"),
        "host=db dbname='it\\'s'"
    );
}

#[test]
fn database_url_with_user_swaps_the_user_and_password() {
    assert_eq!(
        database_url_with_user("postgres://postgres:secret@127.0.0.1:5432/demo", "q", "p"),
        "postgres://q:p@127.0.0.1:5432/demo"
    );
}
