//! The production database roles (`deploy/sql/roles.sql`) on a real PostgreSQL: every service
//! runs its migrations and serves as its own role, and no service's role can read or write
//! another service's schema.
//!
//! Roles are cluster-wide, so each test names its roles with a prefix of its own
//! (`SET guestloop.role_prefix`) and drops them at the end; parallel tests and repeated runs
//! against one `DATABASE_URL` never meet.

use std::sync::Arc;

use guestloop_kit::server::{self, ServiceDefinition};
use guestloop_testkit::{fresh_database, test_settings, TestDatabase};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ROLES_SQL: &str = include_str!("../../deploy/sql/roles.sql");

const SERVICES: [&ServiceDefinition; 5] = [
    &guestloop_complaints::DEFINITION,
    &guestloop_crm::DEFINITION,
    &guestloop_facilities::DEFINITION,
    &guestloop_audit::DEFINITION,
    &guestloop_gateway::DEFINITION,
];

const PERMISSION_DENIED: &str = "42501";

/// A database with the service roles of roles.sql, named with a prefix unique to this test.
struct RoledDatabase {
    database: TestDatabase,
    prefix: String,
    password: String,
}

impl RoledDatabase {
    async fn create() -> anyhow::Result<Self> {
        let database = fresh_database().await?;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let roled = Self {
            database,
            prefix: format!("t{}_", &unique[..12]),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        roled.apply_roles_sql().await?;
        Ok(roled)
    }

    fn role(&self, service: &str) -> String {
        format!("{}{service}", self.prefix)
    }

    async fn admin(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(self.database.url.expose_secret()).await?)
    }

    /// Runs roles.sql as the superuser and gives each role the test password (ignored where
    /// the server trusts loopback connections, needed where it does not).
    async fn apply_roles_sql(&self) -> anyhow::Result<()> {
        let mut admin = self.admin().await?;
        sqlx::query(&format!("SET guestloop.role_prefix = '{}'", self.prefix))
            .execute(&mut admin)
            .await?;
        sqlx::raw_sql(ROLES_SQL).execute(&mut admin).await?;
        for definition in SERVICES {
            sqlx::query(&format!(
                "ALTER ROLE \"{}\" PASSWORD '{}'",
                self.role(definition.name),
                self.password
            ))
            .execute(&mut admin)
            .await?;
        }
        admin.close().await?;
        Ok(())
    }

    /// The test database's URL with the service's role as the user (host and port come from
    /// the test database, whether private or `DATABASE_URL`).
    fn url_for(&self, service: &str) -> anyhow::Result<SecretString> {
        let mut url = url::Url::parse(self.database.url.expose_secret())?;
        url.set_username(&self.role(service))
            .map_err(|()| anyhow::anyhow!("cannot set a user on the database URL"))?;
        url.set_password(Some(&self.password))
            .map_err(|()| anyhow::anyhow!("cannot set a password on the database URL"))?;
        Ok(SecretString::from(url.to_string()))
    }

    async fn connect_as(&self, service: &str) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(self.url_for(service)?.expose_secret()).await?)
    }

    /// Drops what the roles own in the test database, then the roles themselves.
    async fn drop_roles(self) -> anyhow::Result<()> {
        let mut admin = self.admin().await?;
        let roles: Vec<String> = SERVICES
            .iter()
            .map(|d| format!("\"{}\"", self.role(d.name)))
            .collect();
        let roles = roles.join(", ");
        sqlx::query(&format!("DROP OWNED BY {roles} CASCADE"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("DROP ROLE IF EXISTS {roles}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(())
    }
}

async fn health_status(addr: std::net::SocketAddr, service: &str) -> anyhow::Result<i32> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status)
}

/// Starts every service with its own role; each must migrate, answer health SERVING, and own
/// its schema and every table in it.
async fn serve_every_service_as_its_role(roled: &RoledDatabase) -> anyhow::Result<()> {
    let settings = Arc::new(test_settings());
    for definition in SERVICES {
        let url = roled.url_for(definition.name)?;
        let running = server::start(
            definition,
            settings.clone(),
            &url,
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .map_err(|e| e.context(format!("starting {} as its role", definition.name)))?;
        for health_name in ["", definition.grpc_service] {
            let status = health_status(running.local_addr, health_name).await?;
            assert_eq!(
                status,
                ServingStatus::Serving as i32,
                "{} health `{health_name}`",
                definition.name
            );
        }
        running.shutdown().await?;

        let mut own = roled.connect_as(definition.name).await?;
        let schema_owner: String = sqlx::query_scalar(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
        )
        .bind(definition.name)
        .fetch_one(&mut own)
        .await?;
        assert_eq!(schema_owner, roled.role(definition.name));
        let foreign_tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tableowner <> $2",
        )
        .bind(definition.name)
        .bind(roled.role(definition.name))
        .fetch_all(&mut own)
        .await?;
        assert!(
            foreign_tables.is_empty(),
            "{}: {foreign_tables:?}",
            definition.name
        );
        let migrations: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{}\"._sqlx_migrations WHERE success",
            definition.name
        ))
        .fetch_one(&mut own)
        .await?;
        assert!(
            migrations >= 2,
            "{}: {migrations} migrations",
            definition.name
        );
        own.close().await?;
    }
    Ok(())
}

/// Runs `sql` and reports it unless PostgreSQL refused it with permission denied.
async fn refused(connection: &mut PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(sql).execute(&mut *connection).await {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(PERMISSION_DENIED) => {
            None
        }
        Err(other) => Some(format!(
            "`{sql}` failed, but not with permission denied: {other}"
        )),
        Ok(_) => Some(format!("`{sql}` was allowed")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_migrates_and_serves_as_its_own_role() -> anyhow::Result<()> {
    let roled = RoledDatabase::create().await?;
    serve_every_service_as_its_role(&roled).await?;
    // A second start finds its migrations applied and serves again.
    serve_every_service_as_its_role(&roled).await?;
    roled.drop_roles().await
}

/// Every role tries to read and write every other service's schema, to make a schema, to
/// write to `public` and to make temporary tables: each attempt must be refused with
/// permission denied.
async fn assert_each_role_is_confined_to_its_schema(roled: &RoledDatabase) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut checks = 0;
    for caller in SERVICES {
        let mut connection = roled.connect_as(caller.name).await?;
        // Control: the role reads and writes its own outbox, so the refusals below are about
        // the other schemas, not about the connection.
        sqlx::raw_sql(&format!(
            "SELECT count(*) FROM \"{0}\".outbox_events; \
             DELETE FROM \"{0}\".idempotency_keys WHERE false",
            caller.name
        ))
        .execute(&mut connection)
        .await?;
        for owner in SERVICES.iter().filter(|d| d.name != caller.name) {
            let attempts = [
                format!("SELECT count(*) FROM \"{}\".outbox_events", owner.name),
                format!(
                    "INSERT INTO \"{}\".outbox_events \
                     (event_id, event_type, subject, occur_time, payload_type, payload) \
                     VALUES (gen_random_uuid(), 'intrusion', 'x', now(), 'x', '\\x00')",
                    owner.name
                ),
                format!("SELECT count(*) FROM \"{}\"._sqlx_migrations", owner.name),
            ];
            for sql in &attempts {
                checks += 1;
                problems.extend(
                    refused(&mut connection, sql)
                        .await
                        .map(|p| format!("{} role: {p}", caller.name)),
                );
            }
        }
        for sql in [
            "CREATE SCHEMA intruder",
            "CREATE TABLE public.intruder (id int)",
            "CREATE TEMPORARY TABLE intruder (id int)",
        ] {
            checks += 1;
            problems.extend(
                refused(&mut connection, sql)
                    .await
                    .map(|p| format!("{} role: {p}", caller.name)),
            );
        }
        connection.close().await?;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // 5 roles × 4 other schemas × 3 attempts, plus 3 database-wide attempts per role.
    assert_eq!(checks, 5 * 4 * 3 + 5 * 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_role_can_read_or_write_another_services_schema() -> anyhow::Result<()> {
    let roled = RoledDatabase::create().await?;
    serve_every_service_as_its_role(&roled).await?;
    assert_each_role_is_confined_to_its_schema(&roled).await?;
    roled.drop_roles().await
}

/// An existing deployment, migrated by a superuser, is handed to the service roles by
/// re-running roles.sql; the services then run as their roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_sql_adopts_schemas_migrated_by_the_superuser_and_is_idempotent() -> anyhow::Result<()>
{
    let database = fresh_database().await?;
    let settings = test_settings();
    for definition in SERVICES {
        let options =
            guestloop_kit::db::connect_options(&database.url, definition.name, &settings.database)?;
        let pool = guestloop_kit::db::pool(options, &settings.database);
        guestloop_kit::db::prepare(
            &pool,
            definition.name,
            definition.migrator,
            &settings.database,
        )
        .await?;
        pool.close().await;
    }
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let roled = RoledDatabase {
        database,
        prefix: format!("t{}_", &unique[..12]),
        password: uuid::Uuid::new_v4().simple().to_string(),
    };
    roled.apply_roles_sql().await?;
    roled.apply_roles_sql().await?;
    serve_every_service_as_its_role(&roled).await?;
    assert_each_role_is_confined_to_its_schema(&roled).await?;
    roled.drop_roles().await
}
