-- Duplicate detection dials international numbers as written from abroad: the trunk prefix in
-- parentheses after the country code ("+33 (0)6 …") is no part of the key, so "+33 (0)6 12 34 56
-- 78" and "0033 6 12 34 56 78" match. Keys stored before are recomputed the same way.
UPDATE guests
SET phone_key = '+' || regexp_replace(regexp_replace(replace(phone, '(0)', ''), '\D', '', 'g'), '^(00)+', '')
WHERE phone_key IS NOT NULL
  AND strpos(phone, '(0)') > 0
  AND (ltrim(phone) LIKE '+%' OR ltrim(phone) LIKE '00%');
