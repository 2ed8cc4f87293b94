-- Node state (crate delta-node, module `store`): components, deployments,
-- runs and the durable usage outbox.
--
-- Timestamps are Unix milliseconds. JSON columns hold serde_json text of the
-- records in `node/src/model.rs`; the scalar columns next to them are copies
-- kept for filtering and indexing, written together with the JSON.

-- Components the node holds, named by the sha256 (hex) of their bytes.
CREATE TABLE components (
    sha256        TEXT    PRIMARY KEY NOT NULL,
    size          INTEGER NOT NULL CHECK (size >= 0),
    world         TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Deployments. `spec` is the `AgentSpec` as JSON (the source of truth);
-- `tenant_id` and `component` repeat two of its fields so that "is this
-- component still deployed?" is an index lookup.
CREATE TABLE agents (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL,
    component     TEXT    NOT NULL,
    spec          TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX agents_by_component ON agents (component);

-- Runs. No foreign key to agents: a run outlives a deleted deployment until
-- its own expiry. `outcome`, `logs` and `usage` are set exactly when the run
-- is finished; `expires_at_ms` too (the expiry sweep hard-deletes the row).
CREATE TABLE runs (
    id             TEXT    PRIMARY KEY NOT NULL,
    agent_id       TEXT    NOT NULL,
    tenant_id      TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'finished')),
    input          TEXT    NOT NULL,
    outcome        TEXT,
    logs           TEXT,
    usage          TEXT,
    created_at_ms  INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    expires_at_ms  INTEGER,
    CHECK ((status = 'finished') = (outcome IS NOT NULL AND usage IS NOT NULL
                                    AND finished_at_ms IS NOT NULL
                                    AND expires_at_ms IS NOT NULL))
) STRICT;

CREATE INDEX runs_by_expiry ON runs (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_agent ON runs (agent_id, created_at_ms);
CREATE INDEX runs_by_created ON runs (created_at_ms);

-- Usage records waiting for (or already acknowledged by) the control plane.
-- A row is inserted in the same transaction that finishes its run, so an
-- acknowledged run's usage is on disk; `run_id` is UNIQUE so a run is never
-- queued twice. `payload` is the `RunUsage` as JSON and is self-contained:
-- the run row may be swept before the usage is sent. `sent_at_ms` is set
-- when the control plane acknowledged the batch; sent rows are deleted after
-- a retention period, unsent rows never.
CREATE TABLE usage_outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT    UNIQUE NOT NULL,
    tenant_id     TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    sent_at_ms    INTEGER
) STRICT;

-- Serves both the reporter's scan (`sent_at_ms IS NULL ORDER BY seq`) and
-- the retention sweep (`sent_at_ms < ?`).
CREATE INDEX usage_outbox_by_sent ON usage_outbox (sent_at_ms, seq);
