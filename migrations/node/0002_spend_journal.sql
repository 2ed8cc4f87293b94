-- The spend journal (issue 13): what this node spent against budget leases,
-- durable before a guest sees the result, so that a node killed with leases
-- out reports their real spend when it starts again (the control plane
-- counted their whole grant as spent meanwhile, provisionally).

-- Every lease the control plane granted this node, written before the lease
-- is used; deleted once the control plane confirmed its return.
CREATE TABLE lease_journal (
    lease_id      TEXT    PRIMARY KEY NOT NULL,
    agent_id      TEXT    NOT NULL,
    granted       INTEGER NOT NULL CHECK (granted >= 0),
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One row per reservation against a lease, keyed by a spend id unique to
-- the lease and reservation: written with the reserved amount before the
-- guest's call proceeds (settled = 0: an operation in flight, counted at
-- its whole reservation if the node dies), then replaced by what was used
-- (settled = 1) before the guest sees the result; deleted when released.
CREATE TABLE spend_journal (
    spend_id TEXT    PRIMARY KEY NOT NULL,
    lease_id TEXT    NOT NULL,
    agent_id TEXT    NOT NULL,
    tokens   INTEGER NOT NULL CHECK (tokens >= 0),
    settled  INTEGER NOT NULL CHECK (settled IN (0, 1)),
    at_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX spend_journal_lease ON spend_journal (lease_id);
