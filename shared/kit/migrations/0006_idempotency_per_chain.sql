-- Request ids are claimed per chain: two chains that happen to use the same request id (a
-- PMS's own numbering, say) no longer refuse each other. Keys claimed before this keep the
-- chain '' and stay global: a retry of such a request finds its stored answer, and the id is
-- not claimed again for another chain (see `idempotency::claim`).
ALTER TABLE idempotency_keys ADD COLUMN chain_id text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (chain_id, method, request_id);
ALTER TABLE idempotency_keys ALTER COLUMN chain_id DROP DEFAULT;
