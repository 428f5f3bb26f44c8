-- When the PMS last changed each reservation (Stay.pms_modified_time), when its feed says: a row
-- older than the one held is ignored, so a resend of an older export cannot undo a later change.
-- NULL when no feed has said.
ALTER TABLE stays ADD COLUMN pms_modified_at timestamptz;
