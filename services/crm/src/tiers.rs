//! Applying tier decisions: history and the `crm.tier.changed` event, in the caller's transaction.

use guestloop_kit::events::{append, NewEvent};
use guestloop_kit::ApiResult;
use guestloop_proto::crm::v1 as pb;
use sqlx::PgConnection;

pub async fn record_change(
    conn: &mut PgConnection,
    guest_id: &str,
    chain_id: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> ApiResult<()> {
    sqlx::query("INSERT INTO tier_history (guest_id, changed_at, from_tier, to_tier, reason) VALUES ($1, now(), $2, $3, $4)")
        .bind(guest_id)
        .bind(from)
        .bind(to)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    append(
        conn,
        NewEvent {
            event_type: "crm.tier.changed",
            subject: format!("guests/{guest_id}"),
            chain_id,
            property_id: "",
            payload: &pb::TierChanged {
                guest_id: guest_id.into(),
                from_tier: from.into(),
                to_tier: to.into(),
                reason: reason.into(),
            },
        },
    )
    .await?;
    Ok(())
}
