-- Idempotency keys remember what they were used for (issue 11, item 2; docs/events.md).
--
-- Every event of a request stores the SHA-256 fingerprint of that request (its command and the
-- metadata that says what happened to whom, see ledger-writer's `request_fingerprint`). A
-- repeat of the key with the same fingerprint is answered with the stored events; with another
-- fingerprint it is refused (`idempotency_key_reused`), as Stripe refuses a key reused with
-- other parameters. Events appended before this migration have NULL: a repeat of their key is
-- answered as before. Adding a nullable column rewrites no row, and the append-only triggers
-- and grants are unchanged (INSERT on the table covers the new column). The fingerprint is not
-- part of the hash chain (decision 0003's canonical bytes are unchanged): it only decides how
-- a repeated key is answered.

ALTER TABLE customer_payment_events
    ADD COLUMN request_fingerprint bytea CHECK (octet_length(request_fingerprint) = 32);

COMMENT ON COLUMN customer_payment_events.request_fingerprint IS
    'SHA-256 of the request that used idempotency_key first; NULL for events appended before V3.';
