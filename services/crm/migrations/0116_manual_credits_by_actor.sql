-- Points staff credit by hand (earn, bonus, a credit adjustment) count against a daily limit per
-- person: the day's credits of one actor are read at every such posting.
CREATE INDEX ledger_manual_credits_by_actor ON ledger (actor, posted_at)
    WHERE actor <> 'system' AND points > 0 AND kind IN ('earn', 'bonus', 'adjust');
