//! Work orders (with respond and fix clocks, the fix clock paused while on hold), the
//! out-of-order guard for rooms, repeat-fix rules, and the events contractors and the complaints
//! service listen to.

use chrono::{DateTime, Duration, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::events::{append, NewEvent};
use guestloop_kit::text::free_text;
use guestloop_kit::time::{from_timestamp, to_timestamp};
use guestloop_kit::worktime::{evaluate, pauses_from_history, ClockHistory, SlaTarget};
use guestloop_kit::{idempotency, money, paging, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::Money;
use guestloop_proto::facilities::v1 as pb;
use sqlx::PgConnection;
use tonic::Request;
use uuid::Uuid;

use super::assets::{
    parse_id, require_of_property, to_proto as asset_to_proto, AssetRow, COLUMNS as ASSET_COLUMNS,
};
use super::{limits, Api};
use crate::domain::work_orders::{repeat_fix, transition as next_status, Action, Priority, Status};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkOrderRow {
    pub work_order_id: Uuid,
    pub chain_id: String,
    pub property_id: String,
    pub asset_id: Option<Uuid>,
    pub room: String,
    pub title: String,
    pub description: String,
    pub priority: i16,
    pub source: i16,
    pub source_id: String,
    pub status: String,
    pub assignee: String,
    pub hold_reason: String,
    pub created_at: DateTime<Utc>,
    pub respond_due_at: DateTime<Utc>,
    pub fix_due_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub labour_currency: String,
    pub labour_minor: i64,
    pub parts_currency: String,
    pub parts_minor: i64,
    pub repeat_escalated: bool,
    pub etag: Uuid,
    /// When the clocks stopped short of the work being done: the current hold's start, or the
    /// cancellation.
    pub clocks_stopped_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "work_order_id, chain_id, property_id, asset_id, room, title, description, priority, source, source_id, status, \
    assignee, hold_reason, created_at, respond_due_at, fix_due_at, responded_at, done_at, labour_currency, labour_minor, \
    parts_currency, parts_minor, repeat_escalated, etag, clocks_stopped_at";

fn priority(value: i16) -> Priority {
    match value {
        1 => Priority::LifeSafety,
        2 => Priority::GuestImpacting,
        4 => Priority::Low,
        _ => Priority::Normal,
    }
}

pub fn to_proto(row: &WorkOrderRow, now: DateTime<Utc>) -> pb::WorkOrder {
    let money = |currency: &str, minor: i64| {
        (minor > 0).then(|| Money {
            currency_code: currency.to_string(),
            minor_units: minor,
        })
    };
    // A clock ends when its step is done, or when the order is held or cancelled: the fix
    // clock is paused while on hold (`fix_due_at` moves by the hold once work resumes), and a
    // cancelled order owes nothing from its cancellation on.
    let respond_end = row.responded_at.or(row.clocks_stopped_at).unwrap_or(now);
    let fix_end = row.done_at.or(row.clocks_stopped_at).unwrap_or(now);
    pb::WorkOrder {
        work_order_id: row.work_order_id.to_string(),
        property_id: row.property_id.clone(),
        asset_id: row.asset_id.map(|a| a.to_string()).unwrap_or_default(),
        room: row.room.clone(),
        title: row.title.clone(),
        description: row.description.clone(),
        priority: i32::from(row.priority),
        source: i32::from(row.source),
        source_id: row.source_id.clone(),
        status: row.status.clone(),
        assignee: row.assignee.clone(),
        hold_reason: row.hold_reason.clone(),
        create_time: Some(to_timestamp(row.created_at)),
        respond_due_time: Some(to_timestamp(row.respond_due_at)),
        fix_due_time: Some(to_timestamp(row.fix_due_at)),
        done_time: row.done_at.map(to_timestamp),
        respond_breached: respond_end > row.respond_due_at,
        fix_breached: fix_end > row.fix_due_at && row.status != "cancelled",
        labour_cost: money(&row.labour_currency, row.labour_minor),
        parts_cost: money(&row.parts_currency, row.parts_minor),
        repeat_escalated: row.repeat_escalated,
        etag: row.etag.to_string(),
    }
}

/// The chain a caller's work orders belong to: the token's, none for a service (whose token is
/// for every chain).
pub fn chain_of(principal: &guestloop_kit::auth::Principal) -> String {
    match principal.chain_id() {
        "*" => String::new(),
        chain => chain.to_string(),
    }
}

/// What opens a work order.
#[derive(Debug)]
pub struct NewWorkOrder {
    /// The chain of the caller (or of the complaint) opening it.
    pub chain_id: String,
    pub property_id: String,
    pub asset_id: Option<Uuid>,
    pub room: String,
    pub title: String,
    pub description: String,
    pub priority: i16,
    pub source: pb::WorkOrderSource,
    pub source_id: String,
    pub actor: String,
}

async fn emit(
    conn: &mut PgConnection,
    event_type: &str,
    row: &WorkOrderRow,
    from: &str,
) -> ApiResult<()> {
    append(
        conn,
        NewEvent {
            event_type,
            subject: format!("work_orders/{}", row.work_order_id),
            chain_id: &row.chain_id,
            property_id: &row.property_id,
            payload: &pb::WorkOrderChanged {
                work_order: Some(to_proto(row, Utc::now())),
                from_status: from.to_string(),
            },
        },
    )
    .await?;
    Ok(())
}

/// Flags `asset` for replacement, announcing it (`facilities.asset.replacement_flagged`) the
/// first time only.
async fn flag_replacement(
    conn: &mut PgConnection,
    asset: Uuid,
    order: &WorkOrderRow,
) -> ApiResult<()> {
    let flagged: Option<AssetRow> = sqlx::query_as(&format!(
        "UPDATE assets SET replacement_flagged = true \
         WHERE asset_id = $1 AND property_id = $2 AND NOT replacement_flagged RETURNING {ASSET_COLUMNS}"
    ))
    .bind(asset)
    .bind(&order.property_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(flagged) = flagged {
        append(
            conn,
            NewEvent {
                event_type: "facilities.asset.replacement_flagged",
                subject: format!("assets/{asset}"),
                chain_id: &order.chain_id,
                property_id: &order.property_id,
                payload: &pb::AssetReplacementFlagged {
                    asset: Some(asset_to_proto(flagged)),
                    work_order_id: order.work_order_id.to_string(),
                },
            },
        )
        .await?;
    }
    Ok(())
}

/// Opens a work order in the caller's transaction.
pub async fn open(conn: &mut PgConnection, new: NewWorkOrder) -> ApiResult<WorkOrderRow> {
    let now = Utc::now();
    let settings = super::settings::load(conn, &new.property_id).await?;
    let priority = priority(new.priority);
    let target = settings.target(priority);
    let calendar = settings.calendar(priority);
    let row: WorkOrderRow = sqlx::query_as(&format!(
        "INSERT INTO work_orders (work_order_id, property_id, asset_id, room, title, description, priority, source, source_id, \
         status, created_at, respond_due_at, fix_due_at, etag, chain_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'open',$10,$11,$12,$13,$14) \
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&new.property_id)
    .bind(new.asset_id)
    .bind(&new.room)
    .bind(&new.title)
    .bind(&new.description)
    .bind(new.priority)
    .bind(new.source as i16)
    .bind(&new.source_id)
    .bind(now)
    .bind(calendar.add_working_time(now, target.respond))
    .bind(calendar.add_working_time(now, target.fix))
    .bind(Uuid::now_v7())
    .bind(&new.chain_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO work_order_history (work_order_id, at, status, actor) VALUES ($1, $2, 'open', $3)")
        .bind(row.work_order_id)
        .bind(now)
        .bind(&new.actor)
        .execute(&mut *conn)
        .await?;
    emit(conn, "facilities.work_order.created", &row, "").await?;
    Ok(row)
}

pub async fn create(
    api: &Api,
    request: Request<pb::CreateWorkOrderRequest>,
) -> ApiResult<pb::WorkOrder> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let order = request
        .work_order
        .clone()
        .ok_or_else(|| ApiError::invalid("work_order", "is required"))?;
    let mut v = Vec::new();
    if order.property_id.is_empty() {
        v.push(FieldViolation::new("work_order.property_id", "is required"));
    }
    let title = free_text(&order.title, "work_order.title", limits::NAME, true, &mut v);
    let description = free_text(
        &order.description,
        "work_order.description",
        limits::DESCRIPTION,
        false,
        &mut v,
    );
    let room = free_text(&order.room, "work_order.room", limits::ROOM, false, &mut v);
    let source_id = free_text(
        &order.source_id,
        "work_order.source_id",
        limits::CODE,
        false,
        &mut v,
    );
    match pb::Priority::try_from(order.priority) {
        Ok(pb::Priority::Unspecified) => {
            v.push(FieldViolation::new("work_order.priority", "is required"))
        }
        Err(_) => v.push(FieldViolation::new(
            "work_order.priority",
            format!("unknown value {}", order.priority),
        )),
        Ok(_) => {}
    }
    let source = match pb::WorkOrderSource::try_from(order.source) {
        Ok(pb::WorkOrderSource::Unspecified) => pb::WorkOrderSource::StaffReport,
        Ok(source) => source,
        Err(_) => {
            v.push(FieldViolation::new(
                "work_order.source",
                format!("unknown value {}", order.source),
            ));
            pb::WorkOrderSource::StaffReport
        }
    };
    // One work order per complaint: an order from a complaint names it, or every such order
    // would share the empty id.
    if source == pb::WorkOrderSource::Complaint && source_id.is_empty() {
        v.push(FieldViolation::new(
            "work_order.source_id",
            "is required for a work order from a complaint (the complaint's id)",
        ));
    } else if matches!(
        source,
        pb::WorkOrderSource::Complaint | pb::WorkOrderSource::Inspection
    ) && !source_id.is_empty()
        && Uuid::parse_str(&source_id).is_err()
    {
        v.push(FieldViolation::new(
            "work_order.source_id",
            "must be the UUID of the complaint or inspection the order comes from",
        ));
    }
    let asset_id = if order.asset_id.is_empty() {
        None
    } else {
        Some(parse_id(&order.asset_id, "work_order.asset_id")?)
    };
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &order.property_id).await?;
    if let Some(asset) = asset_id {
        require_of_property(&mut tx, asset, &order.property_id, "work_order.asset_id").await?;
    }
    if let Some(previous) = idempotency::claim::<_, pb::WorkOrder>(
        &mut tx,
        &principal,
        "CreateWorkOrder",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let row = open(
        &mut tx,
        NewWorkOrder {
            chain_id: chain_of(&principal),
            property_id: order.property_id.clone(),
            asset_id,
            room,
            title,
            description,
            priority: order.priority as i16,
            source,
            source_id,
            actor: principal.subject().to_string(),
        },
    )
    .await?;
    let reply = to_proto(&row, Utc::now());
    idempotency::record(
        &mut tx,
        &principal,
        "CreateWorkOrder",
        &request.request_id,
        &reply,
    )
    .await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(reply)
}

async fn load(conn: &mut PgConnection, id: Uuid, lock: bool) -> ApiResult<WorkOrderRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM work_orders WHERE work_order_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("work order", id.to_string()))
}

/// Cancels the open work orders complaint `complaint_id` opened at `property_id`, in the
/// caller's transaction, as a CANCEL by the complaints feed would: the complaint was cancelled
/// (filed by mistake, a duplicate), so there is nothing to repair for it. Answers how many.
pub async fn cancel_for_complaint(
    conn: &mut PgConnection,
    complaint_id: &str,
    property_id: &str,
) -> ApiResult<u64> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT work_order_id FROM work_orders WHERE source = 2 AND source_id = $1 AND property_id = $2 \
         AND status NOT IN ('done', 'verified', 'cancelled') ORDER BY work_order_id FOR UPDATE",
    )
    .bind(complaint_id)
    .bind(property_id)
    .fetch_all(&mut *conn)
    .await?;
    let now = Utc::now();
    for id in &ids {
        let mut row = load(&mut *conn, *id, true).await?;
        let from = row.status.clone();
        sqlx::query(
            "INSERT INTO work_order_history (work_order_id, at, status, actor) VALUES ($1, $2, 'cancelled', 'service:complaints')",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        row.status = Status::Cancelled.as_str().to_string();
        row.hold_reason = format!("complaint {complaint_id} was cancelled");
        row.clocks_stopped_at = Some(now);
        row.etag = Uuid::now_v7();
        sqlx::query(
            "UPDATE work_orders SET status = $2, hold_reason = $3, clocks_stopped_at = $4, etag = $5 WHERE work_order_id = $1",
        )
        .bind(id)
        .bind(&row.status)
        .bind(&row.hold_reason)
        .bind(row.clocks_stopped_at)
        .bind(row.etag)
        .execute(&mut *conn)
        .await?;
        emit(&mut *conn, "facilities.work_order.changed", &row, &from).await?;
    }
    Ok(ids.len() as u64)
}

pub async fn get(api: &Api, request: Request<pb::GetWorkOrderRequest>) -> ApiResult<pb::WorkOrder> {
    let principal = principal(&request)?.clone();
    let id = parse_id(&request.get_ref().work_order_id, "work_order_id")?;
    let mut conn = api.context.pool.acquire().await?;
    let row = load(&mut conn, id, false).await?;
    if !tenancy::can_access(&mut conn, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("work order", id.to_string()));
    }
    Ok(to_proto(&row, Utc::now()))
}

pub async fn list(
    api: &Api,
    request: Request<pb::ListWorkOrdersRequest>,
) -> ApiResult<pb::ListWorkOrdersResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let asset = if request.asset_id.is_empty() {
        None
    } else {
        Some(parse_id(&request.asset_id, "asset_id")?)
    };
    let limit = paging::page_size(request.page_size, 100, 1000)?;
    let after: Option<DueCursor> = paging::decode_token(&request.page_token)?;
    let rows: Vec<WorkOrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM work_orders WHERE property_id = $1 AND (NOT $2 OR status NOT IN ('done', 'verified', 'cancelled')) \
         AND ($3::uuid IS NULL OR asset_id = $3) AND (cardinality($5::text[]) = 0 OR room = ANY($5)) \
         AND ($6::timestamptz IS NULL OR (fix_due_at, work_order_id) > ($6, $7)) \
         ORDER BY fix_due_at, work_order_id LIMIT $4"
    ))
    .bind(&request.property_id)
    .bind(request.open_only)
    .bind(asset)
    .bind(limit + 1)
    .bind(&request.rooms)
    .bind(after.as_ref().map(|c| c.due))
    .bind(after.as_ref().map(|c| c.id))
    .fetch_all(&mut *conn)
    .await?;
    let (rows, next_page_token) = paging::split_page(rows, limit, |r| DueCursor {
        due: r.fix_due_at,
        id: r.work_order_id,
    });
    let now = Utc::now();
    Ok(pb::ListWorkOrdersResponse {
        work_orders: rows.iter().map(|r| to_proto(r, now)).collect(),
        next_page_token,
    })
}

/// Where a list sorted by due time stopped: the last row's due time and id.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct DueCursor {
    pub due: DateTime<Utc>,
    pub id: Uuid,
}

fn action(value: i32) -> ApiResult<Action> {
    match pb::WorkOrderAction::try_from(value) {
        Ok(pb::WorkOrderAction::Assign) => Ok(Action::Assign),
        Ok(pb::WorkOrderAction::Start) => Ok(Action::Start),
        Ok(pb::WorkOrderAction::Hold) => Ok(Action::Hold),
        Ok(pb::WorkOrderAction::Resume) => Ok(Action::Resume),
        Ok(pb::WorkOrderAction::Complete) => Ok(Action::Complete),
        Ok(pb::WorkOrderAction::Verify) => Ok(Action::Verify),
        Ok(pb::WorkOrderAction::Cancel) => Ok(Action::Cancel),
        _ => Err(ApiError::invalid(
            "action",
            format!("unknown or missing action {value}"),
        )),
    }
}

pub async fn transition(
    api: &Api,
    request: Request<pb::TransitionWorkOrderRequest>,
) -> ApiResult<pb::WorkOrder> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let id = parse_id(&request.work_order_id, "work_order_id")?;
    let action = action(request.action)?;
    let mut v = Vec::new();
    let assignee = free_text(&request.assignee, "assignee", limits::NAME, false, &mut v);
    if action == Action::Assign && assignee.is_empty() {
        v.push(FieldViolation::new(
            "assignee",
            "is required to assign (team:<name> or contractor:<name>)",
        ));
    }
    let reason = free_text(&request.reason, "reason", limits::NOTE, false, &mut v);
    if matches!(action, Action::Hold | Action::Cancel) && reason.is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "is required to hold or cancel",
        ));
    }
    let labour = money::non_negative(request.labour_cost.as_ref(), "labour_cost", &mut v);
    let parts = money::non_negative(request.parts_cost.as_ref(), "parts_cost", &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut row = load(&mut tx, id, true).await?;
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("work order", id.to_string()));
    }
    let from = Status::parse(&row.status).unwrap_or(Status::Open);
    let to = next_status(from, action).map_err(|message| {
        ApiError::failed_precondition("ILLEGAL_TRANSITION", format!("work_orders/{id}"), message)
    })?;
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO work_order_history (work_order_id, at, status, actor) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(now)
    .bind(to.as_str())
    .bind(principal.subject())
    .execute(&mut *tx)
    .await?;
    if row.responded_at.is_none() && to != Status::Cancelled {
        row.responded_at = Some(now);
    }
    match action {
        Action::Assign => row.assignee = assignee,
        Action::Hold => row.hold_reason = reason,
        Action::Resume => row.hold_reason.clear(),
        Action::Complete => {
            row.done_at = Some(now);
            if request.labour_cost.is_some() {
                (row.labour_currency, row.labour_minor) = labour;
            }
            if request.parts_cost.is_some() {
                (row.parts_currency, row.parts_minor) = parts;
            }
            if let Some(asset) = row.asset_id {
                // Completions on one asset take turns, so each sees the fixes committed before
                // it (two at once would each miss the other and flag nothing).
                sqlx::query(
                    "SELECT 1 FROM assets WHERE asset_id = $1 AND property_id = $2 FOR UPDATE",
                )
                .bind(asset)
                .bind(&row.property_id)
                .fetch_optional(&mut *tx)
                .await?;
                // Only the order's own property: an order never touches another's assets.
                let previous: Vec<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT done_at FROM work_orders WHERE asset_id = $1 AND property_id = $3 AND done_at IS NOT NULL \
                     AND work_order_id <> $2",
                )
                .bind(asset)
                .bind(id)
                .bind(&row.property_id)
                .fetch_all(&mut *tx)
                .await?;
                let rule = repeat_fix(&previous, now);
                row.repeat_escalated = rule.escalate;
                if rule.flag_replacement {
                    flag_replacement(&mut tx, asset, &row).await?;
                }
            }
        }
        _ => {}
    }
    row.status = to.as_str().to_string();
    row.clocks_stopped_at = matches!(to, Status::OnHold | Status::Cancelled).then_some(now);
    // The fix clock excludes every stretch on hold, from the whole history.
    let history: Vec<(DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT at, status FROM work_order_history WHERE work_order_id = $1 ORDER BY at",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let pauses = pauses_from_history(
        &history
            .iter()
            .map(|(at, s)| (*at, s == "on_hold"))
            .collect::<Vec<_>>(),
    );
    let settings = super::settings::load(&mut tx, &row.property_id).await?;
    let priority = priority(row.priority);
    let clock = evaluate(
        settings.calendar(priority),
        &SlaTarget::WorkingTime(settings.target(priority).fix),
        &ClockHistory {
            start: row.created_at,
            pauses,
        },
        row.done_at,
        now,
        0.75,
    );
    row.fix_due_at = clock.due_at;
    row.etag = Uuid::now_v7();
    sqlx::query(
        "UPDATE work_orders SET status=$2, assignee=$3, hold_reason=$4, responded_at=$5, done_at=$6, labour_currency=$7, \
         labour_minor=$8, parts_currency=$9, parts_minor=$10, repeat_escalated=$11, fix_due_at=$12, etag=$13, \
         clocks_stopped_at=$14 WHERE work_order_id=$1",
    )
    .bind(id)
    .bind(&row.status)
    .bind(&row.assignee)
    .bind(&row.hold_reason)
    .bind(row.responded_at)
    .bind(row.done_at)
    .bind(&row.labour_currency)
    .bind(row.labour_minor)
    .bind(&row.parts_currency)
    .bind(row.parts_minor)
    .bind(row.repeat_escalated)
    .bind(row.fix_due_at)
    .bind(row.etag)
    .bind(row.clocks_stopped_at)
    .execute(&mut *tx)
    .await?;
    let event_type = if to == Status::Done {
        "facilities.work_order.completed"
    } else {
        "facilities.work_order.changed"
    };
    emit(&mut tx, event_type, &row, from.as_str()).await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(to_proto(&row, now))
}

/// How far ahead a room taken out may be expected back.
const MAX_EXPECTED_RETURN_DAYS: i64 = 366;

pub async fn set_room_status(
    api: &Api,
    request: Request<pb::SetRoomStatusRequest>,
) -> ApiResult<pb::RoomStatus> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    if request.property_id.is_empty() {
        v.push(FieldViolation::new("property_id", "is required"));
    }
    let room = free_text(&request.room, "room", limits::ROOM, false, &mut v);
    if room.is_empty() {
        v.push(FieldViolation::new("room", "is required"));
    }
    if !matches!(
        request.status.as_str(),
        "in_service" | "out_of_order" | "out_of_service"
    ) {
        v.push(FieldViolation::new(
            "status",
            "must be in_service, out_of_order or out_of_service",
        ));
    }
    let reason = free_text(&request.reason, "reason", limits::NOTE, false, &mut v);
    if request.status != "in_service" && reason.is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "is required to take a room out",
        ));
    }
    let now = Utc::now();
    let expected = request
        .expected_return
        .as_ref()
        .map(|t| from_timestamp("expected_return", t))
        .transpose()?;
    match expected {
        Some(_) if request.status == "in_service" => v.push(FieldViolation::new(
            "expected_return",
            "is only for a room taken out of order or out of service",
        )),
        Some(at) if at < now || at > now + Duration::days(MAX_EXPECTED_RETURN_DAYS) => {
            v.push(FieldViolation::new(
                "expected_return",
                format!("must be from now to {MAX_EXPECTED_RETURN_DAYS} days ahead"),
            ))
        }
        _ => {}
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    // A room never set before gets its row first (in service, as it was), so the row lock below
    // holds for the first change too: two first changes at once take turns, and the second
    // closes the first's stretch out of order.
    sqlx::query(
        "INSERT INTO room_status (property_id, room, status, reason, since) VALUES ($1, $2, 'in_service', '', $3) \
         ON CONFLICT (property_id, room) DO NOTHING",
    )
    .bind(&request.property_id)
    .bind(&room)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let current: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT status, since FROM room_status WHERE property_id = $1 AND room = $2 FOR UPDATE",
    )
    .bind(&request.property_id)
    .bind(&room)
    .fetch_optional(&mut *tx)
    .await?;
    if request.status == "in_service" {
        let blocking: Option<Uuid> = sqlx::query_scalar(
            "SELECT work_order_id FROM work_orders WHERE property_id = $1 AND room = $2 AND priority <= 2 \
             AND status NOT IN ('done', 'verified', 'cancelled') LIMIT 1",
        )
        .bind(&request.property_id)
        .bind(&room)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(order) = blocking {
            return Err(ApiError::failed_precondition(
                "OPEN_GUEST_IMPACTING_WORK_ORDER",
                format!("work_orders/{order}"),
                format!("room {room} cannot return to service while guest-impacting work order {order} is open"),
            ));
        }
    }
    // Every change away from an unavailable status closes its stretch (out of order, then out
    // of service, keeps both), so no night out of order is lost.
    if let Some((status, since)) = &current {
        if status != "in_service" && *status != request.status {
            sqlx::query("INSERT INTO room_outages (property_id, room, started_at, ended_at, status) VALUES ($1, $2, $3, $4, $5)")
                .bind(&request.property_id)
                .bind(&room)
                .bind(since)
                .bind(now)
                .bind(status)
                .execute(&mut *tx)
                .await?;
        }
    }
    let since = match &current {
        Some((status, since)) if *status == request.status => *since,
        _ => now,
    };
    sqlx::query(
        "INSERT INTO room_status (property_id, room, status, reason, since, expected_return) VALUES ($1,$2,$3,$4,$5,$6) \
         ON CONFLICT (property_id, room) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, since = EXCLUDED.since, \
         expected_return = EXCLUDED.expected_return",
    )
    .bind(&request.property_id)
    .bind(&room)
    .bind(&request.status)
    .bind(&reason)
    .bind(since)
    .bind(expected)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(pb::RoomStatus {
        property_id: request.property_id,
        room,
        status: request.status,
        reason,
        since: Some(to_timestamp(since)),
        expected_return: expected.map(to_timestamp),
    })
}

#[derive(sqlx::FromRow)]
struct RoomStatusRow {
    room: String,
    status: String,
    reason: String,
    since: DateTime<Utc>,
    expected_return: Option<DateTime<Utc>>,
}

pub async fn list_room_statuses(
    api: &Api,
    request: Request<pb::ListRoomStatusesRequest>,
) -> ApiResult<pb::ListRoomStatusesResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    if request.rooms.len() > 2_000 {
        return Err(ApiError::invalid(
            "rooms",
            "ask for at most 2000 rooms per call",
        ));
    }
    let rows: Vec<RoomStatusRow> = sqlx::query_as(
        "SELECT room, status, reason, since, expected_return FROM room_status WHERE property_id = $1 \
         AND (cardinality($2::text[]) = 0 OR room = ANY($2)) AND (NOT $3 OR status <> 'in_service') ORDER BY room",
    )
    .bind(&request.property_id)
    .bind(&request.rooms)
    .bind(request.unavailable_only)
    .fetch_all(&mut *conn)
    .await?;
    Ok(pb::ListRoomStatusesResponse {
        rooms: rows
            .into_iter()
            .map(|r| pb::RoomStatus {
                property_id: request.property_id.clone(),
                room: r.room,
                status: r.status,
                reason: r.reason,
                since: Some(to_timestamp(r.since)),
                expected_return: r.expected_return.map(to_timestamp),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// A life-safety order opened at 08:00: respond by 08:15, fix by 10:00.
    fn order(status: &str) -> WorkOrderRow {
        WorkOrderRow {
            work_order_id: Uuid::nil(),
            chain_id: "c".into(),
            property_id: "p".into(),
            asset_id: None,
            room: "101".into(),
            title: "Smoke detector".into(),
            description: String::new(),
            priority: 1,
            source: 1,
            source_id: String::new(),
            status: status.into(),
            assignee: String::new(),
            hold_reason: String::new(),
            created_at: at(8),
            respond_due_at: at(8) + chrono::Duration::minutes(15),
            fix_due_at: at(10),
            responded_at: None,
            done_at: None,
            labour_currency: String::new(),
            labour_minor: 0,
            parts_currency: String::new(),
            parts_minor: 0,
            repeat_escalated: false,
            etag: Uuid::nil(),
            clocks_stopped_at: None,
        }
    }

    fn flags(row: &WorkOrderRow, now: DateTime<Utc>) -> (bool, bool) {
        let order = to_proto(row, now);
        (order.respond_breached, order.fix_breached)
    }

    #[test]
    fn open_clocks_run_until_their_step_is_done() {
        let open = order("open");
        assert_eq!(flags(&open, at(8)), (false, false));
        assert_eq!(flags(&open, at(9)), (true, false));
        assert_eq!(flags(&open, at(11)), (true, true));
        let mut done = order("done");
        done.responded_at = Some(at(8));
        done.done_at = Some(at(9));
        assert_eq!(flags(&done, at(23)), (false, false));
    }

    #[test]
    fn a_hold_stops_the_fix_clock_where_it_stood() {
        // Held at 09:00 waiting for parts, read three days later: not overdue.
        let mut held = order("on_hold");
        held.responded_at = Some(at(8));
        held.clocks_stopped_at = Some(at(9));
        assert_eq!(
            flags(&held, at(9) + chrono::Duration::days(3)),
            (false, false)
        );
        // Held only after the fix was due: the breach stands.
        held.clocks_stopped_at = Some(at(11));
        assert_eq!(
            flags(&held, at(11) + chrono::Duration::days(3)),
            (false, true)
        );
    }

    #[test]
    fn a_cancelled_order_owes_nothing_after_its_cancellation() {
        let mut cancelled = order("cancelled");
        cancelled.clocks_stopped_at = Some(at(8) + chrono::Duration::minutes(5));
        assert_eq!(flags(&cancelled, at(23)), (false, false));
        // Cancelled after the response was due with nobody having responded: missed.
        cancelled.clocks_stopped_at = Some(at(9));
        assert_eq!(flags(&cancelled, at(23)), (true, false));
    }
}
