-- Backfill (docs/connectors.md, "Backfill"): `ledger sync stripe` reads a provider account's
-- objects from its list endpoints and sends each through the same path as a webhook. The inbox
-- records where a row came from, and a cursor per provider and object kind lets an interrupted
-- run resume after the last page it finished. The inbox stays append-only: a column with a
-- default is added, no row changes (the existing rows are webhooks or their re-runs).

ALTER TABLE provider_inbox
    -- webhook: a delivery verified by ingest; backfill: an object read by `ledger sync`;
    -- repair and sync: reserved for the reconciliation and the on-demand sync of issue 15.
    ADD COLUMN source text NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'backfill', 'repair', 'sync'));

CREATE TABLE provider_sync_cursors (
    provider     text        NOT NULL CHECK (provider IN ('stripe', 'paypal', 'xendit')),
    -- The list read: customer, subscription, invoice, charge, dispute, event.
    object_kind  text        NOT NULL CHECK (octet_length(object_kind) BETWEEN 1 AND 64),
    -- The id of the last object of the last page whose objects were all recorded: the next
    -- run asks for the page `starting_after` it. NULL: the list was read to its end (the next
    -- run starts from the beginning again).
    cursor       text        CHECK (octet_length(cursor) BETWEEN 1 AND 255),
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (provider, object_kind)
);

COMMENT ON TABLE provider_sync_cursors IS
    'Where `ledger sync <provider>` stopped in each list, so an interrupted run resumes.';

REVOKE ALL ON provider_sync_cursors FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON provider_sync_cursors TO ledger_writer;
GRANT SELECT ON provider_sync_cursors TO ledger_auditor;
