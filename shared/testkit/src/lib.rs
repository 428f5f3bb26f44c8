//! Test helpers shared by every Guestloop test: a PostgreSQL database per test (`DATABASE_URL`
//! when set, otherwise a private server started once per test process), services started on
//! port 0 with authenticated clients, and token minting.

pub mod crm;
mod database;
pub mod http;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use guestloop_kit::auth::{PropertyScope, Role};
use guestloop_kit::client::{AuthedChannel, CallContext};
use guestloop_kit::config::Settings;
use guestloop_kit::server::{self, RunningService, ServiceDefinition};
use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use database::{fresh_database, wait_for_lock, TestDatabase};
pub use tokens::{test_claims, TokenBuilder, TEST_CHAIN, TEST_SECRET};

/// Settings for tests: the test secret, short timeouts, quiet logs.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.auth.hs256_secret = Some(SecretString::from(TEST_SECRET.to_string()));
    settings.server.shutdown_grace_ms = 2_000;
    settings.database.acquire_timeout_ms = 2_000;
    settings.database.startup_timeout_ms = 10_000;
    settings.database.max_connections = 8;
    settings
}

/// Logs to the test output when `TEST_LOG` is set; silent otherwise.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
            ))
            .with_test_writer()
            .try_init();
    }
}

/// A service running on an ephemeral port against its own fresh database.
pub struct TestService {
    pub service: RunningService,
    pub database: TestDatabase,
    pub settings: Arc<Settings>,
}

impl std::fmt::Debug for TestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestService")
            .field("service", &self.service)
            .finish()
    }
}

/// Starts `definition` on 127.0.0.1:0 with a fresh database.
pub async fn spawn_service(definition: &'static ServiceDefinition) -> anyhow::Result<TestService> {
    spawn_service_with(definition, test_settings(), None).await
}

/// Like [`spawn_service`] with explicit settings and optionally an existing database
/// (several services may share one database, as in production).
pub async fn spawn_service_with(
    definition: &'static ServiceDefinition,
    settings: Settings,
    database: Option<TestDatabase>,
) -> anyhow::Result<TestService> {
    spawn_service_on(definition, settings, database, 0).await
}

/// Like [`spawn_service_with`] on a chosen port (for services that must know each other's
/// address before either starts).
pub async fn spawn_service_on(
    definition: &'static ServiceDefinition,
    settings: Settings,
    database: Option<TestDatabase>,
    port: u16,
) -> anyhow::Result<TestService> {
    init_test_logging();
    let database = match database {
        Some(database) => database,
        None => fresh_database().await?,
    };
    let settings = Arc::new(settings);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let service = server::start(definition, settings.clone(), &database.url, addr).await?;
    Ok(TestService {
        service,
        database,
        settings,
    })
}

/// Starts services that feed each other, each with a fresh database: every one's address is
/// picked first and recorded in `settings` under its name, so each finds the others' feeds.
/// Answers them in the order given.
pub async fn spawn_peers(
    mut settings: Settings,
    definitions: &[&'static ServiceDefinition],
) -> anyhow::Result<Vec<TestService>> {
    let mut ports = Vec::with_capacity(definitions.len());
    for definition in definitions {
        let port = guestloop_kit::ports::free_port()?;
        settings.endpoints.insert(
            definition.name.to_string(),
            format!("http://127.0.0.1:{port}"),
        );
        ports.push(port);
    }
    let mut services = Vec::with_capacity(definitions.len());
    for (definition, port) in definitions.iter().zip(ports) {
        services.push(spawn_service_on(definition, settings.clone(), None, port).await?);
    }
    Ok(services)
}

impl TestService {
    pub fn addr(&self) -> SocketAddr {
        self.service.local_addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.service.local_addr)
    }

    /// A channel with no credentials.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.url())?.connect().await?)
    }

    /// A channel that sends `token` on every call.
    pub async fn channel_with_token(&self, token: &str) -> anyhow::Result<AuthedChannel> {
        let context = CallContext::with_token(&SecretString::from(token.to_string()))?;
        Ok(InterceptedService::new(self.channel().await?, context))
    }

    /// A channel authenticated as `role` with the given property scope in the test chain.
    pub async fn channel_as(
        &self,
        role: Role,
        props: PropertyScope,
    ) -> anyhow::Result<AuthedChannel> {
        let token = TokenBuilder::new(role).scope(props).mint()?;
        self.channel_with_token(&token).await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.service.shutdown().await
    }

    /// Stops the service and hands back its database and settings, so the same service can be
    /// started again on the same port (a restarted backend).
    pub async fn stop(self) -> anyhow::Result<(TestDatabase, Settings)> {
        self.service.shutdown().await?;
        Ok((self.database, Settings::clone(&self.settings)))
    }
}

/// The fields an INVALID_ARGUMENT status names in its `BadRequest` detail, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    tonic_types::StatusExt::get_details_bad_request(status)
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
