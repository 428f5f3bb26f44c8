//! Facilities KPIs for a set of properties and a period: inspection compliance, defects per
//! inspection, work-order attainment, MTTR, preventive vs reactive, room-nights lost.

use guestloop_kit::auth::principal;
use guestloop_kit::time::required_timestamp;
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::facilities::v1 as pb;
use tonic::Request;

use super::Api;

fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetFacilitiesKpisRequest>,
) -> ApiResult<pb::FacilitiesKpis> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_ids.is_empty() {
        return Err(ApiError::invalid(
            "property_ids",
            "name at least one property",
        ));
    }
    for property in &request.property_ids {
        principal.require_property(property)?;
    }
    let period = request
        .period
        .ok_or_else(|| ApiError::invalid("period", "is required"))?;
    let from = required_timestamp("period.start_time", period.start_time.as_ref())?;
    let to = required_timestamp("period.end_time", period.end_time.as_ref())?;
    let (due, on_time, done, defects): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE done_at <= due_at + interval '1 day'), count(*) FILTER (WHERE status = 'done'), \
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
         FROM work_orders WHERE property_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_one(&api.context.pool)
    .await?;
    let per_property: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.property_id, count(w.*), count(w.done_at), count(*) FILTER (WHERE w.done_at <= w.fix_due_at) \
         FROM unnest($1::text[]) AS p(property_id) LEFT JOIN work_orders w ON w.property_id = p.property_id \
         AND w.created_at >= $2 AND w.created_at < $3 GROUP BY p.property_id ORDER BY p.property_id",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_all(&api.context.pool)
    .await?;
    let nights_lost: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(greatest(0, (least(ended_at, $3)::date - greatest(started_at, $2)::date))), 0)::bigint \
         FROM room_outages WHERE property_id = ANY($1) AND ended_at > $2 AND started_at < $3",
    )
    .bind(&request.property_ids)
    .bind(from)
    .bind(to)
    .fetch_one(&api.context.pool)
    .await?;
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
    })
}
