-- Operator review of templates (issue 18): a template a tenant admin
-- approved may wait for a platform operator (`pending_operator`), and a
-- tenant an operator has approved a template of is trusted from then on
-- (`[templates] operator_review = "first"`). SQLite cannot change a CHECK
-- constraint: the table is rebuilt (nothing references it).
CREATE TABLE templates_new (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    subject TEXT,
    body TEXT NOT NULL,
    html BIGINT NOT NULL,
    variables TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'pending_operator', 'approved', 'rejected')),
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
INSERT INTO templates_new (id, tenant_id, name, channel, subject, body, html, variables, status,
    version, created_by, created_at_ms, updated_by, updated_at_ms, approved_by, approved_at_ms,
    rejected_by, rejected_at_ms, rejection_reason)
SELECT id, tenant_id, name, channel, subject, body, html, variables, status, version, created_by,
    created_at_ms, updated_by, updated_at_ms, approved_by, approved_at_ms, rejected_by,
    rejected_at_ms, rejection_reason FROM templates;
DROP TABLE templates;
ALTER TABLE templates_new RENAME TO templates;
CREATE INDEX templates_tenant ON templates (tenant_id, created_at_ms, id);
CREATE INDEX templates_pending ON templates (status, updated_at_ms, id);

CREATE TABLE template_trust (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    trusted_by TEXT NOT NULL,
    trusted_at_ms BIGINT NOT NULL
);
