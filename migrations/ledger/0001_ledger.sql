-- Token budget ledger (crate delta-ledger): user -> main agent -> bots.
--
-- Amounts are tokens (INTEGER, 64-bit). Timestamps are Unix milliseconds.
-- The CHECK constraints restate the ledger's invariants so that a bug in the
-- code fails the transaction instead of storing a negative or over-reserved
-- balance.

-- A user (tenant owner) and their tier's monthly allocation for `period`.
-- `carved` is the sum of the grants of the user's main agents; what is left
-- (`monthly_allocation - carved`) is the user's reserve pool.
CREATE TABLE users (
    user_id            TEXT    PRIMARY KEY NOT NULL,
    tier               TEXT    NOT NULL,
    monthly_allocation INTEGER NOT NULL CHECK (monthly_allocation >= 0),
    carved             INTEGER NOT NULL DEFAULT 0
                       CHECK (carved >= 0 AND carved <= monthly_allocation),
    period             TEXT    NOT NULL CHECK (period GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

-- One budget account per agent. `grant_amount` is what the agent is
-- re-granted every period (a main agent's grant includes what it carved for
-- its bots); `allocated` is the current period's budget after carving and
-- approved requests. available = allocated - spent - reserved.
CREATE TABLE accounts (
    agent_id           TEXT    PRIMARY KEY NOT NULL,
    kind               TEXT    NOT NULL CHECK (kind IN ('main', 'bot')),
    parent_id          TEXT    REFERENCES accounts (agent_id),
    user_id            TEXT    NOT NULL REFERENCES users (user_id),
    grant_amount       INTEGER NOT NULL CHECK (grant_amount >= 0),
    allocated          INTEGER NOT NULL CHECK (allocated >= 0),
    spent              INTEGER NOT NULL CHECK (spent >= 0),
    reserved           INTEGER NOT NULL CHECK (reserved >= 0),
    auto_approve_limit INTEGER NOT NULL DEFAULT 0 CHECK (auto_approve_limit >= 0),
    max_request        INTEGER NOT NULL DEFAULT 0 CHECK (max_request >= 0),
    period             TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    -- Never spent or held more than was allocated.
    CHECK (spent + reserved <= allocated),
    -- Main agents have no parent; bots always have one.
    CHECK ((kind = 'main' AND parent_id IS NULL) OR (kind = 'bot' AND parent_id IS NOT NULL))
) STRICT;

CREATE INDEX accounts_by_parent ON accounts (parent_id);
CREATE INDEX accounts_by_user ON accounts (user_id);

-- Open holds. A row exists from `reserve` until `settle` / `release`.
-- `period` is the period the hold was made in: a roll-over returns held
-- tokens to the new period's budget, and a later settle of an old-period
-- hold charges the new period only as far as it allows.
CREATE TABLE reservations (
    id         INTEGER PRIMARY KEY NOT NULL,
    agent_id   TEXT    NOT NULL REFERENCES accounts (agent_id),
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    purpose    TEXT    NOT NULL,
    run_id     TEXT    NOT NULL,
    period     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- No index by agent: the writer keeps open holds in memory, and an extra
-- index would be maintained on every reserve and settle.

-- A bot's request for more tokens from its parent main agent.
CREATE TABLE token_requests (
    id         INTEGER PRIMARY KEY NOT NULL,
    bot_id     TEXT    NOT NULL REFERENCES accounts (agent_id),
    parent_id  TEXT    NOT NULL REFERENCES accounts (agent_id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    reason     TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    created_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT,
    -- A request is decided exactly when it is no longer pending.
    CHECK ((status = 'pending') = (decided_at IS NULL))
) STRICT;

CREATE INDEX token_requests_by_bot ON token_requests (bot_id);
CREATE INDEX token_requests_pending ON token_requests (status) WHERE status = 'pending';

-- Every movement, append-only. For an account entry (agent_id set) the
-- d_* columns are the signed changes applied to that account, so summing
-- them per agent reproduces its balance. User entries (agent_id NULL) record
-- changes to a user's allocation and carry zero deltas.
CREATE TABLE ledger_entries (
    -- Rowid: rows are never deleted (trigger below), so it only grows;
    -- AUTOINCREMENT would add a write to sqlite_sequence per statement.
    seq            INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    period         TEXT    NOT NULL,
    user_id        TEXT    NOT NULL REFERENCES users (user_id),
    agent_id       TEXT    REFERENCES accounts (agent_id),
    kind           TEXT    NOT NULL CHECK (kind IN (
                       'user_allocation', 'allocate', 'carve_out', 'carve_in',
                       'reserve', 'settle', 'release', 'uncovered',
                       'request_out', 'request_in', 'request_pending',
                       'request_denied', 'request_expired', 'rollover')),
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    d_allocated    INTEGER NOT NULL DEFAULT 0,
    d_spent        INTEGER NOT NULL DEFAULT 0,
    d_reserved     INTEGER NOT NULL DEFAULT 0,
    reservation_id INTEGER,
    request_id     INTEGER,
    counterparty   TEXT,
    note           TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX ledger_entries_by_agent ON ledger_entries (agent_id, seq);

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
