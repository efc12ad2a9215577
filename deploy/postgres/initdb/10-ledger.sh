#!/bin/sh
# Runs once, when the postgres image creates the data directory (docker-entrypoint-initdb.d):
# the ledger's server settings (deploy/postgresql.conf) and the query service's login role, a
# member of `ledger_query` (docs/security.md, "Database roles and grants"). The migrations
# create the other roles and grant `ledger_query` its reads.
set -eu
echo "include '/etc/postgresql/ledger.conf'" >> "$PGDATA/postgresql.conf"
password=$(cat "$QUERY_DB_PASSWORD_FILE")
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$password" <<'SQL'
DO $$
BEGIN
    CREATE ROLE ledger_query NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
CREATE ROLE ledger_query_app LOGIN IN ROLE ledger_query PASSWORD :'password';
SQL
