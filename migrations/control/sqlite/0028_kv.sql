-- Durable per-agent key-value state (delta:agent/kv; rules in the delta-kv
-- crate). kv_usage is written first by every mutating transaction, so an
-- agent's writes are serialised and its quota (keys, bytes of keys plus
-- values) holds; seq is the agent's last version number (never reused).
-- Deleting the agent deletes its state.
CREATE TABLE kv_usage (
    agent_id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE TABLE kv_entries (
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);
