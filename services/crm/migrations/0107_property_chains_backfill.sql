-- Registers the properties CRM already holds records of under their chain (`property_chains`,
-- kit migration 0004), so the chain check covers them from the start rather than from their
-- next write. Care tasks carry their chain; a stay's chain is its guest's. Where the two
-- sources disagree the first row wins, as a later write would.
INSERT INTO property_chains (property_id, chain_id)
SELECT property_id, chain_id FROM (
    SELECT property_id, chain_id FROM care_tasks WHERE property_id <> ''
    UNION
    SELECT DISTINCT s.property_id, g.chain_id
    FROM stays s JOIN guests g ON g.guest_id = s.guest_id
    WHERE s.property_id <> ''
) AS seen
ORDER BY property_id
ON CONFLICT (property_id) DO NOTHING;
