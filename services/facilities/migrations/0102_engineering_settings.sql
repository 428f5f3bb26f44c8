-- Engineering hours and repair targets per property (EngineeringSettings, protobuf-encoded).
-- Without a row a property's engineering works around the clock in UTC with the default targets.

CREATE TABLE engineering_settings (
    property_id text PRIMARY KEY,
    settings    bytea NOT NULL,
    etag        uuid NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
