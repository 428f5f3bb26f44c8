-- When a running clock reaches its property's at-risk share of the target, in working time
-- (calendar, pauses), kept with the due time on every save: the "at risk" list filter then
-- agrees with the at-risk flag the clocks show. Clocks saved before keep NULL until their next
-- save; the filter falls back to 75 % of the wall-clock span for them.
ALTER TABLE complaint_clocks ADD COLUMN at_risk_at timestamptz;
