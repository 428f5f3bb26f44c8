-- A stay's ledger sources (`stay:<property>/<reservation>`, then `#1`, `#2`, ...) now write
-- `%`, `/` and `#` in the ids percent-encoded, so that no two stays share one (reservation
-- `R#1` and the second posting of `R`). Ids without those characters read as before; the
-- postings of stays whose ids hold one move to the new spelling, so corrections find them.
-- A posting whose old spelling is also another stay's is left as it is: which of the two
-- wrote it cannot be told, and the other stay's spelling has not changed. The rewrite goes
-- through a spelling unique by entry, so no step meets another entry's source.
CREATE FUNCTION pg_temp.escaped(id text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(replace(id, '%', '%25'), '/', '%2F'), '#', '%23') $$;

-- Whether `source` is one of the postings the stay (property, reservation) may have made.
CREATE FUNCTION pg_temp.posted_by(source text, property text, reservation text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS
$$ SELECT source = 'stay:' || property || '/' || reservation
       OR (left(source, length('stay:' || property || '/' || reservation || '#'))
             = 'stay:' || property || '/' || reservation || '#'
           AND substr(source, length('stay:' || property || '/' || reservation || '#') + 1) ~ '^[0-9]+$') $$;

UPDATE ledger l
SET source = 'escaping:' || l.entry_id || ':stay:' || pg_temp.escaped(s.property_id) || '/'
             || pg_temp.escaped(s.pms_reservation_id)
             || CASE WHEN n.n = 0 THEN '' ELSE '#' || n.n END
FROM stays s CROSS JOIN LATERAL generate_series(0, s.earn_postings) AS n(n)
WHERE (s.property_id || s.pms_reservation_id) ~ '[%/#]'
  AND l.source = 'stay:' || s.property_id || '/' || s.pms_reservation_id
                 || CASE WHEN n.n = 0 THEN '' ELSE '#' || n.n END
  AND NOT EXISTS (SELECT 1 FROM stays o
                  WHERE (o.property_id, o.pms_reservation_id) <> (s.property_id, s.pms_reservation_id)
                    AND pg_temp.posted_by(l.source, o.property_id, o.pms_reservation_id))
  AND NOT EXISTS (SELECT 1 FROM ledger x
                  WHERE x.source = 'stay:' || pg_temp.escaped(s.property_id) || '/'
                                   || pg_temp.escaped(s.pms_reservation_id)
                                   || CASE WHEN n.n = 0 THEN '' ELSE '#' || n.n END);

UPDATE ledger SET source = regexp_replace(source, '^escaping:[0-9]+:', '')
WHERE source LIKE 'escaping:%';
