-- Provider-sync carries out subscription update requests too (docs/connectors.md, "Outbound:
-- provider-sync"; decision 0032): a call of action `pause`, `resume` or `change_plan` names the
-- subscription and keeps the request's change (the `SubscriptionUpdateRequested` protobuf
-- message, ledger.v1) to state the answer with.

ALTER TABLE provider_sync_outbox.calls
    DROP CONSTRAINT calls_action_check,
    ADD CONSTRAINT calls_action_check
        CHECK (action IN ('cancel_now', 'cancel_at_period_end', 'refund', 'pause', 'resume',
                          'change_plan')),
    ADD COLUMN update_request bytea,
    DROP CONSTRAINT calls_object,
    ADD CONSTRAINT calls_object CHECK (
        CASE action
            WHEN 'refund' THEN refund_request_id IS NOT NULL AND payment_id IS NOT NULL
                AND amount_minor IS NOT NULL AND currency IS NOT NULL
            WHEN 'pause' THEN subscription_id IS NOT NULL AND update_request IS NOT NULL
            WHEN 'resume' THEN subscription_id IS NOT NULL AND update_request IS NOT NULL
            WHEN 'change_plan' THEN subscription_id IS NOT NULL AND update_request IS NOT NULL
            ELSE subscription_id IS NOT NULL
        END);
