-- Registers the properties whose work orders already name a chain (since 0104: the caller's
-- chain, or the chain of the complaint that opened the order), so that from now on only that
-- chain's callers reach them. Without this a property written before `property_chains` existed
-- would be registered by the next write of any chain, another chain's included. Work orders
-- with no chain ('') and the other tables (assets, plans, inspections, room status, settings)
-- carry no chain to go by: their properties stay unregistered until their chain writes again.
-- Should one property's work orders name several chains, the chain of its earliest work order
-- wins, as the first write would have. Properties already registered are left as they are.
INSERT INTO property_chains (property_id, chain_id)
SELECT DISTINCT ON (property_id) property_id, chain_id
FROM work_orders
WHERE chain_id NOT IN ('', '*') AND property_id <> ''
ORDER BY property_id, created_at, work_order_id
ON CONFLICT (property_id) DO NOTHING;
