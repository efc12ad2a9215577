-- The read side: the role the query service uses, and reference data the read models present
-- with but do not derive from events.
--
-- `ledger_query` may read the projectors' schemas (the projector runtime grants USAGE and
-- SELECT whenever it creates one) and `reference`; it has nothing on the event table.
-- Deployments log in with a role that is a member of it.
DO $$
BEGIN
    CREATE ROLE ledger_query NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE SCHEMA reference;

-- Exchange rates to a reporting currency, by day: `amount in reporting currency =
-- amount in currency x rate`. Loaded with `ledger fx load`; a figure of a day without its own
-- rate uses the latest earlier one.
CREATE TABLE reference.fx_rates (
    day date NOT NULL,
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reporting_currency char(3) NOT NULL CHECK (reporting_currency ~ '^[A-Z]{3}$'),
    rate numeric NOT NULL CHECK (rate > 0),
    PRIMARY KEY (reporting_currency, currency, day)
);

GRANT USAGE ON SCHEMA reference TO ledger_query;
GRANT SELECT ON ALL TABLES IN SCHEMA reference TO ledger_query;
