-- Which customer holds a provider's subscription or payment (docs/decisions/0037): how a
-- message naming only such an object (a PayPal sale or refund, a PayPal subscription
-- snapshot whose payer the ledger does not know, a Stripe dispute) finds its customer,
-- whether a delivery or the company's own command recorded the object (only the kinds such
-- messages name: PayPal subscriptions and payments, Stripe payments). Written by the writer
-- in the transaction of the events that show the object (`ledger_connectors::held_object`)
-- and of the inbox rows that saw a subscription's snapshot; the first holder keeps it (an
-- object never moves to another customer): the writer may only insert.

CREATE TABLE provider_objects (
    -- `<provider>:<kind>:<id>`, kind `subscription` or `payment`, ids of up to 255 bytes
    -- (`paypal:subscription:I-...`, `stripe:payment:ch_...`; ledger_connectors::AwaitedObject).
    object_key  text        NOT NULL PRIMARY KEY
        CHECK (object_key ~ '^(stripe|paypal|xendit):(subscription|payment):.'
               AND octet_length(object_key) <= 300),
    customer_id uuid        NOT NULL,
    recorded_at timestamptz NOT NULL
);

REVOKE ALL ON provider_objects FROM PUBLIC;
GRANT SELECT, INSERT ON provider_objects TO ledger_writer;
GRANT SELECT ON provider_objects TO ledger_auditor;

-- What the inbox already knew, oldest first, of the objects messages find their customer
-- through (`ledger_connectors::found_through`: PayPal's subscriptions and sales, Stripe's
-- payments): the subscriptions whose snapshots were seen and the payments deliveries recorded. Objects only commands recorded before this migration are
-- not known (their events' payloads are protobuf, which SQL does not read): a subscription the
-- company started and a PayPal message then registered a second customer for (the bug this
-- table fixes) is held by that second customer, the one the inbox saw.
INSERT INTO provider_objects (object_key, customer_id, recorded_at)
SELECT object_key, customer_id, recorded_at FROM (
    SELECT provider || ':subscription:' || snapshot_object AS object_key, customer_id,
           recorded_at
    FROM provider_inbox
    WHERE snapshot_seen_at IS NOT NULL AND customer_id IS NOT NULL AND provider = 'paypal'
    UNION ALL
    SELECT provider || ':payment:' || payment_id, customer_id, recorded_at
    FROM provider_inbox
    WHERE payment_id IS NOT NULL AND customer_id IS NOT NULL
        AND provider IN ('paypal', 'stripe')
) AS known
ORDER BY recorded_at
ON CONFLICT (object_key) DO NOTHING;

-- The inbox's payment index served the look-up this table replaces.
DROP INDEX provider_inbox_payment;
