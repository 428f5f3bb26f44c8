//! Complaint rows and their clocks.

use chrono::{DateTime, Utc};
use guestloop_kit::{ApiError, ApiResult};
use sqlx::PgConnection;
use uuid::Uuid;

/// One row of `complaints`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ComplaintRow {
    pub complaint_id: Uuid,
    pub chain_id: String,
    pub property_id: String,
    pub guest_id: String,
    pub guest_name: String,
    pub guest_email: String,
    pub guest_phone: String,
    pub reservation_ref: String,
    pub room: String,
    pub stay_phase: i16,
    pub channel: i16,
    pub category: String,
    pub subcategory: String,
    pub cause: i16,
    pub impact: i16,
    pub urgency: i16,
    pub description: String,
    pub department: String,
    pub assignee: String,
    pub status: String,
    pub resume_status: Option<String>,
    pub guest_tier: String,
    pub tier_checked: bool,
    pub repeat_issue: bool,
    pub repeat_of: Option<Uuid>,
    pub hotspot: bool,
    pub reopen_count: i32,
    pub waited_on_guest: bool,
    pub escalation_level: String,
    pub escalation_count: i32,
    pub first_escalated_at: Option<DateTime<Utc>>,
    pub root_cause_summary: String,
    pub last_reason: String,
    pub csat: Option<i16>,
    pub nps: Option<i16>,
    pub rating_comment: String,
    pub rated_by: String,
    pub rated_at: Option<DateTime<Utc>>,
    pub work_order_ids: Vec<String>,
    pub standard_codes: Vec<String>,
    pub staff_involved: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub first_resolved_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub follow_up_due_at: Option<DateTime<Utc>>,
    pub next_escalation_at: Option<DateTime<Utc>>,
    pub etag: Uuid,
}

/// One row of `complaint_clocks`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClockRow {
    pub stage: i16,
    pub target_minutes: i32,
    pub target_days: i32,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub due_at: DateTime<Utc>,
    pub breached_at: Option<DateTime<Utc>>,
    /// When the clock reaches the property's at-risk share of its target (working time).
    pub at_risk_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "complaint_id, chain_id, property_id, guest_id, guest_name, guest_email, guest_phone, \
    reservation_ref, room, stay_phase, channel, category, subcategory, cause, impact, urgency, description, \
    department, assignee, status, resume_status, guest_tier, tier_checked, repeat_issue, repeat_of, hotspot, \
    reopen_count, waited_on_guest, escalation_level, escalation_count, first_escalated_at, root_cause_summary, \
    last_reason, csat, nps, rating_comment, rated_by, rated_at, work_order_ids, standard_codes, staff_involved, created_at, created_by, \
    updated_at, first_response_at, first_resolved_at, resolved_at, closed_at, follow_up_due_at, \
    next_escalation_at, etag";

pub fn select_columns() -> &'static str {
    COLUMNS
}

pub async fn insert(conn: &mut PgConnection, row: &ComplaintRow) -> ApiResult<()> {
    sqlx::query(&format!(
        "INSERT INTO complaints ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,\
         $19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$31,$32,$33,$34,$35,$36,$37,$38,$39,$40,$41,$42,$43,$44,\
         $45,$46,$47,$48,$49,$50,$51)"
    ))
    .bind(row.complaint_id)
    .bind(&row.chain_id)
    .bind(&row.property_id)
    .bind(&row.guest_id)
    .bind(&row.guest_name)
    .bind(&row.guest_email)
    .bind(&row.guest_phone)
    .bind(&row.reservation_ref)
    .bind(&row.room)
    .bind(row.stay_phase)
    .bind(row.channel)
    .bind(&row.category)
    .bind(&row.subcategory)
    .bind(row.cause)
    .bind(row.impact)
    .bind(row.urgency)
    .bind(&row.description)
    .bind(&row.department)
    .bind(&row.assignee)
    .bind(&row.status)
    .bind(&row.resume_status)
    .bind(&row.guest_tier)
    .bind(row.tier_checked)
    .bind(row.repeat_issue)
    .bind(row.repeat_of)
    .bind(row.hotspot)
    .bind(row.reopen_count)
    .bind(row.waited_on_guest)
    .bind(&row.escalation_level)
    .bind(row.escalation_count)
    .bind(row.first_escalated_at)
    .bind(&row.root_cause_summary)
    .bind(&row.last_reason)
    .bind(row.csat)
    .bind(row.nps)
    .bind(&row.rating_comment)
    .bind(&row.rated_by)
    .bind(row.rated_at)
    .bind(&row.work_order_ids)
    .bind(&row.standard_codes)
    .bind(&row.staff_involved)
    .bind(row.created_at)
    .bind(&row.created_by)
    .bind(row.updated_at)
    .bind(row.first_response_at)
    .bind(row.first_resolved_at)
    .bind(row.resolved_at)
    .bind(row.closed_at)
    .bind(row.follow_up_due_at)
    .bind(row.next_escalation_at)
    .bind(row.etag)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every mutable column back and gives the row a new etag.
pub async fn update(conn: &mut PgConnection, row: &mut ComplaintRow) -> ApiResult<()> {
    row.etag = Uuid::now_v7();
    sqlx::query(
        "UPDATE complaints SET reservation_ref=$2, room=$3, stay_phase=$4, category=$5, subcategory=$6, cause=$7, \
         impact=$8, urgency=$9, description=$10, department=$11, assignee=$12, status=$13, resume_status=$14, \
         guest_tier=$15, tier_checked=$16, reopen_count=$17, waited_on_guest=$18, escalation_level=$19, \
         escalation_count=$20, first_escalated_at=$21, root_cause_summary=$22, last_reason=$23, csat=$24, nps=$25, \
         rating_comment=$26, rated_by=$27, rated_at=$28, work_order_ids=$29, updated_at=$30, first_response_at=$31, \
         first_resolved_at=$32, resolved_at=$33, closed_at=$34, follow_up_due_at=$35, next_escalation_at=$36, \
         etag=$37, standard_codes=$38, staff_involved=$39, repeat_issue=$40, repeat_of=$41, hotspot=$42 \
         WHERE complaint_id=$1",
    )
    .bind(row.complaint_id)
    .bind(&row.reservation_ref)
    .bind(&row.room)
    .bind(row.stay_phase)
    .bind(&row.category)
    .bind(&row.subcategory)
    .bind(row.cause)
    .bind(row.impact)
    .bind(row.urgency)
    .bind(&row.description)
    .bind(&row.department)
    .bind(&row.assignee)
    .bind(&row.status)
    .bind(&row.resume_status)
    .bind(&row.guest_tier)
    .bind(row.tier_checked)
    .bind(row.reopen_count)
    .bind(row.waited_on_guest)
    .bind(&row.escalation_level)
    .bind(row.escalation_count)
    .bind(row.first_escalated_at)
    .bind(&row.root_cause_summary)
    .bind(&row.last_reason)
    .bind(row.csat)
    .bind(row.nps)
    .bind(&row.rating_comment)
    .bind(&row.rated_by)
    .bind(row.rated_at)
    .bind(&row.work_order_ids)
    .bind(row.updated_at)
    .bind(row.first_response_at)
    .bind(row.first_resolved_at)
    .bind(row.resolved_at)
    .bind(row.closed_at)
    .bind(row.follow_up_due_at)
    .bind(row.next_escalation_at)
    .bind(row.etag)
    .bind(&row.standard_codes)
    .bind(&row.staff_involved)
    .bind(row.repeat_issue)
    .bind(row.repeat_of)
    .bind(row.hotspot)
    .execute(conn)
    .await?;
    Ok(())
}

/// Loads a complaint and locks it for the rest of the transaction.
pub async fn load_for_update(
    conn: &mut PgConnection,
    complaint_id: Uuid,
) -> ApiResult<ComplaintRow> {
    sqlx::query_as::<_, ComplaintRow>(&format!(
        "SELECT {COLUMNS} FROM complaints WHERE complaint_id = $1 FOR UPDATE"
    ))
    .bind(complaint_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("complaint", complaint_id.to_string()))
}

pub async fn load(conn: &mut PgConnection, complaint_id: Uuid) -> ApiResult<ComplaintRow> {
    sqlx::query_as::<_, ComplaintRow>(&format!(
        "SELECT {COLUMNS} FROM complaints WHERE complaint_id = $1"
    ))
    .bind(complaint_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("complaint", complaint_id.to_string()))
}

pub async fn clocks(conn: &mut PgConnection, complaint_id: Uuid) -> ApiResult<Vec<ClockRow>> {
    Ok(sqlx::query_as::<_, ClockRow>(
        "SELECT stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at, at_risk_at \
         FROM complaint_clocks WHERE complaint_id = $1 ORDER BY stage",
    )
    .bind(complaint_id)
    .fetch_all(conn)
    .await?)
}

/// Whether a save also marks the complaint for the KPI rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// Mark it (every change through the engine): the rollup worker folds it in.
    Mark,
    /// Leave the rollup alone (bulk loads that rebuild the rollup afterwards).
    Leave,
}

/// Makes the complaint's clocks exactly `clocks` (other stages deleted, these inserted or
/// updated) and, with [`Rollup::Mark`], marks it for the KPI rollup (DO UPDATE, not DO NOTHING:
/// see migration 0102) — in one statement, so one round trip on every save.
pub async fn save_clocks(
    conn: &mut PgConnection,
    complaint_id: Uuid,
    clocks: &[ClockRow],
    rollup: Rollup,
) -> ApiResult<()> {
    const STALE: &str =
        "stale AS (DELETE FROM complaint_clocks WHERE complaint_id = $1 AND NOT (stage = ANY($2)))";
    const MARK: &str = ", marked AS (INSERT INTO kpi_dirty (complaint_id) VALUES ($1) \
         ON CONFLICT (complaint_id) DO UPDATE SET marked_at = now())";
    const UPSERT: &str = "INSERT INTO complaint_clocks (complaint_id, stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at, at_risk_at) \
         SELECT $1, * FROM unnest($2::int2[], $3::int4[], $4::int4[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[]) \
         ON CONFLICT (complaint_id, stage) DO UPDATE SET \
         target_minutes=EXCLUDED.target_minutes, target_days=EXCLUDED.target_days, started_at=EXCLUDED.started_at, \
         stopped_at=EXCLUDED.stopped_at, due_at=EXCLUDED.due_at, breached_at=EXCLUDED.breached_at, at_risk_at=EXCLUDED.at_risk_at";
    let mark = if rollup == Rollup::Mark { MARK } else { "" };
    let column =
        |f: fn(&ClockRow) -> Option<DateTime<Utc>>| clocks.iter().map(f).collect::<Vec<_>>();
    sqlx::query(&format!("WITH {STALE}{mark} {UPSERT}"))
        .bind(complaint_id)
        .bind(clocks.iter().map(|c| c.stage).collect::<Vec<i16>>())
        .bind(
            clocks
                .iter()
                .map(|c| c.target_minutes)
                .collect::<Vec<i32>>(),
        )
        .bind(clocks.iter().map(|c| c.target_days).collect::<Vec<i32>>())
        .bind(column(|c| Some(c.started_at)))
        .bind(column(|c| c.stopped_at))
        .bind(column(|c| Some(c.due_at)))
        .bind(column(|c| c.breached_at))
        .bind(column(|c| c.at_risk_at))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The guest's latest complaint of the same category within the window, if any, in the
/// guest's chain.
pub async fn previous_for_guest(
    conn: &mut PgConnection,
    chain_id: &str,
    guest_id: &str,
    category: &str,
    window: Window,
) -> ApiResult<Option<Uuid>> {
    if guest_id.is_empty() || category.is_empty() {
        return Ok(None);
    }
    Ok(sqlx::query_scalar(
        // `guest_id <> ''` names the partial index's predicate, so a generic plan (prepared
        // statements switch to one after a few calls) can still use it.
        "SELECT complaint_id FROM complaints WHERE guest_id = $1 AND guest_id <> '' AND category = $2 \
         AND created_at >= $3 AND created_at < $4 AND complaint_id IS DISTINCT FROM $5 AND status <> 'cancelled' \
         AND chain_id = $6 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(guest_id)
    .bind(category)
    .bind(window.since)
    .bind(window.before)
    .bind(window.other_than)
    .bind(chain_id)
    .fetch_optional(conn)
    .await?)
}

/// The complaints a repeat or hotspot check looks at: filed in `[since, before)`, the complaint
/// being checked (when it is already stored) left out.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub before: DateTime<Utc>,
    pub other_than: Option<Uuid>,
}

/// How many complaints of the category the room had within the window (this one excluded),
/// counting no further than `cap` (all a hotspot check needs, and it keeps intake O(1)).
pub async fn count_for_room(
    conn: &mut PgConnection,
    property_id: &str,
    room: &str,
    category: &str,
    window: Window,
    cap: i64,
) -> ApiResult<i64> {
    if room.is_empty() || category.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query_scalar(
        // `room <> ''` names the partial index's predicate (see `previous_for_guest`).
        "SELECT count(*) FROM (SELECT 1 FROM complaints WHERE property_id = $1 AND room = $2 AND room <> '' \
         AND category = $3 AND created_at >= $4 AND created_at < $5 AND complaint_id IS DISTINCT FROM $6 \
         AND status <> 'cancelled' LIMIT $7) recent",
    )
    .bind(property_id)
    .bind(room)
    .bind(category)
    .bind(window.since)
    .bind(window.before)
    .bind(window.other_than)
    .bind(cap)
    .fetch_one(conn)
    .await?)
}
