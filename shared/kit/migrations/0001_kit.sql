-- Tables the service kit keeps in every service's schema (the schema is on search_path).

-- Transactional outbox: a state change and its event commit together. `position` is assigned
-- after commit by a single relay holding an advisory lock, so readers never see a later
-- position before an earlier one (no gaps in the feed).
CREATE TABLE outbox_events (
    id            bigserial PRIMARY KEY,
    position      bigint UNIQUE,
    event_id      uuid NOT NULL UNIQUE,
    event_type    text NOT NULL,
    subject       text NOT NULL,
    chain_id      text NOT NULL DEFAULT '',
    property_id   text NOT NULL DEFAULT '',
    occur_time    timestamptz NOT NULL,
    payload_type  text NOT NULL,
    payload       bytea NOT NULL,
    traceparent   text NOT NULL DEFAULT '',
    positioned_at timestamptz
);
CREATE INDEX outbox_events_unpositioned ON outbox_events (id) WHERE position IS NULL;

-- Idempotent creates: the request id, a hash of the request and the encoded response, written in
-- the same transaction as the effect.
CREATE TABLE idempotency_keys (
    method       text NOT NULL,
    request_id   text NOT NULL,
    request_hash bytea NOT NULL,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, request_id)
);

-- Where each event consumer of this service stands in another service's feed. Updated in the
-- same transaction as the effect of each event, so every effect happens exactly once.
CREATE TABLE consumer_cursors (
    consumer   text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer could not apply for a permanent reason, kept for inspection.
CREATE TABLE consumer_dead_letters (
    consumer   text NOT NULL,
    position   bigint NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    error      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, position)
);
