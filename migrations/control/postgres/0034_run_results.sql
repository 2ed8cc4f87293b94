-- Result webhooks (issue 14): what started each run, so that `run.completed`
-- and `run.failed` can say so, and the per-endpoint filters that restrict
-- those events to some agents and/or triggers.

-- `api` (POST /v1/agents/{id}/runs), `schedule`, `webhook` (an inbound
-- webhook) or `bounty_attempt`; `trigger_id` names the schedule, webhook
-- or attempt (none for `api`).
ALTER TABLE runs ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'api';
ALTER TABLE runs ADD COLUMN trigger_id TEXT;

-- JSON arrays of ids; empty: every agent / every trigger.
ALTER TABLE webhook_endpoints ADD COLUMN agent_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhook_endpoints ADD COLUMN trigger_ids TEXT NOT NULL DEFAULT '[]';
