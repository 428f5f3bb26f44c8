-- Room-inspection programs: the rooms to cover and the share inspected each period; each
-- scheduled audit of such a program names its room.
ALTER TABLE programs
    ADD COLUMN rooms text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rooms_percent integer NOT NULL DEFAULT 0 CHECK (rooms_percent BETWEEN 0 AND 100);
ALTER TABLE audits ADD COLUMN room text NOT NULL DEFAULT '';
