-- The outbox of provider-sync (docs/connectors.md, "Outbound: provider-sync"): one row per call
-- the ledger owes a payment provider (an internal cancellation request of a subscription held
-- there), written by the provider_sync projector in the transaction that advances its
-- checkpoint, and every attempt made for it. Not in the projector's schema, so a rebuild of
-- `provider_sync` decides the same call ids again (UUID v5 of the request event) and calls
-- nothing twice.

CREATE SCHEMA provider_sync_outbox;

CREATE TABLE provider_sync_outbox.calls (
    -- UUID v5 of the request event's id: the provider idempotency key is derived from it.
    call_id             uuid        NOT NULL PRIMARY KEY,
    provider            text        NOT NULL CHECK (provider IN ('stripe', 'paypal', 'xendit')),
    action              text        NOT NULL CHECK (action IN ('cancel_now', 'cancel_at_period_end')),
    customer_id         uuid        NOT NULL,
    subscription_id     text        NOT NULL CHECK (octet_length(subscription_id) BETWEEN 1 AND 255),
    account_id          text        NOT NULL CHECK (octet_length(account_id) <= 255),
    reason              text        NOT NULL,
    -- The ledger event that asked for the call.
    request_event_id    uuid        NOT NULL,
    request_position    bigint      NOT NULL,
    request_occurred_at timestamptz NOT NULL,
    correlation_id      uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- pending: to call; answered: the provider's answer is recorded, the ledger's command is
    -- still to send; done: the command was answered by the writer; settled: another event
    -- (the provider's own webhook, a reactivation) answered the request before the call.
    status              text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'answered', 'done', 'settled')),
    -- Rounds of attempts made (each round retries transient failures a few times).
    rounds              integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    leased_until        timestamptz,
    -- The answer: confirmed (cancelled now), scheduled (cancels at period end), refused (a
    -- 4xx: code and message are the provider's), not_supported (the provider has no such
    -- operation), unreachable (transient failures until the retries ran out).
    outcome             text
        CHECK (outcome IN ('confirmed', 'scheduled', 'refused', 'not_supported', 'unreachable')),
    failure_code        text,
    failure_message     text,
    answered_at         timestamptz,
    -- What the ledger made of the answer: the command's positions, or its rejection.
    result              text,
    done_at             timestamptz
);
CREATE INDEX calls_due ON provider_sync_outbox.calls (next_attempt_at)
    WHERE status IN ('pending', 'answered');
CREATE INDEX calls_subscription ON provider_sync_outbox.calls (customer_id, subscription_id);

CREATE TABLE provider_sync_outbox.attempts (
    attempt_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id      uuid        NOT NULL REFERENCES provider_sync_outbox.calls,
    -- `DELETE /v1/subscriptions/sub_1`, ... (never a secret).
    request      text        NOT NULL,
    started_at   timestamptz NOT NULL,
    latency_ms   integer,
    status_code  integer,
    error        text,
    -- in_flight: sent, no answer recorded (the process stopped during the call).
    outcome      text        NOT NULL
        CHECK (outcome IN ('in_flight', 'succeeded', 'retry', 'refused'))
);
CREATE INDEX attempts_call ON provider_sync_outbox.attempts (call_id);
