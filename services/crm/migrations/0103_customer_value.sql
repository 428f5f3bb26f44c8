-- Customer value (DOMAIN §4) per guest from the last evaluation, and each chain's formula
-- parameters and segments.

ALTER TABLE guests
    ADD COLUMN customer_value double precision NOT NULL DEFAULT 0,
    ADD COLUMN value_segment  text NOT NULL DEFAULT '';
CREATE INDEX guests_by_segment ON guests (chain_id, value_segment);

CREATE TABLE value_policies (
    chain_id               text PRIMARY KEY,
    window_months          integer NOT NULL CHECK (window_months BETWEEN 1 AND 60),
    spend_weight           double precision NOT NULL CHECK (spend_weight >= 0),
    satisfaction_weight    double precision NOT NULL CHECK (satisfaction_weight >= 0),
    min_relationship_years double precision NOT NULL CHECK (min_relationship_years > 0),
    -- [{"name": "top", "min_value": 50000}, ...], highest first.
    segments               jsonb NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    updated_by             text NOT NULL
);
