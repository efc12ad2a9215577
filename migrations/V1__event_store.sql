-- The event store: the single source of truth of the ledger.
--
-- customer_payment_events is append-only: a trigger rejects UPDATE, DELETE and TRUNCATE for
-- every role (a superuser must disable the trigger first, which the hash chain then exposes),
-- and the service roles are granted INSERT/SELECT only. Positions are assigned by the single
-- writer that holds the writer advisory lock (see docs/decisions/0002-single-writer-ordering.md).

CREATE TABLE customer_payment_events (
    global_position       bigint      NOT NULL PRIMARY KEY CHECK (global_position > 0),
    event_id              uuid        NOT NULL UNIQUE,
    stream_id             uuid        NOT NULL,
    stream_version        bigint      NOT NULL CHECK (stream_version > 0),
    event_type            text        NOT NULL CHECK (event_type ~ '^[a-z][a-z_]{0,63}$'),
    account_id            text        NOT NULL CHECK (octet_length(account_id) <= 255),
    payment_provider_type text        NOT NULL
        CHECK (payment_provider_type IN ('stripe', 'paypal', 'xendit', 'internal')),
    status                text        NOT NULL CHECK (status IN ('processing', 'complete', 'failed')),
    issuer                text        NOT NULL CHECK (issuer IN ('internal', 'payment_provider')),
    occurred_at           timestamptz NOT NULL,
    recorded_at           timestamptz NOT NULL,
    idempotency_key       text        NOT NULL CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255),
    correlation_id        uuid,
    causation_id          uuid,
    schema_version        smallint    NOT NULL CHECK (schema_version > 0),
    payload               bytea       NOT NULL,
    prev_hash             bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash                  bytea       NOT NULL CHECK (octet_length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

COMMENT ON TABLE customer_payment_events IS
    'Append-only history of every customer payment event; the source of truth of the ledger.';

-- A repeated idempotency key returns the events first appended for it. Every event of one
-- request carries its key; the single writer checks keys before appending, so one key never
-- spans two requests.
CREATE INDEX customer_payment_events_idempotency_key ON customer_payment_events (idempotency_key);

-- Keys that identify one customer: a normalised email ('email:...') or a provider account
-- ('account:<provider>:<id>'). Maintained in the same transaction as the append.
CREATE TABLE customer_unique_keys (
    unique_key  text        NOT NULL PRIMARY KEY,
    stream_id   uuid        NOT NULL,
    claimed_at  timestamptz NOT NULL
);

CREATE INDEX customer_unique_keys_stream_id ON customer_unique_keys (stream_id);

CREATE FUNCTION customer_payment_events_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'customer_payment_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Record a compensating event instead of changing history.';
END
$$;

CREATE TRIGGER customer_payment_events_append_only_rows
    BEFORE UPDATE OR DELETE ON customer_payment_events
    FOR EACH ROW EXECUTE FUNCTION customer_payment_events_reject_change();

CREATE TRIGGER customer_payment_events_append_only_truncate
    BEFORE TRUNCATE ON customer_payment_events
    FOR EACH STATEMENT EXECUTE FUNCTION customer_payment_events_reject_change();

-- Roles are cluster-wide; several databases (one per test) may create them concurrently.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ledger_writer', 'ledger_auditor'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

REVOKE ALL ON customer_payment_events, customer_unique_keys FROM PUBLIC;
-- The writer appends; it can never change or remove an event.
GRANT SELECT, INSERT ON customer_payment_events TO ledger_writer;
GRANT SELECT, INSERT, DELETE ON customer_unique_keys TO ledger_writer;
-- Auditors (replay, verify, export) only read.
GRANT SELECT ON customer_payment_events TO ledger_auditor;
