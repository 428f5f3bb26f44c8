-- Each chain's preference groups (PreferenceGroups, protobuf-encoded): names in display order
-- and how many likes a guest may hold in each. Chains without a row use the defaults (room 10,
-- floor 3, pillow 3, diet 10, amenities 15, communication 5), as loyalty programs do.
CREATE TABLE preference_groups (
    chain_id   text PRIMARY KEY,
    groups     bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
