-- A stay's ledger sources (`stay:<property>/<reservation>`, then `#1`, `#2`, ...) now write
-- `%`, `/` and `#` in the ids percent-encoded, so that no two stays share one (reservation
-- `R#1` and the second posting of `R`). Ids without those characters read as before; the
-- postings of stays whose ids hold one move to the new spelling, so corrections find them.
-- A posting whose old spelling is also another stay's is left as it is: which of the two
-- wrote it cannot be told, and the other stay's spelling has not changed. So is one whose
-- new spelling is taken. The rewrite goes through a spelling unique by entry, so no step
-- meets another entry's source. (No helper functions: service roles may not create any.)
WITH spelled AS (
    SELECT s.property_id, s.pms_reservation_id,
           'stay:' || s.property_id || '/' || s.pms_reservation_id
               || CASE WHEN n.n = 0 THEN '' ELSE '#' || n.n END AS old_source,
           'stay:' || replace(replace(replace(s.property_id, '%', '%25'), '/', '%2F'), '#', '%23')
               || '/' || replace(replace(replace(s.pms_reservation_id, '%', '%25'), '/', '%2F'), '#', '%23')
               || CASE WHEN n.n = 0 THEN '' ELSE '#' || n.n END AS new_source
    FROM stays s CROSS JOIN LATERAL generate_series(0, s.earn_postings) AS n(n)
    WHERE (s.property_id || s.pms_reservation_id) ~ '[%/#]'
), moves AS (
    SELECT l.entry_id, v.new_source
    FROM spelled v JOIN ledger l ON l.source = v.old_source
    WHERE NOT EXISTS (
            SELECT 1 FROM stays o
            WHERE (o.property_id, o.pms_reservation_id) <> (v.property_id, v.pms_reservation_id)
              AND (v.old_source = 'stay:' || o.property_id || '/' || o.pms_reservation_id
                   OR (starts_with(v.old_source, 'stay:' || o.property_id || '/' || o.pms_reservation_id || '#')
                       AND substr(v.old_source,
                                  length('stay:' || o.property_id || '/' || o.pms_reservation_id || '#') + 1)
                           ~ '^[0-9]+$')))
      AND NOT EXISTS (SELECT 1 FROM ledger x WHERE x.source = v.new_source)
)
UPDATE ledger l SET source = 'escaping:' || l.entry_id || ':' || m.new_source
FROM moves m WHERE l.entry_id = m.entry_id;

UPDATE ledger SET source = regexp_replace(source, '^escaping:[0-9]+:', '')
WHERE source LIKE 'escaping:%';
