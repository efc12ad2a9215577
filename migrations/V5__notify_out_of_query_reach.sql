-- The query service reads only the `customers` and `revenue` read models: `ledger_query` loses
-- what the projector runtime used to grant it on schema `notify` (the integrations, with their
-- webhook signing secrets, SMTP passwords and Slack URLs). The runtime no longer grants it
-- (`Projector::readable_by_query`); this takes it back from databases where it did.
DO $$
BEGIN
    IF to_regnamespace('notify') IS NOT NULL THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA notify FROM ledger_query;
        REVOKE ALL ON SCHEMA notify FROM ledger_query;
    END IF;
END
$$;
