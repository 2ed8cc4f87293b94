-- Issue 15: a generation that moves with every change that can make a
-- cached API-key check wrong (control/src/keycache.rs). Triggers bump it in
-- the same transaction as the change, so no code path that revokes a key,
-- changes a role, removes a member or deletes a user can forget to.
-- SQLite replicas share the file and read the row at most every
-- `auth_cache_check_ms`; the PostgreSQL twin also NOTIFYs.
CREATE TABLE auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

-- Not last_used_at_ms: it is written once a minute per key in use and
-- changes no decision.
CREATE TRIGGER auth_gen_api_keys_update
AFTER UPDATE OF tenant_id, user_id, prefix, secret_hash, scopes, expires_at_ms, revoked_at_ms
ON api_keys
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER auth_gen_api_keys_delete AFTER DELETE ON api_keys
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER auth_gen_memberships_update AFTER UPDATE ON memberships
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER auth_gen_memberships_delete AFTER DELETE ON memberships
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
-- The email decides whether the user is an operator.
CREATE TRIGGER auth_gen_users_update AFTER UPDATE OF email ON users
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER auth_gen_users_delete AFTER DELETE ON users
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER auth_gen_tenants_delete AFTER DELETE ON tenants
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;
