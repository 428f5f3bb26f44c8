-- Erasures made before erasure took the profiles merged into a guest along left those profiles
-- in place, redirecting to the pseudonym, and announced only the guest's own id: complaints
-- filed under a merged id kept the guest's contact details, and the old id still led to the
-- pseudonym. Each such profile now goes the way erasure takes merged profiles: what is still
-- filed under it moves to the pseudonym (preferences and consent choices are deleted), the row
-- is deleted, and the crm.guest.erased event the erasure owed it is written, so every other
-- service scrubs its copies. Their stored CreateGuest answers can only be matched by decoding
-- them, and stay.
-- A work table in the schema (a service's role may not create temporary tables), dropped at
-- the end.
CREATE TABLE old_merged AS
SELECT m.guest_id, m.chain_id, e.guest_id AS pseudonym
FROM guests m JOIN guests e ON e.guest_id = m.merged_into
WHERE e.erased;

UPDATE service_failures t SET guest_id = o.pseudonym FROM old_merged o WHERE t.guest_id = o.guest_id;
UPDATE stays t SET guest_id = o.pseudonym FROM old_merged o WHERE t.guest_id = o.guest_id;
UPDATE ledger t SET guest_id = o.pseudonym FROM old_merged o WHERE t.guest_id = o.guest_id;
UPDATE tier_history t SET guest_id = o.pseudonym FROM old_merged o WHERE t.guest_id = o.guest_id;
UPDATE contact_access_log t SET guest_id = o.pseudonym FROM old_merged o WHERE t.guest_id = o.guest_id;
UPDATE care_tasks t SET guest_id = o.pseudonym, reason = '', outcome = ''
FROM old_merged o WHERE t.guest_id = o.guest_id;
-- An account under an old id (points credited after the merge took the rest along) adds to
-- the pseudonym's, as the ledger entries moved above.
INSERT INTO loyalty_accounts (guest_id)
SELECT DISTINCT o.pseudonym FROM old_merged o JOIN loyalty_accounts a ON a.guest_id = o.guest_id
ON CONFLICT (guest_id) DO NOTHING;
UPDATE loyalty_accounts p SET balance = p.balance + m.balance, lifetime_earned = p.lifetime_earned + m.lifetime_earned
FROM (SELECT o.pseudonym, sum(a.balance) AS balance, sum(a.lifetime_earned) AS lifetime_earned
      FROM old_merged o JOIN loyalty_accounts a ON a.guest_id = o.guest_id GROUP BY o.pseudonym) m
WHERE p.guest_id = m.pseudonym;
DELETE FROM loyalty_accounts a USING old_merged o WHERE a.guest_id = o.guest_id;
DELETE FROM preferences t USING old_merged o WHERE t.guest_id = o.guest_id;
DELETE FROM consent_history t USING old_merged o WHERE t.guest_id = o.guest_id;
DELETE FROM guests g USING old_merged o WHERE g.guest_id = o.guest_id;

-- GuestErased { guest_id = 1 }: field 1, length-delimited, then the id's length as a varint.
INSERT INTO outbox_events (event_id, event_type, subject, chain_id, property_id, occur_time, payload_type, payload)
SELECT gen_random_uuid(), 'crm.guest.erased', 'guests/' || o.guest_id, o.chain_id, '', now(),
       'type.googleapis.com/guestloop.crm.v1.GuestErased',
       '\x0a'::bytea
       || CASE WHEN octet_length(o.guest_id) < 128
               THEN set_byte('\x00'::bytea, 0, octet_length(o.guest_id))
               ELSE set_byte(set_byte('\x0000'::bytea, 0, (octet_length(o.guest_id) & 127) | 128),
                             1, octet_length(o.guest_id) >> 7)
          END
       || convert_to(o.guest_id, 'UTF8')
FROM old_merged o ORDER BY o.guest_id;

DROP TABLE old_merged;
