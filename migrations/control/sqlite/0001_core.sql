-- Control plane core: identity, tenants, agents, nodes, runs (SQLite).
-- Times are milliseconds since the Unix epoch; JSON is TEXT. The PostgreSQL
-- twin in ../postgres/ must stay column-for-column identical.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Refresh tokens are stored hashed; a family is one login's chain of
-- rotations. Reusing a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    rotated_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- API keys: shown once; stored as a SHA-256 of the secret part, found by
-- the visible prefix.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    last_used_at_ms BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at_ms, id);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    user_id TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    request_id TEXT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at_ms, id);

CREATE TABLE components (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    world TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    load BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('up', 'down')),
    registered_at_ms BIGINT NOT NULL,
    last_heartbeat_ms BIGINT NOT NULL
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('main', 'bot')),
    parent_agent_id TEXT REFERENCES agents(id),
    component TEXT NOT NULL,
    limits TEXT NOT NULL,
    grants TEXT NOT NULL,
    paused BIGINT NOT NULL,
    node_id TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at_ms, id);
CREATE INDEX agents_node ON agents (node_id);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    usage TEXT,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX runs_tenant ON runs (tenant_id, created_at_ms, id);
CREATE INDEX runs_agent ON runs (agent_id, created_at_ms, id);

-- Usage reported by nodes, deduplicated by run id (issue 7 builds the
-- queries on top).
CREATE TABLE usage_records (
    run_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX usage_records_tenant ON usage_records (tenant_id, received_at_ms);
