-- Each event records the transaction that wrote it. A positioned event leaves a dead entry in the
-- index of unpositioned events until vacuum comes by (autovacuum waits for a fifth of the table
-- to be dead, and the outbox is never pruned), and the relay's scan from the lowest id walked
-- all of them on every pass: thousands of heap checks per pass under a busy intake.
--
-- Transactions older than the oldest one still running have all ended, so once a pass has
-- positioned every visible event, no event of theirs can appear later. The relay remembers that
-- horizon and scans unpositioned events from it on, by the writing transaction's id. Events
-- written before this column existed read 0 and are found by the relay's first pass after a
-- start, which scans from 0.
ALTER TABLE outbox_events ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE outbox_events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
DROP INDEX outbox_events_unpositioned;
CREATE INDEX outbox_events_unpositioned ON outbox_events (txid, id) WHERE position IS NULL;
