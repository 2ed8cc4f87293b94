-- Payments backends (issue 17): a bounty remembers which backend funded it;
-- with Stripe, the PaymentIntent that holds the business's card
-- authorization and where it stands.
ALTER TABLE bounties ADD COLUMN payment_provider TEXT NOT NULL DEFAULT 'ledger';
ALTER TABLE bounties ADD COLUMN payment_intent_id TEXT;
-- awaiting_payment | authorized | capture_pending | captured |
-- cancel_pending | canceled | capture_failed
ALTER TABLE bounties ADD COLUMN payment_status TEXT;
-- PaymentIntents made for this bounty so far (a canceled one is replaced by
-- a new one, under a new idempotency key).
ALTER TABLE bounties ADD COLUMN payment_attempts BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX bounties_payment_intent ON bounties (payment_intent_id);

-- Calls to the payments provider decided in a transaction and made after
-- it commits (an outbox): retried with the same idempotency key until the
-- provider answers, so a crash between the decision and the call loses
-- nothing and a retry never moves money twice.
CREATE TABLE payment_ops (
    -- Also the idempotency key sent to the provider.
    id TEXT PRIMARY KEY,
    bounty_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('capture', 'cancel')),
    payment_intent_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX payment_ops_due ON payment_ops (state, next_attempt_at_ms);

-- Stripe events already acted on: a redelivered or replayed event is
-- answered 200 and changes nothing.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    payment_intent_id TEXT,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX stripe_events_received ON stripe_events (received_at_ms);
