-- The leading writer's one pass over the events recorded before it kept provider_objects
-- itself (docs/decisions/0037). V14 filled the table from what the inbox knew; a subscription
-- or payment that only a command recorded (`start_subscription` with provider PayPal, say) is
-- in an event's protobuf payload, which SQL does not read. Until this row is gone, the writer
-- that wins the lock reads the events from `from_position` on before it takes any request,
-- records the objects they show (`ledger_connectors::held_object`; the first holder keeps an
-- object, as it does when appending), moves `from_position` on in the same transaction as it
-- goes, and deletes the row once it has read the table's last event. The pass starts at the
-- first event, so it also covers what a writer older than V14 appended after V14 ran.

CREATE TABLE provider_objects_fill (
    one           boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    from_position bigint  NOT NULL CHECK (from_position > 0)
);

INSERT INTO provider_objects_fill (from_position) VALUES (1);

REVOKE ALL ON provider_objects_fill FROM PUBLIC;
GRANT SELECT, UPDATE, DELETE ON provider_objects_fill TO ledger_writer;
GRANT SELECT ON provider_objects_fill TO ledger_auditor;
