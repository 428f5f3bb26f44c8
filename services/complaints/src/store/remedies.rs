//! Remedies proposed on complaints.

use chrono::{DateTime, Utc};
use guestloop_kit::{ApiError, ApiResult};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RemedyRow {
    pub remedy_id: Uuid,
    pub complaint_id: Uuid,
    pub kind: i16,
    pub currency_code: String,
    pub amount_minor: i64,
    pub points: i64,
    pub description: String,
    pub status: String,
    pub proposed_by: String,
    pub proposed_role: String,
    pub required_role: String,
    pub decided_by: String,
    pub decision_note: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "remedy_id, complaint_id, kind, currency_code, amount_minor, points, description, status, \
    proposed_by, proposed_role, required_role, decided_by, decision_note, created_at, decided_at, delivered_at";

pub async fn insert(conn: &mut PgConnection, row: &RemedyRow) -> ApiResult<()> {
    sqlx::query(&format!(
        "INSERT INTO remedies ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
    ))
    .bind(row.remedy_id)
    .bind(row.complaint_id)
    .bind(row.kind)
    .bind(&row.currency_code)
    .bind(row.amount_minor)
    .bind(row.points)
    .bind(&row.description)
    .bind(&row.status)
    .bind(&row.proposed_by)
    .bind(&row.proposed_role)
    .bind(&row.required_role)
    .bind(&row.decided_by)
    .bind(&row.decision_note)
    .bind(row.created_at)
    .bind(row.decided_at)
    .bind(row.delivered_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn for_complaint(
    conn: &mut PgConnection,
    complaint_id: Uuid,
) -> ApiResult<Vec<RemedyRow>> {
    Ok(sqlx::query_as::<_, RemedyRow>(&format!(
        "SELECT {COLUMNS} FROM remedies WHERE complaint_id = $1 ORDER BY created_at, remedy_id"
    ))
    .bind(complaint_id)
    .fetch_all(conn)
    .await?)
}

pub async fn load_for_update(
    conn: &mut PgConnection,
    complaint_id: Uuid,
    remedy_id: Uuid,
) -> ApiResult<RemedyRow> {
    sqlx::query_as::<_, RemedyRow>(&format!(
        "SELECT {COLUMNS} FROM remedies WHERE remedy_id = $1 AND complaint_id = $2 FOR UPDATE"
    ))
    .bind(remedy_id)
    .bind(complaint_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("remedy", remedy_id.to_string()))
}

pub async fn save_decision(conn: &mut PgConnection, row: &RemedyRow) -> ApiResult<()> {
    sqlx::query(
        "UPDATE remedies SET status=$2, decided_by=$3, decision_note=$4, decided_at=$5, delivered_at=$6 WHERE remedy_id=$1",
    )
    .bind(row.remedy_id)
    .bind(&row.status)
    .bind(&row.decided_by)
    .bind(&row.decision_note)
    .bind(row.decided_at)
    .bind(row.delivered_at)
    .execute(conn)
    .await?;
    Ok(())
}
