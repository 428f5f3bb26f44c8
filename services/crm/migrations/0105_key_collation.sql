-- Identifiers are compared byte by byte. Guest, property, chain, reservation, complaint and
-- ledger-source ids are opaque keys: no reader sorts them for people, so the database's
-- language collation (strcoll on every comparison in every index) buys nothing and costs the
-- bulk stay import and the ledger most of their comparison time. "C" compares with memcmp and
-- lets sorts use abbreviated keys. Every column that is joined to another gets the same
-- collation, so joins keep using the indexes on both sides.
ALTER TABLE guests
    ALTER COLUMN guest_id TYPE text COLLATE "C",
    ALTER COLUMN chain_id TYPE text COLLATE "C",
    ALTER COLUMN merged_into TYPE text COLLATE "C";
ALTER TABLE preferences ALTER COLUMN guest_id TYPE text COLLATE "C";
ALTER TABLE service_failures
    ALTER COLUMN complaint_id TYPE text COLLATE "C",
    ALTER COLUMN guest_id TYPE text COLLATE "C",
    ALTER COLUMN property_id TYPE text COLLATE "C";
ALTER TABLE stays
    ALTER COLUMN property_id TYPE text COLLATE "C",
    ALTER COLUMN pms_reservation_id TYPE text COLLATE "C",
    ALTER COLUMN guest_id TYPE text COLLATE "C";
ALTER TABLE loyalty_accounts ALTER COLUMN guest_id TYPE text COLLATE "C";
ALTER TABLE ledger
    ALTER COLUMN guest_id TYPE text COLLATE "C",
    ALTER COLUMN source TYPE text COLLATE "C";
ALTER TABLE tier_history ALTER COLUMN guest_id TYPE text COLLATE "C";
ALTER TABLE contact_access_log
    ALTER COLUMN guest_id TYPE text COLLATE "C",
    ALTER COLUMN property_id TYPE text COLLATE "C";
ALTER TABLE care_tasks
    ALTER COLUMN chain_id TYPE text COLLATE "C",
    ALTER COLUMN property_id TYPE text COLLATE "C",
    ALTER COLUMN pms_reservation_id TYPE text COLLATE "C",
    ALTER COLUMN guest_id TYPE text COLLATE "C";
ALTER TABLE value_policies ALTER COLUMN chain_id TYPE text COLLATE "C";
ALTER TABLE loyalty_programs ALTER COLUMN chain_id TYPE text COLLATE "C";
