//! The projector's schema and its checkpoint, both inside the projector's own schema.

use ledger_store::{GENESIS_HASH, Hash, HeadCopy};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Transaction};

use crate::{Projector, ProjectorError};

/// Where the projector stands: the last global position its tables reflect, and that event's
/// chain hash (the next event's `prev_hash` must equal it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) global_position: u64,
    pub(crate) hash: Hash,
}

/// Every projector checkpoint in the database (each schema with a `projector_checkpoint`
/// table), in schema order, as a copy of the log's head named `checkpoint <schema>`: for
/// `ledger audit verify` to compare with the event table.
pub async fn checkpoints(client: &Client) -> Result<Vec<HeadCopy>, ProjectorError> {
    let schemas = client
        .query(
            "SELECT table_schema FROM information_schema.tables \
             WHERE table_name = 'projector_checkpoint' ORDER BY table_schema",
            &[],
        )
        .await?;
    let mut copies = Vec::with_capacity(schemas.len());
    for row in schemas {
        let schema: String = row.try_get(0)?;
        let checkpoint = read_schema(client, &schema).await?;
        copies.push(HeadCopy {
            name: format!("checkpoint {schema}"),
            global_position: checkpoint.global_position,
            hash: checkpoint.hash,
        });
    }
    Ok(copies)
}

pub(crate) async fn read(
    client: &Client,
    projector: &impl Projector,
) -> Result<Checkpoint, ProjectorError> {
    read_schema(client, projector.name()).await
}

/// The checkpoint in `schema`.
async fn read_schema(client: &Client, schema: &str) -> Result<Checkpoint, ProjectorError> {
    let row = client
        .query_one(
            &format!(
                "SELECT global_position, hash FROM \"{}\".projector_checkpoint",
                schema.replace('"', "\"\"")
            ),
            &[],
        )
        .await?;
    let global_position = u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
    let hash: &[u8] = row.try_get(1)?;
    let hash = hash.try_into().map_err(|_| ProjectorError::CorruptEvent {
        global_position,
        reason: format!("the checkpoint of {schema} has a hash that is not 32 bytes"),
    })?;
    Ok(Checkpoint {
        global_position,
        hash,
    })
}

/// Creates the schema if it is missing, or drops and recreates it if it was made for another
/// schema version or from other DDL (a projector's settings are part of its DDL), or if
/// `rebuild` is set. Returns true when the schema was (re)created.
///
/// The query service's role `ledger_query` is granted read access to the new schema when
/// [`Projector::readable_by_query`] says so.
pub(crate) async fn ensure_schema(
    client: &mut Client,
    projector: &impl Projector,
    rebuild: bool,
) -> Result<bool, ProjectorError> {
    let name = projector.name();
    let transaction = client.transaction().await?;
    let exists: bool = transaction
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{name}.projector_checkpoint")],
        )
        .await?
        .try_get(0)?;
    let schema_sql = projector.schema_sql();
    let grants = if projector.readable_by_query() {
        format!(
            "GRANT USAGE ON SCHEMA {name} TO ledger_query; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {name} TO ledger_query;"
        )
    } else {
        String::new()
    };
    let schema_sha256 = Sha256::digest(schema_sql.as_bytes()).to_vec();
    let stored: Option<(i32, Vec<u8>)> = if exists {
        let row = transaction
            .query_one(
                &format!("SELECT schema_version, schema_sha256 FROM {name}.projector_checkpoint"),
                &[],
            )
            .await?;
        Some((row.try_get(0)?, row.try_get(1)?))
    } else {
        None
    };
    let current = (projector.schema_version(), schema_sha256);
    if !rebuild && stored.as_ref() == Some(&current) {
        transaction.commit().await?;
        return Ok(false);
    }
    tracing::info!(
        projector = name,
        stored_version = ?stored.as_ref().map(|(version, _)| version),
        schema_version = current.0,
        ddl_changed = stored.as_ref().is_some_and(|(_, sha256)| *sha256 != current.1),
        rebuild,
        "creating the projector's schema; it will be rebuilt from the event table"
    );
    transaction
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; \
             SET LOCAL search_path TO {name}; {schema_sql} \
             CREATE TABLE {name}.projector_checkpoint ( \
                 singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), \
                 global_position bigint NOT NULL, \
                 hash bytea NOT NULL, \
                 schema_version integer NOT NULL, \
                 schema_sha256 bytea NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now()); {grants}"
        ))
        .await?;
    transaction
        .execute(
            &format!(
                "INSERT INTO {name}.projector_checkpoint \
                 (global_position, hash, schema_version, schema_sha256) VALUES (0, $1, $2, $3)"
            ),
            &[&&GENESIS_HASH[..], &current.0, &current.1],
        )
        .await?;
    transaction.commit().await?;
    Ok(true)
}

/// Moves the checkpoint from `from` to `to` in the batch's transaction; fails if another
/// instance moved it meanwhile.
pub(crate) async fn advance(
    transaction: &Transaction<'_>,
    projector: &impl Projector,
    from: u64,
    to: Checkpoint,
) -> Result<(), ProjectorError> {
    let position = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let updated = transaction
        .execute(
            &format!(
                "UPDATE {}.projector_checkpoint SET global_position = $2, hash = $3, \
                 updated_at = now() WHERE global_position = $1",
                projector.name()
            ),
            &[
                &position(from),
                &position(to.global_position),
                &&to.hash[..],
            ],
        )
        .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(ProjectorError::CheckpointMoved {
            projector: projector.name(),
            expected: from,
        })
    }
}
