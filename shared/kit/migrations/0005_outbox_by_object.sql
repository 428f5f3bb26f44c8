-- The events about one object (subject `<collection>/<id>[/...]`), found by an erasure that
-- rewrites them (`rewrite_payloads`, CRM's tier events). Without it each erasure read the whole
-- event log, which is never pruned: in a long-lived deployment one erasure could outlast the
-- statement timeout and hold up the erasure feed behind it.
CREATE INDEX outbox_events_by_object
    ON outbox_events (split_part(subject, '/', 1), split_part(subject, '/', 2));
