//! A fresh PostgreSQL database per test.

use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use tokio::sync::OnceCell;

use guestloop_kit::embedded_pg::{EmbeddedPostgres, Lifetime};
use guestloop_kit::ports::free_port;

/// Where test databases are created: `DATABASE_URL`, or a private server for this process.
struct Server {
    admin_url: String,
    /// Kept so the private server lives as long as the process.
    _embedded: Option<EmbeddedPostgres>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

async fn server() -> anyhow::Result<&'static Server> {
    SERVER
        .get_or_try_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                return Ok(Server {
                    admin_url: url,
                    _embedded: None,
                });
            }
            let dir = std::env::temp_dir().join(format!(
                "guestloop-test-pg-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let embedded = EmbeddedPostgres::start(&dir, free_port()?, Lifetime::Ephemeral).await?;
            Ok(Server {
                admin_url: embedded.url().expose_secret().to_string(),
                _embedded: Some(embedded),
            })
        })
        .await
}

/// A database created for one test; dropped when the value is dropped (on a shared server).
pub struct TestDatabase {
    pub name: String,
    pub url: SecretString,
    admin_url: String,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish()
    }
}

fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url)?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// Creates an empty database with a unique name.
pub async fn fresh_database() -> anyhow::Result<TestDatabase> {
    let server = server().await?;
    let name = format!("guestloop_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server.admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(TestDatabase {
        url: SecretString::from(with_database(&server.admin_url, &name)?),
        name,
        admin_url: server.admin_url.clone(),
    })
}

impl TestDatabase {
    /// A pool on this database with no schema confinement (for assertions in tests).
    pub async fn admin_pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(self.url.expose_secret())
            .await?)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("DATABASE_URL").is_none() {
            return; // the private server and its data go away with the process
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a short-lived thread with its own runtime works in both.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Waits until at least `waiters` statements containing `statement` wait for a lock in the
/// pool's database: how a test knows a call it started has reached the lock it holds.
pub async fn wait_for_lock(
    pool: &sqlx::PgPool,
    statement: &str,
    waiters: i64,
) -> anyhow::Result<()> {
    for _ in 0..1_000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        )
        .bind(statement)
        .fetch_one(pool)
        .await?;
        if waiting >= waiters {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("no statement with {statement:?} came to wait for the lock")
}
