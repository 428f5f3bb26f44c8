-- The gateway schema: scorecard configuration and caches are added by later migrations.
COMMENT ON SCHEMA gateway IS 'The public entry point: scorecards, arrival briefs, HTTP/JSON API.';
