-- Operator review of templates (issue 18): a template a tenant admin
-- approved may wait for a platform operator (`pending_operator`), and a
-- tenant an operator has approved a template of is trusted from then on
-- (`[templates] operator_review = "first"`).
ALTER TABLE templates DROP CONSTRAINT IF EXISTS templates_status_check;
ALTER TABLE templates ADD CONSTRAINT templates_status_check
    CHECK (status IN ('draft', 'pending_operator', 'approved', 'rejected'));
CREATE INDEX templates_pending ON templates (status, updated_at_ms, id);

CREATE TABLE template_trust (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    trusted_by TEXT NOT NULL,
    trusted_at_ms BIGINT NOT NULL
);
