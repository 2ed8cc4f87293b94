-- Registrations waiting for their emailed token (require_email_verification):
-- the token only as its SHA-256, the password already hashed.
CREATE TABLE pending_registrations (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    request_id TEXT,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX pending_registrations_expiry ON pending_registrations (expires_at_ms);
