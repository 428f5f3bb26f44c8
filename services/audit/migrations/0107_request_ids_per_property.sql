-- Survey and touchpoint responses are recorded once per request id at their property, not
-- once per request id in the whole database: another chain (whose properties are its own) may
-- use the same request id for its own responses.
ALTER TABLE servqual_surveys DROP CONSTRAINT servqual_surveys_request_id_key;
CREATE UNIQUE INDEX servqual_surveys_by_request ON servqual_surveys (property_id, request_id);
ALTER TABLE touchpoint_responses DROP CONSTRAINT touchpoint_responses_request_id_key;
ALTER TABLE touchpoint_responses
    ADD CONSTRAINT touchpoint_responses_by_request UNIQUE (property_id, request_id);
