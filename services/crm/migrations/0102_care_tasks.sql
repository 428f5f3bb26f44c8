-- Daily care tasks: birthdays and anniversaries during a stay, VIP and strategic arrivals, and
-- guests with a recent unrecovered failure. One task per stay and kind, so generating a day twice
-- (or on every day of a stay) creates nothing twice.

CREATE TABLE care_tasks (
    care_task_id       uuid PRIMARY KEY,
    chain_id           text NOT NULL,
    property_id        text NOT NULL,
    pms_reservation_id text NOT NULL,
    kind               smallint NOT NULL CHECK (kind BETWEEN 1 AND 4),
    due_date           date NOT NULL,
    guest_id           text NOT NULL,
    reason             text NOT NULL,
    done               boolean NOT NULL DEFAULT false,
    assignee           text NOT NULL DEFAULT '',
    completed_by       text NOT NULL DEFAULT '',
    completed_at       timestamptz,
    outcome            text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text NOT NULL,
    UNIQUE (property_id, pms_reservation_id, kind),
    CHECK (done = (completed_at IS NOT NULL))
);
CREATE INDEX care_tasks_by_day ON care_tasks (property_id, due_date, kind, guest_id);

-- Arrivals and in-house lists read stays by property and date.
CREATE INDEX stays_by_property_dates ON stays (property_id, arrival_date, departure_date);
