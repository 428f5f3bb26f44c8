//! Property settings, stored as the encoded `PropertySettings` message with an etag.

use std::collections::BTreeMap;

use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::complaints::v1::PropertySettings;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::settings::default_settings;

/// The prefix of the keys chains' defaults are stored under: no property id starts with it.
pub const CHAIN_KEY_PREFIX: &str = "chain:";

/// The key under which a chain's defaults are stored.
pub fn chain_key(chain_id: &str) -> String {
    format!("{CHAIN_KEY_PREFIX}{chain_id}")
}

async fn stored(conn: &mut PgConnection, key: &str) -> ApiResult<Option<PropertySettings>> {
    let row: Option<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT settings, etag FROM property_settings WHERE property_id = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(bytes, etag)| {
        PropertySettings::decode(bytes.as_slice())
            .map(|mut settings| {
                settings.etag = etag.to_string();
                settings.property_id = key.to_string();
                settings
            })
            .map_err(|e| ApiError::internal(format!("stored settings cannot be decoded: {e}")))
    })
    .transpose()
}

/// The settings of a property: its own, falling back to its chain's defaults (taxonomies such as
/// the category list are defined per chain and may be overridden per property), then to the
/// built-in defaults.
pub async fn get(
    conn: &mut PgConnection,
    chain_id: &str,
    property_id: &str,
) -> ApiResult<PropertySettings> {
    if property_id.starts_with("chain:") {
        return Ok(merge(property_id, stored(conn, property_id).await?, None));
    }
    // The property's and its chain's rows in one statement: intake reads them on every call.
    get_many(conn, chain_id, &[property_id.to_string()])
        .await?
        .remove(property_id)
        .ok_or_else(|| ApiError::internal(format!("no settings came back for {property_id}")))
}

/// A property's own settings over its chain's (see [`get`]).
fn merge(
    property_id: &str,
    own: Option<PropertySettings>,
    chain: Option<&PropertySettings>,
) -> PropertySettings {
    match (own, chain) {
        (Some(mut own), Some(chain)) => {
            if own.categories.is_empty() {
                own.categories = chain.categories.clone();
            }
            own
        }
        (Some(own), None) => own,
        (None, Some(chain)) => PropertySettings {
            property_id: property_id.to_string(),
            etag: String::new(),
            ..chain.clone()
        },
        (None, None) => default_settings(property_id),
    }
}

/// The settings of many properties of one chain in one query, as [`get`] gives them one by one.
pub async fn get_many(
    conn: &mut PgConnection,
    chain_id: &str,
    property_ids: &[String],
) -> ApiResult<BTreeMap<String, PropertySettings>> {
    let chain = chain_key(chain_id);
    let mut keys: Vec<&str> = property_ids.iter().map(String::as_str).collect();
    keys.push(&chain);
    let rows: Vec<(String, Vec<u8>, Uuid)> = sqlx::query_as(
        "SELECT property_id, settings, etag FROM property_settings WHERE property_id = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut found: BTreeMap<String, PropertySettings> = BTreeMap::new();
    for (key, bytes, etag) in rows {
        let mut settings = PropertySettings::decode(bytes.as_slice())
            .map_err(|e| ApiError::internal(format!("stored settings cannot be decoded: {e}")))?;
        settings.etag = etag.to_string();
        settings.property_id = key.clone();
        found.insert(key, settings);
    }
    let chain_settings = found.remove(&chain);
    Ok(property_ids
        .iter()
        .map(|id| {
            let own = found.remove(id);
            (id.clone(), merge(id, own, chain_settings.as_ref()))
        })
        .collect())
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
