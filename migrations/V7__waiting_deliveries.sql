-- Deliveries waiting for an object (docs/decisions/0022-waiting-deliveries.md): a message about
-- an object the ledger has not seen yet (an invoice before its subscription, a refund before
-- its sale) is recorded with outcome `waiting` and the object it waits for; the writer
-- normalizes it again, recording a new row that `renormalizes_inbox_id` the original, in the
-- batch that makes the object known. The table stays append-only: columns and constraints are
-- added, no row changes.

ALTER TABLE provider_inbox DROP CONSTRAINT provider_inbox_outcome_check;
ALTER TABLE provider_inbox ADD CONSTRAINT provider_inbox_outcome_check
    CHECK (outcome IN ('appended', 'duplicate', 'ignored', 'stale', 'failed', 'waiting'));

ALTER TABLE provider_inbox
    -- The object a `waiting` row waits for: `<provider>:<kind>:<id>`
    -- (`stripe:subscription:sub_1`, `paypal:payment:<sale id>`; ledger_connectors::AwaitedObject).
    ADD COLUMN awaited_object text CHECK (octet_length(awaited_object) BETWEEN 1 AND 255),
    -- The payment the delivery's events recorded as succeeded (a Stripe charge, a PayPal sale):
    -- how a refund or a dispute naming only the payment finds its customer.
    ADD COLUMN payment_id text CHECK (octet_length(payment_id) BETWEEN 1 AND 255),
    ADD CONSTRAINT provider_inbox_waiting_names_its_object
        CHECK ((outcome = 'waiting') = (awaited_object IS NOT NULL));

-- The writer loads the deliveries still waiting when it takes the lock: the waiting rows and
-- the later re-runs of their originals.
CREATE INDEX provider_inbox_waiting ON provider_inbox (awaited_object) WHERE outcome = 'waiting';
CREATE INDEX provider_inbox_renormalizes ON provider_inbox (renormalizes_inbox_id)
    WHERE renormalizes_inbox_id IS NOT NULL;
-- The customer holding a payment.
CREATE INDEX provider_inbox_payment ON provider_inbox (provider, payment_id)
    WHERE payment_id IS NOT NULL AND customer_id IS NOT NULL;
