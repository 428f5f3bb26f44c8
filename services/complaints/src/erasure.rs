//! What complaints take from the CRM feed: when CRM erases a guest (`crm.guest.erased`), the
//! complaints filed by or for that guest lose the guest's identity and contact details (id,
//! name, email, phone), their booking reference, and the guest's words: the description (which
//! then reads "[erased]") and the follow-up rating's comment. So do the events about them in the
//! event log. CRM sends one event per id the guest was known by (the ids of profiles merged into
//! theirs too). The complaints themselves stay (category, cause, room, clocks, remedies, scores,
//! staff notes), so the chain's KPIs and the room's history do not change; what stays no longer
//! points at the person. Stored answers of the calls that filed them, which carry the same
//! details, are scrubbed the same way (and kept, so a retried filing is not filed again). Each scrubbed complaint sends `complaints.complaint.guest_erased`, so
//! facilities drops the description it copied into the complaint's work order. Replays find
//! nothing left to scrub and send nothing.

use guestloop_kit::events::{append, decode_payload, rewrite_payloads, EventHandler, NewEvent};
use guestloop_kit::text::ERASED;
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
    // The complaints are locked (in id order, as other writers of several lock them) before
    // their events are read: a writer that holds one (a status change, a work order linked)
    // commits its event before this lock is granted, and the rewrite below, reading with a
    // fresh snapshot, then sees and scrubs that event too.
    sqlx::query(
        "SELECT 1 FROM complaints WHERE guest_id = $1 AND ($2 = '' OR chain_id = $2) \
         ORDER BY complaint_id FOR UPDATE",
    )
    .bind(guest_id)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?;
    // The complaints scrubbed are those the update finds, with its own snapshot: a complaint
    // filed for the guest while the lock above was taken (committed since) is among them, so
    // its events are rewritten and its guest_erased sent like the others'.
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "UPDATE complaints SET guest_id = '', guest_name = '', guest_email = '', guest_phone = '', \
                reservation_ref = '', description = $3, rating_comment = '', etag = gen_random_uuid() \
         WHERE guest_id = $1 AND ($2 = '' OR chain_id = $2) \
         RETURNING complaint_id::text, chain_id, property_id",
    )
    .bind(guest_id)
    .bind(chain_id)
    .bind(ERASED)
    .fetch_all(&mut *conn)
    .await?;
    let complaints: Vec<String> = found.iter().map(|(id, _, _)| id.clone()).collect();
    // The events about these complaints (`complaints/<id>`, `complaints/<id>/...`) keep their
    // facts but lose the guest, as the complaints do. A consumer replaying the feed later then
    // sees them as anonymous (no goodwill, no failure memory for a guest who is gone).
    rewrite_payloads(&mut *conn, "complaints", &complaints, scrubbed_payload).await?;
    // Stored answers of CreateComplaint hold the complaint as it was answered, contact details
    // included: they are scrubbed like the complaint, and kept, so a retry of the filing still
    // gets its (scrubbed) complaint back instead of filing it, with the guest's data, again.
    guestloop_kit::idempotency::rewrite_stored_answers(
        &mut *conn,
        chain_id,
        "CreateComplaint",
        &complaints,
        |answered: &mut pb::Complaint| {
            complaints.contains(&answered.complaint_id) && scrub_complaint(answered)
        },
    )
    .await?;
    let changed = found.len() as u64;
    for (complaint_id, chain_id, property_id) in &found {
        append(
            &mut *conn,
            NewEvent {
                event_type: "complaints.complaint.guest_erased",
                subject: format!("complaints/{complaint_id}"),
                chain_id,
                property_id,
                payload: &pb::ComplaintGuestErased {
                    complaint_id: complaint_id.clone(),
                    property_id: property_id.clone(),
                },
            },
        )
        .await?;
    }
    Ok(changed)
}

/// Removes the guest's identity and words from a complaint as answered or announced, as the
/// stored complaint loses them; whether anything changed.
fn scrub_complaint(complaint: &mut pb::Complaint) -> bool {
    let before = complaint.clone();
    if let Some(guest) = complaint.guest.as_mut() {
        *guest = pb::GuestRef::default();
    }
    if let Some(rating) = complaint.rating.as_mut() {
        rating.comment.clear();
    }
    if let Some(stay) = complaint.stay.as_mut() {
        stay.reservation_ref.clear();
    }
    if !complaint.description.is_empty() {
        complaint.description = ERASED.to_string();
    }
    *complaint != before
}

/// The payload without the guest's identity, when it carries one (`None`: leave it as it is).
fn scrubbed_payload(payload_type: &str, payload: &[u8]) -> Option<Vec<u8>> {
    if payload_type == <pb::ComplaintChanged as Name>::type_url() {
        let mut changed = pb::ComplaintChanged::decode(payload).ok()?;
        let complaint = changed.complaint.as_mut()?;
        if !scrub_complaint(complaint) {
            return None;
        }
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
                description: "Lena Vogel in 305: noise".into(),
                category: "noise".into(),
                stay: Some(pb::StayContext {
                    reservation_ref: "PMS-4411".into(),
                    room: "305".into(),
                    ..Default::default()
                }),
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
        assert_eq!(
            scrubbed
                .as_ref()
                .and_then(|c| c.stay.as_ref())
                .map(|s| (s.reservation_ref.as_str(), s.room.as_str())),
            Some(("", "305")),
            "the booking reference goes, the room stays"
        );
        assert_eq!(
            scrubbed.map(|c| (c.description, c.category)),
            Some((ERASED.to_string(), "noise".to_string())),
            "the guest's words go, the category stays"
        );
        // Already scrubbed: left alone.
        let again = pb::ComplaintChanged {
            complaint: Some(pb::Complaint {
                complaint_id: "c1".into(),
                description: ERASED.into(),
                guest: Some(pb::GuestRef::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(scrubbed_payload(&type_url, &again.encode_to_vec()).is_none());

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
