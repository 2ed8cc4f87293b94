-- Idempotency-Key records (PostgreSQL; the twin in ../sqlite/ is column-for-column
-- identical). One row per (scope, key): scope is the caller's credential
-- (an HMAC of it, never the credential itself), so one caller can never see
-- another's stored response.
--
-- state 'pending': a request holds the key until locked_until_ms (renewed
-- while its handler runs; a crashed replica's claim lapses and may be taken
-- over). state 'complete': status and the sealed response (AES-256-GCM,
-- base64; it may hold secrets such as a new API key) are replayed until
-- created_at_ms + idempotency_ttl_secs, then swept.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'complete')),
    lock_token TEXT NOT NULL,
    locked_until_ms BIGINT NOT NULL,
    status BIGINT,
    response TEXT,
    created_at_ms BIGINT NOT NULL,
    completed_at_ms BIGINT,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);
