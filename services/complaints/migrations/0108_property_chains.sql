-- The chain of each property moves to the kit's registry (`property_chains`, kit migration
-- 0004), which every service checks the same way. Complaints knew a property's chain from its
-- complaints (`known_properties`, kept for the chain KPI views) and from its settings; both are
-- registered here. Should the two disagree for a property, its complaints' chain wins.
INSERT INTO property_chains (property_id, chain_id)
SELECT property_id, chain_id FROM known_properties WHERE property_id <> ''
ORDER BY property_id
ON CONFLICT (property_id) DO NOTHING;
INSERT INTO property_chains (property_id, chain_id)
SELECT property_id, chain_id FROM property_settings
WHERE property_id <> '' AND property_id NOT LIKE 'chain:%'
ORDER BY property_id
ON CONFLICT (property_id) DO NOTHING;
