-- Retention (control/src/sweep.rs): the sweep deletes finished leases,
-- decided token requests, usage records and batches after
-- record_retention_secs, and message attempts after audit_retention_secs,
-- a chunk per table per pass. These indexes make each pass a range probe
-- instead of a table scan.
CREATE INDEX budget_leases_ended ON budget_leases (expires_at_ms) WHERE status <> 'active';
CREATE INDEX token_requests_decided ON token_requests (created_at_ms) WHERE status <> 'pending';
CREATE INDEX usage_records_received ON usage_records (received_at_ms);
CREATE INDEX usage_batches_received ON usage_batches (received_at_ms);
CREATE INDEX message_log_at ON message_log (at_ms);
