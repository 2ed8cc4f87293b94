-- Submission artifacts (issue 17): the bytes live in the object store under
-- their SHA-256; the submission names them.
ALTER TABLE bounty_submissions ADD COLUMN artifact_sha256 TEXT;
ALTER TABLE bounty_submissions ADD COLUMN artifact_bytes BIGINT;
