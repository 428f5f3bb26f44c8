//! A chain's settings stored as their encoded wire message, one row per chain (loyalty programs,
//! preference groups): read with who changed them last, and replaced whole.

use chrono::{DateTime, Utc};
use guestloop_kit::time::to_timestamp;
use guestloop_kit::ApiResult;
use guestloop_proto::common::v1::AuditStamps;
use sqlx::PgExecutor;

/// Where one kind of settings is kept: a table keyed by `chain_id`, with the message in `column`
/// and `updated_at` / `updated_by`.
pub struct Stored {
    pub table: &'static str,
    pub column: &'static str,
}

/// When and by whom a chain's settings were last replaced.
pub type Stamp = (DateTime<Utc>, String);

impl Stored {
    /// The chain's encoded settings and their stamp; `None` while the chain has set none.
    pub async fn load<'e>(
        &self,
        db: impl PgExecutor<'e>,
        chain_id: &str,
    ) -> ApiResult<Option<(Vec<u8>, Stamp)>> {
        let row: Option<(Vec<u8>, DateTime<Utc>, String)> = sqlx::query_as(&format!(
            "SELECT {}, updated_at, updated_by FROM {} WHERE chain_id = $1",
            self.column, self.table
        ))
        .bind(chain_id)
        .fetch_optional(db)
        .await?;
        Ok(row.map(|(bytes, at, by)| (bytes, (at, by))))
    }

    /// Replaces the chain's settings; answers the new stamp.
    pub async fn store<'e>(
        &self,
        db: impl PgExecutor<'e>,
        chain_id: &str,
        encoded: Vec<u8>,
        actor: &str,
    ) -> ApiResult<Stamp> {
        let at: DateTime<Utc> = sqlx::query_scalar(&format!(
            "INSERT INTO {table} (chain_id, {column}, updated_at, updated_by) VALUES ($1, $2, now(), $3) \
             ON CONFLICT (chain_id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now(), \
             updated_by = EXCLUDED.updated_by RETURNING updated_at",
            table = self.table,
            column = self.column
        ))
        .bind(chain_id)
        .bind(encoded)
        .bind(actor)
        .fetch_one(db)
        .await?;
        Ok((at, actor.to_string()))
    }
}

/// The wire stamps of settings last replaced at `stamp` (none for defaults).
pub fn stamps(stamp: Option<Stamp>) -> Option<AuditStamps> {
    stamp.map(|(at, by)| AuditStamps {
        update_time: Some(to_timestamp(at)),
        updated_by: by,
        ..Default::default()
    })
}
