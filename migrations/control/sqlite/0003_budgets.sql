-- Token budgets (seed 000) with the control plane as the authority (issue 7), SQLite.
-- The model is the ledger crate's (ledger/src/lib.rs): a user's tier gives a
-- monthly allocation; main agents are carved from it (what no agent holds is
-- the user's pool); bots are carved from their main agent. Nodes spend
-- through short leases; bots ask their main agent for more through token
-- requests. Every movement is a row of budget_entries, which is append-only.
-- Times are milliseconds since the Unix epoch. The twin in ../postgres/ must
-- stay column-for-column identical.

-- One per (tenant, user), created lazily on the default tier.
-- carved = what the user's agents hold + retired; pool = monthly_allocation -
-- carved. retired = tokens spent this period by agents since deleted (spent
-- tokens do not come back before the next period).
CREATE TABLE budget_users (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    monthly_allocation BIGINT NOT NULL,
    carved BIGINT NOT NULL,
    retired BIGINT NOT NULL,
    period TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    CHECK (retired >= 0 AND retired <= carved AND carved <= monthly_allocation)
);

-- One per agent. available = allocated - spent - leased, never negative
-- (the CHECK is the last line of defence; every change is a conditional
-- UPDATE that refuses first). grant_amount is what the account gets back
-- at each roll-over (a main agent's includes what its bots hold).
-- last_op_amount is scratch space: an UPDATE's expressions see the old row
-- and its RETURNING the new one, so an UPDATE that computes an amount
-- (a partial lease, a capped charge) stores it here to return it.
CREATE TABLE budget_accounts (
    agent_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('main', 'bot')),
    parent_agent_id TEXT,
    grant_amount BIGINT NOT NULL,
    allocated BIGINT NOT NULL,
    spent BIGINT NOT NULL,
    leased BIGINT NOT NULL,
    auto_approve_limit BIGINT NOT NULL,
    max_request BIGINT NOT NULL,
    period TEXT NOT NULL,
    last_op_amount BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES budget_users (tenant_id, user_id),
    CHECK (grant_amount >= 0 AND spent >= 0 AND leased >= 0 AND allocated >= spent + leased
           AND auto_approve_limit >= 0 AND max_request >= 0)
);
CREATE INDEX budget_accounts_user ON budget_accounts (tenant_id, user_id);
CREATE INDEX budget_accounts_parent ON budget_accounts (parent_agent_id);

-- A slice of an agent's budget reserved for a node. spent is what the node
-- reported when returning it (NULL until then).
CREATE TABLE budget_leases (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    granted BIGINT NOT NULL CHECK (granted > 0),
    spent BIGINT,
    status TEXT NOT NULL CHECK (status IN ('active', 'returned', 'expired')),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    returned_at_ms BIGINT
);
CREATE INDEX budget_leases_due ON budget_leases (expires_at_ms) WHERE status = 'active';
CREATE INDEX budget_leases_agent ON budget_leases (agent_id, status);

-- A bot's request for more tokens from its main agent.
CREATE TABLE token_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    bot_agent_id TEXT NOT NULL,
    parent_agent_id TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    decided_by TEXT,
    decided_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX token_requests_tenant ON token_requests (tenant_id, created_at_ms, id);
CREATE INDEX token_requests_pending ON token_requests (created_at_ms) WHERE status = 'pending';

-- Every movement. An account's row (agent_id set) carries the signed change
-- it made to allocated, spent, leased and grant_amount; a user's row
-- (agent_id NULL) the change to monthly_allocation, carved and retired. So
-- summing an account's or a user's rows gives its balance (a deleted
-- account's rows sum to zero).
CREATE TABLE budget_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    d_allocated BIGINT NOT NULL,
    d_spent BIGINT NOT NULL,
    d_leased BIGINT NOT NULL,
    d_grant BIGINT NOT NULL,
    d_monthly BIGINT NOT NULL,
    d_carved BIGINT NOT NULL,
    d_retired BIGINT NOT NULL,
    uncovered BIGINT NOT NULL,
    lease_id TEXT,
    request_id TEXT,
    counterparty TEXT,
    note TEXT,
    period TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX budget_entries_account ON budget_entries (tenant_id, user_id, agent_id);
CREATE INDEX budget_entries_lease ON budget_entries (lease_id) WHERE lease_id IS NOT NULL;

CREATE TRIGGER budget_entries_no_update BEFORE UPDATE ON budget_entries
BEGIN
    SELECT RAISE(ABORT, 'budget_entries is append-only');
END;
CREATE TRIGGER budget_entries_no_delete BEFORE DELETE ON budget_entries
BEGIN
    SELECT RAISE(ABORT, 'budget_entries is append-only');
END;
