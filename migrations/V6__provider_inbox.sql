-- The provider inbox: every verified webhook delivery, its body verbatim, and what the writer
-- made of it (docs/connectors.md, "Path: ingest, writer, inbox"). The writer inserts a row in
-- the same transaction as the events the delivery led to; those events carry the row's id as
-- their causation_id. Append-only, like the event table: the evidence of what a provider said.

CREATE TABLE provider_inbox (
    id                     uuid        NOT NULL PRIMARY KEY,
    provider               text        NOT NULL CHECK (provider IN ('stripe', 'paypal', 'xendit')),
    provider_event_id      text        NOT NULL
        CHECK (octet_length(provider_event_id) BETWEEN 1 AND 255),
    event_type             text        NOT NULL CHECK (octet_length(event_type) <= 255),
    received_at            timestamptz NOT NULL,
    recorded_at            timestamptz NOT NULL,
    -- The bytes the provider signed, exactly as received.
    body                   bytea       NOT NULL,
    outcome                text        NOT NULL
        CHECK (outcome IN ('appended', 'duplicate', 'ignored', 'stale', 'failed')),
    reason                 text        NOT NULL,
    customer_id            uuid,
    -- Global positions of the events appended for this delivery, in order.
    global_positions       bigint[]    NOT NULL,
    correlation_id         uuid,
    -- `ledger connectors renormalize`: the row whose body was normalized again.
    renormalizes_inbox_id  uuid        REFERENCES provider_inbox (id),
    -- The provider object whose whole snapshot the message carries (a PayPal subscription, a
    -- Xendit recurring plan), and the message's time when the snapshot counts as seen (its
    -- commands appended, already applied, or stale): `ledger_connectors::normalize_after`.
    snapshot_object        text        CHECK (octet_length(snapshot_object) <= 255),
    snapshot_seen_at       timestamptz
);

COMMENT ON TABLE provider_inbox IS
    'Append-only record of every verified provider webhook delivery, body verbatim.';

-- A redelivery is recognised by its provider event id.
CREATE INDEX provider_inbox_event ON provider_inbox (provider, provider_event_id);
CREATE INDEX provider_inbox_received_at ON provider_inbox (received_at);
-- The latest snapshot seen of an object.
CREATE INDEX provider_inbox_snapshot ON provider_inbox (provider, snapshot_object, snapshot_seen_at)
    WHERE snapshot_seen_at IS NOT NULL;

CREATE FUNCTION provider_inbox_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'provider_inbox is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Record what a provider sent as it was sent; re-normalize instead.';
END
$$;

CREATE TRIGGER provider_inbox_append_only_rows
    BEFORE UPDATE OR DELETE ON provider_inbox
    FOR EACH ROW EXECUTE FUNCTION provider_inbox_reject_change();

CREATE TRIGGER provider_inbox_append_only_truncate
    BEFORE TRUNCATE ON provider_inbox
    FOR EACH STATEMENT EXECUTE FUNCTION provider_inbox_reject_change();

REVOKE ALL ON provider_inbox FROM PUBLIC;
GRANT SELECT, INSERT ON provider_inbox TO ledger_writer;
GRANT SELECT ON provider_inbox TO ledger_auditor;
-- The query service serves a delivery behind a provider's event (`GET /v1/provider-messages/{id}`,
-- scope connectors:read): read only, this table only.
GRANT SELECT ON provider_inbox TO ledger_query;
