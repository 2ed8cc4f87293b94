-- Claims, agent attempts and the bounty event stream (issue 17).

-- How many agents may hold a claim at once (1..=1000), how many claims are
-- held now (active or submitted; kept beside the limit so that a claim is
-- one conditional UPDATE, safe under concurrency on both databases), and
-- the bounty's last event number (its increment also queues concurrent
-- writers of the bounty's events, so events are numbered in commit order).
ALTER TABLE bounties ADD COLUMN max_claims BIGINT NOT NULL DEFAULT 10;
ALTER TABLE bounties ADD COLUMN claims_held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE bounties ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

-- An agent's claim on another tenant's bounty: at most one per agent.
CREATE TABLE bounty_claims (
    id TEXT PRIMARY KEY,
    bounty_id TEXT NOT NULL REFERENCES bounties(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'submitted', 'released', 'expired')),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (bounty_id, agent_id)
);
CREATE INDEX bounty_claims_tenant ON bounty_claims (tenant_id, created_at_ms, id);

-- An agent run dispatched to attempt a bounty; the sweep turns a finished
-- run's output into a submission (once: the row's status is the guard).
CREATE TABLE bounty_attempts (
    id TEXT PRIMARY KEY,
    bounty_id TEXT NOT NULL REFERENCES bounties(id) ON DELETE CASCADE,
    claim_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'submitted', 'failed')),
    reason TEXT,
    submission_id TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX bounty_attempts_status ON bounty_attempts (status, updated_at_ms);

-- A bounty's events, numbered per bounty (bounties.event_seq), written in
-- the transaction of the change they report. subject_tenant_id: the
-- claimant's tenant an event is about (NULL: the whole bounty's), so that a
-- claimant's stream shows nobody else's claims or submissions.
CREATE TABLE bounty_events (
    bounty_id TEXT NOT NULL REFERENCES bounties(id) ON DELETE CASCADE,
    bounty_seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    subject_tenant_id TEXT,
    data TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (bounty_id, bounty_seq)
);
