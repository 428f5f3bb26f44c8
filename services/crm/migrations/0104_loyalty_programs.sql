-- Each chain's loyalty program (LoyaltyProgram, protobuf-encoded): tier names and thresholds,
-- qualifying window, grace, downgrade limit, and points expiry. Chains without a row use the
-- defaults (5 nights or 3 stays for regular, 25 nights or 10 stays for VIP, rolling 12 months,
-- 90 days' grace, one step down per evaluation; the balance expires after 24 months without
-- activity).
CREATE TABLE loyalty_programs (
    chain_id   text PRIMARY KEY,
    program    bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
