-- The facilities schema. Tables are added by later migrations (numbered from 101), each owned by
-- this service alone; no other service reads them.
COMMENT ON SCHEMA facilities IS 'Facilities: assets, preventive inspections, defects and work orders, out-of-order rooms.';
