-- Root cause analysis: the quality standards a complaint shows broken and the staff it names.
ALTER TABLE complaints
    ADD COLUMN standard_codes text[] NOT NULL DEFAULT '{}',
    ADD COLUMN staff_involved text[] NOT NULL DEFAULT '{}';
