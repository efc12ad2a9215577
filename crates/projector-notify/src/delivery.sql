-- Schema `notify_delivery`: the outbox and the delivery log. Created if missing by the
-- projector (with its schema), the worker and the CLI; never dropped by a rebuild, so a
-- delivery id decided again is skipped, not sent again.
SELECT pg_advisory_xact_lock(hashtext('notify_delivery'));
CREATE SCHEMA IF NOT EXISTS notify_delivery;
CREATE TABLE IF NOT EXISTS notify_delivery.deliveries (
    -- UUID v5 of (integration id, notification): the receivers' dedupe key.
    delivery_id     uuid PRIMARY KEY,
    integration_id  uuid        NOT NULL,
    channel         text        NOT NULL,
    kind            text        NOT NULL,
    customer_id     uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    global_position bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    data            jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'dead')),
    -- Attempts since it was decided or last retried by hand.
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker is sending it until then; after that another may take it over.
    leased_until    timestamptz,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX IF NOT EXISTS deliveries_pending
    ON notify_delivery.deliveries (integration_id, global_position, kind)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS notify_delivery.attempts (
    attempt_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid        NOT NULL REFERENCES notify_delivery.deliveries,
    attempt     integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    latency_ms  integer     NOT NULL,
    status_code integer,
    error       text,
    outcome     text        NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead'))
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON notify_delivery.attempts (delivery_id);
