//! PostgreSQL access: a pool confined to one schema, with explicit timeouts, and migrations.
//!
//! Every connection of a service sets `search_path` to the service's schema, so its tables and
//! its `_sqlx_migrations` table live there and nowhere else. The kit's own tables (outbox,
//! idempotency keys, consumer cursors) are migrated into the same schema ahead of the service's.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::DatabaseSettings;

/// The kit's migrations (versions below 100); services number theirs from 100 up.
pub static KIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Checks a schema name before it is spliced into SQL (identifiers cannot be bound).
fn checked_schema(schema: &str) -> anyhow::Result<&str> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(schema)
    } else {
        anyhow::bail!("invalid schema name `{schema}`")
    }
}

/// Connection options for `url` confined to `schema`.
pub fn connect_options(
    url: &SecretString,
    schema: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<PgConnectOptions> {
    let schema = checked_schema(schema)?;
    let options = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|e| anyhow::anyhow!("setting `database_url` is not a valid URL: {e}"))?
        .application_name(&format!("guestloop-{schema}"))
        .options([
            ("search_path", schema.to_string()),
            (
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            ),
            ("idle_in_transaction_session_timeout", "60000".to_string()),
            // JIT compiles a wide statement for about half a second before running it; the
            // services' statements read indexed rows or small rollups and finish in
            // milliseconds, so compiling would cost far more than it could save.
            ("jit", "off".to_string()),
            // Dates and day boundaries computed in SQL (`::date`, `date_trunc`) are UTC days,
            // as the services' own arithmetic is, whatever zone the server runs in.
            ("TimeZone", "UTC".to_string()),
        ]);
    Ok(options)
}

/// How long a pooled connection may sit idle before it is pinged on its way out of the pool.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A lazily connecting pool: the service starts, and reports NOT_SERVING, while the database is
/// down; calls fail fast with UNAVAILABLE after `acquire_timeout_ms`.
pub fn pool(options: PgConnectOptions, settings: &DatabaseSettings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .idle_timeout(Some(Duration::from_secs(300)))
        // A connection that was in use a moment ago is known to work; only one that sat idle
        // (where a restarted server or a dropped link would show) is pinged before it is handed
        // out. Pinging every time would add a round trip to every transaction.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// Creates the schema when missing (a role that already owns its schema needs no CREATE right).
pub async fn ensure_schema(pool: &PgPool, schema: &str) -> anyhow::Result<()> {
    let schema = checked_schema(schema)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(pool)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Runs the kit's migrations and then the service's, in one version-ordered history.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> anyhow::Result<()> {
    let mut all: Vec<Migration> = KIT_MIGRATOR.iter().cloned().collect();
    if let Some(clash) = service.iter().find(|m| m.version < 100) {
        anyhow::bail!(
            "service migration {} must be numbered 100 or above",
            clash.version
        );
    }
    all.extend(service.iter().cloned());
    all.sort_by_key(|m| m.version);
    let merged = Migrator {
        migrations: Cow::Owned(all),
        ..Migrator::DEFAULT
    };
    merged.run(pool).await?;
    Ok(())
}

/// Keeps trying `ensure_schema` + `migrate` until the database answers or `startup_timeout_ms`
/// passes, so a service started alongside its database does not fail on the first attempt.
pub async fn prepare(
    pool: &PgPool,
    schema: &str,
    service: &Migrator,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(settings.startup_timeout_ms);
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            ensure_schema(pool, schema).await?;
            migrate(pool, service).await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline && is_connection_error(&error) => {
                tracing::warn!(%schema, %error, "database not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error.context(format!("preparing schema `{schema}`"))),
        }
    }
}

fn is_connection_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<sqlx::Error>().is_some_and(|e| {
            matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ) || e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
        }) || cause
            .downcast_ref::<sqlx::migrate::MigrateError>()
            .is_some_and(|e| matches!(e, sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_))))
    })
}

/// Whether the database answers a trivial query within `timeout`.
pub async fn is_reachable(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

/// Refreshes planner statistics for every table of the pool's schema (after bulk loads).
pub async fn analyze_schema(pool: &PgPool) -> anyhow::Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    for table in tables {
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_days_in_utc() -> anyhow::Result<()> {
        let url = SecretString::from("postgres://u@localhost/db".to_string());
        let options = connect_options(&url, "complaints", &DatabaseSettings::default())?;
        let set = options.get_options().unwrap_or_default();
        assert!(set.contains("-c TimeZone=UTC"), "{set}");
        assert!(set.contains("-c search_path=complaints"), "{set}");
        assert!(connect_options(&url, "Robert'); DROP", &DatabaseSettings::default()).is_err());
        Ok(())
    }
}
