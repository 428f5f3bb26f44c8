//! Which chain a property belongs to, as this service knows it: from the complaints filed there
//! (`known_properties`) and from its settings. Tokens scope properties by id, and a whole-chain
//! token (`"*"`) names no property list, so without this a chain-wide caller could name another
//! chain's property. A property no chain has used yet is open to the first one.

use guestloop_kit::auth::{Principal, Role};
use guestloop_kit::{ApiError, ApiResult};
use sqlx::PgConnection;

/// Refuses (PERMISSION_DENIED) when one of `properties` is known under another chain than the
/// caller's. Services act for every chain.
pub async fn require_own_properties(
    conn: &mut PgConnection,
    principal: &Principal,
    properties: &[String],
) -> ApiResult<()> {
    if principal.role() == Role::Service || properties.is_empty() {
        return Ok(());
    }
    let foreign: Option<String> = sqlx::query_scalar(
        "SELECT property_id FROM known_properties WHERE property_id = ANY($1) AND chain_id <> $2 \
         UNION ALL SELECT property_id FROM property_settings WHERE property_id = ANY($1) AND chain_id <> $2 \
         LIMIT 1",
    )
    .bind(properties)
    .bind(principal.chain_id())
    .fetch_optional(&mut *conn)
    .await?;
    match foreign {
        Some(property) => Err(ApiError::PermissionDenied(format!(
            "property {property} belongs to another chain"
        ))),
        None => Ok(()),
    }
}
