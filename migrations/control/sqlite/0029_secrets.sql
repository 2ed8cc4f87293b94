-- Tenants' secrets (control/src/vault.rs): each value sealed with
-- AES-256-GCM under the vault key (never stored here), its own random
-- nonce, the tenant id and the name as associated data. No plaintext column.
CREATE TABLE tenant_secrets (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
