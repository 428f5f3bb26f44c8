-- One work order per complaint at the complaint's property. The index covered the complaint id
-- alone, so an order created by hand at another property naming a complaint took that
-- complaint's place: the order its own property's complaint feed opens would have collided
-- with it. The complaints service only links and resolves orders at the complaint's property.
DROP INDEX work_orders_one_per_complaint;
CREATE UNIQUE INDEX work_orders_one_per_complaint ON work_orders (source_id, property_id) WHERE source = 2;
