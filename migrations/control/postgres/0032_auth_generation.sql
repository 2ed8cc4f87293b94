-- Issue 15: a generation that moves with every change that can make a
-- cached API-key check wrong (control/src/keycache.rs). Triggers bump it in
-- the same transaction as the change, so no code path that revokes a key,
-- changes a role, removes a member or deletes a user can forget to, and
-- NOTIFY `delta_auth` so that every replica's listener drops its cache as
-- the change commits (the row is the fallback while a listener reconnects).
CREATE TABLE auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION auth_generation_bump() RETURNS trigger AS $$
DECLARE
    g BIGINT;
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1
        RETURNING generation INTO g;
    PERFORM pg_notify('delta_auth', g::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Statement-level: one bump per statement however many rows it touches.
-- Not last_used_at_ms: it is written once a minute per key in use and
-- changes no decision.
CREATE TRIGGER auth_gen_api_keys_update
AFTER UPDATE OF tenant_id, user_id, prefix, secret_hash, scopes, expires_at_ms, revoked_at_ms
ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
CREATE TRIGGER auth_gen_api_keys_delete AFTER DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
CREATE TRIGGER auth_gen_memberships_update AFTER UPDATE ON memberships
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
CREATE TRIGGER auth_gen_memberships_delete AFTER DELETE ON memberships
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
-- The email decides whether the user is an operator.
CREATE TRIGGER auth_gen_users_update AFTER UPDATE OF email ON users
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
CREATE TRIGGER auth_gen_users_delete AFTER DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
CREATE TRIGGER auth_gen_tenants_delete AFTER DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION auth_generation_bump();
