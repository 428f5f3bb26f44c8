-- Assets, checklists (versioned), plans, inspections, work orders, room status.

CREATE TABLE assets (
    asset_id             uuid PRIMARY KEY,
    property_id          text NOT NULL,
    name                 text NOT NULL,
    category             smallint NOT NULL CHECK (category BETWEEN 1 AND 10),
    building             text NOT NULL DEFAULT '',
    floor                text NOT NULL DEFAULT '',
    room                 text NOT NULL DEFAULT '',
    install_date         date,
    expected_life_years  integer NOT NULL DEFAULT 0,
    vendor               text NOT NULL DEFAULT '',
    warranty_end         date,
    replacement_currency text NOT NULL DEFAULT '',
    replacement_minor    bigint NOT NULL DEFAULT 0 CHECK (replacement_minor >= 0),
    status               text NOT NULL DEFAULT 'in_service',
    meter_hours          bigint NOT NULL DEFAULT 0,
    meter_cycles         bigint NOT NULL DEFAULT 0,
    replacement_flagged  boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assets_by_room ON assets (property_id, room);

CREATE TABLE checklists (
    checklist_id uuid NOT NULL,
    version      integer NOT NULL,
    name         text NOT NULL,
    items        jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checklist_id, version)
);

CREATE TABLE plans (
    plan_id          uuid PRIMARY KEY,
    property_id      text NOT NULL,
    checklist_id     uuid NOT NULL,
    asset_id         uuid REFERENCES assets,
    frequency        smallint NOT NULL,
    interval_value   bigint NOT NULL DEFAULT 0,
    start_date       date NOT NULL,
    due_time         time NOT NULL,
    time_zone        text NOT NULL,
    responsible_role text NOT NULL DEFAULT '',
    -- Meter plans: the reading when the last inspection was done.
    meter_at_last_done bigint NOT NULL DEFAULT 0
);

-- (plan, occurrence) is unique: scheduling twice creates nothing twice.
CREATE TABLE inspections (
    inspection_id     uuid PRIMARY KEY,
    plan_id           uuid NOT NULL REFERENCES plans,
    occurrence        text NOT NULL,
    property_id       text NOT NULL,
    asset_id          uuid,
    checklist_id      uuid NOT NULL,
    checklist_version integer NOT NULL,
    due_at            timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'due',
    done_at           timestamptz,
    results           jsonb NOT NULL DEFAULT '[]',
    failed_items      text[] NOT NULL DEFAULT '{}',
    UNIQUE (plan_id, occurrence)
);
CREATE INDEX inspections_due ON inspections (property_id, due_at) WHERE status = 'due';

CREATE TABLE work_orders (
    work_order_id    uuid PRIMARY KEY,
    property_id      text NOT NULL,
    asset_id         uuid,
    room             text NOT NULL DEFAULT '',
    title            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    priority         smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    source           smallint NOT NULL CHECK (source BETWEEN 1 AND 4),
    source_id        text NOT NULL DEFAULT '',
    status           text NOT NULL,
    assignee         text NOT NULL DEFAULT '',
    hold_reason      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    respond_due_at   timestamptz NOT NULL,
    fix_due_at       timestamptz NOT NULL,
    responded_at     timestamptz,
    done_at          timestamptz,
    labour_currency  text NOT NULL DEFAULT '',
    labour_minor     bigint NOT NULL DEFAULT 0 CHECK (labour_minor >= 0),
    parts_currency   text NOT NULL DEFAULT '',
    parts_minor      bigint NOT NULL DEFAULT 0 CHECK (parts_minor >= 0),
    repeat_escalated boolean NOT NULL DEFAULT false,
    etag             uuid NOT NULL
);
CREATE INDEX work_orders_open ON work_orders (property_id, room) WHERE status NOT IN ('done', 'verified', 'cancelled');
CREATE INDEX work_orders_by_asset ON work_orders (asset_id, done_at);
-- A complaint opens at most one work order.
CREATE UNIQUE INDEX work_orders_one_per_complaint ON work_orders (source_id) WHERE source = 2;

-- Every status change, for pause-aware repair clocks.
CREATE TABLE work_order_history (
    work_order_id uuid NOT NULL REFERENCES work_orders,
    at            timestamptz NOT NULL,
    status        text NOT NULL,
    actor         text NOT NULL
);
CREATE INDEX work_order_history_by_order ON work_order_history (work_order_id, at);

CREATE TABLE room_status (
    property_id     text NOT NULL,
    room            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('in_service', 'out_of_order', 'out_of_service')),
    reason          text NOT NULL DEFAULT '',
    since           timestamptz NOT NULL,
    expected_return timestamptz,
    PRIMARY KEY (property_id, room)
);

-- Closed out-of-order periods, for room-nights lost.
CREATE TABLE room_outages (
    property_id text NOT NULL,
    room        text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL
);
