//! Each chain's preference groups and their limits of likes per guest. Stored as the wire
//! message, as loyalty programs are, and read through [`load`] wherever a preference is added.

use chrono::{DateTime, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::AuditStamps;
use guestloop_proto::crm::v1 as pb;
use prost::Message;
use sqlx::PgExecutor;
use tonic::Request;

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

fn to_wire(
    groups: &[PreferenceGroup],
    stamp: Option<(DateTime<Utc>, String)>,
) -> pb::PreferenceGroups {
    pb::PreferenceGroups {
        groups: groups
            .iter()
            .map(|g| pb::PreferenceGroup {
                name: g.name.clone(),
                likes_limit: i32::try_from(g.likes_limit).unwrap_or(i32::MAX),
            })
            .collect(),
        stamps: stamp.map(|(at, by)| AuditStamps {
            update_time: Some(to_timestamp(at)),
            updated_by: by,
            ..Default::default()
        }),
    }
}

/// The chain's groups (the defaults when it has stored none) and who last changed them.
pub async fn load<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
) -> ApiResult<(Vec<PreferenceGroup>, Option<(DateTime<Utc>, String)>)> {
    let row: Option<(Vec<u8>, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT groups, updated_at, updated_by FROM preference_groups WHERE chain_id = $1",
    )
    .bind(chain_id)
    .fetch_optional(db)
    .await?;
    let Some((bytes, at, by)) = row else {
        return Ok((defaults(), None));
    };
    let wire = pb::PreferenceGroups::decode(bytes.as_slice()).map_err(ApiError::internal)?;
    let groups = from_wire(&wire).map_err(|faults| {
        ApiError::internal(format!(
            "stored preference groups of {chain_id} no longer validate: {faults:?}"
        ))
    })?;
    Ok((groups, Some((at, by))))
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
    let stored = to_wire(&groups, None);
    let at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO preference_groups (chain_id, groups, updated_at, updated_by) VALUES ($1, $2, now(), $3) \
         ON CONFLICT (chain_id) DO UPDATE SET groups = EXCLUDED.groups, updated_at = now(), updated_by = EXCLUDED.updated_by \
         RETURNING updated_at",
    )
    .bind(principal.chain_id())
    .bind(stored.encode_to_vec())
    .bind(principal.subject())
    .fetch_one(&api.context.pool)
    .await?;
    Ok(to_wire(
        &groups,
        Some((at, principal.subject().to_string())),
    ))
}
