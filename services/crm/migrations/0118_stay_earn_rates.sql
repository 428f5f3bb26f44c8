-- Each chain's program says what a checked-out stay earns at each tier: points per night and
-- per whole unit of spend (LoyaltyProgram.earn). A stay records the rate it was first credited
-- at, so a PMS correction (other nights or spend) earns at that rate whatever the guest's tier
-- is by then, and a rule changed later does not reprice stays already credited. Both are NULL
-- while the stay holds no points, and for stays credited before rates were recorded: those
-- read their per-night rate back from their ledger entries, as before.
ALTER TABLE stays
    ADD COLUMN earn_rate_night integer,
    ADD COLUMN earn_rate_spend integer,
    ADD CONSTRAINT stays_earn_rate_whole
        CHECK ((earn_rate_night IS NULL) = (earn_rate_spend IS NULL)
               AND earn_rate_night >= 0 AND earn_rate_spend >= 0);
