-- Guests' ratings of how much each touchpoint matters (1–5), one row per touchpoint per
-- survey response; a response is recorded once per request_id.
CREATE TABLE touchpoint_responses (
    response_id uuid PRIMARY KEY,
    request_id  text NOT NULL UNIQUE,
    property_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE touchpoint_ratings (
    response_id uuid NOT NULL REFERENCES touchpoint_responses,
    property_id text NOT NULL,
    touchpoint  text NOT NULL,
    importance  smallint NOT NULL CHECK (importance BETWEEN 1 AND 5),
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (response_id, touchpoint)
);
CREATE INDEX touchpoint_ratings_by_property ON touchpoint_ratings (property_id, recorded_at);
