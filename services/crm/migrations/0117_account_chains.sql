-- Every loyalty account belongs to a chain: its guest's, or, for an id CRM holds no profile of
-- yet (a PMS feed's guest who is not a member), the chain of the properties its stays were at.
-- A profile created later with that id must be of the same chain, and another chain's feed may
-- not earn into it: before, the first chain to create a profile with the id took the points.
-- NULL: not known (stays fed by a service for properties no chain holds); the first chain to
-- write to the account claims it.
ALTER TABLE loyalty_accounts ADD COLUMN chain_id text COLLATE "C";
-- Whether a profile holds the account; false for a feed's non-member until the guest joins.
ALTER TABLE loyalty_accounts ADD COLUMN member boolean NOT NULL DEFAULT true;

UPDATE loyalty_accounts a SET chain_id = g.chain_id FROM guests g WHERE g.guest_id = a.guest_id;

UPDATE loyalty_accounts a SET member = false
WHERE NOT EXISTS (SELECT 1 FROM guests g WHERE g.guest_id = a.guest_id);

UPDATE loyalty_accounts a SET chain_id = s.chain_id
FROM (SELECT st.guest_id, min(pc.chain_id) AS chain_id
      FROM stays st JOIN property_chains pc USING (property_id)
      GROUP BY st.guest_id HAVING count(DISTINCT pc.chain_id) = 1) s
WHERE a.chain_id IS NULL AND s.guest_id = a.guest_id;

-- Points outstanding and earned count the chain's non-members' accounts.
CREATE INDEX loyalty_accounts_of_non_members ON loyalty_accounts (chain_id) WHERE NOT member;
