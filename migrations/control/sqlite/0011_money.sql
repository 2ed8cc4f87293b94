-- The money ledger (issue 17): TigerBeetle-style accounts and immutable
-- transfers in integer minor units (rules: the delta-money crate), and the
-- bounties they escrow.

CREATE TABLE money_accounts (
    id TEXT PRIMARY KEY,
    -- The owning tenant (tenant and escrow accounts); NULL for the
    -- platform's fee account and the external account of a currency.
    tenant_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('tenant', 'escrow', 'platform', 'external')),
    currency TEXT NOT NULL,
    -- delta_money::AccountFlags::bits.
    flags BIGINT NOT NULL,
    debits_pending BIGINT NOT NULL CHECK (debits_pending >= 0),
    debits_posted BIGINT NOT NULL CHECK (debits_posted >= 0),
    credits_pending BIGINT NOT NULL CHECK (credits_pending >= 0),
    credits_posted BIGINT NOT NULL CHECK (credits_posted >= 0),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    -- The flags, again as constraints: a defect in the rules cannot
    -- overdraw an account.
    CHECK ((flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted),
    CHECK ((flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted)
);
CREATE INDEX money_accounts_tenant ON money_accounts (tenant_id, currency);

CREATE TABLE money_transfers (
    id TEXT PRIMARY KEY,
    debit_account_id TEXT NOT NULL REFERENCES money_accounts(id),
    credit_account_id TEXT NOT NULL REFERENCES money_accounts(id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('single_phase', 'pending', 'post_pending', 'void_pending')),
    pending_id TEXT REFERENCES money_transfers(id),
    created_at_ms BIGINT NOT NULL,
    CHECK ((kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL))
);
-- A pending transfer is settled (posted or voided) at most once, whatever
-- the code above does.
CREATE UNIQUE INDEX money_transfers_settles ON money_transfers (pending_id)
    WHERE pending_id IS NOT NULL;
CREATE INDEX money_transfers_debit ON money_transfers (debit_account_id, created_at_ms);
CREATE INDEX money_transfers_credit ON money_transfers (credit_account_id, created_at_ms);

CREATE TRIGGER money_transfers_no_update BEFORE UPDATE ON money_transfers
BEGIN
    SELECT RAISE(ABORT, 'money_transfers is immutable');
END;
CREATE TRIGGER money_transfers_no_delete BEFORE DELETE ON money_transfers
BEGIN
    SELECT RAISE(ABORT, 'money_transfers is immutable');
END;

-- Where each pending transfer stands (the transfers themselves never change).
CREATE TABLE money_pending (
    transfer_id TEXT PRIMARY KEY REFERENCES money_transfers(id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    settled_by TEXT REFERENCES money_transfers(id),
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE bounties (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    spec TEXT NOT NULL,
    reward_minor BIGINT NOT NULL CHECK (reward_minor > 0),
    currency TEXT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    verifier TEXT NOT NULL,
    verifier_limits TEXT NOT NULL,
    policy TEXT NOT NULL CHECK (policy IN ('manual', 'auto')),
    status TEXT NOT NULL CHECK (status IN ('draft', 'open', 'completed', 'cancelled', 'expired')),
    escrow_transfer_id TEXT,
    approved_submission_id TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX bounties_list ON bounties (created_at_ms, id);
CREATE INDEX bounties_tenant ON bounties (tenant_id, created_at_ms, id);
CREATE INDEX bounties_due ON bounties (status, deadline_ms);

CREATE TABLE bounty_submissions (
    id TEXT PRIMARY KEY,
    bounty_id TEXT NOT NULL REFERENCES bounties(id) ON DELETE CASCADE,
    -- The submitter's tenant, user and agent.
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending_verification', 'verified',
        'verification_failed', 'approved', 'rejected')),
    passed BIGINT,
    score_milli BIGINT,
    -- The verdict's reasons (JSON array) or why verification failed.
    report TEXT,
    attempts BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX bounty_submissions_bounty ON bounty_submissions (bounty_id, created_at_ms, id);
CREATE INDEX bounty_submissions_tenant ON bounty_submissions (tenant_id, created_at_ms, id);
CREATE INDEX bounty_submissions_pending ON bounty_submissions (status, updated_at_ms);
