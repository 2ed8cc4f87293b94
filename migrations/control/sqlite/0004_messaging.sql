-- Templates and the message audit log (issue 7). The twin in the other
-- backend's folder must stay column-for-column identical.
--
-- A template is authored in a tenant (draft), reviewed by an admin
-- (approved or rejected) and shipped to the nodes hosting the agents it is
-- granted to. Any change of its content returns it to draft and bumps
-- `version`. `variables` is a JSON object: variable name -> longest value
-- in characters. `name` is the id guests send (unique in the tenant).
CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    subject TEXT,
    body TEXT NOT NULL,
    html BIGINT NOT NULL,
    variables TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'approved', 'rejected')),
    version BIGINT NOT NULL,
    created_by TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_by TEXT,
    updated_at_ms BIGINT NOT NULL,
    approved_by TEXT,
    approved_at_ms BIGINT,
    rejected_by TEXT,
    rejected_at_ms BIGINT,
    rejection_reason TEXT,
    UNIQUE (tenant_id, name)
);
CREATE INDEX templates_tenant ON templates (tenant_id, created_at_ms, id);

-- Every message attempt nodes report (in their usage records), sent or
-- refused. `id` is `<run_id>:<index in the run's log>`, so a record
-- ingested twice adds nothing. `reason` is the WIT send-error case.
CREATE TABLE message_log (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    template_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    tokens BIGINT NOT NULL,
    provider_id TEXT,
    at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX message_log_tenant ON message_log (tenant_id, at_ms, id);
CREATE INDEX message_log_agent ON message_log (tenant_id, agent_id, at_ms, id);
