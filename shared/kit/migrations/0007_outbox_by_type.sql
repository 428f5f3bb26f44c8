-- A consumer subscribed to a few event types (complaints following only CRM's erasures, say)
-- reads the events of those types after its cursor along this index, instead of walking every
-- event of other types since its last match on each poll, which grew with the feed until it
-- outlasted the statement timeout.
CREATE INDEX outbox_events_by_type ON outbox_events (event_type, position)
    WHERE position IS NOT NULL;
