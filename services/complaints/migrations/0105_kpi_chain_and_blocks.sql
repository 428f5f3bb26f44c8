-- Chain-wide KPIs and seven-day blocks.
--
-- kpi_chain_daily holds, per chain and UTC day, the sums for the whole chain ('total') and per
-- category, channel and department, and kpi_chain_monthly the same per month: a chain-wide
-- query with breakdowns and a daily series reads a few rows per month and edge day instead of
-- one per property, day and dimension value.
--
-- kpi_monthly gains 'block' rows: each month split into the days 1-7, 8-14, 15-21, 22-28 and
-- 29-end, keyed by the block's first day. A period's partial months are read as whole blocks
-- plus at most six single days at each edge instead of every day.
--
-- kpi_monthly rows carry their property's chain, indexed, so a chain's per-property sums are
-- read in one range per month and kind of row instead of one index lookup per property.
--
-- The per-complaint facts carry the chain, so the rollup worker keys its deltas by chain too.

CREATE OR REPLACE VIEW complaint_kpi_facts AS
SELECT
    c.complaint_id,
    c.property_id,
    (c.created_at AT TIME ZONE 'UTC')::date AS day,
    c.category,
    c.channel,
    c.department,
    1::bigint AS complaints,
    (c.first_response_at IS NOT NULL)::int::bigint AS responded,
    coalesce(extract(epoch FROM c.first_response_at - c.created_at)::bigint, 0) AS first_response_seconds,
    (c.first_resolved_at IS NOT NULL)::int::bigint AS resolved,
    coalesce(extract(epoch FROM c.first_resolved_at - c.created_at)::bigint, 0) AS first_resolution_seconds,
    (c.status IN ('resolved', 'closed') AND c.resolved_at IS NOT NULL)::int::bigint AS currently_resolved,
    CASE WHEN c.status IN ('resolved', 'closed') AND c.resolved_at IS NOT NULL
         THEN extract(epoch FROM c.resolved_at - c.created_at)::bigint ELSE 0 END AS total_resolution_seconds,
    (c.first_resolved_at IS NOT NULL AND c.reopen_count = 0 AND c.escalation_count = 0
        AND NOT c.waited_on_guest)::int::bigint AS resolved_first_contact,
    (c.csat IS NOT NULL)::int::bigint AS rated,
    coalesce(c.csat, 0)::bigint AS csat_sum,
    (coalesce(c.csat, 0) >= 4)::int::bigint AS csat_top_two,
    (c.nps IS NOT NULL)::int::bigint AS nps_answers,
    (coalesce(c.nps, -1) >= 9)::int::bigint AS nps_promoters,
    (c.nps IS NOT NULL AND c.nps <= 6)::int::bigint AS nps_detractors,
    (c.escalation_count > 0)::int::bigint AS escalated,
    coalesce(extract(epoch FROM c.first_escalated_at - c.created_at)::bigint, 0) AS escalation_seconds,
    (c.reopen_count > 0)::int::bigint AS reopened,
    c.repeat_issue::int::bigint AS repeat_issues,
    coalesce(r.points, 0)::bigint AS compensation_points,
    coalesce(r.money, 0)::bigint AS compensation_minor,
    coalesce(k.met1, 0)::bigint AS met_acknowledge, coalesce(k.missed1, 0)::bigint AS missed_acknowledge,
    coalesce(k.met2, 0)::bigint AS met_investigation, coalesce(k.missed2, 0)::bigint AS missed_investigation,
    coalesce(k.met3, 0)::bigint AS met_remedy_plan, coalesce(k.missed3, 0)::bigint AS missed_remedy_plan,
    coalesce(k.met4, 0)::bigint AS met_answer, coalesce(k.missed4, 0)::bigint AS missed_answer,
    coalesce(k.met5, 0)::bigint AS met_resolution, coalesce(k.missed5, 0)::bigint AS missed_resolution,
    c.chain_id
FROM complaints c
LEFT JOIN LATERAL (
    SELECT sum(points) AS points, sum(amount_minor) AS money
    FROM remedies WHERE complaint_id = c.complaint_id AND status IN ('approved', 'delivered')
) r ON true
LEFT JOIN LATERAL (
    SELECT
        count(*) FILTER (WHERE stage = 1 AND stopped_at IS NOT NULL AND stopped_at <= due_at AND breached_at IS NULL) AS met1,
        count(*) FILTER (WHERE stage = 1 AND (stopped_at > due_at OR breached_at IS NOT NULL)) AS missed1,
        count(*) FILTER (WHERE stage = 2 AND stopped_at IS NOT NULL AND stopped_at <= due_at AND breached_at IS NULL) AS met2,
        count(*) FILTER (WHERE stage = 2 AND (stopped_at > due_at OR breached_at IS NOT NULL)) AS missed2,
        count(*) FILTER (WHERE stage = 3 AND stopped_at IS NOT NULL AND stopped_at <= due_at AND breached_at IS NULL) AS met3,
        count(*) FILTER (WHERE stage = 3 AND (stopped_at > due_at OR breached_at IS NOT NULL)) AS missed3,
        count(*) FILTER (WHERE stage = 4 AND stopped_at IS NOT NULL AND stopped_at <= due_at AND breached_at IS NULL) AS met4,
        count(*) FILTER (WHERE stage = 4 AND (stopped_at > due_at OR breached_at IS NOT NULL)) AS missed4,
        count(*) FILTER (WHERE stage = 5 AND stopped_at IS NOT NULL AND stopped_at <= due_at AND breached_at IS NULL) AS met5,
        count(*) FILTER (WHERE stage = 5 AND (stopped_at > due_at OR breached_at IS NOT NULL)) AS missed5
    FROM complaint_clocks WHERE complaint_id = c.complaint_id
) k ON true;

CREATE TABLE kpi_chain_daily (
    chain_id text NOT NULL,
    day date NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('total', 'category', 'channel', 'department')),
    key text NOT NULL,
    complaints bigint NOT NULL DEFAULT 0,
    responded bigint NOT NULL DEFAULT 0,
    first_response_seconds bigint NOT NULL DEFAULT 0,
    resolved bigint NOT NULL DEFAULT 0,
    first_resolution_seconds bigint NOT NULL DEFAULT 0,
    currently_resolved bigint NOT NULL DEFAULT 0,
    total_resolution_seconds bigint NOT NULL DEFAULT 0,
    resolved_first_contact bigint NOT NULL DEFAULT 0,
    rated bigint NOT NULL DEFAULT 0,
    csat_sum bigint NOT NULL DEFAULT 0,
    csat_top_two bigint NOT NULL DEFAULT 0,
    nps_answers bigint NOT NULL DEFAULT 0,
    nps_promoters bigint NOT NULL DEFAULT 0,
    nps_detractors bigint NOT NULL DEFAULT 0,
    escalated bigint NOT NULL DEFAULT 0,
    escalation_seconds bigint NOT NULL DEFAULT 0,
    reopened bigint NOT NULL DEFAULT 0,
    repeat_issues bigint NOT NULL DEFAULT 0,
    compensation_points bigint NOT NULL DEFAULT 0,
    compensation_minor bigint NOT NULL DEFAULT 0,
    met_acknowledge bigint NOT NULL DEFAULT 0,
    missed_acknowledge bigint NOT NULL DEFAULT 0,
    met_investigation bigint NOT NULL DEFAULT 0,
    missed_investigation bigint NOT NULL DEFAULT 0,
    met_remedy_plan bigint NOT NULL DEFAULT 0,
    missed_remedy_plan bigint NOT NULL DEFAULT 0,
    met_answer bigint NOT NULL DEFAULT 0,
    missed_answer bigint NOT NULL DEFAULT 0,
    met_resolution bigint NOT NULL DEFAULT 0,
    missed_resolution bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, dimension, day, key)
);

CREATE TABLE kpi_chain_monthly (
    chain_id text NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('total', 'category', 'channel', 'department')),
    month date NOT NULL,
    key text NOT NULL,
    complaints bigint NOT NULL DEFAULT 0,
    responded bigint NOT NULL DEFAULT 0,
    first_response_seconds bigint NOT NULL DEFAULT 0,
    resolved bigint NOT NULL DEFAULT 0,
    first_resolution_seconds bigint NOT NULL DEFAULT 0,
    currently_resolved bigint NOT NULL DEFAULT 0,
    total_resolution_seconds bigint NOT NULL DEFAULT 0,
    resolved_first_contact bigint NOT NULL DEFAULT 0,
    rated bigint NOT NULL DEFAULT 0,
    csat_sum bigint NOT NULL DEFAULT 0,
    csat_top_two bigint NOT NULL DEFAULT 0,
    nps_answers bigint NOT NULL DEFAULT 0,
    nps_promoters bigint NOT NULL DEFAULT 0,
    nps_detractors bigint NOT NULL DEFAULT 0,
    escalated bigint NOT NULL DEFAULT 0,
    escalation_seconds bigint NOT NULL DEFAULT 0,
    reopened bigint NOT NULL DEFAULT 0,
    repeat_issues bigint NOT NULL DEFAULT 0,
    compensation_points bigint NOT NULL DEFAULT 0,
    compensation_minor bigint NOT NULL DEFAULT 0,
    met_acknowledge bigint NOT NULL DEFAULT 0,
    missed_acknowledge bigint NOT NULL DEFAULT 0,
    met_investigation bigint NOT NULL DEFAULT 0,
    missed_investigation bigint NOT NULL DEFAULT 0,
    met_remedy_plan bigint NOT NULL DEFAULT 0,
    missed_remedy_plan bigint NOT NULL DEFAULT 0,
    met_answer bigint NOT NULL DEFAULT 0,
    missed_answer bigint NOT NULL DEFAULT 0,
    met_resolution bigint NOT NULL DEFAULT 0,
    missed_resolution bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, dimension, month, key)
);

-- The applied facts record the chain their sums went to (facts of removed complaints take the
-- chain their property is known under).
UPDATE kpi_applied_facts a
SET fact = jsonb_set(a.fact, '{key,chain_id}', to_jsonb(c.chain_id))
FROM complaints c
WHERE c.complaint_id = a.complaint_id;
UPDATE kpi_applied_facts a
SET fact = jsonb_set(a.fact, '{key,chain_id}', to_jsonb(p.chain_id))
FROM known_properties p
WHERE NOT a.fact->'key' ? 'chain_id' AND p.property_id = a.fact->'key'->>'property_id';

-- Both new rollups start equal to what has been applied so far; the worker keeps them so.
INSERT INTO kpi_chain_daily (chain_id, day, dimension, key, complaints, responded, first_response_seconds, resolved, first_resolution_seconds, currently_resolved, total_resolution_seconds, resolved_first_contact, rated, csat_sum, csat_top_two, nps_answers, nps_promoters, nps_detractors, escalated, escalation_seconds, reopened, repeat_issues, compensation_points, compensation_minor, met_acknowledge, missed_acknowledge, met_investigation, missed_investigation, met_remedy_plan, missed_remedy_plan, met_answer, missed_answer, met_resolution, missed_resolution)
SELECT f.fact->'key'->>'chain_id', (f.fact->'key'->>'day')::date, d.dimension, d.key,
       sum((f.fact->'values'->>0)::bigint),
       sum((f.fact->'values'->>1)::bigint),
       sum((f.fact->'values'->>2)::bigint),
       sum((f.fact->'values'->>3)::bigint),
       sum((f.fact->'values'->>4)::bigint),
       sum((f.fact->'values'->>5)::bigint),
       sum((f.fact->'values'->>6)::bigint),
       sum((f.fact->'values'->>7)::bigint),
       sum((f.fact->'values'->>8)::bigint),
       sum((f.fact->'values'->>9)::bigint),
       sum((f.fact->'values'->>10)::bigint),
       sum((f.fact->'values'->>11)::bigint),
       sum((f.fact->'values'->>12)::bigint),
       sum((f.fact->'values'->>13)::bigint),
       sum((f.fact->'values'->>14)::bigint),
       sum((f.fact->'values'->>15)::bigint),
       sum((f.fact->'values'->>16)::bigint),
       sum((f.fact->'values'->>17)::bigint),
       sum((f.fact->'values'->>18)::bigint),
       sum((f.fact->'values'->>19)::bigint),
       sum((f.fact->'values'->>20)::bigint),
       sum((f.fact->'values'->>21)::bigint),
       sum((f.fact->'values'->>22)::bigint),
       sum((f.fact->'values'->>23)::bigint),
       sum((f.fact->'values'->>24)::bigint),
       sum((f.fact->'values'->>25)::bigint),
       sum((f.fact->'values'->>26)::bigint),
       sum((f.fact->'values'->>27)::bigint),
       sum((f.fact->'values'->>28)::bigint),
       sum((f.fact->'values'->>29)::bigint)
FROM kpi_applied_facts f
CROSS JOIN LATERAL (VALUES
    ('total', ''),
    ('category', f.fact->'key'->>'category'),
    ('channel', f.fact->'key'->>'channel'),
    ('department', f.fact->'key'->>'department')) AS d (dimension, key)
WHERE f.fact->'key' ? 'chain_id'
GROUP BY 1, 2, 3, 4;

INSERT INTO kpi_chain_monthly (chain_id, dimension, month, key, complaints, responded, first_response_seconds, resolved, first_resolution_seconds, currently_resolved, total_resolution_seconds, resolved_first_contact, rated, csat_sum, csat_top_two, nps_answers, nps_promoters, nps_detractors, escalated, escalation_seconds, reopened, repeat_issues, compensation_points, compensation_minor, met_acknowledge, missed_acknowledge, met_investigation, missed_investigation, met_remedy_plan, missed_remedy_plan, met_answer, missed_answer, met_resolution, missed_resolution)
SELECT chain_id, dimension, date_trunc('month', day)::date, key, sum(complaints), sum(responded), sum(first_response_seconds), sum(resolved), sum(first_resolution_seconds), sum(currently_resolved), sum(total_resolution_seconds), sum(resolved_first_contact), sum(rated), sum(csat_sum), sum(csat_top_two), sum(nps_answers), sum(nps_promoters), sum(nps_detractors), sum(escalated), sum(escalation_seconds), sum(reopened), sum(repeat_issues), sum(compensation_points), sum(compensation_minor), sum(met_acknowledge), sum(missed_acknowledge), sum(met_investigation), sum(missed_investigation), sum(met_remedy_plan), sum(missed_remedy_plan), sum(met_answer), sum(missed_answer), sum(met_resolution), sum(missed_resolution)
FROM kpi_chain_daily
GROUP BY 1, 2, 3, 4;

ALTER TABLE kpi_monthly ADD COLUMN chain_id text NOT NULL DEFAULT '';

INSERT INTO kpi_monthly (property_id, month, dimension, key, complaints, responded, first_response_seconds, resolved, first_resolution_seconds, currently_resolved, total_resolution_seconds, resolved_first_contact, rated, csat_sum, csat_top_two, nps_answers, nps_promoters, nps_detractors, escalated, escalation_seconds, reopened, repeat_issues, compensation_points, compensation_minor, met_acknowledge, missed_acknowledge, met_investigation, missed_investigation, met_remedy_plan, missed_remedy_plan, met_answer, missed_answer, met_resolution, missed_resolution)
SELECT property_id, date_trunc('month', day)::date, 'block',
       (date_trunc('month', day)::date + ((extract(day FROM day)::int - 1) / 7) * 7)::text,
       sum(complaints), sum(responded), sum(first_response_seconds), sum(resolved), sum(first_resolution_seconds), sum(currently_resolved), sum(total_resolution_seconds), sum(resolved_first_contact), sum(rated), sum(csat_sum), sum(csat_top_two), sum(nps_answers), sum(nps_promoters), sum(nps_detractors), sum(escalated), sum(escalation_seconds), sum(reopened), sum(repeat_issues), sum(compensation_points), sum(compensation_minor), sum(met_acknowledge), sum(missed_acknowledge), sum(met_investigation), sum(missed_investigation), sum(met_remedy_plan), sum(missed_remedy_plan), sum(met_answer), sum(missed_answer), sum(met_resolution), sum(missed_resolution)
FROM kpi_daily
GROUP BY 1, 2, 4;

UPDATE kpi_monthly m SET chain_id = p.chain_id
FROM known_properties p
WHERE p.property_id = m.property_id;
UPDATE kpi_monthly m SET chain_id = c.chain_id
FROM (SELECT DISTINCT ON (property_id) property_id, chain_id FROM complaints ORDER BY property_id, created_at) c
WHERE m.chain_id = '' AND c.property_id = m.property_id;

CREATE INDEX kpi_monthly_by_chain ON kpi_monthly (chain_id, month, dimension, key);
