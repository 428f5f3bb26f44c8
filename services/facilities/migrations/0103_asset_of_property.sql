-- A work order, plan or inspection names no asset or an asset of its own property. The handlers
-- refuse anything else with INVALID_ARGUMENT; these constraints keep every other writer honest.
-- NOT VALID: rows written before this migration are not re-checked (an older row pointing at
-- another property's asset stays readable and can still change status), new rows are.

ALTER TABLE assets ADD CONSTRAINT assets_asset_property UNIQUE (asset_id, property_id);

ALTER TABLE work_orders ADD CONSTRAINT work_orders_asset_of_property
    FOREIGN KEY (asset_id, property_id) REFERENCES assets (asset_id, property_id) NOT VALID;
ALTER TABLE plans ADD CONSTRAINT plans_asset_of_property
    FOREIGN KEY (asset_id, property_id) REFERENCES assets (asset_id, property_id) NOT VALID;
ALTER TABLE inspections ADD CONSTRAINT inspections_asset_of_property
    FOREIGN KEY (asset_id, property_id) REFERENCES assets (asset_id, property_id) NOT VALID;
