-- Each chain's tier programme (TierPolicy, protobuf-encoded); chains without a row use the
-- defaults (5 nights or 3 stays for regular, 25 nights or 10 stays for VIP, rolling 12 months,
-- 90 days' grace, one step down per evaluation).
CREATE TABLE tier_policies (
    chain_id   text PRIMARY KEY,
    policy     bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
