//! The single writer: advisory lock, group append, positions, hash chain.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use crate::ADVISORY_LOCK_NAMESPACE;
use crate::error::{AppendError, AppendRejection, StoreError};
use crate::event::{
    AppendRequest, Committed, ExpectedVersion, RecordedEvent, RequestFingerprint, same_request,
};
use crate::hash::{GENESIS_HASH, Hash, chain_hash, truncate_to_micros};
use crate::inbox::{INSERT_INBOX, InboxOutcome, InboxWrite};
use crate::read::{self, position_to_sql};

/// Bytes an idempotency key, account id or event type may have (the table's CHECKs agree).
const TEXT_BYTES_MAX: usize = 255;
/// Events one append request may carry.
const REQUEST_EVENTS_MAX: usize = 1_000;

/// All events of a batch in one statement: one array per column, one round trip.
const INSERT_EVENTS: &str = "INSERT INTO customer_payment_events (global_position, event_id, \
     stream_id, stream_version, event_type, account_id, payment_provider_type, status, issuer, \
     occurred_at, recorded_at, idempotency_key, correlation_id, causation_id, schema_version, \
     payload, prev_hash, hash, request_fingerprint) \
     SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, $11, c12, c13, c14, c15, c16, c17, c18, c19 \
     FROM unnest($1::int8[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::timestamptz[], $12::text[], $13::uuid[], \
     $14::uuid[], $15::int2[], $16::bytea[], $17::bytea[], $18::bytea[], $19::bytea[]) \
     AS t(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c12, c13, c14, c15, c16, c17, c18, c19)";

/// The idempotency keys of `$1` that were used, with the position and fingerprint of one of
/// their events. One index probe per key: a plan that cannot turn into a sequential scan when
/// the statistics of a fast-growing table lag behind. Every event of a request carries its
/// fingerprint, so any one of them answers.
pub(crate) const STORED_KEYS_SQL: &str = "SELECT k.key, e.global_position, e.request_fingerprint \
     FROM unnest($1::text[]) AS k(key) CROSS JOIN LATERAL \
     (SELECT global_position, request_fingerprint FROM customer_payment_events \
     WHERE idempotency_key = k.key LIMIT 1) AS e";

/// The owners of the unique keys of `$1` that are owned: one primary-key probe per key, for
/// the same reason as [`STORED_KEYS_SQL`] (the `LIMIT` keeps the planner from turning the probes
/// into a join; `unique_key = ANY($1)` cost milliseconds per batch in `ledger bench sync`).
pub(crate) const KEY_OWNERS_SQL: &str = "SELECT u.unique_key, u.stream_id \
     FROM unnest($1::text[]) AS k(key) CROSS JOIN LATERAL \
     (SELECT unique_key, stream_id FROM customer_unique_keys WHERE unique_key = k.key LIMIT 1) \
     AS u";

/// The only way to append events. Holds the writer advisory lock of its partition on a
/// dedicated connection and appends on that connection, so no other writer can interleave.
/// Share it behind an `Arc`: appends are serialised internally.
pub struct Writer {
    inner: Mutex<WriterInner>,
    partition: i32,
}

struct WriterInner {
    client: Client,
    statements: Statements,
    /// The head of the log as this writer last committed it; `None` after an error, when the
    /// outcome of the last transaction is unknown and the head must be read again.
    head: Option<Head>,
}

/// The writer's statements, prepared once on its connection.
struct Statements {
    head: Statement,
    stored_keys: Statement,
    stream_versions: Statement,
    key_owners: Statement,
    insert_events: Statement,
    delete_keys: Statement,
    insert_keys: Statement,
    insert_inbox: Statement,
    insert_objects: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, StoreError> {
        Ok(Statements {
            head: client
                .prepare(
                    "SELECT global_position, hash FROM customer_payment_events \
                     ORDER BY global_position DESC LIMIT 1",
                )
                .await?,
            stored_keys: client.prepare(STORED_KEYS_SQL).await?,
            // One backward index probe per stream, however long the stream is.
            stream_versions: client
                .prepare(
                    "SELECT s.stream_id, (SELECT max(e.stream_version) FROM customer_payment_events e \
                     WHERE e.stream_id = s.stream_id) FROM unnest($1::uuid[]) AS s(stream_id)",
                )
                .await?,
            key_owners: client.prepare(KEY_OWNERS_SQL).await?,
            insert_events: client.prepare(INSERT_EVENTS).await?,
            delete_keys: client
                .prepare("DELETE FROM customer_unique_keys WHERE unique_key = ANY($1)")
                .await?,
            insert_keys: client
                .prepare(
                    "INSERT INTO customer_unique_keys (unique_key, stream_id, claimed_at) \
                     SELECT key, stream_id, $3 FROM unnest($1::text[], $2::uuid[]) AS t(key, stream_id)",
                )
                .await?,
            insert_inbox: client.prepare(INSERT_INBOX).await?,
            // The first holder keeps an object (`AppendRequest::provider_objects`).
            insert_objects: client
                .prepare(
                    "INSERT INTO provider_objects (object_key, customer_id, recorded_at) \
                     SELECT key, customer_id, $3 \
                     FROM unnest($1::text[], $2::uuid[]) AS t(key, customer_id) \
                     ON CONFLICT (object_key) DO NOTHING",
                )
                .await?,
        })
    }
}

#[derive(Clone, Copy)]
struct Head {
    global_position: u64,
    hash: Hash,
}

impl fmt::Debug for Writer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Writer")
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) async fn acquire(
        config: &tokio_postgres::Config,
        partition: i32,
    ) -> Result<Writer, StoreError> {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|error| StoreError::connecting(config, &error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "writer connection closed");
            }
        });
        tracing::info!(partition, "waiting for the writer lock");
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&ADVISORY_LOCK_NAMESPACE, &partition],
            )
            .await?;
        tracing::info!(partition, "holding the writer lock");
        let statements = Statements::prepare(&client).await?;
        Ok(Writer {
            inner: Mutex::new(WriterInner {
                client,
                statements,
                head: None,
            }),
            partition,
        })
    }

    /// True once the lock connection is gone: this writer can no longer append; acquire a new
    /// one.
    pub fn is_closed(&self) -> bool {
        self.inner
            .try_lock()
            .map(|inner| inner.client.is_closed())
            .unwrap_or(false)
    }

    /// Appends one request.
    pub async fn append_one(&self, request: AppendRequest) -> Result<Committed, AppendError> {
        let mut outcomes = self.append(vec![request]).await?;
        match outcomes.pop() {
            Some(outcome) => Ok(outcome?),
            None => Err(StoreError::Corrupt {
                global_position: 0,
                reason: "append returned no outcome".to_owned(),
            }
            .into()),
        }
    }

    /// Appends a batch of requests, across any streams, in one transaction. Requests are taken
    /// in order: a later request sees the versions and unique keys of the earlier ones. Each
    /// request gets its own outcome; a rejected request does not affect the others. An `Err`
    /// means nothing of the batch was appended.
    pub async fn append(
        &self,
        batch: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Committed, AppendRejection>>, StoreError> {
        self.append_with_inbox(batch, Vec::new()).await
    }

    /// [`append`](Self::append), and in the same transaction the provider inbox rows `inbox`
    /// (`provider_inbox`), each with the global positions of the events its requests (indexes
    /// into `batch`) appended. The rows are inserted whatever their requests' outcomes; an
    /// `Err` means nothing of the batch, rows included, was recorded.
    pub async fn append_with_inbox(
        &self,
        batch: Vec<AppendRequest>,
        inbox: Vec<InboxWrite>,
    ) -> Result<Vec<Result<Committed, AppendRejection>>, StoreError> {
        let mut inner = self.inner.lock().await;
        let WriterInner {
            client,
            statements,
            head,
        } = &mut *inner;
        let current_head = match *head {
            Some(current_head) => current_head,
            None => read_head(client, statements).await?,
        };
        // Until the commit is confirmed the head is unknown.
        *head = None;
        let recorded_at = truncate_to_micros(OffsetDateTime::now_utc());
        let started = Instant::now();
        let requests = batch.len();
        let (outcomes, new_head) =
            match append_in(client, statements, current_head, recorded_at, batch, &inbox).await {
                Ok(appended) => appended,
                Err(error) => {
                    // Leave no transaction open on the connection (a no-op when none is).
                    if let Err(rollback) = client.batch_execute("ROLLBACK").await {
                        tracing::warn!(%rollback, "rollback after a failed append failed");
                    }
                    return Err(error);
                }
            };
        *head = Some(new_head);
        tracing::debug!(
            requests,
            events = new_head.global_position - current_head.global_position,
            global_position = new_head.global_position,
            append_us = started.elapsed().as_micros(),
            "appended batch"
        );
        Ok(outcomes)
    }

    /// One step of the writer's pass over the events recorded before it kept
    /// `provider_objects` (migration V15, [`Store::provider_objects_fill_from`]), in one
    /// transaction on the lock's connection (so a writer that lost the lock cannot commit it):
    /// records that `held` customers hold the objects (`<provider>:<kind>:<id>` keys, see
    /// [`AppendRequest::provider_objects`]; in position order: the first holder keeps an
    /// object, as when appending), recorded now, then resumes the pass at `resume_from` (never
    /// moving it back), or ends it (`None`). Returns the objects it recorded (not those already
    /// held).
    ///
    /// [`Store::provider_objects_fill_from`]: crate::Store::provider_objects_fill_from
    /// [`AppendRequest::provider_objects`]: crate::AppendRequest::provider_objects
    pub async fn fill_provider_objects(
        &self,
        held: &[(String, Uuid)],
        resume_from: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut keys: Vec<&str> = Vec::with_capacity(held.len());
        let mut holders = Vec::with_capacity(held.len());
        let mut seen = HashSet::new();
        for (key, holder) in held.iter().filter(|(key, _)| seen.insert(key)) {
            keys.push(key);
            holders.push(*holder);
        }
        let recorded_at = truncate_to_micros(OffsetDateTime::now_utc());
        let inner = self.inner.lock().await;
        let WriterInner {
            client, statements, ..
        } = &*inner;
        let step = async {
            client.batch_execute("BEGIN").await?;
            let recorded = if keys.is_empty() {
                0
            } else {
                client
                    .execute(&statements.insert_objects, &[&keys, &holders, &recorded_at])
                    .await?
            };
            match resume_from {
                Some(position) => {
                    client
                        .execute(
                            "UPDATE provider_objects_fill \
                             SET from_position = greatest(from_position, $1)",
                            &[&crate::read::position_to_sql(position)?],
                        )
                        .await?
                }
                None => {
                    client
                        .execute("DELETE FROM provider_objects_fill", &[])
                        .await?
                }
            };
            client.batch_execute("COMMIT").await?;
            Ok(recorded)
        };
        let outcome: Result<u64, StoreError> = step.await;
        if outcome.is_err() {
            // Leave no transaction open on the connection (a no-op when none is).
            if let Err(rollback) = client.batch_execute("ROLLBACK").await {
                tracing::warn!(%rollback, "rollback after a failed step of the pass failed");
            }
        }
        outcome
    }
}

async fn read_head(client: &Client, statements: &Statements) -> Result<Head, StoreError> {
    let Some(row) = client.query_opt(&statements.head, &[]).await? else {
        return Ok(Head {
            global_position: 0,
            hash: GENESIS_HASH,
        });
    };
    let global_position = read::position_from_sql(row.try_get(0)?)?;
    let hash_bytes: &[u8] = row.try_get(1)?;
    let hash = hash_bytes.try_into().map_err(|_| StoreError::Corrupt {
        global_position,
        reason: "hash is not 32 bytes".to_owned(),
    })?;
    Ok(Head {
        global_position,
        hash,
    })
}

/// What one request of the batch became while the batch is being planned.
enum Planned {
    Rejected(AppendRejection),
    /// Appended by this batch.
    Appended(Vec<RecordedEvent>),
    /// Repeated key, first appended by an earlier batch.
    StoredDuplicate,
    /// Repeated key, first appended by an earlier request of this batch.
    BatchDuplicate {
        request_index: usize,
    },
}

/// What the database said about the batch's keys and streams before planning.
struct Lookups {
    /// The keys already used, with the fingerprint of the request that used them.
    stored_keys: HashMap<String, Option<RequestFingerprint>>,
    versions: HashMap<Uuid, u64>,
    key_owners: HashMap<String, Uuid>,
}

async fn look_up(
    client: &Client,
    statements: &Statements,
    batch: &[AppendRequest],
) -> Result<Lookups, StoreError> {
    let keys: Vec<&str> = batch.iter().map(|r| r.idempotency_key.as_str()).collect();
    let stream_ids: Vec<Uuid> = batch
        .iter()
        .map(|r| r.stream_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let unique_keys: Vec<String> = batch
        .iter()
        .flat_map(|r| r.unique_keys.claims.iter().chain(&r.unique_keys.releases))
        .map(|key| key.storage_key())
        .collect();
    let key_owners = async {
        if unique_keys.is_empty() {
            return Ok(Vec::new());
        }
        client.query(&statements.key_owners, &[&unique_keys]).await
    };
    let keys_parameter: [&(dyn ToSql + Sync); 1] = [&keys];
    let streams_parameter: [&(dyn ToSql + Sync); 1] = [&stream_ids];
    // Pipelined on the one connection.
    let (stored_keys, versions, key_owners) = tokio::try_join!(
        client.query(&statements.stored_keys, &keys_parameter),
        client.query(&statements.stream_versions, &streams_parameter),
        key_owners,
    )?;
    let mut lookups = Lookups {
        stored_keys: HashMap::with_capacity(stored_keys.len()),
        versions: HashMap::with_capacity(versions.len()),
        key_owners: HashMap::with_capacity(key_owners.len()),
    };
    for row in stored_keys {
        let global_position = read::position_from_sql(row.try_get(1)?)?;
        let fingerprint = read::fingerprint_from_sql(global_position, row.try_get(2)?)?;
        lookups.stored_keys.insert(row.try_get(0)?, fingerprint);
    }
    for row in versions {
        if let Some(version) = row.try_get::<_, Option<i64>>(1)? {
            let version = read::position_from_sql(version)?;
            lookups.versions.insert(row.try_get(0)?, version);
        }
    }
    for row in key_owners {
        lookups.key_owners.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(lookups)
}

/// One batch in two pipelined flights: BEGIN with the look-ups, then (after planning in memory)
/// the inserts, the unique-key changes and COMMIT. Every statement of a flight is sent before
/// the first answer is awaited, in order, on the writer's one connection.
async fn append_in(
    client: &Client,
    statements: &Statements,
    mut head: Head,
    recorded_at: OffsetDateTime,
    batch: Vec<AppendRequest>,
    inbox: &[InboxWrite],
) -> Result<(Vec<Result<Committed, AppendRejection>>, Head), StoreError> {
    let begin = async { Ok(client.batch_execute("BEGIN").await?) };
    let ((), lookups) = tokio::try_join!(begin, look_up(client, statements, &batch))?;
    let Lookups {
        stored_keys,
        mut versions,
        key_owners: initial_owners,
    } = lookups;
    // Owners changed by this batch so far (`None`: released).
    let mut owners: HashMap<String, Option<Uuid>> = HashMap::new();
    let owner_of = |owners: &HashMap<String, Option<Uuid>>, key: &str| match owners.get(key) {
        Some(owner) => *owner,
        None => initial_owners.get(key).copied(),
    };
    let mut batch_keys: HashMap<&str, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    let mut hash_buffer = Vec::new();
    for (request_index, request) in batch.iter().enumerate() {
        let reused = || {
            Planned::Rejected(AppendRejection::IdempotencyKeyReused {
                idempotency_key: request.idempotency_key.clone(),
            })
        };
        if let Some(stored) = stored_keys.get(&request.idempotency_key) {
            plans.push(if same_request(*stored, &request.request_fingerprint) {
                Planned::StoredDuplicate
            } else {
                reused()
            });
            continue;
        }
        if let Some(&first_index) = batch_keys.get(request.idempotency_key.as_str()) {
            let same_request =
                batch[first_index].request_fingerprint == request.request_fingerprint;
            plans.push(if same_request {
                Planned::BatchDuplicate {
                    request_index: first_index,
                }
            } else {
                reused()
            });
            continue;
        }
        if let Err(rejection) = validate(request) {
            plans.push(Planned::Rejected(rejection));
            continue;
        }
        let actual = versions.get(&request.stream_id).copied().unwrap_or(0);
        if let ExpectedVersion::Exact(expected) = request.expected_version
            && expected != actual
        {
            plans.push(Planned::Rejected(AppendRejection::Conflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            }));
            continue;
        }
        let taken = request.unique_keys.claims.iter().find_map(|key| {
            let storage_key = key.storage_key();
            match owner_of(&owners, &storage_key) {
                Some(owner) if owner != request.stream_id => Some((storage_key, owner)),
                _ => None,
            }
        });
        if let Some((unique_key, owner)) = taken {
            plans.push(Planned::Rejected(AppendRejection::UniqueKeyTaken {
                unique_key,
                owner,
            }));
            continue;
        }
        for key in &request.unique_keys.releases {
            let storage_key = key.storage_key();
            if owner_of(&owners, &storage_key) == Some(request.stream_id) {
                owners.insert(storage_key, None);
            }
        }
        for key in &request.unique_keys.claims {
            owners.insert(key.storage_key(), Some(request.stream_id));
        }

        let mut stream_version = actual;
        let mut appended = Vec::with_capacity(request.events.len());
        for event in &request.events {
            head.global_position += 1;
            stream_version += 1;
            let mut recorded = RecordedEvent {
                global_position: head.global_position,
                stream_id: request.stream_id,
                stream_version,
                recorded_at,
                idempotency_key: request.idempotency_key.clone(),
                prev_hash: head.hash,
                hash: GENESIS_HASH,
                event: event.clone(),
            };
            recorded.event.occurred_at = truncate_to_micros(event.occurred_at);
            recorded.hash = chain_hash(&head.hash, &recorded, &mut hash_buffer);
            head.hash = recorded.hash;
            appended.push(recorded);
        }
        versions.insert(request.stream_id, stream_version);
        batch_keys.insert(&request.idempotency_key, request_index);
        plans.push(Planned::Appended(appended));
    }

    let appended: Vec<(&RecordedEvent, RequestFingerprint)> = batch
        .iter()
        .zip(&plans)
        .flat_map(|(request, plan)| {
            let events = match plan {
                Planned::Appended(events) => events.as_slice(),
                _ => &[],
            };
            events
                .iter()
                .map(|event| (event, request.request_fingerprint))
        })
        .collect();
    let key_changes = UniqueKeyWrites::new(&initial_owners, &owners);
    let commit = async { Ok(client.batch_execute("COMMIT").await?) };
    tokio::try_join!(
        write_events(client, statements, &appended, recorded_at),
        key_changes.delete(client, statements),
        key_changes.insert(client, statements, recorded_at),
        write_inbox(client, statements, inbox, &plans, recorded_at),
        write_objects(client, statements, &batch, inbox, &plans, recorded_at),
        commit,
    )?;
    drop(appended);

    let mut outcomes: Vec<Result<Committed, AppendRejection>> = Vec::with_capacity(plans.len());
    for (request, plan) in batch.iter().zip(plans) {
        let outcome = match plan {
            Planned::Rejected(rejection) => Err(rejection),
            Planned::Appended(events) => Ok(Committed {
                events,
                duplicate: false,
            }),
            Planned::StoredDuplicate => Ok(Committed {
                events: read::stored_request(client, &request.idempotency_key)
                    .await?
                    .map(|stored| stored.events)
                    .unwrap_or_default(),
                duplicate: true,
            }),
            Planned::BatchDuplicate { request_index } => match &outcomes[request_index] {
                Ok(original) => Ok(Committed {
                    events: original.events.clone(),
                    duplicate: true,
                }),
                Err(rejection) => Err(rejection.clone()),
            },
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, head))
}

fn validate(request: &AppendRequest) -> Result<(), AppendRejection> {
    let invalid = |reason: String| Err(AppendRejection::Invalid { reason });
    if request.events.is_empty() {
        return invalid("a request must carry at least one event".to_owned());
    }
    if request.events.len() > REQUEST_EVENTS_MAX {
        return invalid(format!(
            "a request may carry at most {REQUEST_EVENTS_MAX} events, not {}",
            request.events.len()
        ));
    }
    check_text("idempotency_key", &request.idempotency_key, false)?;
    for event in &request.events {
        check_text("event_type", &event.event_type, false)?;
        check_text("account_id", &event.account_id, true)?;
        if event.schema_version < 1 {
            return invalid(format!(
                "schema_version must be at least 1, not {}",
                event.schema_version
            ));
        }
    }
    Ok(())
}

fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<(), AppendRejection> {
    match text_problem(value, may_be_empty) {
        None => Ok(()),
        Some(reason) => Err(AppendRejection::Invalid {
            reason: format!("{field} {reason}"),
        }),
    }
}

/// Why `value` cannot be stored in one of the store's short text columns (idempotency keys,
/// account ids, event types, provider event ids: at most 255 bytes, no NUL, which PostgreSQL
/// text cannot hold), e.g. `"is longer than 255 bytes"`; `None` when it can.
pub fn text_problem(value: &str, may_be_empty: bool) -> Option<&'static str> {
    if value.is_empty() && !may_be_empty {
        Some("must not be empty")
    } else if value.len() > TEXT_BYTES_MAX {
        Some("is longer than 255 bytes")
    } else if value.contains('\0') {
        Some("must not contain NUL characters")
    } else {
        None
    }
}

/// Inserts the batch's new events, each with the fingerprint of its request.
async fn write_events(
    client: &Client,
    statements: &Statements,
    appended: &[(&RecordedEvent, RequestFingerprint)],
    recorded_at: OffsetDateTime,
) -> Result<(), StoreError> {
    if appended.is_empty() {
        return Ok(());
    }
    let events: Vec<&RecordedEvent> = appended.iter().map(|(event, _)| *event).collect();
    let fingerprints: Vec<&[u8]> = appended
        .iter()
        .map(|(_, fingerprint)| &fingerprint.0[..])
        .collect();
    let column = |value: fn(&RecordedEvent) -> &str| -> Vec<&str> {
        events.iter().map(|event| value(event)).collect()
    };
    let positions = events
        .iter()
        .map(|event| position_to_sql(event.global_position))
        .collect::<Result<Vec<_>, _>>()?;
    let versions = events
        .iter()
        .map(|event| position_to_sql(event.stream_version))
        .collect::<Result<Vec<_>, _>>()?;
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event.event_id).collect();
    let stream_ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    let event_types = column(|e| &e.event.event_type);
    let account_ids = column(|e| &e.event.account_id);
    let providers = column(|e| e.event.payment_provider_type.as_str());
    let statuses = column(|e| e.event.status.as_str());
    let issuers = column(|e| e.event.issuer.as_str());
    let occurred_at: Vec<OffsetDateTime> = events.iter().map(|e| e.event.occurred_at).collect();
    let idempotency_keys = column(|e| &e.idempotency_key);
    let correlation_ids: Vec<Option<Uuid>> =
        events.iter().map(|e| e.event.correlation_id).collect();
    let causation_ids: Vec<Option<Uuid>> = events.iter().map(|e| e.event.causation_id).collect();
    let schema_versions: Vec<i16> = events.iter().map(|e| e.event.schema_version).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| &e.event.payload[..]).collect();
    let prev_hashes: Vec<&[u8]> = events.iter().map(|e| &e.prev_hash[..]).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|e| &e.hash[..]).collect();
    client
        .execute(
            &statements.insert_events,
            &[
                &positions,
                &event_ids,
                &stream_ids,
                &versions,
                &event_types,
                &account_ids,
                &providers,
                &statuses,
                &issuers,
                &occurred_at,
                &recorded_at,
                &idempotency_keys,
                &correlation_ids,
                &causation_ids,
                &schema_versions,
                &payloads,
                &prev_hashes,
                &hashes,
                &fingerprints,
            ],
        )
        .await?;
    Ok(())
}

/// The reason an inbox row records, with outcome `failed`, when the transaction that records
/// it refused a request of its delivery (the writer decides against what the store holds, so
/// this means a bug or a change made behind the writer's back): the row keeps the delivery for
/// `ledger connectors renormalize` instead of claiming it was appended.
pub fn refused_delivery_reason(rejection: &AppendRejection) -> String {
    format!(
        "the store refused its request ({rejection}); once the cause is fixed, run ledger \
         connectors renormalize on this row"
    )
}

/// The rejection of the first request of `write` that the batch refused, if any.
fn refusal<'p>(write: &InboxWrite, plans: &'p [Planned]) -> Option<&'p AppendRejection> {
    write
        .requests
        .iter()
        .find_map(|index| match plans.get(*index) {
            Some(Planned::Rejected(rejection)) => Some(rejection),
            _ => None,
        })
}

/// Inserts the batch's inbox rows, each with the positions its requests appended, in one
/// statement ([`INSERT_INBOX`]): a row one of whose requests the batch refused is recorded
/// `failed` with [`refused_delivery_reason`], without its snapshot time or payment.
async fn write_inbox(
    client: &Client,
    statements: &Statements,
    inbox: &[InboxWrite],
    plans: &[Planned],
    recorded_at: OffsetDateTime,
) -> Result<(), StoreError> {
    if inbox.is_empty() {
        return Ok(());
    }
    let mut positions = Vec::with_capacity(inbox.len());
    // A row whose request this transaction refused records that, not the outcome decided.
    let mut refusals = Vec::with_capacity(inbox.len());
    for write in inbox {
        let mut appended = Vec::new();
        for request_index in &write.requests {
            if let Some(Planned::Appended(events)) = plans.get(*request_index) {
                for event in events {
                    appended.push(position_to_sql(event.global_position)?.to_string());
                }
            }
        }
        positions.push(format!("{{{}}}", appended.join(",")));
        refusals.push(refusal(write, plans).map(refused_delivery_reason));
    }
    let rows: Vec<&crate::inbox::NewInboxRow> = inbox.iter().map(|write| &write.row).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let providers: Vec<&str> = rows.iter().map(|row| row.provider.as_str()).collect();
    let event_ids: Vec<&str> = rows
        .iter()
        .map(|row| row.provider_event_id.as_str())
        .collect();
    let event_types: Vec<&str> = rows.iter().map(|row| row.event_type.as_str()).collect();
    let received_at: Vec<OffsetDateTime> = rows.iter().map(|row| row.received_at).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|row| &row.body[..]).collect();
    let outcomes: Vec<&str> = rows
        .iter()
        .zip(&refusals)
        .map(|(row, refused)| match refused {
            Some(_) => InboxOutcome::Failed.as_str(),
            None => row.outcome.as_str(),
        })
        .collect();
    let reasons: Vec<&str> = rows
        .iter()
        .zip(&refusals)
        .map(|(row, refused)| refused.as_deref().unwrap_or(&row.reason))
        .collect();
    let customer_ids: Vec<Option<Uuid>> = rows.iter().map(|row| row.customer_id).collect();
    let correlation_ids: Vec<Option<Uuid>> = rows.iter().map(|row| row.correlation_id).collect();
    let renormalizes: Vec<Option<Uuid>> =
        rows.iter().map(|row| row.renormalizes_inbox_id).collect();
    let snapshot_objects: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.snapshot_object.as_deref())
        .collect();
    // Neither the snapshot nor the payment of a refused delivery counts as recorded.
    let snapshot_seen_at: Vec<Option<OffsetDateTime>> = rows
        .iter()
        .zip(&refusals)
        .map(|(row, refused)| row.snapshot_seen_at.filter(|_| refused.is_none()))
        .collect();
    let awaited_objects: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.awaited_object.as_deref())
        .collect();
    let payment_ids: Vec<Option<&str>> = rows
        .iter()
        .zip(&refusals)
        .map(|(row, refused)| row.payment_id.as_deref().filter(|_| refused.is_none()))
        .collect();
    let sources: Vec<&str> = rows.iter().map(|row| row.source.as_str()).collect();
    client
        .execute(
            &statements.insert_inbox,
            &[
                &ids,
                &providers,
                &event_ids,
                &event_types,
                &received_at,
                &bodies,
                &outcomes,
                &reasons,
                &customer_ids,
                &correlation_ids,
                &renormalizes,
                &recorded_at,
                &positions,
                &snapshot_objects,
                &snapshot_seen_at,
                &awaited_objects,
                &payment_ids,
                &sources,
            ],
        )
        .await?;
    Ok(())
}

/// The longest `provider_objects` key: a provider and a kind before an id of up to 255 bytes
/// (`paypal:subscription:<id>`; the table's CHECK).
const OBJECT_KEY_BYTES_MAX: usize = 300;

/// The provider objects the batch shows their customers hold (`AppendRequest::provider_objects`
/// of the appended requests, `InboxWrite::provider_objects` of the rows none of whose requests
/// was refused), in one statement; an object held already, or twice in the batch, keeps its
/// first holder.
async fn write_objects<'a>(
    client: &Client,
    statements: &Statements,
    batch: &'a [AppendRequest],
    inbox: &'a [InboxWrite],
    plans: &[Planned],
    recorded_at: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut keys: Vec<&str> = Vec::new();
    let mut holders: Vec<Uuid> = Vec::new();
    let mut seen = HashSet::new();
    // A key the table cannot hold (the writer makes none) is not recorded rather than failing
    // the batch.
    let mut hold = |key: &'a str, holder: Uuid| {
        let storable = !key.is_empty() && key.len() <= OBJECT_KEY_BYTES_MAX && !key.contains('\0');
        if storable && seen.insert(key) {
            keys.push(key);
            holders.push(holder);
        }
    };
    for (request, plan) in batch.iter().zip(plans) {
        if matches!(plan, Planned::Appended(_)) {
            for key in &request.provider_objects {
                hold(key, request.stream_id);
            }
        }
    }
    for write in inbox {
        if let (Some(customer_id), None) = (write.row.customer_id, refusal(write, plans)) {
            for key in &write.provider_objects {
                hold(key, customer_id);
            }
        }
    }
    if !keys.is_empty() {
        client
            .execute(&statements.insert_objects, &[&keys, &holders, &recorded_at])
            .await?;
    }
    Ok(())
}

/// The net change of the unique keys by a batch: keys released (and not re-claimed) are
/// deleted, keys newly owned are inserted. Each is one statement, so both can be pipelined
/// before COMMIT.
struct UniqueKeyWrites<'a> {
    deleted: Vec<&'a str>,
    inserted_keys: Vec<&'a str>,
    inserted_owners: Vec<Uuid>,
}

impl<'a> UniqueKeyWrites<'a> {
    fn new(initial: &HashMap<String, Uuid>, current: &'a HashMap<String, Option<Uuid>>) -> Self {
        let mut writes = UniqueKeyWrites {
            deleted: Vec::new(),
            inserted_keys: Vec::new(),
            inserted_owners: Vec::new(),
        };
        for (key, owner) in current {
            let before = initial.get(key).copied();
            if before == *owner {
                continue;
            }
            if before.is_some() {
                writes.deleted.push(key);
            }
            if let Some(owner) = owner {
                writes.inserted_keys.push(key);
                writes.inserted_owners.push(*owner);
            }
        }
        writes
    }

    async fn delete(&self, client: &Client, statements: &Statements) -> Result<(), StoreError> {
        if !self.deleted.is_empty() {
            client
                .execute(&statements.delete_keys, &[&self.deleted])
                .await?;
        }
        Ok(())
    }

    async fn insert(
        &self,
        client: &Client,
        statements: &Statements,
        claimed_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !self.inserted_keys.is_empty() {
            client
                .execute(
                    &statements.insert_keys,
                    &[&self.inserted_keys, &self.inserted_owners, &claimed_at],
                )
                .await?;
        }
        Ok(())
    }
}
