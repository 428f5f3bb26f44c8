//! What facilities takes from the complaints feed: a complaint whose cause is a facility opens
//! one linked work order (once per complaint, however often the feed is replayed), on the asset
//! in the complaint's room when one matches its category; when the complaint is cancelled, its
//! open work orders are cancelled; when the complaint's guest is erased, the work order drops
//! the description it copied from the complaint.

use guestloop_kit::events::{decode_payload, EventHandler};
use guestloop_kit::{tenancy, ApiError};
use guestloop_proto::common::v1::Event;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::facilities::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::api::work_orders::{open, NewWorkOrder};

pub const CONSUMER: &str = "facilities<-complaints";
pub const EVENT_TYPES: [&str; 4] = [
    "complaints.complaint.filed",
    "complaints.complaint.updated",
    // A cancellation is announced as a transition.
    "complaints.complaint.transitioned",
    GUEST_ERASED,
];

const GUEST_ERASED: &str = "complaints.complaint.guest_erased";

/// The asset category a complaint category usually points at.
fn asset_category(category: &str) -> Option<pb::AssetCategory> {
    match category {
        "heating_ac" | "hvac" | "air_conditioning" => Some(pb::AssetCategory::Hvac),
        "plumbing" | "water" => Some(pb::AssetCategory::Plumbing),
        "wifi" | "tv" | "network" => Some(pb::AssetCategory::ItNetwork),
        "electrical" | "lighting" => Some(pb::AssetCategory::Electrical),
        "elevator" | "lift" => Some(pb::AssetCategory::Elevator),
        "safety" | "fire" => Some(pb::AssetCategory::FireLifeSafety),
        "furniture" => Some(pb::AssetCategory::Furniture),
        _ => None,
    }
}

pub struct ComplaintEvents;

impl EventHandler for ComplaintEvents {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        if event.event_type == GUEST_ERASED {
            let erased: complaints::ComplaintGuestErased = decode_payload(event)?;
            let changed =
                crate::erasure::drop_guest_words(conn, &event.chain_id, &erased.complaint_id)
                    .await?;
            tracing::info!(
                complaint_id = %erased.complaint_id,
                work_orders = changed,
                "erased guest's words dropped from the complaint's work order"
            );
            return Ok(());
        }
        let changed: complaints::ComplaintChanged = decode_payload(event)?;
        let Some(complaint) = changed.complaint else {
            return Ok(());
        };
        // A cancelled complaint (filed by mistake, a duplicate) leaves nothing to repair: the
        // work order it opened is cancelled too, so it neither keeps the room out nor counts.
        if complaint.status == complaints::Status::Cancelled as i32 {
            let cancelled = crate::api::work_orders::cancel_for_complaint(
                conn,
                &complaint.complaint_id,
                &complaint.property_id,
            )
            .await?;
            if cancelled > 0 {
                tracing::info!(complaint_id = %complaint.complaint_id, work_orders = cancelled,
                    "the cancelled complaint's work orders cancelled");
            }
            return Ok(());
        }
        if event.event_type != "complaints.complaint.filed"
            && event.event_type != "complaints.complaint.updated"
        {
            return Ok(());
        }
        if complaint.cause != complaints::Cause::Facility as i32 {
            return Ok(());
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM work_orders WHERE source = 2 AND source_id = $1 AND property_id = $2)",
        )
        .bind(&complaint.complaint_id)
        .bind(&complaint.property_id)
        .fetch_one(&mut *conn)
        .await?;
        if exists {
            return Ok(());
        }
        // The work order belongs to the complaint's chain, so its property is registered under
        // that chain. An event at a property another chain holds opens nothing and is skipped
        // with a warning, so the consumer moves on: returning the refusal would roll back and
        // re-run the whole batch before setting the event aside. The refused claim inserts
        // nothing, so the transaction stays usable for the events after it. An event with no
        // chain (or every chain's, "*") registers nothing and opens the order as before.
        let chain = event.chain_id.as_str();
        if !chain.is_empty() && chain != "*" {
            match tenancy::claim_for_chain(conn, chain, &[complaint.property_id.as_str()]).await {
                Ok(()) => {}
                Err(ApiError::PermissionDenied(reason)) => {
                    tracing::warn!(
                        event_id = %event.event_id,
                        complaint_id = %complaint.complaint_id,
                        chain_id = %chain,
                        property_id = %complaint.property_id,
                        %reason,
                        "complaint at another chain's property: no work order opened"
                    );
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        let room = complaint
            .stay
            .as_ref()
            .map(|s| s.room.clone())
            .unwrap_or_default();
        let asset: Option<Uuid> = match asset_category(&complaint.category) {
            Some(category) if !room.is_empty() => sqlx::query_scalar(
                "SELECT asset_id FROM assets WHERE property_id = $1 AND room = $2 AND category = $3 ORDER BY asset_id LIMIT 1",
            )
            .bind(&complaint.property_id)
            .bind(&room)
            .bind(category as i16)
            .fetch_optional(&mut *conn)
            .await?,
            _ => None,
        };
        let urgent = matches!(
            complaints::Urgency::try_from(complaint.urgency),
            Ok(complaints::Urgency::Critical | complaints::Urgency::High)
        );
        let in_house = complaint
            .stay
            .as_ref()
            .is_some_and(|s| s.phase == complaints::StayPhase::InHouse as i32);
        let priority = if urgent || in_house {
            pb::Priority::GuestImpacting
        } else {
            pb::Priority::Normal
        };
        open(
            conn,
            NewWorkOrder {
                chain_id: event.chain_id.clone(),
                property_id: complaint.property_id.clone(),
                asset_id: asset,
                room: room.clone(),
                title: format!(
                    "Complaint: {} in {}",
                    complaint.category.replace('_', " "),
                    if room.is_empty() {
                        "a public area"
                    } else {
                        room.as_str()
                    }
                ),
                description: complaint.description.clone(),
                priority: priority as i16,
                source: pb::WorkOrderSource::Complaint,
                source_id: complaint.complaint_id.clone(),
                actor: "service:complaints".into(),
            },
        )
        .await?;
        Ok(())
    }
}
