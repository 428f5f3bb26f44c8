-- Which unavailable status each closed stretch had. Room-nights lost count out-of-order rooms
-- only (taken out of the sellable inventory); an out-of-service room stays in it. Stretches
-- closed before this migration were recorded on return to service only and are kept as out of
-- order.
ALTER TABLE room_outages ADD COLUMN status text NOT NULL DEFAULT 'out_of_order'
    CHECK (status IN ('out_of_order', 'out_of_service'));
