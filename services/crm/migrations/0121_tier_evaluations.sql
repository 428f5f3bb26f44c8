-- The latest time each chain's tiers were evaluated as of. Staff may rerun an evaluation that
-- was missed, but not one for a time before it: that would judge guests by a past they have
-- moved on from (raising tiers since lost, or starting a grace period long over).
CREATE TABLE tier_evaluations (
    chain_id text COLLATE "C" PRIMARY KEY,
    as_of    timestamptz NOT NULL,
    run_at   timestamptz NOT NULL DEFAULT now()
);
