//! One instance per projector: a PostgreSQL advisory lock per projector name, held on a
//! dedicated connection for as long as the projector runs (docs/decisions/0020-staying-up.md).

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::StoreError;

/// Advisory lock namespace of the projectors ("LEDP"); the second key is `hashtext(name)`.
const PROJECTOR_LOCK_NAMESPACE: i32 = 0x4c45_4450;
/// How often a holder checks that its lock connection is still open.
const LOCK_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The lock of one projector, held until [`ProjectorLock::release`], or until this is dropped
/// or its connection closes (PostgreSQL then frees it a moment later, once it sees the session
/// end).
#[derive(Debug)]
pub struct ProjectorLock {
    client: Client,
    projector: String,
}

impl ProjectorLock {
    /// Frees the lock and returns once PostgreSQL has freed it, so that an instance started
    /// right after this projector stops (a rebuild, which refuses to run next to a holder) finds
    /// it free. Dropping the lock frees it too, but only when the server notices the session end.
    pub async fn release(self) {
        if let Err(error) = self
            .client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&PROJECTOR_LOCK_NAMESPACE, &self.projector],
            )
            .await
        {
            // The session is gone, and the lock with it.
            tracing::debug!(%error, projector = self.projector, "projector lock released with its connection");
        }
    }

    /// Completes once the lock's connection is gone (a PostgreSQL restart): another instance
    /// may take the lock, so this one must stop applying events.
    pub async fn lost(&self) {
        while !self.client.is_closed() {
            tokio::time::sleep(LOCK_CHECK_INTERVAL).await;
        }
    }
}

/// Who holds a projector's lock, as its `application_name` says (`ledger projector <name>, pid
/// <pid> on <host>`) with the client address PostgreSQL sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder(pub String);

impl std::fmt::Display for LockHolder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Opens the lock's dedicated connection, named after this process so that others can say
/// who holds it.
async fn lock_connection(
    config: &tokio_postgres::Config,
    projector: &str,
) -> Result<Client, StoreError> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|host| host.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned());
    let mut config = config.clone();
    config.application_name(format!(
        "ledger projector {projector}, pid {} on {host}",
        std::process::id()
    ));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|error| StoreError::connecting(&config, &error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "projector lock connection closed");
        }
    });
    Ok(client)
}

async fn try_lock(client: &Client, projector: &str) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&PROJECTOR_LOCK_NAMESPACE, &projector],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn holder(client: &Client, projector: &str) -> Result<LockHolder, StoreError> {
    let row = client
        .query_opt(
            "SELECT a.application_name, coalesce(host(a.client_addr), 'a local socket') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
             AND l.classid = $1::int8::oid AND l.objid = (hashtext($2)::int8 & 4294967295)::oid",
            &[&i64::from(PROJECTOR_LOCK_NAMESPACE), &projector],
        )
        .await?;
    Ok(LockHolder(match row {
        Some(row) => {
            let name: Option<String> = row.try_get(0)?;
            let address: String = row.try_get(1)?;
            format!(
                "{} (connected from {address})",
                name.filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "an unnamed client".to_owned())
            )
        }
        None => "another process (it has just let go)".to_owned(),
    }))
}

/// Takes projector `projector`'s lock if no one holds it; otherwise says who does.
pub(crate) async fn try_acquire(
    config: &tokio_postgres::Config,
    projector: &str,
) -> Result<Result<ProjectorLock, LockHolder>, StoreError> {
    let client = lock_connection(config, projector).await?;
    if try_lock(&client, projector).await? {
        return Ok(Ok(ProjectorLock {
            client,
            projector: projector.to_owned(),
        }));
    }
    Ok(Err(holder(&client, projector).await?))
}

/// Takes projector `projector`'s lock, waiting as a standby (logged once, with the holder) as
/// long as another instance holds it.
pub(crate) async fn acquire(
    config: &tokio_postgres::Config,
    projector: &str,
) -> Result<ProjectorLock, StoreError> {
    let client = lock_connection(config, projector).await?;
    if !try_lock(&client, projector).await? {
        let holder = holder(&client, projector).await?;
        tracing::info!(
            projector,
            %holder,
            "another instance runs this projector; waiting as a standby until it stops"
        );
        client
            .execute(
                "SELECT pg_advisory_lock($1, hashtext($2))",
                &[&PROJECTOR_LOCK_NAMESPACE, &projector],
            )
            .await?;
        tracing::info!(projector, "took over the projector");
    }
    Ok(ProjectorLock {
        client,
        projector: projector.to_owned(),
    })
}
