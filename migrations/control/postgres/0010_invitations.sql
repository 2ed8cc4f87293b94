-- Adding a member is an invitation the invitee accepts (issue 18): the
-- inviting admin gets the same answer whether or not the email has an
-- account, so the route tells nobody which addresses are registered. An
-- invitation names an email, not a user: it waits for an account made
-- later. One pending invitation per tenant and email (a second invite
-- updates it); accepted and declined ones are kept for the record.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'declined')),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    decided_at_ms BIGINT
);
CREATE INDEX invitations_email ON invitations (email, status, created_at_ms, id);
CREATE INDEX invitations_tenant ON invitations (tenant_id, email, status);
