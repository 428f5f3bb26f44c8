//! The append-only timeline of a complaint.

use chrono::{DateTime, Utc};
use guestloop_kit::ApiResult;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimelineRow {
    pub sequence: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub note: String,
}

/// One entry to append.
#[derive(Debug)]
pub struct Entry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub kind: &'a str,
    pub from_status: Option<&'a str>,
    pub to_status: Option<&'a str>,
    pub note: &'a str,
}

pub async fn append(
    conn: &mut PgConnection,
    complaint_id: Uuid,
    entry: Entry<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO complaint_timeline (complaint_id, at, actor, kind, from_status, to_status, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(complaint_id)
    .bind(entry.at)
    .bind(entry.actor)
    .bind(entry.kind)
    .bind(entry.from_status)
    .bind(entry.to_status)
    .bind(entry.note)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut PgConnection, complaint_id: Uuid) -> ApiResult<Vec<TimelineRow>> {
    Ok(sqlx::query_as::<_, TimelineRow>(
        "SELECT sequence, at, actor, kind, from_status, to_status, note FROM complaint_timeline \
         WHERE complaint_id = $1 ORDER BY sequence",
    )
    .bind(complaint_id)
    .fetch_all(conn)
    .await?)
}

/// Every status change of a complaint in order: `(when, new status)`, starting with filing.
pub async fn status_history(
    conn: &mut PgConnection,
    complaint_id: Uuid,
) -> ApiResult<Vec<(DateTime<Utc>, String)>> {
    Ok(sqlx::query_as::<_, (DateTime<Utc>, String)>(
        "SELECT at, to_status FROM complaint_timeline WHERE complaint_id = $1 AND to_status IS NOT NULL \
         ORDER BY sequence",
    )
    .bind(complaint_id)
    .fetch_all(conn)
    .await?)
}
