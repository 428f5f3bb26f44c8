//! What audit takes from the complaints feed: each complaint's standards, named staff, cause and
//! outcome (latest state wins), for standard-failure rankings and complaint-based staff scores.

use guestloop_kit::events::{decode_payload, EventHandler};
use guestloop_kit::time::from_timestamp;
use guestloop_kit::ApiError;
use guestloop_proto::common::v1::Event;
use guestloop_proto::complaints::v1 as complaints;
use sqlx::PgConnection;

pub const CONSUMER: &str = "audit<-complaints";

pub const EVENT_TYPES: [&str; 7] = [
    "complaints.complaint.filed",
    "complaints.complaint.updated",
    "complaints.complaint.transitioned",
    "complaints.complaint.resolved",
    "complaints.complaint.reopened",
    "complaints.complaint.closed",
    "complaints.complaint.rated",
];

pub struct ComplaintEvents;

/// Resolved or closed: the guest's problem was dealt with.
fn is_resolved(status: i32) -> bool {
    matches!(
        complaints::Status::try_from(status),
        Ok(complaints::Status::Resolved | complaints::Status::Closed)
    )
}

impl EventHandler for ComplaintEvents {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        let changed: complaints::ComplaintChanged = decode_payload(event)?;
        let Some(complaint) = changed.complaint else {
            return Ok(());
        };
        let filed_at = from_timestamp(
            "complaint.create_time",
            complaint
                .create_time
                .as_ref()
                .ok_or_else(|| ApiError::invalid("complaint.create_time", "missing"))?,
        )?;
        let csat = complaint
            .rating
            .as_ref()
            .and_then(|r| i16::try_from(r.csat).ok())
            .filter(|c| (1..=5).contains(c));
        sqlx::query(
            "INSERT INTO complaint_links (complaint_id, property_id, filed_at, cause, standard_codes, staff_involved, resolved, csat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (complaint_id) DO UPDATE SET \
             cause = EXCLUDED.cause, standard_codes = EXCLUDED.standard_codes, staff_involved = EXCLUDED.staff_involved, \
             resolved = EXCLUDED.resolved, csat = EXCLUDED.csat",
        )
        .bind(&complaint.complaint_id)
        .bind(&complaint.property_id)
        .bind(filed_at)
        .bind(i16::try_from(complaint.cause).unwrap_or(0))
        .bind(&complaint.standard_codes)
        .bind(&complaint.staff_involved)
        .bind(is_resolved(complaint.status))
        .bind(csat)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
