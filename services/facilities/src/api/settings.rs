//! Engineering settings: read by the property's staff, changed by its planners (policy table).
//! Stored as the validated wire message; every clock computation reads them through [`load`].

use guestloop_kit::auth::principal;
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::facilities::v1 as pb;
use prost::Message;
use sqlx::PgConnection;
use tonic::Request;
use uuid::Uuid;

use super::Api;
use crate::domain::settings::Engineering;

async fn stored(
    conn: &mut PgConnection,
    property_id: &str,
) -> ApiResult<Option<(pb::EngineeringSettings, Uuid)>> {
    let row: Option<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT settings, etag FROM engineering_settings WHERE property_id = $1")
            .bind(property_id)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(bytes, etag)| {
        pb::EngineeringSettings::decode(bytes.as_slice())
            .map(|settings| (settings, etag))
            .map_err(ApiError::internal)
    })
    .transpose()
}

/// The effective settings of a property (defaults when none are stored).
pub async fn load(conn: &mut PgConnection, property_id: &str) -> ApiResult<Engineering> {
    match stored(conn, property_id).await? {
        None => Ok(Engineering::around_the_clock_utc()),
        Some((settings, _)) => effective(property_id, &settings),
    }
}

/// Stored settings, validated again (they were when written).
fn effective(property_id: &str, settings: &pb::EngineeringSettings) -> ApiResult<Engineering> {
    Engineering::from_wire(settings).map_err(|violations| {
        ApiError::internal(format!(
            "stored engineering settings of {property_id} no longer validate: {}",
            violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

fn answer(
    mut settings: pb::EngineeringSettings,
    effective: &Engineering,
    etag: String,
) -> pb::EngineeringSettings {
    if settings.time_zone.is_empty() {
        settings.time_zone = "UTC".into();
    }
    settings.targets = effective.targets_to_wire();
    settings.etag = etag;
    settings
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetEngineeringSettingsRequest>,
) -> ApiResult<pb::EngineeringSettings> {
    let principal = principal(&request)?.clone();
    let property_id = request.into_inner().property_id;
    if property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &property_id).await?;
    match stored(&mut conn, &property_id).await? {
        None => Ok(answer(
            pb::EngineeringSettings {
                property_id,
                always_open: true,
                ..Default::default()
            },
            &Engineering::around_the_clock_utc(),
            String::new(),
        )),
        Some((settings, etag)) => {
            let effective = effective(&property_id, &settings)?;
            Ok(answer(settings, &effective, etag.to_string()))
        }
    }
}

pub async fn update(
    api: &Api,
    request: Request<pb::UpdateEngineeringSettingsRequest>,
) -> ApiResult<pb::EngineeringSettings> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut settings = request
        .settings
        .ok_or_else(|| ApiError::invalid("settings", "is required"))?;
    if settings.property_id.is_empty() {
        return Err(ApiError::invalid("settings.property_id", "is required"));
    }
    // The scope before the settings are validated; the chain in the transaction that writes.
    principal.require_property(&settings.property_id)?;
    let effective = Engineering::from_wire(&settings).map_err(ApiError::InvalidArgument)?;
    settings.etag.clear();
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &settings.property_id).await?;
    let current: Option<Uuid> = sqlx::query_scalar(
        "SELECT etag FROM engineering_settings WHERE property_id = $1 FOR UPDATE",
    )
    .bind(&settings.property_id)
    .fetch_optional(&mut *tx)
    .await?;
    if !request.etag.is_empty()
        && current.map(|e| e.to_string()).as_deref() != Some(request.etag.as_str())
    {
        return Err(ApiError::Aborted(
            "settings changed since they were read (etag mismatch); read them again".into(),
        ));
    }
    let etag = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO engineering_settings (property_id, settings, etag, updated_at, updated_by) \
         VALUES ($1, $2, $3, now(), $4) ON CONFLICT (property_id) DO UPDATE SET \
         settings = EXCLUDED.settings, etag = EXCLUDED.etag, updated_at = now(), updated_by = EXCLUDED.updated_by",
    )
    .bind(&settings.property_id)
    .bind(settings.encode_to_vec())
    .bind(etag)
    .bind(principal.subject())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(answer(settings, &effective, etag.to_string()))
}
