-- Complaints, their clocks, timeline, remedies and escalations; property settings; KPI rollups.

CREATE TABLE property_settings (
    property_id text PRIMARY KEY,
    chain_id    text NOT NULL,
    settings    bytea NOT NULL,
    etag        uuid NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);

CREATE TABLE complaints (
    complaint_id        uuid PRIMARY KEY,
    chain_id            text NOT NULL,
    property_id         text NOT NULL,
    guest_id            text NOT NULL DEFAULT '',
    guest_name          text NOT NULL DEFAULT '',
    guest_email         text NOT NULL DEFAULT '',
    guest_phone         text NOT NULL DEFAULT '',
    reservation_ref     text NOT NULL DEFAULT '',
    room                text NOT NULL DEFAULT '',
    stay_phase          smallint NOT NULL DEFAULT 0,
    channel             smallint NOT NULL CHECK (channel BETWEEN 1 AND 7),
    category            text NOT NULL DEFAULT '',
    subcategory         text NOT NULL DEFAULT '',
    cause               smallint NOT NULL DEFAULT 0,
    impact              smallint NOT NULL DEFAULT 0,
    urgency             smallint NOT NULL CHECK (urgency BETWEEN 1 AND 4),
    description         text NOT NULL CHECK (description <> ''),
    department          text NOT NULL DEFAULT '',
    assignee            text NOT NULL DEFAULT '',
    status              text NOT NULL,
    -- The state WaitingOnGuest returns to.
    resume_status       text,
    guest_tier          text NOT NULL DEFAULT '',
    tier_checked        boolean NOT NULL DEFAULT false,
    repeat_issue        boolean NOT NULL DEFAULT false,
    repeat_of           uuid,
    hotspot             boolean NOT NULL DEFAULT false,
    reopen_count        integer NOT NULL DEFAULT 0,
    waited_on_guest     boolean NOT NULL DEFAULT false,
    escalation_level    text NOT NULL DEFAULT 'agent',
    escalation_count    integer NOT NULL DEFAULT 0,
    first_escalated_at  timestamptz,
    root_cause_summary  text NOT NULL DEFAULT '',
    last_reason         text NOT NULL DEFAULT '',
    csat                smallint CHECK (csat BETWEEN 1 AND 5),
    nps                 smallint CHECK (nps BETWEEN 0 AND 10),
    rating_comment      text NOT NULL DEFAULT '',
    rated_by            text NOT NULL DEFAULT '',
    rated_at            timestamptz,
    work_order_ids      text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL,
    created_by          text NOT NULL,
    updated_at          timestamptz NOT NULL,
    first_response_at   timestamptz,
    first_resolved_at   timestamptz,
    resolved_at         timestamptz,
    closed_at           timestamptz,
    follow_up_due_at    timestamptz,
    -- When the escalation watcher must next look at this complaint (NULL: nothing pending).
    next_escalation_at  timestamptz,
    etag                uuid NOT NULL
);
CREATE INDEX complaints_by_property ON complaints (property_id, created_at DESC, complaint_id);
CREATE INDEX complaints_escalation_due ON complaints (next_escalation_at) WHERE next_escalation_at IS NOT NULL;
CREATE INDEX complaints_by_guest ON complaints (guest_id, category, created_at) WHERE guest_id <> '';
CREATE INDEX complaints_by_room ON complaints (property_id, room, category, created_at) WHERE room <> '';
CREATE INDEX complaints_tier_pending ON complaints (created_at) WHERE NOT tier_checked AND guest_id <> '';

-- One row per stage clock. Targets are copied at start so later policy edits do not move
-- deadlines that are already running.
CREATE TABLE complaint_clocks (
    complaint_id   uuid NOT NULL REFERENCES complaints ON DELETE CASCADE,
    stage          smallint NOT NULL CHECK (stage BETWEEN 1 AND 5),
    target_minutes integer NOT NULL DEFAULT 0,
    target_days    integer NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL,
    stopped_at     timestamptz,
    due_at         timestamptz NOT NULL,
    -- Set when the watcher saw the clock pass 100 % while running.
    breached_at    timestamptz,
    PRIMARY KEY (complaint_id, stage)
);

-- Append-only history: who, when, what, from-state, to-state.
CREATE TABLE complaint_timeline (
    complaint_id uuid NOT NULL REFERENCES complaints ON DELETE CASCADE,
    sequence     bigserial,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    kind         text NOT NULL,
    from_status  text,
    to_status    text,
    note         text NOT NULL DEFAULT '',
    PRIMARY KEY (complaint_id, sequence)
);

-- One row per fired escalation trigger: the primary key makes each fire exactly once, whichever
-- watcher replica gets there first.
CREATE TABLE complaint_escalations (
    complaint_id uuid NOT NULL REFERENCES complaints ON DELETE CASCADE,
    trigger      text NOT NULL,
    fired_at     timestamptz NOT NULL,
    from_level   text NOT NULL,
    to_level     text NOT NULL,
    PRIMARY KEY (complaint_id, trigger)
);

CREATE TABLE remedies (
    remedy_id      uuid PRIMARY KEY,
    complaint_id   uuid NOT NULL REFERENCES complaints ON DELETE CASCADE,
    kind           smallint NOT NULL CHECK (kind BETWEEN 1 AND 9),
    currency_code  text NOT NULL DEFAULT '',
    amount_minor   bigint NOT NULL DEFAULT 0 CHECK (amount_minor >= 0),
    points         bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    description    text NOT NULL DEFAULT '',
    status         text NOT NULL,
    proposed_by    text NOT NULL,
    proposed_role  text NOT NULL,
    required_role  text NOT NULL DEFAULT '',
    decided_by     text NOT NULL DEFAULT '',
    decision_note  text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    decided_at     timestamptz,
    delivered_at   timestamptz
);
CREATE INDEX remedies_by_complaint ON remedies (complaint_id);

-- Properties seen by this service, with their chain (for chain-wide queries without scans).
CREATE TABLE known_properties (
    property_id text PRIMARY KEY,
    chain_id    text NOT NULL
);
