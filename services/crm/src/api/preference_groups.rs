//! Each chain's preference groups and their limits of likes per guest. Stored as the wire
//! message, as loyalty programs are, and read through [`load`] wherever a preference is added.

use guestloop_kit::auth::principal;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::crm::v1 as pb;
use prost::Message;
use sqlx::PgExecutor;
use tonic::Request;

use super::chain_settings::{stamps, Stamp, Stored};
use super::Api;
use crate::domain::preferences::{defaults, faults, normalise, PreferenceGroup};

/// The groups a wire message describes (names trimmed and lower-cased), or why not.
fn from_wire(wire: &pb::PreferenceGroups) -> Result<Vec<PreferenceGroup>, Vec<FieldViolation>> {
    let groups: Vec<PreferenceGroup> = wire
        .groups
        .iter()
        .map(|g| PreferenceGroup {
            name: normalise(&g.name),
            likes_limit: i64::from(g.likes_limit),
        })
        .collect();
    let faults = faults(&groups);
    if faults.is_empty() {
        Ok(groups)
    } else {
        Err(faults
            .into_iter()
            .map(|(field, why)| FieldViolation::new(field, why))
            .collect())
    }
}

fn to_wire(groups: &[PreferenceGroup], stamp: Option<Stamp>) -> pb::PreferenceGroups {
    pb::PreferenceGroups {
        groups: groups
            .iter()
            .map(|g| pb::PreferenceGroup {
                name: g.name.clone(),
                likes_limit: i32::try_from(g.likes_limit).unwrap_or(i32::MAX),
            })
            .collect(),
        stamps: stamps(stamp),
    }
}

/// Where preference groups are kept.
const GROUPS: Stored = Stored {
    table: "preference_groups",
    column: "groups",
};

/// The chain's groups (the defaults when it has stored none) and who last changed them.
pub async fn load<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
) -> ApiResult<(Vec<PreferenceGroup>, Option<Stamp>)> {
    let Some((bytes, stamp)) = GROUPS.load(db, chain_id).await? else {
        return Ok((defaults(), None));
    };
    let wire = pb::PreferenceGroups::decode(bytes.as_slice()).map_err(ApiError::internal)?;
    let groups = from_wire(&wire).map_err(|faults| {
        ApiError::internal(format!(
            "stored preference groups of {chain_id} no longer validate: {faults:?}"
        ))
    })?;
    Ok((groups, Some(stamp)))
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetPreferenceGroupsRequest>,
) -> ApiResult<pb::PreferenceGroups> {
    let principal = principal(&request)?.clone();
    let (groups, stamp) = load(&api.context.pool, principal.chain_id()).await?;
    Ok(to_wire(&groups, stamp))
}

pub async fn update(
    api: &Api,
    request: Request<pb::UpdatePreferenceGroupsRequest>,
) -> ApiResult<pb::PreferenceGroups> {
    let principal = principal(&request)?.clone();
    let wire = request
        .into_inner()
        .groups
        .ok_or_else(|| ApiError::invalid("groups", "is required"))?;
    let groups = from_wire(&wire).map_err(ApiError::InvalidArgument)?;
    let stamp = GROUPS
        .store(
            &api.context.pool,
            principal.chain_id(),
            to_wire(&groups, None).encode_to_vec(),
            principal.subject(),
        )
        .await?;
    Ok(to_wire(&groups, Some(stamp)))
}
