-- The durable run queue (issue 13): one row per run the control plane
-- accepted, the dispatcher's work list. `pending` rows are due at
-- `not_before_ms` (delivered to the agent's current node by a replica's
-- dispatcher); `dispatched` ones are on a node (re-queued when it is lost);
-- `finished` once the run's end is known; `dead` after `max_deliveries`
-- failed deliveries, with the last error (`POST /v1/runs/{id}/retry`).
CREATE TABLE run_queue (
    run_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    input TEXT NOT NULL,
    deliveries BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'dispatched', 'finished', 'dead')),
    not_before_ms BIGINT NOT NULL,
    last_error TEXT,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX run_queue_due ON run_queue (state, not_before_ms);
