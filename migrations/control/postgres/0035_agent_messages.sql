-- Messages between agents (issue 14, `delta:agent/agents`). One row per
-- message, written in the transaction that queues the receiver's run, so a
-- message is stored exactly when its run is. The id is derived from the
-- sender's run id and the message's position in that run, so a sender run
-- delivered again finds its messages here and starts nothing new.
-- `depth` is the length of the chain of messages that led to this one (1:
-- sent by a run nothing else started), bounded by `[agent_messages]
-- max_depth`.
CREATE TABLE agent_messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    from_agent_id TEXT NOT NULL,
    from_run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    to_agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    depth BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX agent_messages_from ON agent_messages (tenant_id, from_agent_id, created_at_ms);
CREATE INDEX agent_messages_to ON agent_messages (tenant_id, to_agent_id, created_at_ms);
CREATE INDEX agent_messages_tenant ON agent_messages (tenant_id, created_at_ms, id);
-- Retention (`record_retention_secs`, `crate::sweep`).
CREATE INDEX agent_messages_created ON agent_messages (created_at_ms);
