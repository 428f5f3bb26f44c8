//! What complaints take from the CRM feed: when CRM erases a guest (`crm.guest.erased`), the
//! complaints filed by or for that guest lose the guest's identity and contact details (id,
//! name, email, phone). The complaints themselves stay, so the chain's KPIs do not change; what
//! stays no longer points at the person. Stored responses of the guest's own calls, which carry
//! the same details, are removed. Replays find nothing left to scrub.

use guestloop_kit::events::{decode_payload, EventHandler};
use guestloop_kit::ApiError;
use guestloop_proto::common::v1::Event;
use guestloop_proto::crm::v1 as crm;
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
                etag = gen_random_uuid() \
         WHERE guest_id = $1 AND ($2 = '' OR chain_id = $2)",
    )
    .bind(guest_id)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed)
}
