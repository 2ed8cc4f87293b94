-- Issue 13: what becomes of an agent's unfinished runs when their node is
-- lost. `requeue` (at least once, the default) or `fail` (dead with
-- `node_lost`, for agents whose effects must not happen twice).
ALTER TABLE agents ADD COLUMN node_loss TEXT NOT NULL DEFAULT 'requeue';
