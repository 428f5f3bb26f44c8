-- Every earn, redeem, expiry and adjustment rewrites its account's row (balance, lifetime
-- earned, last activity). With full pages each rewrite is a new row version in another page and
-- a new entry in the primary key index; a bulk stay import left 96 % of account updates that
-- way, and the index full of entries for dead versions that every later lookup walks through.
-- Room on each page lets PostgreSQL keep the new version beside the old one (a HOT update: no
-- index entry) and prune the old ones as it goes. No indexed column of the table ever changes.
ALTER TABLE loyalty_accounts SET (fillfactor = 70);
