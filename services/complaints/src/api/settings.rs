//! Property settings: read by staff of the property, changed by its managers and chain admins.

use guestloop_kit::auth::{principal, Role};
use guestloop_kit::{tenancy, ApiResult};
use guestloop_proto::complaints::v1 as pb;
use tonic::Request;

use super::Api;
use crate::settings::effective;
use crate::store;

const EDITORS: [Role; 3] = [
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
];

pub async fn get(
    api: &Api,
    request: Request<pb::GetPropertySettingsRequest>,
) -> ApiResult<pb::PropertySettings> {
    let principal = principal(&request)?;
    let property_id = &request.get_ref().property_id;
    if property_id.is_empty() {
        return Err(guestloop_kit::ApiError::invalid(
            "property_id",
            "is required",
        ));
    }
    if property_id.starts_with("chain:") {
        principal.require_chain(property_id.trim_start_matches("chain:"))?;
    } else {
        principal.require_property(property_id)?;
    }
    let mut conn = api.context.pool.acquire().await?;
    if !property_id.starts_with("chain:") {
        tenancy::require_property(&mut conn, principal, property_id).await?;
    }
    store::settings::get(&mut conn, principal.chain_id(), property_id).await
}

pub async fn update(
    api: &Api,
    request: Request<pb::UpdatePropertySettingsRequest>,
) -> ApiResult<pb::PropertySettings> {
    let principal = principal(&request)?.clone();
    principal.require_role(&EDITORS)?;
    let request = request.into_inner();
    let mut settings = request
        .settings
        .ok_or_else(|| guestloop_kit::ApiError::invalid("settings", "is required"))?;
    crate::settings::normalise(&mut settings);
    if settings.property_id.is_empty() {
        return Err(guestloop_kit::ApiError::invalid(
            "settings.property_id",
            "is required",
        ));
    }
    if let Some(chain) = settings.property_id.strip_prefix("chain:") {
        // The chain's defaults: for chain-level roles of that chain only.
        principal.require_chain(chain)?;
        principal.require_role(&[Role::ChainQualityManager, Role::ChainAdmin])?;
    } else {
        principal.require_property(&settings.property_id)?;
    }
    crate::settings::check_for_write(&settings)?;
    effective(&settings)?;
    let mut tx = api.context.pool.begin().await?;
    if !settings.property_id.starts_with("chain:") {
        tenancy::claim_property(&mut tx, &principal, &settings.property_id).await?;
    }
    let etag = store::settings::put(
        &mut tx,
        principal.chain_id(),
        &settings,
        &request.etag,
        principal.subject(),
    )
    .await?;
    tx.commit().await?;
    Ok(pb::PropertySettings { etag, ..settings })
}
