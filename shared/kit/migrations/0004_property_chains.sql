-- Which chain each property belongs to, as this service has seen it. Tokens scope properties by
-- id, and a whole-chain token ("*") lists none, so without this a chain-wide caller could name
-- another chain's property. A property is registered by the first write that names it, under
-- the writer's chain; from then on only that chain's callers reach it (`kit::tenancy`). Rows
-- whose property was never registered (written before this table existed) stay readable until
-- a write registers it.
CREATE TABLE property_chains (
    property_id   text COLLATE "C" PRIMARY KEY,
    chain_id      text COLLATE "C" NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX property_chains_by_chain ON property_chains (chain_id);
