-- Schema `notify` (dropped and rebuilt with the projection): the integrations as of the
-- checkpoint. The deliveries live in `notify_delivery` (delivery.sql), which survives rebuilds.
CREATE TABLE integrations (
    integration_id  uuid PRIMARY KEY,
    name            text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('slack', 'webhook', 'email')),
    status          text        NOT NULL CHECK (status IN ('active', 'paused', 'removed')),
    kinds           text[]      NOT NULL,
    -- The `ledger.v1.IntegrationRegistered` configuration, its secrets sealed (ledger-secrets;
    -- clear text only for integrations recorded before sealing). Not readable by ledger_query.
    config          bytea       NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL
);
