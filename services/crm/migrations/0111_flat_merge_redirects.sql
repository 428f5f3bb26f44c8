-- A merged profile leads straight to the profile that holds its history now: redirects made
-- before merges flattened them (A into B, then B into C left A → B → C) point at the end of
-- their chain, so an old id resolves in one step however many merges followed.
WITH RECURSIVE chain AS (
    SELECT guest_id, merged_into AS target, 1 AS depth FROM guests WHERE merged_into IS NOT NULL
    UNION ALL
    SELECT c.guest_id, g.merged_into, c.depth + 1
    FROM chain c JOIN guests g ON g.guest_id = c.target
    WHERE g.merged_into IS NOT NULL AND c.depth < 1000
),
ends AS (
    SELECT DISTINCT ON (guest_id) guest_id, target FROM chain ORDER BY guest_id, depth DESC
)
UPDATE guests g SET merged_into = e.target FROM ends e
WHERE g.guest_id = e.guest_id AND g.merged_into IS DISTINCT FROM e.target;
