-- Usage queries (issue 7): the ingestion adds each newly seen record's
-- quantities to one row per (tenant, day, agent, kind, detail); queries sum
-- these rows. `day` is the UTC date the run finished (YYYY-MM-DD);
-- `detail` is the model, channel or outcome the quantity belongs to ('' for
-- fuel and wall time); `user_id` is the agent's owner ('' if unknown).
CREATE TABLE usage_daily (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, kind, detail)
);
CREATE INDEX usage_daily_user ON usage_daily (tenant_id, user_id, day);

-- Batches received (by the node's batch id): counted once even when resent
-- or sent concurrently (records are deduplicated by run id as well).
CREATE TABLE usage_batches (
    batch_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    records BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
