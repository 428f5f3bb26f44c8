//! Checklists (versioned), plans by calendar or meter, the idempotent scheduler, and recording
//! results (every failed item opens a defect work order).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use guestloop_kit::auth::{principal, Principal};
use guestloop_kit::text::free_text;
use guestloop_kit::time::{calendar_date, required_horizon, to_timestamp};
use guestloop_kit::{idempotency, paging, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::facilities::v1 as pb;
use prost::Message;
use tonic::Request;
use uuid::Uuid;

use super::assets::{parse_id, require_of_property};
use super::work_orders::{chain_of, open, DueCursor, NewWorkOrder};
use super::{limits, Api};
use crate::domain::schedule::{meter_due, occurrences, CalendarPlan, Frequency};

/// Publishes a checklist: a new one under the caller's chain, or the next version of one the
/// caller may reach ([`reachable_checklist`]). Revising a shared ('') checklist takes it over:
/// the new version carries the caller's chain, which owns the checklist from then on, while the
/// earlier shared versions stay as they were (other chains' plans keep inspecting with the last
/// of them, see [`current_version`]). Services hold no chain: their new checklists are shared and
/// their revisions keep the checklist's owner.
pub async fn publish_checklist(
    api: &Api,
    request: Request<pb::PublishChecklistRequest>,
) -> ApiResult<pb::Checklist> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    let name = free_text(&request.name, "name", limits::NAME, true, &mut v);
    if request.items.is_empty() {
        v.push(FieldViolation::new(
            "items",
            "a checklist needs at least one item",
        ));
    }
    let items: Vec<pb::ChecklistItem> = request
        .items
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, item)| checklist_item(i, item, &mut v))
        .collect();
    let mut codes = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.code.is_empty() || !codes.insert(item.code.clone()) {
            v.push(FieldViolation::new(
                format!("items[{i}].code"),
                "must be present and unique",
            ));
        }
        match pb::ItemKind::try_from(item.kind) {
            Ok(pb::ItemKind::Numeric) if !item.min.is_finite() || !item.max.is_finite() => {
                v.push(FieldViolation::new(
                    format!("items[{i}].min"),
                    "min and max must be finite numbers",
                ))
            }
            Ok(pb::ItemKind::Numeric) if item.min > item.max => v.push(FieldViolation::new(
                format!("items[{i}].min"),
                "must not exceed max",
            )),
            Ok(pb::ItemKind::Choice) if item.acceptable.is_empty() => v.push(FieldViolation::new(
                format!("items[{i}].acceptable"),
                "a choice item needs acceptable choices",
            )),
            Ok(pb::ItemKind::Unspecified) | Err(_) => v.push(FieldViolation::new(
                format!("items[{i}].kind"),
                "is required",
            )),
            Ok(_) => {}
        }
        if !matches!(item.tag.as_str(), "operation" | "safety" | "hygiene") {
            v.push(FieldViolation::new(
                format!("items[{i}].tag"),
                "must be operation, safety or hygiene",
            ));
        }
    }
    let existing = if request.checklist_id.is_empty() {
        None
    } else {
        Some(parse_id(&request.checklist_id, "checklist_id")?)
    };
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    idempotency::check_request_id(&request.request_id)?;
    let caller = tenancy::caller_chain(&principal).unwrap_or_default();
    let mut tx = api.context.pool.begin().await?;
    let (id, chain) = match existing {
        None => (Uuid::now_v7(), caller.to_string()),
        Some(id) => {
            // Revisions of one checklist take turns: the owner and the next version number are
            // read (each by its own statement, so after the lock) with every earlier revision
            // committed, and two chains cannot both take over a shared checklist.
            sqlx::query("SELECT 1 FROM checklists WHERE checklist_id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let owner = reachable_checklist(&mut tx, &principal, id).await?;
            // A revision applies wherever the checklist is planned: a token for some
            // properties may not change what others inspect with.
            if !principal.covers_whole_chain() {
                let users: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT property_id FROM plans WHERE checklist_id = $1 ORDER BY property_id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                principal.require_every_user(&users, &format!("checklist {id}"))?;
            }
            let chain = if owner.is_empty() { caller } else { &owner };
            (id, chain.to_string())
        }
    };
    // A retry gets the version its first call published (checked after the scope above).
    if let Some(previous) = idempotency::claim::<_, pb::Checklist>(
        &mut tx,
        &principal,
        "PublishChecklist",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let stored = pb::Checklist {
        checklist_id: id.to_string(),
        version: 0,
        name,
        items,
    };
    let items_json = serde_json::Value::Array(
        stored
            .items
            .iter()
            .map(|i| serde_json::Value::String(hex::encode(i.encode_to_vec())))
            .collect(),
    );
    let version: i32 = sqlx::query_scalar(
        "INSERT INTO checklists (checklist_id, version, name, items, chain_id) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM checklists WHERE checklist_id = $1 RETURNING version",
    )
    .bind(id)
    .bind(&stored.name)
    .bind(items_json)
    .bind(&chain)
    .fetch_one(&mut *tx)
    .await?;
    let published = pb::Checklist { version, ..stored };
    idempotency::record(
        &mut tx,
        &principal,
        "PublishChecklist",
        &request.request_id,
        &published,
    )
    .await?;
    tx.commit().await?;
    Ok(published)
}

/// A checklist item with its free text checked (violations pushed to `v`) and trimmed.
fn checklist_item(
    i: usize,
    item: pb::ChecklistItem,
    v: &mut Vec<FieldViolation>,
) -> pb::ChecklistItem {
    let acceptable = item
        .acceptable
        .iter()
        .enumerate()
        .map(|(j, choice)| {
            free_text(
                choice,
                &format!("items[{i}].acceptable[{j}]"),
                limits::NAME,
                false,
                v,
            )
        })
        .collect();
    pb::ChecklistItem {
        code: free_text(
            &item.code,
            &format!("items[{i}].code"),
            limits::CODE,
            false,
            v,
        ),
        text: free_text(
            &item.text,
            &format!("items[{i}].text"),
            limits::ITEM_TEXT,
            false,
            v,
        ),
        unit: free_text(
            &item.unit,
            &format!("items[{i}].unit"),
            limits::UNIT,
            false,
            v,
        ),
        acceptable,
        ..item
    }
}

/// The chain that owns checklist `id` — `""` when it is shared (no version names a chain) — if
/// the caller may name it; NOT_FOUND, as for a checklist that does not exist, when it is another
/// chain's. Services reach every checklist. For every request that names a checklist by id.
async fn reachable_checklist(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<String> {
    // '' sorts first: the maximum is the owner's chain if any version names one.
    let owner: Option<String> =
        sqlx::query_scalar("SELECT max(chain_id) FROM checklists WHERE checklist_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    match (owner, tenancy::caller_chain(principal)) {
        (Some(owner), Some(chain)) if owner.is_empty() || owner == chain => Ok(owner),
        (Some(owner), None) => Ok(owner),
        _ => Err(ApiError::not_found("checklist", id.to_string())),
    }
}

/// The version of checklist `id` that a plan at `property_id` inspects with now: the latest one
/// that is shared or of the property's chain. A plan of another chain on a checklist that has
/// been taken over so keeps the last shared version. Should no version qualify (a plan made on a
/// checklist before it carried a chain, at a property of a chain other than the one the checklist
/// went to), the latest version, as before checklists carried a chain, so the plan keeps working.
async fn current_version(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    property_id: &str,
) -> ApiResult<i32> {
    let version: Option<i32> = sqlx::query_scalar(
        "SELECT c.version FROM checklists c WHERE c.checklist_id = $1 \
         ORDER BY (c.chain_id = '' OR c.chain_id = coalesce( \
             (SELECT pc.chain_id FROM property_chains pc WHERE pc.property_id = $2), '')) DESC, \
         c.version DESC LIMIT 1",
    )
    .bind(id)
    .bind(property_id)
    .fetch_optional(conn)
    .await?;
    version.ok_or_else(|| ApiError::not_found("checklist", id.to_string()))
}

/// One version of a checklist, for recording results against it.
async fn checklist(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    version: i32,
) -> ApiResult<pb::Checklist> {
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT name, items FROM checklists WHERE checklist_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await?;
    let (name, items) = row.ok_or_else(|| ApiError::not_found("checklist", id.to_string()))?;
    let items = items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    v.as_str()
                        .and_then(|s| hex::decode(s).ok())
                        .and_then(|b| pb::ChecklistItem::decode(b.as_slice()).ok())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::Checklist {
        checklist_id: id.to_string(),
        version,
        name,
        items,
    })
}

/// How far ahead one schedule call may look.
const MAX_LOOKAHEAD_DAYS: i64 = 366;

fn frequency(plan: &pb::Plan) -> Option<Frequency> {
    match pb::Frequency::try_from(plan.frequency).ok()? {
        pb::Frequency::Daily => Some(Frequency::Daily),
        pb::Frequency::Weekly => Some(Frequency::Weekly),
        pb::Frequency::Monthly => Some(Frequency::Monthly),
        pb::Frequency::Quarterly => Some(Frequency::Quarterly),
        pb::Frequency::Yearly => Some(Frequency::Yearly),
        pb::Frequency::EveryNDays => u32::try_from(plan.interval)
            .ok()
            .filter(|n| *n > 0)
            .map(Frequency::EveryNDays),
        _ => None,
    }
}

fn is_meter(value: i32) -> bool {
    matches!(
        pb::Frequency::try_from(value),
        Ok(pb::Frequency::MeterHours | pb::Frequency::MeterCycles)
    )
}

pub async fn create_plan(
    api: &Api,
    request: Request<pb::CreatePlanRequest>,
) -> ApiResult<pb::Plan> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let plan = request
        .plan
        .clone()
        .ok_or_else(|| ApiError::invalid("plan", "is required"))?;
    let mut v = Vec::new();
    let zone = plan
        .time_zone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| {
            v.push(FieldViolation::new(
                "plan.time_zone",
                "unknown IANA time zone",
            ))
        })
        .ok();
    // Within a year back (its backlog is scheduled as overdue) and five years ahead.
    let today = Utc::now().date_naive();
    let start = calendar_date(
        &plan.start_date,
        "plan.start_date",
        today - chrono::Duration::days(366),
        today + chrono::Duration::days(5 * 366),
    )
    .map_err(|e| v.push(e))
    .ok();
    let due = NaiveTime::parse_from_str(&plan.due_time, "%H:%M")
        .map_err(|_| v.push(FieldViolation::new("plan.due_time", "must be HH:MM")))
        .ok();
    if plan.property_id.is_empty() {
        v.push(FieldViolation::new("plan.property_id", "is required"));
    }
    let responsible_role = free_text(
        &plan.responsible_role,
        "plan.responsible_role",
        limits::LABEL,
        false,
        &mut v,
    );
    let meter = is_meter(plan.frequency);
    if meter && (plan.interval <= 0 || plan.asset_id.is_empty()) {
        v.push(FieldViolation::new(
            "plan.interval",
            "a meter plan needs a positive interval and an asset",
        ));
    }
    if !meter && frequency(&plan).is_none() {
        v.push(FieldViolation::new(
            "plan.frequency",
            "is required (EVERY_N_DAYS needs a positive interval)",
        ));
    }
    let checklist_id = parse_id(&plan.checklist_id, "plan.checklist_id")?;
    let asset = if plan.asset_id.is_empty() {
        None
    } else {
        Some(parse_id(&plan.asset_id, "plan.asset_id")?)
    };
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut conn = api.context.pool.begin().await?;
    tenancy::claim_property(&mut conn, &principal, &plan.property_id).await?;
    // A checklist of another chain is not found; a shared one may be planned on. Its rows are
    // held shared until the plan is stored, so a revision checking where the checklist is used
    // (under its exclusive lock) sees this plan or comes after it.
    sqlx::query("SELECT 1 FROM checklists WHERE checklist_id = $1 FOR SHARE")
        .bind(checklist_id)
        .execute(&mut *conn)
        .await?;
    reachable_checklist(&mut conn, &principal, checklist_id).await?;
    if let Some(asset) = asset {
        require_of_property(&mut conn, asset, &plan.property_id, "plan.asset_id").await?;
    }
    if let Some(previous) = idempotency::claim::<_, pb::Plan>(
        &mut conn,
        &principal,
        "CreatePlan",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO plans (plan_id, property_id, checklist_id, asset_id, frequency, interval_value, start_date, due_time, time_zone, responsible_role) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
    )
    .bind(id)
    .bind(&plan.property_id)
    .bind(checklist_id)
    .bind(asset)
    .bind(plan.frequency as i16)
    .bind(plan.interval)
    .bind(start)
    .bind(due)
    .bind(zone.map(|z| z.name().to_string()))
    .bind(&responsible_role)
    .execute(&mut *conn)
    .await?;
    let reply = pb::Plan {
        plan_id: id.to_string(),
        responsible_role,
        ..plan
    };
    idempotency::record(
        &mut conn,
        &principal,
        "CreatePlan",
        &request.request_id,
        &reply,
    )
    .await?;
    conn.commit().await?;
    Ok(reply)
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    plan_id: Uuid,
    property_id: String,
    checklist_id: Uuid,
    asset_id: Option<Uuid>,
    frequency: i16,
    interval_value: i64,
    start_date: NaiveDate,
    due_time: NaiveTime,
    time_zone: String,
    meter_at_last_done: i64,
}

pub async fn schedule(
    api: &Api,
    request: Request<pb::ScheduleInspectionsRequest>,
) -> ApiResult<pb::ScheduleInspectionsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    principal.require_property(&request.property_id)?;
    let until = required_horizon("until", request.until.as_ref(), MAX_LOOKAHEAD_DAYS)?;
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    let plans: Vec<PlanRow> = sqlx::query_as(
        "SELECT plan_id, property_id, checklist_id, asset_id, frequency, interval_value, start_date, due_time, time_zone, meter_at_last_done \
         FROM plans WHERE property_id = $1",
    )
    .bind(&request.property_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut response = pb::ScheduleInspectionsResponse::default();
    for plan in plans {
        let version = current_version(&mut tx, plan.checklist_id, &plan.property_id).await?;
        let mut due: Vec<(String, DateTime<Utc>)> = Vec::new();
        if is_meter(i32::from(plan.frequency)) {
            if let Some(asset) = plan.asset_id {
                let (hours, cycles): (i64, i64) = sqlx::query_as(
                    "SELECT meter_hours, meter_cycles FROM assets WHERE asset_id = $1",
                )
                .bind(asset)
                .fetch_one(&mut *tx)
                .await?;
                let current = if i32::from(plan.frequency) == pb::Frequency::MeterHours as i32 {
                    hours
                } else {
                    cycles
                };
                if meter_due(plan.meter_at_last_done, plan.interval_value, current) {
                    due.push((
                        format!("meter:{}", plan.meter_at_last_done + plan.interval_value),
                        Utc::now(),
                    ));
                }
            }
        } else {
            let wire = pb::Plan {
                frequency: i32::from(plan.frequency),
                interval: plan.interval_value,
                ..Default::default()
            };
            let Some(frequency) = frequency(&wire) else {
                continue;
            };
            let zone = plan.time_zone.parse().unwrap_or(chrono_tz::UTC);
            let calendar = CalendarPlan {
                frequency,
                start: plan.start_date,
                due_time: plan.due_time,
                zone,
            };
            for occurrence in occurrences(&calendar, DateTime::<Utc>::MIN_UTC, until) {
                due.push((format!("n:{}", occurrence.index), occurrence.due_at));
            }
        }
        for (key, at) in due {
            let inserted = sqlx::query(
                "INSERT INTO inspections (inspection_id, plan_id, occurrence, property_id, asset_id, checklist_id, checklist_version, due_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (plan_id, occurrence) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(plan.plan_id)
            .bind(&key)
            .bind(&plan.property_id)
            .bind(plan.asset_id)
            .bind(plan.checklist_id)
            .bind(version)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                response.created += 1;
            } else {
                response.already_scheduled += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(response)
}

#[derive(sqlx::FromRow)]
struct InspectionRow {
    inspection_id: Uuid,
    plan_id: Uuid,
    property_id: String,
    asset_id: Option<Uuid>,
    checklist_id: Uuid,
    checklist_version: i32,
    due_at: DateTime<Utc>,
    status: String,
    done_at: Option<DateTime<Utc>>,
    failed_items: Vec<String>,
}

fn inspection_to_proto(
    row: &InspectionRow,
    work_orders: Vec<String>,
    results: Vec<pb::ItemResult>,
) -> pb::Inspection {
    let now = Utc::now();
    pb::Inspection {
        inspection_id: row.inspection_id.to_string(),
        plan_id: row.plan_id.to_string(),
        property_id: row.property_id.clone(),
        asset_id: row.asset_id.map(|a| a.to_string()).unwrap_or_default(),
        checklist_id: row.checklist_id.to_string(),
        checklist_version: row.checklist_version,
        due_time: Some(to_timestamp(row.due_at)),
        status: row.status.clone(),
        overdue: row.status == "due" && row.due_at < now,
        done_time: row.done_at.map(to_timestamp),
        results,
        failed_items: row.failed_items.clone(),
        work_order_ids: work_orders,
    }
}

const INSPECTION_COLUMNS: &str = "inspection_id, plan_id, property_id, asset_id, checklist_id, checklist_version, due_at, status, done_at, failed_items";

pub async fn list(
    api: &Api,
    request: Request<pb::ListInspectionsRequest>,
) -> ApiResult<pb::ListInspectionsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let limit = paging::page_size(request.page_size, 100, 1000)?;
    let after: Option<DueCursor> = paging::decode_token(&request.page_token)?;
    let rows: Vec<InspectionRow> = sqlx::query_as(&format!(
        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE property_id = $1 AND (NOT $2 OR (status = 'due' AND due_at < now())) \
         AND ($4::timestamptz IS NULL OR (due_at, inspection_id) > ($4, $5)) \
         ORDER BY due_at, inspection_id LIMIT $3"
    ))
    .bind(&request.property_id)
    .bind(request.overdue_only)
    .bind(limit + 1)
    .bind(after.as_ref().map(|c| c.due))
    .bind(after.as_ref().map(|c| c.id))
    .fetch_all(&mut *conn)
    .await?;
    let (rows, next_page_token) = paging::split_page(rows, limit, |r| DueCursor {
        due: r.due_at,
        id: r.inspection_id,
    });
    // The work orders the page's failed items opened, as recording the inspection answered.
    let done: Vec<String> = rows
        .iter()
        .filter(|r| !r.failed_items.is_empty())
        .map(|r| r.inspection_id.to_string())
        .collect();
    let opened: Vec<(String, Uuid)> = if done.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT source_id, work_order_id FROM work_orders WHERE property_id = $1 AND source = 1 \
             AND source_id = ANY($2) ORDER BY created_at, work_order_id",
        )
        .bind(&request.property_id)
        .bind(&done)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut by_inspection: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for (inspection, order) in opened {
        by_inspection
            .entry(inspection)
            .or_default()
            .push(order.to_string());
    }
    Ok(pb::ListInspectionsResponse {
        inspections: rows
            .iter()
            .map(|r| {
                let orders = by_inspection
                    .remove(&r.inspection_id.to_string())
                    .unwrap_or_default();
                inspection_to_proto(r, orders, Vec::new())
            })
            .collect(),
        next_page_token,
    })
}

/// A result with its free text checked (violations pushed to `v`) and trimmed.
fn item_result(i: usize, result: pb::ItemResult, v: &mut Vec<FieldViolation>) -> pb::ItemResult {
    pb::ItemResult {
        code: free_text(
            &result.code,
            &format!("results[{i}].code"),
            limits::CODE,
            false,
            v,
        ),
        choice: free_text(
            &result.choice,
            &format!("results[{i}].choice"),
            limits::NAME,
            false,
            v,
        ),
        text: free_text(
            &result.text,
            &format!("results[{i}].text"),
            limits::NOTE,
            false,
            v,
        ),
        note: free_text(
            &result.note,
            &format!("results[{i}].note"),
            limits::NOTE,
            false,
            v,
        ),
        ..result
    }
}

/// Whether one result meets its item; `None` when the result does not fit the item.
fn judge(item: &pb::ChecklistItem, result: &pb::ItemResult) -> bool {
    match pb::ItemKind::try_from(item.kind) {
        Ok(pb::ItemKind::PassFail) => result.passed,
        Ok(pb::ItemKind::Numeric) => result.value >= item.min && result.value <= item.max,
        Ok(pb::ItemKind::Choice) => item.acceptable.iter().any(|a| a.trim() == result.choice),
        _ => true,
    }
}

pub async fn record(
    api: &Api,
    request: Request<pb::RecordInspectionRequest>,
) -> ApiResult<pb::Inspection> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let id = parse_id(&request.inspection_id, "inspection_id")?;
    let mut v = Vec::new();
    let results: Vec<pb::ItemResult> = request
        .results
        .into_iter()
        .enumerate()
        .map(|(i, result)| item_result(i, result, &mut v))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, result) in results.iter().enumerate() {
        if !result.value.is_finite() {
            v.push(FieldViolation::new(
                format!("results[{i}].value"),
                "must be a finite number",
            ));
        }
        if !seen.insert(result.code.as_str()) {
            v.push(FieldViolation::new(
                format!("results[{i}].code"),
                format!("`{}` has a result already", result.code),
            ));
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let row: InspectionRow = sqlx::query_as(&format!(
        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE inspection_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("inspection", id.to_string()))?;
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("inspection", id.to_string()));
    }
    // Recording opens defect work orders at the inspection's property: a write like any other,
    // so it registers the property under the caller's chain if no chain holds it yet.
    tenancy::claim_property(&mut tx, &principal, &row.property_id).await?;
    if row.status == "done" {
        return Err(ApiError::failed_precondition(
            "INSPECTION_DONE",
            format!("inspections/{id}"),
            "the inspection was already recorded",
        ));
    }
    let list = checklist(&mut tx, row.checklist_id, row.checklist_version).await?;
    for item in &list.items {
        if !results.iter().any(|r| r.code == item.code.trim()) {
            v.push(FieldViolation::new(
                "results",
                format!("item `{}` has no result", item.code),
            ));
        }
    }
    for (i, result) in results.iter().enumerate() {
        if !list
            .items
            .iter()
            .any(|item| item.code.trim() == result.code)
        {
            v.push(FieldViolation::new(
                format!("results[{i}].code"),
                format!("`{}` is not an item of this checklist", result.code),
            ));
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let failed: Vec<&pb::ChecklistItem> = list
        .items
        .iter()
        .filter(|item| {
            results
                .iter()
                .any(|r| r.code == item.code.trim() && !judge(item, r))
        })
        .collect();
    let room: String = match row.asset_id {
        Some(asset) => {
            sqlx::query_scalar("SELECT room FROM assets WHERE asset_id = $1")
                .bind(asset)
                .fetch_one(&mut *tx)
                .await?
        }
        None => String::new(),
    };
    let mut work_orders = Vec::new();
    for item in &failed {
        let priority = match (item.critical, item.tag.as_str()) {
            (true, "safety") => pb::Priority::LifeSafety,
            (true, _) | (_, "hygiene") => pb::Priority::GuestImpacting,
            _ => pb::Priority::Normal,
        };
        let order = open(
            &mut tx,
            NewWorkOrder {
                chain_id: chain_of(&principal),
                property_id: row.property_id.clone(),
                asset_id: row.asset_id,
                room: room.clone(),
                title: format!("Defect: {}", item.text),
                description: format!("failed inspection item {} ({})", item.code, item.tag),
                priority: priority as i16,
                source: pb::WorkOrderSource::Inspection,
                source_id: id.to_string(),
                actor: principal.subject().to_string(),
            },
        )
        .await?;
        work_orders.push(order.work_order_id.to_string());
    }
    let failed_codes: Vec<String> = failed.iter().map(|i| i.code.clone()).collect();
    let results_json = serde_json::Value::Array(
        results
            .iter()
            .map(|r| serde_json::Value::String(hex::encode(r.encode_to_vec())))
            .collect(),
    );
    let now = Utc::now();
    sqlx::query("UPDATE inspections SET status = 'done', done_at = $2, results = $3, failed_items = $4 WHERE inspection_id = $1")
        .bind(id)
        .bind(now)
        .bind(results_json)
        .bind(&failed_codes)
        .execute(&mut *tx)
        .await?;
    // A meter plan counts again from the reading at completion.
    sqlx::query(
        "UPDATE plans p SET meter_at_last_done = CASE WHEN p.frequency = 7 THEN a.meter_hours ELSE a.meter_cycles END \
         FROM assets a WHERE p.plan_id = $1 AND a.asset_id = p.asset_id AND p.frequency IN (7, 8)",
    )
    .bind(row.plan_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    api.context.events.wake();
    let done = InspectionRow {
        status: "done".into(),
        done_at: Some(now),
        failed_items: failed_codes,
        ..row
    };
    Ok(inspection_to_proto(&done, work_orders, results))
}
