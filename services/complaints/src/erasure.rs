//! What complaints take from the CRM feed: when CRM erases a guest (`crm.guest.erased`), the
//! complaints filed by or for that guest lose the guest's identity and contact details (id,
//! name, email, phone) and the guest's own words in their follow-up rating (the comment), and so
//! do the events about them in the event log. CRM sends one event per id the guest was known by
//! (the ids of profiles merged into theirs too). The complaints
//! themselves stay, so the chain's KPIs do not change; what stays no longer points at the
//! person. Stored responses of the guest's own calls, which carry the same details, are removed.
//! Replays find nothing left to scrub.

use guestloop_kit::events::{decode_payload, EventHandler};
use guestloop_kit::ApiError;
use guestloop_proto::common::v1::Event;
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::crm::v1 as crm;
use prost::{Message, Name};
use sqlx::PgConnection;

pub const CONSUMER: &str = "complaints<-crm";
pub const EVENT_TYPES: [&str; 1] = ["crm.guest.erased"];

pub struct GuestErasures;

impl EventHandler for GuestErasures {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        let erased: crm::GuestErased = decode_payload(event)?;
        if erased.guest_id.is_empty() {
            return Err(ApiError::invalid("payload.guest_id", "is empty"));
        }
        let scrubbed = scrub(conn, &event.chain_id, &erased.guest_id).await?;
        tracing::info!(
            complaints = scrubbed,
            "erased guest scrubbed from complaints"
        );
        Ok(())
    }
}

/// Removes `guest_id`'s identity from the chain's complaints; returns how many were changed.
pub async fn scrub(
    conn: &mut PgConnection,
    chain_id: &str,
    guest_id: &str,
) -> Result<u64, ApiError> {
    let complaints: Vec<String> = sqlx::query_scalar(
        "SELECT complaint_id::text FROM complaints WHERE guest_id = $1 AND ($2 = '' OR chain_id = $2)",
    )
    .bind(guest_id)
    .bind(chain_id)
    .fetch_all(&mut *conn)
    .await?;
    scrub_events(conn, &complaints).await?;
    // Stored responses of idempotent calls hold the complaint as it was answered, contact
    // details included.
    sqlx::query(
        "DELETE FROM idempotency_keys k USING complaints c \
         WHERE c.guest_id = $1 AND ($2 = '' OR c.chain_id = $2) AND k.response IS NOT NULL \
           AND position(convert_to(c.complaint_id::text, 'UTF8') IN k.response) > 0",
    )
    .bind(guest_id)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?;
    let changed = sqlx::query(
        "UPDATE complaints SET guest_id = '', guest_name = '', guest_email = '', guest_phone = '', \
                rating_comment = '', etag = gen_random_uuid() \
         WHERE guest_id = $1 AND ($2 = '' OR chain_id = $2)",
    )
    .bind(guest_id)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed)
}

/// The event log is a copy too: the events about these complaints (`complaints/<id>` and
/// `complaints/<id>/...`) keep their facts but lose the guest's id, name, email and phone. A
/// consumer replaying the feed later then sees the complaint as anonymous (no goodwill, no
/// failure memory for a guest who is gone).
async fn scrub_events(conn: &mut PgConnection, complaints: &[String]) -> Result<(), ApiError> {
    if complaints.is_empty() {
        return Ok(());
    }
    let events: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, payload_type, payload FROM outbox_events \
         WHERE subject LIKE 'complaints/%' AND split_part(subject, '/', 2) = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(complaints)
    .fetch_all(&mut *conn)
    .await?;
    let (mut ids, mut payloads) = (Vec::new(), Vec::new());
    for (id, payload_type, payload) in events {
        if let Some(scrubbed) = scrubbed_payload(&payload_type, &payload) {
            ids.push(id);
            payloads.push(scrubbed);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox_events o SET payload = u.payload FROM unnest($1::bigint[], $2::bytea[]) AS u(id, payload) \
         WHERE o.id = u.id",
    )
    .bind(&ids)
    .bind(&payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The payload without the guest's identity, when it carries one (`None`: leave it as it is).
fn scrubbed_payload(payload_type: &str, payload: &[u8]) -> Option<Vec<u8>> {
    if payload_type == <pb::ComplaintChanged as Name>::type_url() {
        let mut changed = pb::ComplaintChanged::decode(payload).ok()?;
        let complaint = changed.complaint.as_mut()?;
        let guest = complaint.guest.take().unwrap_or_default();
        let comment = complaint
            .rating
            .as_mut()
            .map(|rating| std::mem::take(&mut rating.comment))
            .unwrap_or_default();
        if guest == pb::GuestRef::default() && comment.is_empty() {
            return None;
        }
        complaint.guest = Some(pb::GuestRef::default());
        return Some(changed.encode_to_vec());
    }
    if payload_type == <pb::RemedyApproved as Name>::type_url() {
        let mut approved = pb::RemedyApproved::decode(payload).ok()?;
        if approved.guest_id.is_empty() {
            return None;
        }
        approved.guest_id.clear();
        return Some(approved.encode_to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_lose_the_guest_and_keep_the_facts() {
        let changed = pb::ComplaintChanged {
            complaint: Some(pb::Complaint {
                complaint_id: "c1".into(),
                description: "noise".into(),
                guest: Some(pb::GuestRef {
                    guest_id: "g1".into(),
                    name: "Lena Vogel".into(),
                    email: "lena@example.com".into(),
                    phone: "+49 151 2345 6789".into(),
                }),
                rating: Some(pb::Rating {
                    csat: 2,
                    comment: "Lena here: still no hot water".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let type_url = <pb::ComplaintChanged as Name>::type_url();
        let scrubbed = scrubbed_payload(&type_url, &changed.encode_to_vec())
            .and_then(|bytes| pb::ComplaintChanged::decode(bytes.as_slice()).ok())
            .and_then(|c| c.complaint);
        assert_eq!(
            scrubbed.as_ref().and_then(|c| c.guest.clone()),
            Some(pb::GuestRef::default())
        );
        assert_eq!(
            scrubbed.as_ref().and_then(|c| c.rating.clone()),
            Some(pb::Rating {
                csat: 2,
                ..Default::default()
            }),
            "the guest's words go, the score stays"
        );
        assert_eq!(scrubbed.map(|c| c.description), Some("noise".to_string()));

        let approved = pb::RemedyApproved {
            complaint_id: "c1".into(),
            guest_id: "g1".into(),
            ..Default::default()
        };
        let type_url = <pb::RemedyApproved as Name>::type_url();
        let scrubbed = scrubbed_payload(&type_url, &approved.encode_to_vec())
            .and_then(|bytes| pb::RemedyApproved::decode(bytes.as_slice()).ok());
        assert_eq!(
            scrubbed.map(|a| (a.complaint_id, a.guest_id)),
            Some(("c1".to_string(), String::new()))
        );
        // Nothing to scrub, or another payload: left alone.
        assert!(
            scrubbed_payload(&type_url, &pb::RemedyApproved::default().encode_to_vec()).is_none()
        );
        assert!(scrubbed_payload("guestloop.complaints.v1.ComplaintEscalated", b"").is_none());
    }
}
