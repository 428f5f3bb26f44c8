-- The chain a checklist belongs to. Checklists carried no chain, so in a deployment shared by
-- several chains any chain could publish a new version of another chain's checklist (which that
-- chain's plans would then inspect with) or plan inspections on it. From now on a checklist is
-- reached only by its own chain's callers: to another chain it answers NOT_FOUND, as an unknown
-- checklist does.
--
-- The chain is kept per version. '' marks a shared (legacy) version: a checklist whose versions
-- are all '' belongs to no chain yet and every chain may use it, as before, so deployments with
-- a single chain see no change. The first chain to publish a new version of such a checklist
-- takes it over: the new version carries that chain, and from then on only that chain may
-- revise it or plan on it. The earlier '' versions stay shared, so plans of other chains that
-- used the checklist keep inspecting with its last shared version instead of the new owner's.
-- The owner of a checklist is therefore the chain of any of its versions that names one (they
-- never name two).
ALTER TABLE checklists ADD COLUMN chain_id text NOT NULL DEFAULT '';

-- Backfill: a checklist whose plans are all at properties of one registered chain
-- (`property_chains`, see 0106) becomes that chain's, every version of it. A checklist that plans
-- of several chains use, or that no plan at a registered property uses, stays shared ('').
-- Plans at properties no chain has registered yet do not count: their chain is not known.
UPDATE checklists c
SET chain_id = used.chain_id
FROM (
    SELECT p.checklist_id, min(pc.chain_id) AS chain_id
    FROM plans p
    JOIN property_chains pc ON pc.property_id = p.property_id
    GROUP BY p.checklist_id
    HAVING count(DISTINCT pc.chain_id) = 1 AND min(pc.chain_id) NOT IN ('', '*')
) used
WHERE c.checklist_id = used.checklist_id;
