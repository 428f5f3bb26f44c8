-- When a corrective action was done, for "closed on time" (done by its due date).
ALTER TABLE findings ADD COLUMN done_at timestamptz;
UPDATE findings SET done_at = created_at WHERE status IN ('done', 'verified');
CREATE INDEX findings_by_due ON findings (property_id, due_date);
CREATE INDEX audits_by_submission ON audits (property_id, submitted_at) WHERE submitted_at IS NOT NULL;
