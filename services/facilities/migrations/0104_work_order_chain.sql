-- The chain a work order belongs to (from the caller's token, or from the complaint that opened
-- it), so its events carry the chain and readers with a whole-chain scope see them. Work orders
-- written before keep '' and stay visible to property-scoped readers only.
ALTER TABLE work_orders ADD COLUMN chain_id text NOT NULL DEFAULT '';
