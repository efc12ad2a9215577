-- Provider-sync carries out refund requests too (docs/connectors.md, "Outbound: provider-sync"):
-- a call of action `refund` names the ledger's refund request, the payment and the amount
-- instead of a subscription, and its answer `refunded` records the provider's refund id.

ALTER TABLE provider_sync_outbox.calls
    DROP CONSTRAINT calls_action_check,
    ADD CONSTRAINT calls_action_check
        CHECK (action IN ('cancel_now', 'cancel_at_period_end', 'refund')),
    DROP CONSTRAINT calls_outcome_check,
    ADD CONSTRAINT calls_outcome_check
        CHECK (outcome IN ('confirmed', 'scheduled', 'refunded', 'refused', 'not_supported',
                           'unreachable')),
    ALTER COLUMN subscription_id DROP NOT NULL,
    -- The refund request (`refund_requested`): its id, the payment, the invoice the payment
    -- paid (Xendit refunds an invoice) and the amount in minor units of its currency.
    ADD COLUMN refund_request_id text CHECK (octet_length(refund_request_id) BETWEEN 1 AND 255),
    ADD COLUMN payment_id        text CHECK (octet_length(payment_id) BETWEEN 1 AND 255),
    ADD COLUMN invoice_id        text CHECK (octet_length(invoice_id) <= 255),
    ADD COLUMN amount_minor      bigint CHECK (amount_minor > 0),
    ADD COLUMN currency          text CHECK (currency ~ '^[A-Z]{3}$'),
    -- The provider's refund id, when the answer is `refunded`.
    ADD COLUMN refund_id         text,
    ADD CONSTRAINT calls_object CHECK (
        CASE action
            WHEN 'refund' THEN refund_request_id IS NOT NULL AND payment_id IS NOT NULL
                AND amount_minor IS NOT NULL AND currency IS NOT NULL
            ELSE subscription_id IS NOT NULL
        END);
CREATE INDEX calls_refund_request ON provider_sync_outbox.calls (customer_id, refund_request_id)
    WHERE refund_request_id IS NOT NULL;
