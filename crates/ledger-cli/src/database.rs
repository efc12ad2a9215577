//! The one way the command line opens a plain PostgreSQL connection for its own commands
//! (`migrate`, `audit`, `fx`, `notify`, `provider-sync attempts`).

use anyhow::Context;

/// Connects to `database_url` and drives the connection in the background.
///
/// # Errors
/// When PostgreSQL cannot be reached or refuses: the message names the server without the
/// password (`ledger_bus::redact_url`) and says what to check.
pub(crate) async fn connect(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "cannot connect to {}: is PostgreSQL running and DATABASE_URL right?",
                ledger_bus::redact_url(database_url)
            )
        })?;
    tokio::spawn(connection);
    Ok(client)
}

/// The database URL in the file at `path` (named by setting `variable`, e.g.
/// `DATABASE_URL_FILE`), trailing newlines dropped.
///
/// # Errors
/// When the file cannot be read or holds no URL; the message names the setting and the path,
/// never the contents.
pub(crate) fn url_from_file(variable: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {variable} {}", path.display()))?;
    let url = text.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !url.trim().is_empty(),
        "{variable} {} is empty: put the database URL in it",
        path.display()
    );
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_file_is_read_without_its_trailing_newline_and_an_empty_one_refused() {
        let dir = std::env::temp_dir().join(format!("ledger-url-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("database-url");
        std::fs::write(&path, "postgres://ledger:pw@db:5432/ledger\n").expect("write");
        assert_eq!(
            super::url_from_file("DATABASE_URL_FILE", &path).expect("a URL"),
            "postgres://ledger:pw@db:5432/ledger"
        );
        std::fs::write(&path, "\n").expect("write");
        let error = super::url_from_file("DATABASE_URL_FILE", &path).expect_err("empty");
        assert_eq!(
            error.to_string(),
            format!(
                "DATABASE_URL_FILE {} is empty: put the database URL in it",
                path.display()
            )
        );
        let missing = dir.join("missing");
        let error = super::url_from_file("DATABASE_URL_FILE", &missing).expect_err("missing");
        assert_eq!(
            error.to_string(),
            format!("cannot read DATABASE_URL_FILE {}", missing.display())
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    #[tokio::test]
    async fn the_error_names_the_server_without_the_password() {
        // Port 1 on loopback refuses at once.
        let error = super::connect("postgres://ledger:hunter2@127.0.0.1:1/ledger")
            .await
            .expect_err("nothing listens on port 1");
        let text = format!("{error:#}");
        assert!(
            text.contains("postgres://ledger:***@127.0.0.1:1/ledger"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
