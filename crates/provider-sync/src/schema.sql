-- Schema `provider_sync` (the projector's; rebuilt from the event table at will): where each
-- subscription is held, from its `subscription_started` (the envelope's provider and account).
CREATE TABLE subscriptions (
    customer_id     uuid NOT NULL,
    subscription_id text NOT NULL,
    provider        text NOT NULL,
    account_id      text NOT NULL,
    PRIMARY KEY (customer_id, subscription_id)
);

-- Where each payment was collected, from its `payment_succeeded` (the envelope's provider and
-- account), and the invoice it paid: a refund is asked of that provider.
CREATE TABLE payments (
    customer_id uuid NOT NULL,
    payment_id  text NOT NULL,
    provider    text NOT NULL,
    account_id  text NOT NULL,
    invoice_id  text NOT NULL,
    PRIMARY KEY (customer_id, payment_id)
);
