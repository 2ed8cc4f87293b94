-- Every deployment of an agent (issue 19's deploy history): what was
-- deployed where, why, by whom. Written in the transaction that changes
-- the agent (created, updated), or right after a move by the monitor.
CREATE TABLE agent_deployments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    component TEXT NOT NULL,
    node_id TEXT,
    limits TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('created', 'updated', 'moved')),
    user_id TEXT,
    request_id TEXT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX agent_deployments_agent ON agent_deployments (tenant_id, agent_id, at_ms, id);
-- The audit log's filters (action, user) walk the same newest-first order.
CREATE INDEX audit_log_action ON audit_log (tenant_id, action, at_ms, id);
