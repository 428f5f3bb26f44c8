//! What audit takes from the complaints feed: each complaint's standards, named staff, cause and
//! outcome (latest state wins), for standard-failure rankings and complaint-based staff scores.

use guestloop_kit::events::{decode_payload, EventHandler};
use guestloop_kit::time::from_timestamp;
use guestloop_kit::{tenancy, ApiError};
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
        // The complaint's property belongs to the complaint's chain, and its first complaint
        // registers it. If this service already holds the property under another chain, the
        // event is skipped with a warning: no retry can change the owner, the feed must go on,
        // and one chain's complaints must never count in another chain's failures and staff
        // scores.
        let chain = if complaint.chain_id.is_empty() {
            event.chain_id.as_str()
        } else {
            complaint.chain_id.as_str()
        };
        if !chain.is_empty() && !complaint.property_id.is_empty() {
            match tenancy::claim_for_chain(&mut *conn, chain, &[complaint.property_id.as_str()])
                .await
            {
                Ok(()) => {}
                Err(ApiError::PermissionDenied(reason)) => {
                    tracing::warn!(
                        complaint_id = %complaint.complaint_id,
                        property_id = %complaint.property_id,
                        chain_id = %chain,
                        event_id = %event.event_id,
                        %reason,
                        "complaint event skipped: its property belongs to another chain"
                    );
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        // A cancelled complaint (filed by mistake, withdrawn) was no service failure: it counts
        // against no staff member and no standard, as CRM keeps no failure for it. A later
        // event showing it active again brings it back.
        if complaints::Status::try_from(complaint.status) == Ok(complaints::Status::Cancelled) {
            sqlx::query("DELETE FROM complaint_links WHERE complaint_id = $1")
                .bind(&complaint.complaint_id)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use guestloop_kit::db;
    use prost::Message;

    fn changed(complaint_id: &str, chain_id: &str, property_id: &str) -> Event {
        let complaint = complaints::Complaint {
            complaint_id: complaint_id.into(),
            chain_id: chain_id.into(),
            property_id: property_id.into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        Event {
            event_type: "complaints.complaint.filed".into(),
            chain_id: chain_id.into(),
            property_id: property_id.into(),
            payload: Some(prost_types::Any {
                type_url: "type.googleapis.com/guestloop.complaints.v1.ComplaintChanged".into(),
                value: complaints::ComplaintChanged {
                    complaint: Some(complaint),
                    ..Default::default()
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    /// A fresh database with the audit schema migrated, and a pool on it (the database lives as
    /// long as the first value is kept).
    async fn migrated() -> anyhow::Result<(guestloop_testkit::TestDatabase, sqlx::PgPool)> {
        let database = guestloop_testkit::fresh_database().await?;
        let settings = guestloop_testkit::test_settings();
        let pool = db::pool(
            db::connect_options(&database.url, "audit", &settings.database)?,
            &settings.database,
        );
        db::prepare(&pool, "audit", &crate::MIGRATOR, &settings.database).await?;
        Ok((database, pool))
    }

    /// A complaint at a property this service holds under another chain is skipped, not failed;
    /// a complaint at a property no chain holds registers it under the complaint's chain.
    #[tokio::test]
    async fn complaints_stay_with_their_propertys_chain() -> anyhow::Result<()> {
        let (_database, pool) = migrated().await?;
        let mut conn = pool.acquire().await?;
        tenancy::claim_for_chain(&mut conn, "nordic", &["oslo"]).await?;
        for event in [
            changed("c-nordic", "nordic", "oslo"),
            changed("c-other", "other", "oslo"),
            changed("c-bergen", "other", "bergen"),
        ] {
            ComplaintEvents.handle(&mut conn, &event).await?;
        }
        let links: Vec<String> =
            sqlx::query_scalar("SELECT complaint_id FROM complaint_links ORDER BY complaint_id")
                .fetch_all(&mut *conn)
                .await?;
        assert_eq!(links, vec!["c-bergen", "c-nordic"]);
        let chains: Vec<(String, String)> =
            sqlx::query_as("SELECT property_id, chain_id FROM property_chains ORDER BY 1")
                .fetch_all(&mut *conn)
                .await?;
        assert_eq!(
            chains,
            vec![
                ("bergen".to_string(), "other".to_string()),
                ("oslo".to_string(), "nordic".to_string())
            ]
        );
        drop(conn);
        pool.close().await;
        Ok(())
    }

    async fn links(conn: &mut sqlx::PgConnection) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM complaint_links")
            .fetch_one(conn)
            .await?)
    }

    /// With its status and staff named.
    fn with_status(mut event: Event, status: complaints::Status) -> anyhow::Result<Event> {
        let payload = event
            .payload
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("payload"))?;
        let mut changed = complaints::ComplaintChanged::decode(payload.value.as_slice())?;
        if let Some(complaint) = changed.complaint.as_mut() {
            complaint.status = status as i32;
            complaint.staff_involved = vec!["agent-x".into()];
            complaint.cause = complaints::Cause::StaffBehaviour as i32;
        }
        payload.value = changed.encode_to_vec();
        Ok(event)
    }

    /// A cancelled complaint counts against no staff member and no standard; reopened, it
    /// counts again.
    #[tokio::test]
    async fn a_cancelled_complaint_is_no_failure() -> anyhow::Result<()> {
        let (_database, pool) = migrated().await?;
        let mut conn = pool.acquire().await?;
        let event = |status| with_status(changed("c-1", "nordic", "oslo"), status);
        ComplaintEvents
            .handle(&mut conn, &event(complaints::Status::Received)?)
            .await?;
        assert_eq!(links(&mut conn).await?, 1);
        ComplaintEvents
            .handle(&mut conn, &event(complaints::Status::Cancelled)?)
            .await?;
        assert_eq!(links(&mut conn).await?, 0, "cancelled: no failure");
        ComplaintEvents
            .handle(&mut conn, &event(complaints::Status::Reopened)?)
            .await?;
        assert_eq!(links(&mut conn).await?, 1, "active again");
        drop(conn);
        pool.close().await;
        Ok(())
    }
}
