//! Property settings, stored as the encoded `PropertySettings` message with an etag.

use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::complaints::v1::PropertySettings;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::settings::default_settings;

/// The stored settings of a property, or the defaults when it has none yet.
pub async fn get(conn: &mut PgConnection, property_id: &str) -> ApiResult<PropertySettings> {
    let row: Option<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT settings, etag FROM property_settings WHERE property_id = $1")
            .bind(property_id)
            .fetch_optional(conn)
            .await?;
    match row {
        Some((bytes, etag)) => {
            let mut settings = PropertySettings::decode(bytes.as_slice()).map_err(|e| {
                ApiError::internal(format!("stored settings cannot be decoded: {e}"))
            })?;
            settings.etag = etag.to_string();
            settings.property_id = property_id.to_string();
            Ok(settings)
        }
        None => Ok(default_settings(property_id)),
    }
}

/// Replaces the settings when `expected_etag` (if given) still matches; returns the new etag.
pub async fn put(
    conn: &mut PgConnection,
    chain_id: &str,
    settings: &PropertySettings,
    expected_etag: &str,
    actor: &str,
) -> ApiResult<String> {
    let current: Option<Uuid> =
        sqlx::query_scalar("SELECT etag FROM property_settings WHERE property_id = $1 FOR UPDATE")
            .bind(&settings.property_id)
            .fetch_optional(&mut *conn)
            .await?;
    if !expected_etag.is_empty() && current.map(|e| e.to_string()).as_deref() != Some(expected_etag)
    {
        return Err(ApiError::Aborted(
            "settings changed since they were read (etag mismatch); read them again".into(),
        ));
    }
    let etag = Uuid::now_v7();
    let mut stored = settings.clone();
    stored.etag.clear();
    sqlx::query(
        "INSERT INTO property_settings (property_id, chain_id, settings, etag, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, now(), $5) ON CONFLICT (property_id) DO UPDATE SET \
         settings = EXCLUDED.settings, etag = EXCLUDED.etag, updated_at = now(), updated_by = EXCLUDED.updated_by",
    )
    .bind(&settings.property_id)
    .bind(chain_id)
    .bind(stored.encode_to_vec())
    .bind(etag)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(etag.to_string())
}
