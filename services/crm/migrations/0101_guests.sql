-- Guests, preferences (likes and dislikes), service-failure memory, stays, the loyalty ledger,
-- tier history and the contact-details access log.

CREATE TABLE guests (
    guest_id          text PRIMARY KEY,
    chain_id          text NOT NULL,
    given_name        text NOT NULL DEFAULT '',
    family_name       text NOT NULL DEFAULT '',
    email             text NOT NULL DEFAULT '',
    phone             text NOT NULL DEFAULT '',
    -- Normalised forms for duplicate detection (NULL when absent or erased).
    email_key         text,
    phone_key         text,
    language          text NOT NULL DEFAULT '',
    birthday          date,
    anniversary       date,
    company           text NOT NULL DEFAULT '',
    consent_marketing boolean NOT NULL DEFAULT false,
    consent_profiling boolean NOT NULL DEFAULT false,
    consent_sharing   boolean NOT NULL DEFAULT false,
    consent_at        timestamptz,
    consent_source    text NOT NULL DEFAULT '',
    notes             text NOT NULL DEFAULT '',
    tier              text NOT NULL DEFAULT 'new' CHECK (tier IN ('new', 'regular', 'vip', 'strategic')),
    strategic_manual  boolean NOT NULL DEFAULT false,
    merged_into       text REFERENCES guests (guest_id),
    erased            boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text NOT NULL DEFAULT '',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    updated_by        text NOT NULL DEFAULT '',
    etag              uuid NOT NULL DEFAULT gen_random_uuid()
);
CREATE INDEX guests_by_email ON guests (chain_id, email_key) WHERE email_key IS NOT NULL;
CREATE INDEX guests_by_phone ON guests (chain_id, phone_key) WHERE phone_key IS NOT NULL;

CREATE TABLE preferences (
    preference_id uuid PRIMARY KEY,
    guest_id      text NOT NULL REFERENCES guests ON DELETE CASCADE,
    grp           text NOT NULL,
    value         text NOT NULL,
    polarity      smallint NOT NULL CHECK (polarity BETWEEN 1 AND 4),
    source        text NOT NULL DEFAULT '',
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL
);
CREATE INDEX preferences_by_guest ON preferences (guest_id);

-- Remembered from complaint events, one row per complaint.
CREATE TABLE service_failures (
    complaint_id text PRIMARY KEY,
    guest_id     text NOT NULL,
    property_id  text NOT NULL,
    category     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    remedies     text[] NOT NULL DEFAULT '{}',
    csat         smallint NOT NULL DEFAULT 0,
    recovered    boolean NOT NULL DEFAULT false
);
CREATE INDEX service_failures_by_guest ON service_failures (guest_id, occurred_at DESC);

CREATE TABLE stays (
    property_id        text NOT NULL,
    pms_reservation_id text NOT NULL,
    guest_id           text NOT NULL,
    arrival_date       date NOT NULL,
    departure_date     date NOT NULL CHECK (departure_date >= arrival_date),
    nights             integer GENERATED ALWAYS AS (departure_date - arrival_date) STORED,
    room               text NOT NULL DEFAULT '',
    rate_currency      text NOT NULL DEFAULT '',
    rate_minor         bigint NOT NULL DEFAULT 0 CHECK (rate_minor >= 0),
    spend_currency     text NOT NULL DEFAULT '',
    spend_minor        bigint NOT NULL DEFAULT 0 CHECK (spend_minor >= 0),
    status             text NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (property_id, pms_reservation_id)
);
CREATE INDEX stays_by_guest ON stays (guest_id, departure_date);

CREATE TABLE loyalty_accounts (
    guest_id         text PRIMARY KEY,
    balance          bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    lifetime_earned  bigint NOT NULL DEFAULT 0,
    last_activity_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only. `source` makes every effect idempotent: a request id, a remedy id, a stay, an
-- expiry period.
CREATE TABLE ledger (
    entry_id      bigserial PRIMARY KEY,
    guest_id      text NOT NULL,
    kind          text NOT NULL,
    points        bigint NOT NULL CHECK (points <> 0),
    balance_after bigint NOT NULL CHECK (balance_after >= 0),
    reason        text NOT NULL DEFAULT '',
    actor         text NOT NULL,
    source        text NOT NULL UNIQUE,
    posted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_by_guest ON ledger (guest_id, entry_id);

CREATE TABLE tier_history (
    guest_id   text NOT NULL,
    changed_at timestamptz NOT NULL,
    from_tier  text NOT NULL,
    to_tier    text NOT NULL,
    reason     text NOT NULL
);
CREATE INDEX tier_history_by_guest ON tier_history (guest_id, changed_at);

-- Every read of contact details by staff.
CREATE TABLE contact_access_log (
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL,
    guest_id    text NOT NULL,
    property_id text NOT NULL DEFAULT ''
);
