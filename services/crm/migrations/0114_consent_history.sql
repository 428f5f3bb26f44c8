-- Every consent choice a guest made, not only the current one: when, how (the source) and who
-- recorded it, so the chain can show what the guest had agreed to at any time. Erasure deletes
-- a guest's history with the profile; a merge moves the duplicate's to the survivor. Profiles
-- with a recorded choice start their history with it.
CREATE TABLE consent_history (
    entry_id    bigserial PRIMARY KEY,
    guest_id    text NOT NULL,
    marketing   boolean NOT NULL,
    profiling   boolean NOT NULL,
    sharing     boolean NOT NULL,
    given_at    timestamptz NOT NULL,
    source      text NOT NULL,
    recorded_by text NOT NULL
);
CREATE INDEX consent_history_by_guest ON consent_history (guest_id, entry_id);

INSERT INTO consent_history (guest_id, marketing, profiling, sharing, given_at, source, recorded_by)
SELECT guest_id, consent_marketing, consent_profiling, consent_sharing, consent_at, consent_source, updated_by
FROM guests
WHERE consent_at IS NOT NULL AND merged_into IS NULL AND NOT erased
ORDER BY guest_id;
