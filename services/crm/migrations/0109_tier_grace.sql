-- A guest's tier grace period runs from the first evaluation that found their activity short of
-- the tier they hold (or from their last step down), not from when they reached the tier: a
-- guest whose qualifying stays age out of the window keeps the tier for the whole grace period.
-- Existing guests start with none; the next evaluation that finds one short starts it.
ALTER TABLE guests ADD COLUMN tier_short_since timestamptz;
