-- A cancelled complaint (filed by mistake, a duplicate, withdrawn) is no complaint in the
-- complaint counts: it leaves the volume and the denominators and numerators of the escalation
-- and repeat rates, as it leaves repeat and hotspot detection, CRM's failure memory and staff
-- scores. Its clocks still count: a deadline it missed before the cancellation stays missed
-- (the clocks still within theirs were dropped when it was cancelled).
CREATE OR REPLACE VIEW complaint_kpi_facts AS
SELECT
    c.complaint_id,
    c.property_id,
    (c.created_at AT TIME ZONE 'UTC')::date AS day,
    c.category,
    c.channel,
    c.department,
    (c.status <> 'cancelled')::int::bigint AS complaints,
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
    (c.escalation_count > 0 AND c.status <> 'cancelled')::int::bigint AS escalated,
    CASE WHEN c.status <> 'cancelled'
         THEN coalesce(extract(epoch FROM c.first_escalated_at - c.created_at)::bigint, 0) ELSE 0 END AS escalation_seconds,
    (c.reopen_count > 0)::int::bigint AS reopened,
    (c.repeat_issue AND c.status <> 'cancelled')::int::bigint AS repeat_issues,
    coalesce(r.points, 0)::bigint AS compensation_points,
    coalesce(r.money, 0)::bigint AS compensation_minor,
    coalesce(k.met1, 0)::bigint AS met_acknowledge, coalesce(k.missed1, 0)::bigint AS missed_acknowledge,
    coalesce(k.met2, 0)::bigint AS met_investigation, coalesce(k.missed2, 0)::bigint AS missed_investigation,
    coalesce(k.met3, 0)::bigint AS met_remedy_plan, coalesce(k.missed3, 0)::bigint AS missed_remedy_plan,
    (coalesce(k.met4, 0) + coalesce(y.met4, 0))::bigint AS met_answer,
    (coalesce(k.missed4, 0) + coalesce(y.missed4, 0))::bigint AS missed_answer,
    (coalesce(k.met5, 0) + coalesce(y.met5, 0))::bigint AS met_resolution,
    (coalesce(k.missed5, 0) + coalesce(y.missed5, 0))::bigint AS missed_resolution,
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
) k ON true
LEFT JOIN LATERAL (
    SELECT
        count(*) FILTER (WHERE stage = 4 AND met) AS met4,
        count(*) FILTER (WHERE stage = 4 AND NOT met) AS missed4,
        count(*) FILTER (WHERE stage = 5 AND met) AS met5,
        count(*) FILTER (WHERE stage = 5 AND NOT met) AS missed5
    FROM complaint_clock_cycles WHERE complaint_id = c.complaint_id
) y ON true;

-- Complaints cancelled before this change are folded in again by the rollup worker.
INSERT INTO kpi_dirty (complaint_id)
SELECT complaint_id FROM complaints WHERE status = 'cancelled'
ON CONFLICT (complaint_id) DO NOTHING;
