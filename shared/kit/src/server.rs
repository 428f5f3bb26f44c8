//! Starting a service: database, migrations, the middleware stack, health, reflection,
//! gRPC-Web, the kit's diagnostics and event-feed services, background tasks, and graceful
//! shutdown (health NOT_SERVING → drain in-flight calls under a grace period → stop tasks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use guestloop_proto::common::v1::diagnostics_server::{Diagnostics, DiagnosticsServer};
use guestloop_proto::common::v1::event_feed_server::EventFeedServer;
use guestloop_proto::common::v1::{WhoAmIRequest, WhoAmIResponse};
use secrecy::SecretString;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::auth::policy::PolicyTable;
use crate::auth::{principal, PropertyScope, TokenIssuer, TokenVerifier};
use crate::client::{channel, AuthedChannel, CallContext};
use crate::config::Settings;
use crate::db;
use crate::events::{EventFeedService, EventLog};
use crate::middleware::KitLayer;

/// What the kit needs to know about a service.
#[derive(Debug)]
pub struct ServiceDefinition {
    /// Short name and schema, e.g. `complaints`.
    pub name: &'static str,
    /// Fully qualified gRPC service name, reported by the health service.
    pub grpc_service: &'static str,
    pub migrator: &'static Migrator,
    pub policy: PolicyTable,
    /// Adds the service's gRPC services to `routes` and returns its background tasks.
    pub mount: fn(&ServiceContext, &mut RoutesBuilder) -> anyhow::Result<Vec<BackgroundTask>>,
    /// Loads the demo chain's data (idempotent), when the service has any.
    pub demo: Option<DemoLoader>,
}

/// Loads a service's demo data into its (schema-confined) pool; must be idempotent.
pub type DemoLoader = fn(PgPool) -> BoxFuture<'static, anyhow::Result<()>>;

/// A long-running task of a service (event consumer, watcher); it must end when
/// [`ServiceContext::stop`] changes.
pub type BackgroundTask = BoxFuture<'static, ()>;

/// Shared resources handed to a service's handlers and tasks.
#[derive(Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub pool: PgPool,
    pub events: EventLog,
    pub settings: Arc<Settings>,
    /// Becomes `true` when shutdown starts.
    pub stop: watch::Receiver<bool>,
    /// How this service authenticates to its peers.
    service_calls: CallContext,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext")
            .field("name", &self.name)
            .finish()
    }
}

impl ServiceContext {
    /// A channel to another Guestloop service, carrying this service's token and trace context.
    pub fn peer(&self, service: &str) -> anyhow::Result<AuthedChannel> {
        let url = self.settings.endpoint_for(service);
        let timeout = Duration::from_millis(self.settings.server.request_timeout_ms);
        Ok(tonic::service::interceptor::InterceptedService::new(
            channel(&url, timeout)?,
            self.service_calls.clone(),
        ))
    }

    pub fn max_message_bytes(&self) -> usize {
        self.settings.server.max_message_bytes
    }
}

/// A service that is serving; [`RunningService::shutdown`] stops it gracefully.
pub struct RunningService {
    pub name: &'static str,
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    /// The runtime the service runs on when it has one of its own (shut down after the service).
    runtime: Option<OwnRuntime>,
}

/// A runtime owned by one service; dropping it never blocks, so it may happen inside another
/// runtime.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl RunningService {
    /// Starts shutdown without waiting.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops serving and waits until calls have drained (or the grace period ran out).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.wait().await
    }

    /// Waits for the service to end on its own (after `begin_shutdown` or a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let outcome = self.task.await?;
        drop(self.runtime);
        outcome
    }
}

/// Starts a service on a runtime of its own with `worker_threads` threads, as if it ran in its own
/// process (the deployed shape): when several services share one process, a saturated neighbour
/// cannot delay this one's scheduling, in particular its load shedding.
pub async fn start_on_own_runtime(
    definition: &'static ServiceDefinition,
    settings: Arc<Settings>,
    database_url: &SecretString,
    addr: SocketAddr,
    worker_threads: usize,
) -> anyhow::Result<RunningService> {
    let runtime = OwnRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(format!("{}-worker", definition.name))
            .enable_all()
            .build()?,
    ));
    let url = database_url.clone();
    let starting = runtime
        .0
        .as_ref()
        .map(|r| r.spawn(async move { start(definition, settings, &url, addr).await }))
        .ok_or_else(|| anyhow::anyhow!("runtime for {} is gone", definition.name))?;
    let mut running = starting.await??;
    running.runtime = Some(runtime);
    Ok(running)
}

/// How this process authenticates when calling other services: tokens it mints itself (renewed
/// before they expire) when an HS256 secret is configured, else the configured `auth.service_token`.
pub fn service_calls(settings: &Settings, service: &str) -> anyhow::Result<CallContext> {
    if let Some(issuer) = TokenIssuer::from_settings(&settings.auth) {
        return CallContext::renewing(issuer, service);
    }
    let token = settings.auth.service_token.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "setting `auth.service_token` is required when no `auth.hs256_secret` is configured"
        )
    })?;
    CallContext::with_token(token)
}

/// Prepares the database, mounts the service and starts serving on `addr` (port 0 picks one).
/// Configuration problems fail here, before the port is bound.
pub async fn start(
    definition: &'static ServiceDefinition,
    settings: Arc<Settings>,
    database_url: &SecretString,
    addr: SocketAddr,
) -> anyhow::Result<RunningService> {
    let verifier = TokenVerifier::from_settings(&settings.auth)?;
    let service_calls = service_calls(&settings, definition.name)?;
    let options = db::connect_options(database_url, definition.name, &settings.database)?;
    let pool = db::pool(options, &settings.database);
    db::prepare(
        &pool,
        definition.name,
        definition.migrator,
        &settings.database,
    )
    .await?;
    crate::tenancy::assign(&pool, &settings.chains)
        .await
        .map_err(|e| {
            e.context(format!(
                "registering the properties of `chains` in {}",
                definition.name
            ))
        })?;
    if settings.demo {
        if let Some(load_demo) = definition.demo {
            load_demo(pool.clone())
                .await
                .map_err(|e| e.context(format!("loading demo data for {}", definition.name)))?;
            // Fresh bulk loads have no planner statistics until autovacuum comes by (up to a
            // minute later); without them semi-joins are planned as per-row loops.
            crate::db::analyze_schema(&pool).await?;
            tracing::info!(service = definition.name, "demo data loaded");
        }
    }

    let (stop_sender, stop) = watch::channel(false);
    let events = EventLog::new(pool.clone(), definition.name);
    let context = ServiceContext {
        name: definition.name,
        pool: pool.clone(),
        events: events.clone(),
        settings: settings.clone(),
        stop: stop.clone(),
        service_calls,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    // Migrations just succeeded, so the database is reachable: serve from the first call on.
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(definition.grpc_service, ServingStatus::Serving)
        .await;
    let reflection_v1 = reflection(definition).build_v1()?;
    let reflection_v1alpha = reflection(definition).build_v1alpha()?;
    let max_bytes = settings.server.max_message_bytes;

    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(DiagnosticsServer::new(DiagnosticsService {
            service: definition.name,
        }))
        .add_service(
            EventFeedServer::new(EventFeedService::new(events.clone(), stop.clone()))
                .max_decoding_message_size(max_bytes),
        );
    let mut tasks = (definition.mount)(&context, &mut routes)?;
    tasks.push(Box::pin(
        events
            .clone()
            .run_relay(Duration::from_millis(100), stop.clone()),
    ));
    tasks.push(Box::pin(watch_database(
        pool.clone(),
        health.clone(),
        definition.grpc_service,
        stop.clone(),
    )));

    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {}: {e}", definition.name))?;
    let local_addr = listener.local_addr()?;
    let layer = KitLayer::new(
        definition.name,
        verifier,
        definition.policy,
        settings.server.max_concurrent_requests,
    );
    let router = Server::builder()
        .accept_http1(true)
        .tcp_nodelay(true)
        .timeout(Duration::from_millis(settings.server.request_timeout_ms))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(layer)
        .add_routes(routes.routes());
    let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
    let name = definition.name;

    let task = tokio::spawn(async move {
        let background: Vec<JoinHandle<()>> = tasks.into_iter().map(tokio::spawn).collect();
        let mut stopped = stop.clone();
        let health_on_stop = health.clone();
        let serve = router.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                let _ = stopped.changed().await;
                health_on_stop
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                health_on_stop
                    .set_service_status(definition.grpc_service, ServingStatus::NotServing)
                    .await;
                tracing::info!(service = name, "shutting down: draining in-flight calls");
            },
        );
        let mut grace_clock = stop.clone();
        let outcome = tokio::select! {
            result = serve => result.map_err(anyhow::Error::from),
            _ = async move {
                let _ = grace_clock.changed().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(service = name, "grace period over, closing remaining connections");
                Ok(())
            }
        };
        for handle in background {
            if tokio::time::timeout(grace, handle).await.is_err() {
                tracing::warn!(service = name, "a background task did not stop in time");
            }
        }
        pool.close().await;
        tracing::info!(service = name, "stopped");
        outcome
    });
    tracing::info!(service = definition.name, %local_addr, "serving");
    Ok(RunningService {
        name: definition.name,
        local_addr,
        stop: stop_sender,
        task,
        runtime: None,
    })
}

/// Reflection advertising exactly the services this server mounts.
fn reflection(definition: &ServiceDefinition) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(guestloop_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("guestloop.common.v1.Diagnostics")
        .with_service_name("guestloop.common.v1.EventFeed")
        .with_service_name(definition.grpc_service)
}

/// Reports SERVING while the database answers and NOT_SERVING while it does not.
async fn watch_database(
    pool: PgPool,
    health: tonic_health::server::HealthReporter,
    grpc_service: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = Some(ServingStatus::Serving);
    loop {
        let status = if db::is_reachable(&pool, Duration::from_secs(1)).await {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) && !*stop.borrow() {
            if status == ServingStatus::NotServing {
                tracing::warn!(service = grpc_service, "database unreachable: NOT_SERVING");
            } else if last.is_some() {
                tracing::info!(service = grpc_service, "database reachable again: SERVING");
            }
            health.set_service_status("", status).await;
            health.set_service_status(grpc_service, status).await;
            last = Some(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

struct DiagnosticsService {
    service: &'static str,
}

#[tonic::async_trait]
impl Diagnostics for DiagnosticsService {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let principal = principal(&request)?;
        let claims = &principal.claims;
        let (property_ids, all_properties) = match &claims.props {
            PropertyScope::All(_) => (Vec::new(), true),
            PropertyScope::Listed(ids) => (ids.clone(), false),
        };
        Ok(Response::new(WhoAmIResponse {
            service: self.service.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            subject: claims.sub.clone(),
            role: claims.role.as_str().to_string(),
            chain_id: claims.chain.clone(),
            property_ids,
            all_properties,
            guest_id: claims.guest_id.clone().unwrap_or_default(),
        }))
    }
}
