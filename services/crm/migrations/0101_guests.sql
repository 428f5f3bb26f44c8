-- Chain-wide guests with their current loyalty tier.
CREATE TABLE guests (
    guest_id   text PRIMARY KEY,
    chain_id   text NOT NULL,
    tier       text NOT NULL DEFAULT 'new' CHECK (tier IN ('new', 'regular', 'vip', 'strategic')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
