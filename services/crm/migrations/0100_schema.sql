-- The crm schema. Tables are added by later migrations (numbered from 101), each owned by
-- this service alone; no other service reads them.
COMMENT ON SCHEMA crm IS 'Guest memory and loyalty: profiles, consent and privacy, stays, the points ledger, tiers and care tasks.';
