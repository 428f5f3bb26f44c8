-- Every erasure, as the record that it happened: the pseudonym the erased guest's records now
-- carry, who erased (subject and role), for which chain, why, and when. Never the original id
-- or anything else personal: that is what was erased.
CREATE TABLE erasure_log (
    pseudonym text COLLATE "C" PRIMARY KEY,
    chain_id  text COLLATE "C" NOT NULL,
    actor     text NOT NULL,
    role      text NOT NULL,
    reason    text NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX erasure_log_by_chain ON erasure_log (chain_id, erased_at);
