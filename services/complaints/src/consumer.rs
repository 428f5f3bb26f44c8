//! What complaints take from the facilities feed: the work orders opened for a complaint are
//! linked to it, and when such a work order is completed the complaint moves on to resolved (the
//! fix was the remedy; the follow-up rating still asks the guest). Replays change nothing twice.

use guestloop_kit::events::EventHandler;
use guestloop_kit::ApiError;
use guestloop_proto::common::v1::Event;
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::facilities::v1 as facilities;
use prost::Message;
use sqlx::PgConnection;

use crate::engine::{self, now};
use crate::store::timeline::{self, Entry};

pub const CONSUMER: &str = "complaints<-facilities";
pub const EVENT_TYPES: [&str; 2] = [
    "facilities.work_order.created",
    "facilities.work_order.completed",
];

pub struct WorkOrderEvents;

impl EventHandler for WorkOrderEvents {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), ApiError> {
        let payload = event
            .payload
            .as_ref()
            .ok_or_else(|| ApiError::invalid("payload", "missing"))?;
        let changed = facilities::WorkOrderChanged::decode(payload.value.as_slice())
            .map_err(|e| ApiError::invalid("payload", e.to_string()))?;
        let Some(order) = changed.work_order else {
            return Ok(());
        };
        if order.source != facilities::WorkOrderSource::Complaint as i32 {
            return Ok(());
        }
        let Ok(complaint_id) = uuid::Uuid::parse_str(&order.source_id) else {
            return Ok(());
        };
        let mut loaded = match engine::load(conn, complaint_id, true).await {
            Ok(loaded) => loaded,
            Err(ApiError::NotFound { .. }) => return Ok(()),
            Err(other) => return Err(other),
        };
        // Only an order at the complaint's own property (and of its chain) speaks for it: a
        // work order anywhere else naming this complaint links and resolves nothing.
        let chain = event.chain_id.as_str();
        let foreign_chain = !chain.is_empty() && chain != "*" && chain != loaded.row.chain_id;
        if order.property_id != loaded.row.property_id || foreign_chain {
            tracing::warn!(
                event_id = %event.event_id,
                work_order_id = %order.work_order_id,
                work_order_property = %order.property_id,
                %complaint_id,
                "work order names a complaint of another property or chain: ignored"
            );
            return Ok(());
        }
        let at = now();
        let actor = "service:facilities";
        if event.event_type == "facilities.work_order.created" {
            if loaded.row.work_order_ids.contains(&order.work_order_id) {
                return Ok(());
            }
            loaded.row.work_order_ids.push(order.work_order_id.clone());
            let note = format!("work order {} opened", order.work_order_id);
            timeline::append(
                conn,
                complaint_id,
                Entry {
                    at,
                    actor,
                    kind: "work_order_linked",
                    from_status: None,
                    to_status: None,
                    note: &note,
                },
            )
            .await?;
            let from = loaded.status();
            let view = loaded.save(conn, at).await?;
            engine::emit_changed(conn, "complaints.complaint.updated", &view, from, actor).await?;
            return Ok(());
        }
        let open = !matches!(
            loaded.status(),
            pb::Status::Resolved
                | pb::Status::Closed
                | pb::Status::Cancelled
                | pb::Status::WaitingOnGuest
        );
        if open {
            let reason = format!("work order {} completed", order.work_order_id);
            crate::api::apply_action(conn, &mut loaded, pb::Action::Resolve, &reason, actor, at)
                .await?;
        }
        Ok(())
    }
}
