//! Running the suite (`up`), one service (`serve`) and migrations.

use std::net::SocketAddr;
use std::sync::Arc;

use guestloop_kit::config::Settings;
use guestloop_kit::embedded_pg::{EmbeddedPostgres, Lifetime};
use guestloop_kit::server::{self, RunningService, ServiceDefinition};
use guestloop_kit::telemetry;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

/// Every service, backends first so the gateway finds them up.
pub const SERVICES: [&ServiceDefinition; 5] = [
    &guestloop_complaints::DEFINITION,
    &guestloop_crm::DEFINITION,
    &guestloop_facilities::DEFINITION,
    &guestloop_audit::DEFINITION,
    &guestloop_gateway::DEFINITION,
];

fn definition(name: &str) -> anyhow::Result<&'static ServiceDefinition> {
    SERVICES
        .iter()
        .copied()
        .find(|d| d.name == name)
        .ok_or_else(|| anyhow::anyhow!("unknown service `{name}`"))
}

fn address(settings: &Settings, service: &str) -> SocketAddr {
    SocketAddr::new(
        settings.listen_host,
        settings.ports.grpc(service).unwrap_or(0),
    )
}

/// Ctrl-C and SIGTERM, listened for from the moment this is created (so a signal that arrives
/// while the suite is still starting is not lost, nor does it kill the process uncleanly).
struct Termination {
    term: Option<tokio::signal::unix::Signal>,
}

impl Termination {
    fn listen() -> Self {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        Self { term }
    }

    async fn wait(&mut self) {
        let ctrl_c = tokio::signal::ctrl_c();
        match self.term.as_mut() {
            Some(term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            None => {
                let _ = ctrl_c.await;
            }
        }
    }
}

/// The database the suite uses: the configured one, or a private server in the data folder.
async fn database(
    settings: &Settings,
    fresh: bool,
) -> anyhow::Result<(SecretString, Option<EmbeddedPostgres>)> {
    if let Some(url) = settings.database_url.clone() {
        if fresh {
            drop_schemas(&url).await?;
        }
        return Ok((url, None));
    }
    let data = settings.data_dir.join("postgres");
    if fresh && data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let embedded =
        EmbeddedPostgres::start(&data, settings.embedded_postgres_port, Lifetime::Managed).await?;
    println!(
        "private PostgreSQL on 127.0.0.1:{} (data in {})",
        embedded.port(),
        embedded.data_dir().display()
    );
    Ok((embedded.url(), Some(embedded)))
}

async fn drop_schemas(url: &SecretString) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url.expose_secret()).await?;
    for service in SERVICES {
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            service.name
        ))
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    Ok(())
}

pub async fn up(settings: Settings, fresh: bool) -> anyhow::Result<()> {
    let mut termination = Termination::listen();
    let guard = telemetry::init("guestloop", &settings.telemetry, None)?;
    let (url, embedded) = database(&settings, fresh).await?;
    let settings = Arc::new(settings);
    let outcome = run_suite(settings.clone(), &url, &mut termination).await;
    if let Some(embedded) = embedded {
        match embedded.stop().await {
            Ok(()) => println!("private PostgreSQL stopped"),
            Err(error) => eprintln!("stopping private PostgreSQL: {error:#}"),
        }
    }
    guard.shutdown();
    outcome
}

async fn run_suite(
    settings: Arc<Settings>,
    default_url: &SecretString,
    termination: &mut Termination,
) -> anyhow::Result<()> {
    let mut running: Vec<RunningService> = Vec::new();
    for definition in SERVICES {
        let url = settings
            .database_urls
            .get(definition.name)
            .unwrap_or(default_url);
        let starting = server::start(
            definition,
            settings.clone(),
            url,
            address(&settings, definition.name),
        );
        let started = tokio::select! {
            started = starting => started,
            _ = termination.wait() => {
                println!("stopping before start-up finished…");
                stop_all(running).await;
                return Ok(());
            }
        };
        match started {
            Ok(service) => running.push(service),
            Err(error) => {
                stop_all(running).await;
                return Err(error);
            }
        }
    }
    let (stop_http, stop_http_rx) = watch::channel(false);
    let http_addr = SocketAddr::new(settings.listen_host, settings.ports.gateway_http);
    let state = match guestloop_gateway::http::HttpState::from_settings(&settings) {
        Ok(state) => state,
        Err(error) => {
            stop_all(running).await;
            return Err(error);
        }
    };
    let http = match guestloop_gateway::http::serve(http_addr, state, stop_http_rx).await {
        Ok(http) => http,
        Err(error) => {
            stop_all(running).await;
            return Err(error);
        }
    };
    if settings.demo {
        println!("demo chain `demo-chain` loaded (6 properties in 3 regions)");
    }
    println!("Guestloop is up:");
    for service in &running {
        println!("  {:<11} gRPC  {}", service.name, service.local_addr);
    }
    println!("  {:<11} HTTP  http://{}", "gateway", http.0);
    println!("Get a token:  guestloop token --role chain_admin");
    println!("Then e.g.:    grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {} guestloop.common.v1.Diagnostics/WhoAmI", running[0].local_addr);
    println!("Ctrl-C or SIGTERM stops everything.");

    termination.wait().await;
    println!("stopping…");
    let _ = stop_http.send(true);
    stop_all(running).await;
    let _ = http.1.await;
    Ok(())
}

async fn stop_all(running: Vec<RunningService>) {
    for service in &running {
        service.begin_shutdown();
    }
    for service in running {
        let name = service.name;
        if let Err(error) = service.wait().await {
            eprintln!("{name} stopped with an error: {error:#}");
        }
    }
}

pub async fn serve(settings: Settings, service: &str) -> anyhow::Result<()> {
    let mut termination = Termination::listen();
    let definition = definition(service)?;
    let guard = telemetry::init(service, &settings.telemetry, None)?;
    let url = settings.database_url_for(service).cloned().ok_or_else(|| {
        anyhow::anyhow!("setting `database_url` (DATABASE_URL) is required for `serve`")
    })?;
    let settings = Arc::new(settings);
    let running = server::start(
        definition,
        settings.clone(),
        &url,
        address(&settings, service),
    )
    .await?;
    let http = if service == "gateway" {
        let (stop, stop_rx) = watch::channel(false);
        let addr = SocketAddr::new(settings.listen_host, settings.ports.gateway_http);
        Some((
            stop,
            guestloop_gateway::http::serve(
                addr,
                guestloop_gateway::http::HttpState::from_settings(&settings)?,
                stop_rx,
            )
            .await?,
        ))
    } else {
        None
    };
    termination.wait().await;
    if let Some((stop, (_, task))) = http {
        let _ = stop.send(true);
        let _ = task.await;
    }
    let outcome = running.shutdown().await;
    guard.shutdown();
    outcome
}

pub async fn migrate(settings: Settings, services: &[String]) -> anyhow::Result<()> {
    let names: Vec<&str> = if services.is_empty() {
        SERVICES.iter().map(|d| d.name).collect()
    } else {
        services.iter().map(String::as_str).collect()
    };
    for name in names {
        let definition = definition(name)?;
        let url = settings.database_url_for(name).cloned().ok_or_else(|| {
            anyhow::anyhow!("setting `database_url` (DATABASE_URL) is required for `migrate`")
        })?;
        let options = guestloop_kit::db::connect_options(&url, name, &settings.database)?;
        let pool = guestloop_kit::db::pool(options, &settings.database);
        guestloop_kit::db::prepare(&pool, name, definition.migrator, &settings.database).await?;
        pool.close().await;
        println!("{name}: migrations applied");
    }
    Ok(())
}
