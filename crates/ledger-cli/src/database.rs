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

#[cfg(test)]
mod tests {
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
