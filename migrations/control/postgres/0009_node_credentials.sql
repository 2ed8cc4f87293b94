-- One credential per node (issue 18): `ncr_<hex>.<secret>`, issued by an
-- operator at enrolment or rotation, shown once. Stored as the SHA-256 of
-- the secret (32 random bytes: a fast hash is enough), found by its id, and
-- bound to one node id: the node id of every node-facing request comes
-- from here, never from the request body. A credential is refused once
-- revoked_at_ms is set or expires_at_ms has passed (a rotation that
-- retires the older ones sets their expiry).
CREATE TABLE node_credentials (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX node_credentials_node ON node_credentials (node_id, created_at_ms, id);
