-- The audit schema. Tables are added by later migrations (numbered from 101), each owned by
-- this service alone; no other service reads them.
COMMENT ON SCHEMA audit IS 'Quality audits: service standards, weighted templates, audits, findings and staff scores.';
