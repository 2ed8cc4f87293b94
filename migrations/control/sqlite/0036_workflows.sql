-- Workflows (issue 14): stored definitions (a DAG of agent runs), their
-- runs, each run's steps and events. A step's run is an ordinary run
-- (trigger `workflow`) in `runs` and `run_queue`; the transaction that
-- ends that run also records the step's end and queues the steps it
-- unblocks, so a crash neither repeats a finished step nor loses the next.
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX workflows_tenant ON workflows (tenant_id, created_at_ms, id);

CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    -- The definition as it was when the run started.
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    output TEXT,
    error TEXT,
    tokens_used BIGINT NOT NULL DEFAULT 0,
    -- Events so far (the last `workflow_events.seq`).
    event_seq BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX workflow_runs_tenant ON workflow_runs (tenant_id, created_at_ms, id);

CREATE TABLE workflow_steps (
    workflow_run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('waiting', 'running', 'completed', 'failed', 'cancelled')),
    attempts BIGINT NOT NULL DEFAULT 0,
    -- The current (or last) attempt's run.
    run_id TEXT,
    output TEXT,
    error TEXT,
    started_at_ms BIGINT,
    deadline_ms BIGINT,
    finished_at_ms BIGINT,
    PRIMARY KEY (workflow_run_id, step_id)
);
CREATE INDEX workflow_steps_run ON workflow_steps (run_id);
CREATE INDEX workflow_steps_deadline ON workflow_steps (status, deadline_ms);

CREATE TABLE workflow_events (
    workflow_run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workflow_run_id, seq)
);
