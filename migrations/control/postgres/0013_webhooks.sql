-- Outbound webhooks (issue 17, phase 2): endpoints a tenant registers, the
-- outbox of events written in the same transaction as the state change
-- they describe, and one delivery per (event, endpoint) that the worker
-- claims with a lease, retries with backoff and dead-letters.

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of the event types subscribed to.
    event_types TEXT NOT NULL,
    -- The signing secret, AES-256-GCM sealed under a key derived from the
    -- access-token secret (shown once, at creation).
    secret_sealed TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at_ms, id);

-- The outbox: one row per event that at least one endpoint subscribes to.
-- Its id is the `webhook-id` every attempt (and replay) carries.
CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    -- The JSON body sent, exactly.
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX webhook_messages_created ON webhook_messages (created_at_ms);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    -- A worker's claim: until then no other replica attempts it (0: none).
    lease_until_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at_ms);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at_ms, id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);
-- Retention: finished deliveries by when they finished.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (status, updated_at_ms);
