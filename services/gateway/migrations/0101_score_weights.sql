-- Composite-score configuration per chain (defaults apply when a chain has none).
CREATE TABLE score_weights (
    chain_id text NOT NULL,
    kpi      text NOT NULL,
    weight   double precision NOT NULL CHECK (weight >= 0 AND weight <= 1),
    target   double precision NOT NULL,
    floor    double precision NOT NULL,
    PRIMARY KEY (chain_id, kpi)
);
