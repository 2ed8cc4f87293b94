-- Conservative settlement of leases a node never returned (issue 13): at
-- expiry the whole grant is counted as spent and recorded here, so nothing
-- can be overspent while the node's real spend is unknown. The lease is
-- provisional while provisional_spent > 0 and returned_at_ms IS NULL; a late
-- return corrects the charge once (credits back or charges the difference).
ALTER TABLE budget_leases ADD COLUMN provisional_spent BIGINT NOT NULL DEFAULT 0;
CREATE INDEX budget_leases_provisional ON budget_leases (tenant_id, agent_id)
    WHERE provisional_spent > 0 AND returned_at_ms IS NULL;
