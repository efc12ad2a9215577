#!/bin/sh
# Runs once, when the postgres image creates the data directory (docker-entrypoint-initdb.d):
# the ledger's server settings (deploy/postgresql.conf) and the login roles of the writer and
# the query service, members of `ledger_writer` and `ledger_query` (docs/security.md, "Database
# roles and grants"): neither logs in as the owner. The migrations create the other roles and
# grant these two their privileges.
set -eu
echo "include '/etc/postgresql/ledger.conf'" >> "$PGDATA/postgresql.conf"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=writer_password="$(cat "$WRITER_DB_PASSWORD_FILE")" \
    --set=query_password="$(cat "$QUERY_DB_PASSWORD_FILE")" <<'SQL'
DO $$
BEGIN
    CREATE ROLE ledger_writer NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
DO $$
BEGIN
    CREATE ROLE ledger_query NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
CREATE ROLE ledger_writer_app LOGIN IN ROLE ledger_writer PASSWORD :'writer_password';
CREATE ROLE ledger_query_app LOGIN IN ROLE ledger_query PASSWORD :'query_password';
SQL
