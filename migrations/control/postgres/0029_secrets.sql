-- Tenants' secrets (control/src/vault.rs): each value sealed with
-- AES-256-GCM under the vault key (never stored here), its own random
-- nonce, the tenant id and the name as associated data. No plaintext column.
-- Names collate as "C" so that pages are in byte order.
CREATE TABLE tenant_secrets (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
