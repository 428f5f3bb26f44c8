-- Every event is written with a NULL position and updated once the relay positions it, so a
-- b-tree on `position` that also indexes NULLs keeps an entry per positioned event under NULL
-- until vacuum; the relay's "WHERE position IS NULL" then walked all of them (tens of
-- milliseconds per wake under a busy intake). Positions are indexed only once assigned; the
-- unpositioned events have their own partial index (outbox_events_unpositioned).
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_position_key;
CREATE UNIQUE INDEX outbox_events_position ON outbox_events (position) WHERE position IS NOT NULL;
