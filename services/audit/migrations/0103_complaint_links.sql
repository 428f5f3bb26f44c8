-- What audit keeps from the complaints feed: each complaint's latest root cause analysis
-- (standards it shows broken, staff it names), cause and outcome. One row per complaint,
-- overwritten by later events, so a replayed feed leaves the same rows.
CREATE TABLE complaint_links (
    complaint_id   text PRIMARY KEY,
    property_id    text NOT NULL,
    filed_at       timestamptz NOT NULL,
    cause          smallint NOT NULL,
    standard_codes text[] NOT NULL DEFAULT '{}',
    staff_involved text[] NOT NULL DEFAULT '{}',
    resolved       boolean NOT NULL,
    csat           smallint
);
CREATE INDEX complaint_links_by_property ON complaint_links (property_id, filed_at);
CREATE INDEX complaint_links_by_staff ON complaint_links USING gin (staff_involved);
