-- One row per customer: the seed's CUSTOMERS shape (id, account, provider, created) made useful.
CREATE TABLE customers (
    customer_id           uuid        PRIMARY KEY,
    -- The account and provider the customer registered through, and when.
    account_id            text        NOT NULL,
    payment_provider_type text        NOT NULL,
    created_at            timestamptz NOT NULL,
    email                 text        NOT NULL,
    name                  text        NOT NULL,
    -- The liveliest subscription status: active, past_due, trialing, cancel_pending, paused,
    -- canceled; 'none' without subscriptions.
    status                text        NOT NULL,
    -- Sum of the subscriptions' MRR (exact MRR units, rounded once to minor units) when they
    -- share one currency; NULL without subscriptions or with several currencies (see
    -- subscriptions). numeric: a sum over any number of subscriptions cannot overflow.
    mrr_minor             numeric,
    mrr_currency          text,
    last_payment_status   text,
    last_payment_at       timestamptz,
    last_global_position  bigint      NOT NULL,
    last_event_at         timestamptz NOT NULL
) WITH (fillfactor = 70); -- room for HOT updates: most change no indexed column
CREATE INDEX customers_status ON customers (status, customer_id);
CREATE INDEX customers_provider ON customers (payment_provider_type, customer_id);
-- No index on email or account_id: the query service searches them by substring, walking the
-- primary key (an index could not serve that, and would cost every write of a rebuild).

CREATE TABLE provider_accounts (
    provider    text NOT NULL,
    account_id  text NOT NULL,
    customer_id uuid NOT NULL,
    PRIMARY KEY (provider, account_id)
);
CREATE INDEX provider_accounts_customer ON provider_accounts (customer_id);

CREATE TABLE subscriptions (
    customer_id          uuid    NOT NULL,
    subscription_id      text    NOT NULL,
    status               text    NOT NULL,
    plan_id              text    NOT NULL,
    billing_interval     text    NOT NULL,
    interval_count       integer NOT NULL,
    quantity             integer NOT NULL,
    unit_amount_minor    bigint  NOT NULL,
    currency             text    NOT NULL,
    mrr_minor            bigint  NOT NULL,
    trial_end            timestamptz,
    current_period_end   timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL,
    -- The provider holding the subscription (stripe, paypal, xendit, internal): the
    -- payment_provider_type of its subscription_started's envelope, whatever the customer
    -- registered through; provider-sync carries requests out at the same one.
    payment_provider_type text   NOT NULL,
    PRIMARY KEY (customer_id, subscription_id)
) WITH (fillfactor = 70);
CREATE INDEX subscriptions_plan ON subscriptions (plan_id);

-- Lifetime money per customer and currency: exact sums over any number of payments.
CREATE TABLE totals (
    customer_id    uuid    NOT NULL,
    currency       text    NOT NULL,
    paid_minor     numeric NOT NULL,
    refunded_minor numeric NOT NULL,
    PRIMARY KEY (customer_id, currency)
) WITH (fillfactor = 70);

-- Every payment attempt of a customer (succeeded or failed), with what was refunded of it and
-- what refund requests still processing ask for (decision 0025): the dashboard's refund form.
CREATE TABLE payments (
    customer_id            uuid        NOT NULL,
    payment_id             text        NOT NULL,
    -- Business time of its payment_succeeded / payment_failed.
    occurred_at            timestamptz NOT NULL,
    -- succeeded or failed.
    status                 text        NOT NULL,
    amount_minor           bigint      NOT NULL,
    currency               text        NOT NULL,
    -- Sum of its refunds; at most amount_minor.
    refunded_minor         bigint      NOT NULL,
    -- Sum of its refund requests still processing.
    refund_requested_minor bigint      NOT NULL,
    PRIMARY KEY (customer_id, payment_id)
) WITH (fillfactor = 70);
CREATE INDEX payments_customer_time ON payments (customer_id, occurred_at DESC, payment_id);

-- Every event of a customer, for dashboards.
CREATE TABLE timeline (
    customer_id           uuid        NOT NULL,
    global_position       bigint      NOT NULL,
    occurred_at           timestamptz NOT NULL,
    event_type            text        NOT NULL,
    status                text        NOT NULL,
    issuer                text        NOT NULL,
    payment_provider_type text        NOT NULL,
    amount_minor          bigint,
    currency              text,
    -- The event's causation_id: for a provider's event, the provider_inbox row of its webhook.
    causation_id          uuid,
    -- The subscription the event is about, if any (pairs a request with its outcome).
    subscription_id       text,
    -- A failed event's reason as the provider gave it (cancellation_failed, payment_failed,
    -- refund_failed).
    failure_code          text,
    failure_message       text,
    PRIMARY KEY (customer_id, global_position)
);
