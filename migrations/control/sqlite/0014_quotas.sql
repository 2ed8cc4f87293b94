-- Per-tenant quotas (issue 18): an operator's overrides of `[quotas]` (a
-- NULL column keeps the configured default), and each tenant's messages
-- admitted per UTC day (counted before delivery, so a tenant over its
-- quota sends nothing).

CREATE TABLE tenant_quotas (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    component_bytes BIGINT,
    messages_per_day BIGINT,
    agents BIGINT,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE message_days (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Days since 1970-01-01 (UTC).
    day BIGINT NOT NULL,
    admitted BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- The component sweep looks for old components first.
CREATE INDEX components_age ON components (created_at_ms);
