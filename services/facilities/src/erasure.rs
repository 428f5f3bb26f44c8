//! What facilities does when a complaint's guest is erased (`complaints.complaint.guest_erased`):
//! the work order the complaint opened carries the complaint's description, the guest's words,
//! copied when it was opened. It now reads "[erased]", in the work order, in the events about it
//! and in the stored answer of the call that created it (kept, so a retry still answers it), as
//! the complaint's own description does. The rest of
//! the work order (room, asset, clocks, costs) stays: it is the property's repair history.
//! Replays find nothing left to drop.

use guestloop_kit::events::rewrite_payloads;
use guestloop_kit::text::ERASED;
use guestloop_kit::ApiError;
use guestloop_proto::facilities::v1 as pb;
use prost::{Message, Name};
use sqlx::PgConnection;

/// Drops the guest's words from the work order `complaint_id` opened in `chain_id` (any chain
/// when empty); answers how many work orders changed (0 or 1).
pub async fn drop_guest_words(
    conn: &mut PgConnection,
    chain_id: &str,
    complaint_id: &str,
) -> Result<u64, ApiError> {
    let orders: Vec<String> = sqlx::query_scalar(
        "UPDATE work_orders SET description = $3, etag = gen_random_uuid() \
         WHERE source = 2 AND source_id = $1 AND ($2 = '' OR chain_id IN ($2, '')) AND description <> $3 \
         RETURNING work_order_id::text",
    )
    .bind(complaint_id)
    .bind(chain_id)
    .bind(ERASED)
    .fetch_all(&mut *conn)
    .await?;
    if orders.is_empty() {
        return Ok(0);
    }
    rewrite_payloads(&mut *conn, "work_orders", &orders, without_description).await?;
    // Stored answers of CreateWorkOrder hold the order as it was answered: they lose the
    // description too, and stay, so a retry still gets its order back. Only the chain's own
    // keys (and those from before keys were per chain) are read.
    guestloop_kit::idempotency::rewrite_stored_answers(
        &mut *conn,
        chain_id,
        "CreateWorkOrder",
        &orders,
        |order: &mut pb::WorkOrder| {
            let mine = orders.contains(&order.work_order_id) && order.description != ERASED;
            if mine {
                order.description = ERASED.to_string();
            }
            mine
        },
    )
    .await?;
    Ok(orders.len() as u64)
}

/// A work-order event's payload with the description erased (`None`: nothing to change).
fn without_description(payload_type: &str, payload: &[u8]) -> Option<Vec<u8>> {
    if payload_type != <pb::WorkOrderChanged as Name>::type_url() {
        return None;
    }
    let mut changed = pb::WorkOrderChanged::decode(payload).ok()?;
    let order = changed.work_order.as_mut()?;
    if order.description.is_empty() || order.description == ERASED {
        return None;
    }
    order.description = ERASED.to_string();
    Some(changed.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_order_descriptions_are_erased() {
        let type_url = <pb::WorkOrderChanged as Name>::type_url();
        let changed = pb::WorkOrderChanged {
            work_order: Some(pb::WorkOrder {
                work_order_id: "w1".into(),
                title: "Complaint: noise in 305".into(),
                description: "Lena Vogel: the AC rattles all night".into(),
                room: "305".into(),
                ..Default::default()
            }),
            from_status: "open".into(),
        };
        let scrubbed = without_description(&type_url, &changed.encode_to_vec())
            .and_then(|bytes| pb::WorkOrderChanged::decode(bytes.as_slice()).ok());
        assert_eq!(
            scrubbed,
            Some(pb::WorkOrderChanged {
                work_order: Some(pb::WorkOrder {
                    description: ERASED.into(),
                    ..changed.work_order.clone().unwrap_or_default()
                }),
                ..changed.clone()
            }),
            "the description goes, the rest stays"
        );
        let erased = scrubbed.map(|c| c.encode_to_vec()).unwrap_or_default();
        assert!(without_description(&type_url, &erased).is_none(), "once");
        assert!(without_description("guestloop.facilities.v1.Other", b"").is_none());
    }
}
