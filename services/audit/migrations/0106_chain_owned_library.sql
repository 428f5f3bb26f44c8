-- Templates and chain-wide standards belong to a chain. Several chains can share one deployment,
-- and without an owner any chain's quality team could publish a new version of another chain's
-- template (which that chain's programs then schedule), build programs on it, or change the
-- chain-wide standard every chain's audits are scored against; nor could two chains each define
-- the same code.
--
-- chain_id '' marks a legacy shared row, written before rows had a chain: readable and usable by
-- every chain as before, so a deployment of one chain sees no change. Where a chain has its own
-- standard with the same code as a shared one, the chain's own applies to it.
--
-- A template's chain is kept per version: the first chain to publish a new version of a shared
-- template owns it from that version on (as the first write that names a property registers
-- it), while the shared versions stay shared, so other chains' programs on it keep the last
-- shared version instead of the new owner's.
ALTER TABLE standards ADD COLUMN chain_id text NOT NULL DEFAULT '';
ALTER TABLE templates ADD COLUMN chain_id text NOT NULL DEFAULT '';

-- A property's own standard is its property's chain's, where the property is registered.
UPDATE standards s SET chain_id = pc.chain_id
FROM property_chains pc
WHERE s.property_id <> '' AND pc.property_id = s.property_id;

-- A template is the chain of the properties whose programs use it, when exactly one chain's
-- (registered) properties do; a template of several chains' programs, or of none, stays shared.
UPDATE templates t SET chain_id = used.chain_id
FROM (SELECT p.template_id, min(pc.chain_id) AS chain_id
      FROM programs p JOIN property_chains pc ON pc.property_id = p.property_id
      GROUP BY p.template_id
      HAVING count(DISTINCT pc.chain_id) = 1) used
WHERE t.template_id = used.template_id;

-- Each chain has its own chain-wide codes (the shared ones, '', among them); a property, which
-- belongs to one chain, defines each of its own codes once, as before.
ALTER TABLE standards DROP CONSTRAINT standards_code_property_id_key;
CREATE UNIQUE INDEX standards_chain_wide_code ON standards (chain_id, code) WHERE property_id = '';
CREATE UNIQUE INDEX standards_property_code ON standards (property_id, code) WHERE property_id <> '';
