-- When a work order's clocks stopped short of the work being done: the start of its current
-- hold, or its cancellation. NULL while the clocks run; once the work is done, done_at ends
-- them. The breach flags an order reports are read against it, so an order waiting for parts is
-- not reported overdue for the time it waits, and one cancelled before anyone responded is not
-- reported as a missed response for ever after.
ALTER TABLE work_orders ADD COLUMN clocks_stopped_at timestamptz;

-- Backfill: the orders on hold or cancelled now stopped when they last entered that status.
UPDATE work_orders w
SET clocks_stopped_at = (
    SELECT max(h.at) FROM work_order_history h
    WHERE h.work_order_id = w.work_order_id AND h.status = w.status
)
WHERE w.status IN ('on_hold', 'cancelled');
