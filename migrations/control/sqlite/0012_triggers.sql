-- Triggers (issue 14): schedules and inbound webhooks start runs of an
-- agent without anyone calling POST /v1/agents/{id}/runs.
--
-- A schedule's next fire is claimed by a conditional UPDATE on
-- next_fire_at_ms (the value the replica saw), so of several control-plane
-- replicas exactly one fires each tick. next_tick_ms is the cron tick;
-- next_fire_at_ms is that tick plus the schedule's jitter.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    input TEXT NOT NULL,
    catch_up TEXT NOT NULL CHECK (catch_up IN ('skip', 'run_once')),
    jitter_secs BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    next_tick_ms BIGINT,
    next_fire_at_ms BIGINT,
    last_fire_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (enabled, next_fire_at_ms);
CREATE INDEX schedules_tenant ON schedules (tenant_id, agent_id, created_at_ms, id);
CREATE INDEX schedules_list ON schedules (tenant_id, created_at_ms, id);

-- One row per fire (created_at_ms: when it fired): the run it started, or
-- why none (the node refused). The unique tick is a second guard against
-- a double fire.
CREATE TABLE schedule_fires (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    tick_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    run_id TEXT,
    error TEXT,
    UNIQUE (schedule_id, tick_ms)
);
-- The sweep deletes fires after record_retention_secs; lists page by
-- (tenant, schedule, time).
CREATE INDEX schedule_fires_retention ON schedule_fires (created_at_ms);
CREATE INDEX schedule_fires_list ON schedule_fires (tenant_id, schedule_id, created_at_ms, id);

-- The secret is sealed (AES-256-GCM, key derived from the access-token
-- secret): verification needs it in the clear, so it cannot be hashed.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    secret_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    rotated_at_ms BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at_ms, id);

-- Signatures seen within the replay window; a second delivery of one is
-- refused. Rows past expires_at_ms are deleted by the sweep.
CREATE TABLE webhook_signatures (
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    signature TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, signature)
);
CREATE INDEX webhook_signatures_expiry ON webhook_signatures (expires_at_ms);
