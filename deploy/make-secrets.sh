#!/bin/sh
# Writes the secret files deploy/compose.yaml reads into deploy/secrets/ (directory 0700, so no
# other host user reaches them; the files 0644, because Compose bind-mounts each one into its
# containers as it is and the processes there run as other users: ledger 10001, postgres 999): random passwords for PostgreSQL and each NATS user, the key that seals integration
# secrets, one bearer token for ingest and one for the query service, and empty files for the
# payment providers' secrets (an empty file leaves that provider off; fill them to turn it on).
# Existing files are kept, so running it again never rotates a secret by accident.
set -eu
cd "$(dirname "$0")"
umask 022
mkdir -p secrets
chmod 0700 secrets
random() { openssl rand -hex 32; }
keep_or_write() { # name value
    if [ ! -e "secrets/$1" ]; then printf '%s\n' "$2" > "secrets/$1"; echo "wrote secrets/$1"; fi
}
keep_or_write postgres_password "$(random)"
keep_or_write writer_db_password "$(random)"
keep_or_write query_db_password "$(random)"
keep_or_write database_url "postgres://ledger:$(cat secrets/postgres_password)@postgres:5432/ledger"
keep_or_write writer_database_url \
    "postgres://ledger_writer_app:$(cat secrets/writer_db_password)@postgres:5432/ledger"
keep_or_write query_database_url \
    "postgres://ledger_query_app:$(cat secrets/query_db_password)@postgres:5432/ledger"
keep_or_write ledger_secrets_keys "k1:$(openssl rand -base64 32)"
keep_or_write ingest_tokens "$(random):commands:write"
keep_or_write query_tokens "$(random):metrics:read,customers:read"
for user in writer projector query auditor ingest provider_sync client; do
    keep_or_write "nats_${user}_password" "$(random)"
done
# nats-server reads its users' passwords from its environment and parses each value as a
# configuration value, so the value carries double quotes (deploy/nats-auth.conf); compose keeps
# a single-quoted env_file value as it is.
if [ ! -e secrets/nats-server.env ]; then
    for user in writer projector query auditor ingest provider_sync client; do
        variable=$(echo "LEDGER_NATS_${user}_PASSWORD" | tr '[:lower:]' '[:upper:]')
        printf "%s='\"%s\"'\n" "$variable" "$(cat "secrets/nats_${user}_password")"
    done > secrets/nats-server.env
    echo "wrote secrets/nats-server.env"
fi
for provider_secret in stripe_webhook_secrets xendit_callback_tokens stripe_api_key xendit_api_key \
    paypal_webhook_ids paypal_client_id paypal_client_secret; do
    [ -e "secrets/$provider_secret" ] || : > "secrets/$provider_secret"
done
