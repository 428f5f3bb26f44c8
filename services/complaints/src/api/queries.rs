//! Reading complaints: one, a filtered page, the work queue, the timeline. Staff see the
//! properties in their scope; guests see only their own complaints.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use guestloop_kit::auth::{principal, Principal, PropertyScope, Role};
use guestloop_kit::paging::{decode_token, page_size, split_page};
use guestloop_kit::time::{from_timestamp, to_timestamp};
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::complaints::v1 as pb;
use sqlx::{PgConnection, QueryBuilder};
use tonic::Request;
use uuid::Uuid;

use super::Api;
use crate::convert::{
    complaint_id, complaint_to_proto, optional_enum, status_from_name, status_name,
};
use crate::engine;
use crate::settings::{normal_name, EffectiveSettings};
use crate::store::complaints::select_columns;
use crate::store::remedies::RemedyRow;
use crate::store::{ClockRow, ComplaintRow};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// Whether the caller may see this complaint (NOT_FOUND otherwise, to avoid leaking existence).
fn visible(principal: &Principal, row: &ComplaintRow) -> bool {
    if principal.chain_id() != row.chain_id {
        return false;
    }
    match principal.role() {
        Role::Guest => super::own_guest_id(principal).is_ok_and(|g| g == row.guest_id),
        _ => principal.can_access_property(&row.property_id),
    }
}

pub async fn get(api: &Api, request: Request<pb::GetComplaintRequest>) -> ApiResult<pb::Complaint> {
    let principal = principal(&request)?.clone();
    let id = complaint_id(&request.get_ref().complaint_id, "complaint_id")?;
    let mut conn = api.context.pool.acquire().await?;
    let loaded = match engine::load(&mut conn, id, false).await {
        Ok(loaded) if visible(&principal, &loaded.row) => loaded,
        Ok(_) | Err(ApiError::NotFound { .. }) => {
            return Err(ApiError::not_found("complaint", id.to_string()))
        }
        Err(other) => return Err(other),
    };
    Ok(crate::convert::for_caller(
        &principal,
        loaded.view(crate::engine::now()),
    ))
}

/// Clock states, remedies and histories for a page of rows, in a few queries.
async fn views(conn: &mut PgConnection, rows: Vec<ComplaintRow>) -> ApiResult<Vec<pb::Complaint>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.complaint_id).collect();
    let mut clocks: HashMap<Uuid, Vec<ClockRow>> = HashMap::new();
    type Row = (
        Uuid,
        i16,
        i32,
        i32,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    for (id, clock) in sqlx::query_as::<_, Row>(
        "SELECT complaint_id, stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at, at_risk_at \
         FROM complaint_clocks WHERE complaint_id = ANY($1) ORDER BY stage",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(id, stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at, at_risk_at)| {
        (id, ClockRow { stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at, at_risk_at })
    }) {
        clocks.entry(id).or_default().push(clock);
    }
    let mut remedies: HashMap<Uuid, Vec<RemedyRow>> = HashMap::new();
    for remedy in sqlx::query_as::<_, RemedyRow>(
        "SELECT remedy_id, complaint_id, kind, currency_code, amount_minor, points, description, status, proposed_by, \
         proposed_role, required_role, decided_by, decision_note, created_at, decided_at, delivered_at \
         FROM remedies WHERE complaint_id = ANY($1) ORDER BY created_at",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        remedies.entry(remedy.complaint_id).or_default().push(remedy);
    }
    let mut histories: HashMap<Uuid, Vec<(DateTime<Utc>, String)>> = HashMap::new();
    for (id, at, status) in sqlx::query_as::<_, (Uuid, DateTime<Utc>, String)>(
        "SELECT complaint_id, at, to_status FROM complaint_timeline WHERE complaint_id = ANY($1) \
         AND to_status IS NOT NULL ORDER BY complaint_id, sequence",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        histories.entry(id).or_default().push((at, status));
    }
    let mut fired: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (id, trigger) in sqlx::query_as::<_, (Uuid, String)>(
        "SELECT complaint_id, trigger FROM complaint_escalations WHERE complaint_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        fired.entry(id).or_default().push(trigger);
    }
    let mut settings: HashMap<String, EffectiveSettings> = HashMap::new();
    let now = crate::engine::now();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if !settings.contains_key(&row.property_id) {
            let loaded = engine::settings_for(conn, &row.chain_id, &row.property_id).await?;
            settings.insert(row.property_id.clone(), loaded);
        }
        let Some(property_settings) = settings.get(&row.property_id) else {
            continue;
        };
        let mut row_clocks = clocks.remove(&row.complaint_id).unwrap_or_default();
        let refreshed = crate::clocks::refresh(
            &mut row_clocks,
            property_settings,
            &row.department,
            histories
                .get(&row.complaint_id)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            fired
                .get(&row.complaint_id)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            row.reopen_count,
            now,
        );
        let row_remedies = remedies.remove(&row.complaint_id).unwrap_or_default();
        out.push(complaint_to_proto(&row, refreshed.clocks, &row_remedies));
    }
    Ok(out)
}

/// Restricts a query to what the caller may see, and to the requested properties.
fn push_scope(
    query: &mut QueryBuilder<'_, sqlx::Postgres>,
    principal: &Principal,
    requested: &[String],
) -> ApiResult<()> {
    query
        .push(" AND chain_id = ")
        .push_bind(principal.chain_id().to_string());
    if principal.role() == Role::Guest {
        query
            .push(" AND guest_id = ")
            .push_bind(super::own_guest_id(principal)?.to_string());
    }
    for property in requested {
        principal.require_property(property)?;
    }
    let properties: Option<Vec<String>> = match (&principal.claims.props, requested.is_empty()) {
        (_, false) => Some(requested.to_vec()),
        (PropertyScope::Listed(ids), true) if principal.role() != Role::Guest => Some(ids.clone()),
        _ => None,
    };
    if let Some(properties) = properties {
        query
            .push(" AND property_id = ANY(")
            .push_bind(properties)
            .push(")");
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    created_at: DateTime<Utc>,
    complaint_id: Uuid,
}

pub async fn list(
    api: &Api,
    request: Request<pb::ListComplaintsRequest>,
) -> ApiResult<pb::ListComplaintsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let limit = page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)?;
    let cursor: Option<Cursor> = decode_token(&request.page_token)?;
    let mut v: Vec<FieldViolation> = Vec::new();
    let statuses: Vec<String> = request
        .statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| optional_enum::<pb::Status>(*s, &format!("statuses[{i}]"), &mut v))
        .filter(|s| *s != pb::Status::Unspecified)
        .map(|s| status_name(s).to_string())
        .collect();
    let urgencies: Vec<i16> = request
        .urgencies
        .iter()
        .enumerate()
        .filter_map(|(i, u)| optional_enum::<pb::Urgency>(*u, &format!("urgencies[{i}]"), &mut v))
        .filter(|u| *u != pb::Urgency::Unspecified)
        .map(|u| u as i16)
        .collect();
    let clock_filter =
        optional_enum::<pb::ClockFilter>(request.clock_filter, "clock_filter", &mut v)
            .unwrap_or_default();
    let created = request.created.unwrap_or_default();
    let created_from = created
        .start_time
        .as_ref()
        .map(|t| from_timestamp("created.start_time", t))
        .transpose()?;
    let created_to = created
        .end_time
        .as_ref()
        .map(|t| from_timestamp("created.end_time", t))
        .transpose()?;
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }

    let mut query = QueryBuilder::new(format!(
        "SELECT {} FROM complaints WHERE true",
        select_columns()
    ));
    push_scope(&mut query, &principal, &request.property_ids)?;
    if !statuses.is_empty() {
        query
            .push(" AND status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
    if !urgencies.is_empty() {
        query
            .push(" AND urgency = ANY(")
            .push_bind(urgencies)
            .push(")");
    }
    // Compared as stored: names trimmed and lower-cased, ids trimmed.
    for (column, value) in [
        ("category", normal_name(&request.category)),
        ("assignee", request.assignee.trim().to_string()),
        ("department", normal_name(&request.department)),
        ("guest_id", request.guest_id.trim().to_string()),
    ] {
        if !value.is_empty() {
            query.push(format!(" AND {column} = ")).push_bind(value);
        }
    }
    if let Some(from) = created_from {
        query.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = created_to {
        query.push(" AND created_at < ").push_bind(to);
    }
    // A paused clock (the complaint waits on the guest) is neither running late nor at risk: its
    // stored due time is where it stood when the pause began and moves out when it ends.
    match clock_filter {
        pb::ClockFilter::Breached => {
            query.push(
                " AND EXISTS (SELECT 1 FROM complaint_clocks k WHERE k.complaint_id = complaints.complaint_id \
                 AND (k.breached_at IS NOT NULL OR k.stopped_at > k.due_at \
                      OR (k.stopped_at IS NULL AND k.due_at < now() AND complaints.status <> 'waiting_on_guest')))",
            );
        }
        pb::ClockFilter::AtRisk => {
            query.push(
                " AND EXISTS (SELECT 1 FROM complaint_clocks k WHERE k.complaint_id = complaints.complaint_id \
                 AND k.stopped_at IS NULL AND k.due_at >= now() AND complaints.status <> 'waiting_on_guest' \
                 AND now() >= coalesce(k.at_risk_at, k.started_at + (k.due_at - k.started_at) * 0.75))",
            );
        }
        pb::ClockFilter::Unspecified => {}
    }
    if let Some(cursor) = cursor {
        query
            .push(" AND (created_at, complaint_id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.complaint_id)
            .push(")");
    }
    query
        .push(" ORDER BY created_at DESC, complaint_id DESC LIMIT ")
        .push_bind(limit + 1);
    let mut conn = api.context.pool.acquire().await?;
    let rows: Vec<ComplaintRow> = query.build_query_as().fetch_all(&mut *conn).await?;
    let (rows, next_page_token) = split_page(rows, limit, |r| Cursor {
        created_at: r.created_at,
        complaint_id: r.complaint_id,
    });
    Ok(pb::ListComplaintsResponse {
        complaints: views(&mut conn, rows)
            .await?
            .into_iter()
            .map(|c| crate::convert::for_caller(&principal, c))
            .collect(),
        next_page_token,
    })
}

pub async fn work_queue(
    api: &Api,
    request: Request<pb::ListWorkQueueRequest>,
) -> ApiResult<pb::ListComplaintsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let limit = page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)?;
    let after: Option<QueueCursor> = decode_token(&request.page_token)?;
    // The page's complaints by their place in the queue: most urgent first (the earliest due
    // time of a running clock; complaints waiting on the guest, their clocks paused, after those
    // running), then by filing time and id, so every complaint has one place to resume after.
    let mut query = QueryBuilder::new(
        "SELECT complaint_id, waiting, due, created_at FROM (SELECT complaint_id, created_at, \
         (status = 'waiting_on_guest') AS waiting, (SELECT min(k.due_at) FROM complaint_clocks k \
         WHERE k.complaint_id = complaints.complaint_id AND k.stopped_at IS NULL) AS due \
         FROM complaints WHERE status NOT IN ('resolved', 'closed', 'cancelled')",
    );
    push_scope(&mut query, &principal, &request.property_ids)?;
    let (assignee, department) = (request.assignee.trim(), normal_name(&request.department));
    if !assignee.is_empty() {
        query
            .push(" AND assignee = ")
            .push_bind(assignee.to_string());
    }
    if !department.is_empty() {
        query.push(" AND department = ").push_bind(department);
    }
    query.push(") q");
    if let Some(after) = after {
        query
            .push(" WHERE (waiting, coalesce(due, 'infinity'::timestamptz), created_at, complaint_id) > (")
            .push_bind(after.waiting)
            .push(", coalesce(")
            .push_bind(after.due)
            .push("::timestamptz, 'infinity'::timestamptz), ")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.complaint_id)
            .push(")");
    }
    query
        .push(" ORDER BY waiting, coalesce(due, 'infinity'::timestamptz), created_at, complaint_id LIMIT ")
        .push_bind(limit + 1);
    let mut conn = api.context.pool.acquire().await?;
    let places: Vec<QueueCursor> = query.build_query_as().fetch_all(&mut *conn).await?;
    let (places, next_page_token) = split_page(places, limit, |p| QueueCursor {
        waiting: p.waiting,
        due: p.due,
        created_at: p.created_at,
        complaint_id: p.complaint_id,
    });
    let ids: Vec<Uuid> = places.iter().map(|p| p.complaint_id).collect();
    let mut rows: Vec<ComplaintRow> = sqlx::query_as(&format!(
        "SELECT {} FROM complaints WHERE complaint_id = ANY($1)",
        select_columns()
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by_key(|r| ids.iter().position(|id| *id == r.complaint_id));
    Ok(pb::ListComplaintsResponse {
        complaints: views(&mut conn, rows).await?,
        next_page_token,
    })
}

/// A place in the work queue, to resume after.
#[derive(serde::Serialize, serde::Deserialize, sqlx::FromRow)]
struct QueueCursor {
    waiting: bool,
    due: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    complaint_id: Uuid,
}

pub async fn timeline(
    api: &Api,
    request: Request<pb::ListTimelineRequest>,
) -> ApiResult<pb::ListTimelineResponse> {
    let principal = principal(&request)?.clone();
    let id = complaint_id(&request.get_ref().complaint_id, "complaint_id")?;
    let mut conn = api.context.pool.acquire().await?;
    let row = match crate::store::complaints::load(&mut conn, id).await {
        Ok(row) if visible(&principal, &row) => row,
        Ok(_) | Err(ApiError::NotFound { .. }) => {
            return Err(ApiError::not_found("complaint", id.to_string()))
        }
        Err(other) => return Err(other),
    };
    let entries = crate::store::timeline::list(&mut conn, row.complaint_id).await?;
    let entries: Vec<pb::TimelineEntry> = entries
        .into_iter()
        .map(|e| pb::TimelineEntry {
            sequence: e.sequence,
            time: Some(to_timestamp(e.at)),
            actor: e.actor,
            kind: e.kind,
            from_status: e
                .from_status
                .as_deref()
                .map_or(pb::Status::Unspecified, status_from_name) as i32,
            to_status: e
                .to_status
                .as_deref()
                .map_or(pb::Status::Unspecified, status_from_name) as i32,
            note: e.note,
        })
        .collect();
    Ok(pb::ListTimelineResponse {
        entries: if principal.role() == Role::Guest {
            crate::convert::guest_timeline(entries)
        } else {
            entries
        },
    })
}
