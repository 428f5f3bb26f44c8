-- Standards, versioned templates, programs, audits, findings, SERVQUAL surveys, staff observations.

CREATE TABLE standards (
    standard_id uuid PRIMARY KEY,
    code        text NOT NULL,
    -- '' for chain-wide standards; a property id for a property's own extension.
    property_id text NOT NULL DEFAULT '',
    title       text NOT NULL,
    department  text NOT NULL DEFAULT '',
    touchpoint  text NOT NULL DEFAULT '',
    kind        smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    min_value   double precision NOT NULL DEFAULT 0,
    max_value   double precision NOT NULL DEFAULT 0,
    unit        text NOT NULL DEFAULT '',
    dimension   smallint NOT NULL CHECK (dimension BETWEEN 1 AND 5),
    weight      double precision NOT NULL CHECK (weight > 0),
    UNIQUE (code, property_id)
);

CREATE TABLE templates (
    template_id    uuid NOT NULL,
    version        integer NOT NULL,
    name           text NOT NULL,
    sections       bytea NOT NULL,
    critical_rule  smallint NOT NULL,
    pass_threshold double precision NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

CREATE TABLE programs (
    program_id        uuid PRIMARY KEY,
    property_id       text NOT NULL,
    kind              smallint NOT NULL,
    template_id       uuid NOT NULL,
    cadence           smallint NOT NULL,
    audits_per_period integer NOT NULL CHECK (audits_per_period > 0),
    starts_on         date NOT NULL
);

CREATE TABLE audits (
    audit_id         uuid PRIMARY KEY,
    program_id       uuid NOT NULL REFERENCES programs,
    property_id      text NOT NULL,
    template_id      uuid NOT NULL,
    template_version integer NOT NULL,
    period           text NOT NULL,
    slot             integer NOT NULL,
    due_at           timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled',
    auditor_id       text NOT NULL DEFAULT '',
    answers          bytea,
    result           bytea,
    overall          double precision,
    passed           boolean NOT NULL DEFAULT false,
    submitted_at     timestamptz,
    UNIQUE (program_id, period, slot)
);

CREATE TABLE findings (
    finding_id    uuid PRIMARY KEY,
    audit_id      uuid NOT NULL REFERENCES audits,
    program_id    uuid NOT NULL,
    property_id   text NOT NULL,
    standard_code text NOT NULL,
    repeat        boolean NOT NULL DEFAULT false,
    action        text NOT NULL DEFAULT '',
    owner         text NOT NULL DEFAULT '',
    due_date      date,
    status        text NOT NULL DEFAULT 'open',
    verified_by   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX findings_by_property ON findings (property_id, status);

CREATE TABLE servqual_surveys (
    survey_id    uuid PRIMARY KEY,
    property_id  text NOT NULL,
    request_id   text UNIQUE,
    submitted_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE servqual_answers (
    survey_id   uuid NOT NULL REFERENCES servqual_surveys,
    item        smallint NOT NULL CHECK (item BETWEEN 1 AND 22),
    expectation smallint NOT NULL CHECK (expectation BETWEEN 1 AND 7),
    perception  smallint NOT NULL CHECK (perception BETWEEN 1 AND 7),
    PRIMARY KEY (survey_id, item)
);

CREATE TABLE staff_observations (
    audit_id      uuid NOT NULL REFERENCES audits,
    staff_id      text NOT NULL,
    property_id   text NOT NULL,
    standard_code text NOT NULL,
    score         double precision NOT NULL,
    observed_at   timestamptz NOT NULL
);
CREATE INDEX staff_observations_by_property ON staff_observations (property_id, observed_at);
