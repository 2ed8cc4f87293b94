-- Sessions ended before their access tokens expired (logout, refresh-token
-- reuse, the absolute lifetime; issue 18): every access token naming the
-- family in its `fam` claim is refused until expires_at_ms (when the last
-- of them has expired anyway); the sweep deletes the row then.
CREATE TABLE revoked_sessions (
    family_id TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at_ms);
