-- A PMS may correct a stay after it earned: other nights, cancelled or no-show after all,
-- another guest. The points then move to what the corrected stay earns, and to find what the
-- stay holds, each stay records the nights it credited and how many ledger postings it made
-- (sources `stay:<property>/<reservation>`, then `...#1`, `#2`, ...). The upsert never changes
-- these two columns, so its RETURNING reads them as they were before a correction.
ALTER TABLE stays
    ADD COLUMN earned_nights integer NOT NULL DEFAULT 0 CHECK (earned_nights >= 0),
    ADD COLUMN earn_postings integer NOT NULL DEFAULT 0 CHECK (earn_postings >= 0);

-- Stays that earned before: one posting, for their nights.
UPDATE stays s SET earned_nights = s.nights, earn_postings = 1
FROM ledger l
WHERE l.source = 'stay:' || s.property_id || '/' || s.pms_reservation_id;
