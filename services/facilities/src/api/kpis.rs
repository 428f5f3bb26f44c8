//! Facilities KPIs for a set of properties and a period: inspection compliance, defects per
//! inspection, work-order attainment, MTTR, MTBF per asset category, preventive vs reactive,
//! room-nights lost, maintenance cost per occupied room-night (occupancy from CRM), and a daily
//! series. Counts travel with every rate so consumers add before dividing.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use guestloop_kit::auth::principal;
use guestloop_kit::client::retry_idempotent;
use guestloop_kit::time::required_period;
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::common::v1::{Money, TimeRange};
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::facilities::v1 as pb;
use tonic::Request;

use super::Api;

/// How long the KPI answer waits for CRM's occupancy before leaving it out.
const OCCUPANCY_DEADLINE: StdDuration = StdDuration::from_millis(800);
/// How often occupancy is asked of CRM at most, when it refuses for a transient reason.
const OCCUPANCY_ATTEMPTS: u32 = 3;

/// Longest daily series.
const MAX_DAYS: i64 = 366;

/// Out-of-order stretches that overlap the period: closed ones, and rooms still out of order
/// (counted up to now). Out-of-service rooms stay in the inventory and lose no room-night.
/// `$1` properties, `$2`/`$3` the period.
const OUTAGES: &str = "SELECT started_at, ended_at FROM room_outages WHERE property_id = ANY($1) \
     AND status = 'out_of_order' AND ended_at > $2 AND started_at < $3 \
     UNION ALL SELECT since, now() FROM room_status WHERE property_id = ANY($1) \
     AND status = 'out_of_order' AND since < $3 AND now() > $2";

fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// The most properties one KPI request covers.
const MAX_PROPERTIES: usize = 500;

pub async fn get(
    api: &Api,
    request: Request<pb::GetFacilitiesKpisRequest>,
) -> ApiResult<pb::FacilitiesKpis> {
    let principal = principal(&request)?.clone();
    let mut request = request.into_inner();
    // Each property once: one named twice would count twice in `by_property`.
    request.property_ids.sort();
    request.property_ids.dedup();
    if request.property_ids.is_empty() || request.property_ids.len() > MAX_PROPERTIES {
        return Err(ApiError::invalid(
            "property_ids",
            format!("name 1 to {MAX_PROPERTIES} properties"),
        ));
    }
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    tenancy::require_properties(&mut *api.context.pool.acquire().await?, &principal, &named)
        .await?;
    let (from, to) = required_period(request.period.as_ref())?;
    let zone_text = if request.time_zone.is_empty() {
        "UTC"
    } else {
        request.time_zone.as_str()
    };
    let zone: Tz = zone_text.parse().map_err(|_| {
        ApiError::invalid("time_zone", format!("unknown IANA time zone `{zone_text}`"))
    })?;
    if request.daily && (to - from).num_days() > MAX_DAYS {
        return Err(ApiError::invalid(
            "period",
            format!("a daily series covers at most {MAX_DAYS} days"),
        ));
    }
    let (due, on_time, done, defects): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE done_at IS NOT NULL OR due_at + interval '1 day' <= now()), \
                count(*) FILTER (WHERE done_at <= due_at + interval '1 day'), count(*) FILTER (WHERE status = 'done'), \
                coalesce(sum(cardinality(failed_items)), 0)::bigint \
         FROM inspections WHERE property_id = ANY($1) AND due_at >= $2 AND due_at < $3",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_one(&api.context.pool)
    .await?;
    let (orders, orders_done, fix_met, repair_seconds, preventive, reactive): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE done_at IS NOT NULL), count(*) FILTER (WHERE done_at <= fix_due_at), \
                coalesce(sum(extract(epoch FROM done_at - created_at)) FILTER (WHERE done_at IS NOT NULL), 0)::bigint, \
                count(*) FILTER (WHERE source IN (1, 4)), count(*) FILTER (WHERE source IN (2, 3)) \
         FROM work_orders WHERE property_id = ANY($1) AND created_at >= $2 AND created_at < $3 \
           AND status <> 'cancelled'",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_one(&api.context.pool)
    .await?;
    let per_property: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.property_id, count(w.*), count(w.done_at), count(*) FILTER (WHERE w.done_at <= w.fix_due_at) \
         FROM unnest($1::text[]) AS p(property_id) LEFT JOIN work_orders w ON w.property_id = p.property_id \
         AND w.created_at >= $2 AND w.created_at < $3 AND w.status <> 'cancelled' \
         GROUP BY p.property_id ORDER BY p.property_id",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_all(&api.context.pool)
    .await?;
    let nights_lost: i64 = sqlx::query_scalar(&format!(
        "SELECT coalesce(sum(greatest(0, (least(ended_at, $3) AT TIME ZONE $4)::date \
                - (greatest(started_at, $2) AT TIME ZONE $4)::date)), 0)::bigint FROM ({OUTAGES}) o"
    ))
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .bind(zone.name())
    .fetch_one(&api.context.pool)
    .await?;
    // Asset hours run up to now: a period reaching into the future has no failures there yet.
    let as_of = to.min(Utc::now()).max(from);
    let by_category = reliability(api, &request.property_ids, from, as_of).await?;
    let maintenance_cost = maintenance_cost(api, &request.property_ids, from, to).await?;
    let days = if request.daily {
        daily(api, &request.property_ids, from, to, zone).await?
    } else {
        Vec::new()
    };
    let mut missing = Vec::new();
    let occupied_room_nights = if request.skip_occupancy {
        None
    } else {
        match occupancy(api, principal.chain_id(), &request.property_ids, from, to).await {
            Ok(nights) => Some(nights),
            Err(error) => {
                tracing::warn!(%error, "occupancy from CRM unavailable; cost per room-night left out");
                missing.push("crm".to_string());
                None
            }
        }
    };
    let cost_per_occupied_room_night = match occupied_room_nights {
        Some(nights) if nights > 0 => maintenance_cost
            .iter()
            .map(|m| pb::CostPerRoomNight {
                currency_code: m.currency_code.clone(),
                minor_units: m.minor_units as f64 / nights as f64,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(pb::FacilitiesKpis {
        inspections_due: due,
        inspections_on_time: on_time,
        inspections_done: done,
        defects_found: defects,
        work_orders: orders,
        work_orders_done: orders_done,
        fix_met,
        repair_seconds_sum: repair_seconds,
        preventive,
        reactive,
        room_nights_lost: nights_lost,
        inspection_compliance: ratio(on_time, due),
        defects_per_inspection: ratio(defects, done),
        work_order_attainment: ratio(fix_met, orders_done),
        mttr_hours: ratio(repair_seconds, orders_done).map(|s| s / 3600.0),
        preventive_ratio: ratio(preventive, preventive + reactive),
        by_property: per_property
            .into_iter()
            .map(
                |(property_id, work_orders, work_orders_done, fix_met)| pb::PropertyWorkOrders {
                    property_id,
                    work_orders,
                    work_orders_done,
                    fix_met,
                },
            )
            .collect(),
        by_category,
        maintenance_cost,
        occupied_room_nights,
        cost_per_occupied_room_night,
        days,
        missing,
    })
}

/// MTBF and MTTR per asset category: installed hours of the category's assets (not retired)
/// within the period, and the corrective work orders on them created in the period.
async fn reliability(
    api: &Api,
    properties: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<pb::CategoryReliability>> {
    let rows: Vec<(i16, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "WITH a AS (SELECT category, count(*) AS assets, \
                coalesce(sum(extract(epoch FROM $3 - greatest($2, coalesce(install_date::timestamptz, $2))) / 3600), 0)::bigint AS hours \
              FROM assets WHERE property_id = ANY($1) AND status <> 'retired' \
              AND (install_date IS NULL OR install_date::timestamptz < $3) GROUP BY category), \
         w AS (SELECT a.category, count(*) FILTER (WHERE w.source IN (1, 2, 3)) AS failures, count(w.done_at) AS done, \
                coalesce(sum(extract(epoch FROM w.done_at - w.created_at)) FILTER (WHERE w.done_at IS NOT NULL), 0)::bigint AS secs \
              FROM work_orders w JOIN assets a ON a.asset_id = w.asset_id \
              WHERE w.property_id = ANY($1) AND w.created_at >= $2 AND w.created_at < $3 \
                AND w.status <> 'cancelled' GROUP BY a.category) \
         SELECT coalesce(a.category, w.category), coalesce(a.assets, 0), coalesce(a.hours, 0), \
                coalesce(w.failures, 0), coalesce(w.done, 0), coalesce(w.secs, 0) \
         FROM a FULL JOIN w ON w.category = a.category ORDER BY 1",
    )
    .bind(properties)
    .bind(from)
    .bind(to)
    .fetch_all(&api.context.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(category, assets, asset_hours, failures, repairs_done, repair_seconds_sum)| {
                pb::CategoryReliability {
                    category: i32::from(category),
                    assets,
                    asset_hours,
                    failures,
                    mtbf_hours: ratio(asset_hours, failures),
                    repairs_done,
                    repair_seconds_sum,
                    mttr_hours: ratio(repair_seconds_sum, repairs_done).map(|s| s / 3600.0),
                }
            },
        )
        .collect())
}

/// Labour and parts of the work orders done in the period, per currency.
async fn maintenance_cost(
    api: &Api,
    properties: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<Money>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency, sum(minor)::bigint FROM ( \
            SELECT labour_currency AS currency, labour_minor AS minor FROM work_orders \
            WHERE property_id = ANY($1) AND done_at >= $2 AND done_at < $3 AND labour_minor > 0 \
            UNION ALL SELECT parts_currency, parts_minor FROM work_orders \
            WHERE property_id = ANY($1) AND done_at >= $2 AND done_at < $3 AND parts_minor > 0) c \
         GROUP BY currency ORDER BY currency",
    )
    .bind(properties)
    .bind(from)
    .bind(to)
    .fetch_all(&api.context.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(currency_code, minor_units)| Money {
            currency_code,
            minor_units,
        })
        .collect())
}

/// Occupied room-nights from CRM, within [`OCCUPANCY_DEADLINE`], asked on `chain`'s behalf
/// (facilities' own token passes every chain check; CRM checks the caller's chain).
async fn occupancy(
    api: &Api,
    chain: &str,
    properties: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<i64> {
    let client = crm::crm_service_client::CrmServiceClient::new(api.context.peer("crm")?);
    let request = crm::GetOccupancyRequest {
        property_ids: properties.to_vec(),
        period: Some(TimeRange {
            start_time: Some(guestloop_kit::time::to_timestamp(from)),
            end_time: Some(guestloop_kit::time::to_timestamp(to)),
        }),
        on_behalf_of_chain: chain.to_string(),
    };
    // A read: a transient refusal (CRM restarting, at its concurrency limit) is asked again,
    // twice at most (after 50 and 100 ms), so a CRM that is down delays the figures 150 ms.
    let ask = retry_idempotent(OCCUPANCY_ATTEMPTS, || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.get_occupancy(request).await }
    });
    let answer = tokio::time::timeout(OCCUPANCY_DEADLINE, ask)
        .await
        .map_err(|_| anyhow::anyhow!("CRM did not answer within {OCCUPANCY_DEADLINE:?}"))??;
    Ok(answer.into_inner().occupied_room_nights)
}

/// One entry per local date of the period (in `zone`).
async fn daily(
    api: &Api,
    properties: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: Tz,
) -> ApiResult<Vec<pb::FacilitiesDay>> {
    type Row = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "WITH d AS (SELECT g::date AS day FROM generate_series(($2 AT TIME ZONE $4)::date, \
                (($3 - interval '1 microsecond') AT TIME ZONE $4)::date, interval '1 day') AS g), \
         i AS (SELECT (due_at AT TIME ZONE $4)::date AS day, \
                count(*) FILTER (WHERE done_at IS NOT NULL OR due_at + interval '1 day' <= now()) AS due, \
                count(*) FILTER (WHERE done_at <= due_at + interval '1 day') AS on_time \
              FROM inspections WHERE property_id = ANY($1) AND due_at >= $2 AND due_at < $3 GROUP BY 1), \
         w AS (SELECT (created_at AT TIME ZONE $4)::date AS day, count(*) AS n, count(done_at) AS done, \
                count(*) FILTER (WHERE done_at <= fix_due_at) AS met, \
                coalesce(sum(extract(epoch FROM done_at - created_at)) FILTER (WHERE done_at IS NOT NULL), 0)::bigint AS secs, \
                count(*) FILTER (WHERE source IN (1, 4)) AS prev, count(*) FILTER (WHERE source IN (2, 3)) AS reac \
              FROM work_orders WHERE property_id = ANY($1) AND created_at >= $2 AND created_at < $3 \
                AND status <> 'cancelled' GROUP BY 1), \
         o AS ({OUTAGES}), \
         l AS (SELECT d.day, count(*) AS n FROM d JOIN o \
                ON (greatest(o.started_at, $2) AT TIME ZONE $4)::date <= d.day \
               AND (least(o.ended_at, $3) AT TIME ZONE $4)::date > d.day GROUP BY d.day) \
         SELECT to_char(d.day, 'YYYY-MM-DD'), coalesce(i.due, 0), coalesce(i.on_time, 0), coalesce(w.n, 0), \
                coalesce(w.done, 0), coalesce(w.met, 0), coalesce(w.secs, 0), coalesce(w.prev, 0), \
                coalesce(w.reac, 0), coalesce(l.n, 0) \
         FROM d LEFT JOIN i USING (day) LEFT JOIN w USING (day) LEFT JOIN l USING (day) ORDER BY d.day"
    ))
    .bind(properties)
    .bind(from)
    .bind(to)
    .bind(zone.name())
    .fetch_all(&api.context.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(date, due, on_time, orders, done, met, secs, preventive, reactive, lost)| {
                pb::FacilitiesDay {
                    date,
                    inspections_due: due,
                    inspections_on_time: on_time,
                    work_orders: orders,
                    work_orders_done: done,
                    fix_met: met,
                    repair_seconds_sum: secs,
                    preventive,
                    reactive,
                    room_nights_lost: lost,
                }
            },
        )
        .collect())
}
