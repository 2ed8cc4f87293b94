-- The user who created an agent: budgets (user -> main agent -> bots, seed
-- 000) and usage queries are per user.
ALTER TABLE agents ADD COLUMN owner_user_id TEXT;
CREATE INDEX agents_owner ON agents (tenant_id, owner_user_id);
