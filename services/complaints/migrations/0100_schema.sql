-- The complaints schema. Tables are added by later migrations (numbered from 101), each owned by
-- this service alone; no other service reads them.
COMMENT ON SCHEMA complaints IS 'Service recovery: complaint intake, classification, SLA clocks, escalation, remedies and follow-up.';
