//! `guestloop bench`: benchmark scenarios built on the [`crate::load`] generator. Each prints
//! figures; comparisons run their baseline in the same process, alternating rounds, so the
//! ratio holds on a noisy machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use guestloop_kit::auth::Role;
use guestloop_kit::client::{channel, CallContext};
use guestloop_kit::config::Settings;
use guestloop_kit::embedded_pg::{EmbeddedPostgres, Lifetime};
use guestloop_kit::ports::free_port;
use guestloop_kit::server;
use guestloop_proto::common::v1::diagnostics_client::DiagnosticsClient;
use guestloop_proto::common::v1::diagnostics_server::{Diagnostics, DiagnosticsServer};
use guestloop_proto::common::v1::{WhoAmIRequest, WhoAmIResponse};
use secrecy::{ExposeSecret, SecretString};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::load::{self, Mode, Report};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// A no-op RPC through the kit's full middleware (auth, limits, tracing, metrics) against a
    /// bare tonic server, in one process.
    KitOverhead {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Complaint intake over gRPC against pgbench running the same SQL transaction.
    Intake {
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Guest intake through the gateway's HTTP API against pgbench running the same SQL transaction.
    IntakeGateway {
        /// Requests in flight on each side. pgbench's transaction peaks at 8 on two cores; the
        /// gateway path (HTTP, two gRPC hops, CRM's lookup) needs about 16 to keep them busy, and
        /// pgbench at 16 runs as fast as at 8, so both sides are compared at their peaks.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// KPI latency from the rollup against the raw GROUP BY, at each size (complaints).
    Kpi {
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        sizes: Vec<i64>,
    },
    /// The gateway scorecard (demo chain, then 200 properties at each size) against raw queries.
    Scorecard {
        #[arg(long, value_delimiter = ',', default_value = "1000000")]
        sizes: Vec<i64>,
    },
    /// The gateway's scorecard at its saturating load, then at twice that rate: goodput and how
    /// fast the excess is refused.
    Overload {
        /// The gateway's concurrency limit (calls in flight before it sheds load); by default
        /// twice this machine's cores, which the closed-loop sweep shows is where goodput levels off.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// HTTP/2 connections the callers spread their calls over.
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// Importing stays through CRM (`guestloop import stays`) against PostgreSQL's COPY and
    /// multi-row INSERT of the same rows, in one run.
    Import {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Load `Diagnostics/WhoAmI` on a running service.
    WhoAmI {
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        endpoint: String,
        /// Bearer token (see `guestloop token`).
        #[arg(long, env = "GUESTLOOP_TOKEN")]
        token: String,
        /// Calls in flight (closed loop). Ignored with --rate.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Calls per second (open loop).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    let mut telemetry = settings.telemetry.clone();
    telemetry.log_filter = "error".into();
    let _guard = guestloop_kit::telemetry::init("guestloop-bench", &telemetry, None)?;
    match args.scenario {
        Scenario::KitOverhead {
            concurrency,
            seconds,
            rounds,
        } => kit_overhead(settings, concurrency, Duration::from_secs(seconds), rounds).await,
        Scenario::Intake { clients, seconds } => intake(settings, clients, seconds).await,
        Scenario::Kpi { sizes } => kpi(settings, &sizes).await,
        Scenario::Scorecard { sizes } => crate::bench_scorecard::run(settings, &sizes).await,
        Scenario::Overload {
            limit,
            seconds,
            connections,
        } => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            crate::bench_overload::run(settings, limit.unwrap_or(2 * cores), seconds, connections)
                .await
        }
        Scenario::Import {
            rows,
            batch,
            workers,
        } => crate::bench_import::run(settings, rows, batch, workers).await,
        Scenario::IntakeGateway { clients, seconds } => {
            intake_gateway(settings, clients, seconds).await
        }
        Scenario::WhoAmI {
            endpoint,
            token,
            concurrency,
            rate,
            seconds,
        } => {
            let mode = match rate {
                Some(rate) => Mode::Open {
                    rate,
                    max_in_flight: 4096,
                },
                None => Mode::Closed { concurrency },
            };
            let report = whoami_load(
                "whoami",
                &endpoint,
                Some(&token),
                mode,
                Duration::from_secs(seconds),
            )
            .await?;
            report.print();
            Ok(())
        }
    }
}

/// The database a benchmark runs against: `DATABASE_URL`, or a throw-away private server.
pub(crate) async fn bench_database(
    settings: &Settings,
) -> anyhow::Result<(SecretString, Option<EmbeddedPostgres>)> {
    if let Some(url) = settings.database_url.clone() {
        return Ok((url, None));
    }
    let dir = std::env::temp_dir().join(format!("guestloop-bench-{}", std::process::id()));
    let embedded = EmbeddedPostgres::start(&dir, free_port()?, Lifetime::Ephemeral).await?;
    Ok((embedded.url(), Some(embedded)))
}

pub(crate) fn bench_token(settings: &Settings, role: Role) -> anyhow::Result<String> {
    let issuer = guestloop_kit::auth::TokenIssuer::from_settings(&settings.auth)
        .ok_or_else(|| anyhow::anyhow!("no signing secret"))?;
    issuer.mint(guestloop_kit::auth::Claims::new(
        "bench",
        role,
        "bench",
        guestloop_kit::auth::PropertyScope::all(),
    ))
}

async fn intake(mut settings: Settings, clients: usize, seconds: u64) -> anyhow::Result<()> {
    crate::dev_secret::ensure(&mut settings)?;
    settings.database.max_connections = (clients as u32 + 4).max(16);
    let (url, _embedded) = bench_database(&settings).await?;
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let crm = server::start_on_own_runtime(
        &guestloop_crm::DEFINITION,
        Arc::new(settings.clone()),
        &url,
        any_port,
        2,
    )
    .await?;
    settings
        .endpoints
        .insert("crm".into(), format!("http://{}", crm.local_addr));
    let complaints = server::start_on_own_runtime(
        &guestloop_complaints::DEFINITION,
        Arc::new(settings.clone()),
        &url,
        any_port,
        2,
    )
    .await?;
    let token = bench_token(&settings, Role::Agent)?;
    let bin_dir = guestloop_kit::embedded_pg::find_server_binaries()?;
    let endpoint = format!("http://{}", complaints.local_addr);
    crate::bench_intake::compare(&bin_dir, &url, &endpoint, &token, clients, seconds).await?;
    complaints.shutdown().await?;
    crm.shutdown().await
}

async fn intake_gateway(
    mut settings: Settings,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    crate::dev_secret::ensure(&mut settings)?;
    settings.database.max_connections = (clients as u32 + 4).max(16);
    settings.server.max_concurrent_requests = 4096;
    let (url, _embedded) = bench_database(&settings).await?;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    for (name, port) in [
        ("complaints", ports[0]),
        ("crm", ports[1]),
        ("gateway", ports[2]),
    ] {
        settings
            .endpoints
            .insert(name.into(), format!("http://127.0.0.1:{port}"));
    }
    let on = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let shared = Arc::new(settings.clone());
    let crm = server::start_on_own_runtime(
        &guestloop_crm::DEFINITION,
        shared.clone(),
        &url,
        on(ports[1]),
        2,
    )
    .await?;
    let complaints = server::start_on_own_runtime(
        &guestloop_complaints::DEFINITION,
        shared.clone(),
        &url,
        on(ports[0]),
        2,
    )
    .await?;
    let gateway = server::start_on_own_runtime(
        &guestloop_gateway::DEFINITION,
        shared.clone(),
        &url,
        on(ports[2]),
        2,
    )
    .await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let state = guestloop_gateway::http::HttpState::from_settings(&settings)?;
    let (http, _task) = guestloop_gateway::http::serve(on(0), state, stop_rx).await?;
    let issuer = guestloop_kit::auth::TokenIssuer::from_settings(&settings.auth)
        .ok_or_else(|| anyhow::anyhow!("no signing secret"))?;
    let tokens = Arc::new(
        (0..500)
            .map(|n| {
                issuer.mint(guestloop_kit::auth::Claims {
                    guest_id: Some(format!("g{n}")),
                    ..guestloop_kit::auth::Claims::new(
                        format!("guest-{n}"),
                        Role::Guest,
                        "bench",
                        guestloop_kit::auth::PropertyScope::all(),
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let bin_dir = guestloop_kit::embedded_pg::find_server_binaries()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url.expose_secret())
        .await?;
    println!("guest intake over HTTP/JSON: gateway -> gRPC complaints (with CRM's tier lookup)");
    crate::bench_intake::compare_intake(
        &bin_dir,
        &url,
        &pool,
        clients,
        seconds,
        |label, mode, duration| {
            crate::bench_intake::file_load_http(label, http, tokens.clone(), mode, duration)
        },
    )
    .await?;
    let _ = stop.send(true);
    gateway.shutdown().await?;
    complaints.shutdown().await?;
    crm.shutdown().await
}

async fn kpi(mut settings: Settings, sizes: &[i64]) -> anyhow::Result<()> {
    // Seeding and the raw baseline at 10M rows take longer than a service statement may.
    settings.database.statement_timeout_ms = 1_800_000;
    let (url, _embedded) = bench_database(&settings).await?;
    let options = guestloop_kit::db::connect_options(&url, "complaints", &settings.database)?;
    let pool = guestloop_kit::db::pool(options, &settings.database);
    guestloop_kit::db::prepare(
        &pool,
        "complaints",
        guestloop_complaints::DEFINITION.migrator,
        &settings.database,
    )
    .await?;
    crate::bench_kpi::run(&pool, sizes).await
}

/// Loads WhoAmI on `endpoint`.
async fn whoami_load(
    label: &str,
    endpoint: &str,
    token: Option<&str>,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Report> {
    let context = match token {
        Some(token) => CallContext::with_token(&SecretString::from(token.to_string()))?,
        None => CallContext::anonymous(),
    };
    // A few connections, as a real client pool would use, so HTTP/2 flow control is not the limit.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let channel = channel(endpoint, Duration::from_secs(10))?;
        clients.push(DiagnosticsClient::new(InterceptedService::new(
            channel,
            context.clone(),
        )));
    }
    let clients = Arc::new(clients);
    load::run(label, mode, duration, move |i| {
        let mut client = clients[(i % clients.len() as u64) as usize].clone();
        async move {
            client
                .who_am_i(WhoAmIRequest {})
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    })
    .await
}

/// The same no-op as the kit's WhoAmI, served with no middleware at all.
struct BareDiagnostics;

#[tonic::async_trait]
impl Diagnostics for BareDiagnostics {
    async fn who_am_i(
        &self,
        _request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        Ok(Response::new(WhoAmIResponse {
            service: "bare".into(),
            ..WhoAmIResponse::default()
        }))
    }
}

async fn kit_overhead(
    mut settings: Settings,
    concurrency: usize,
    duration: Duration,
    rounds: u32,
) -> anyhow::Result<()> {
    crate::dev_secret::ensure(&mut settings)?;
    settings.server.max_concurrent_requests = concurrency * 4;
    let embedded;
    let url = match settings.database_url.clone() {
        Some(url) => url,
        None => {
            let dir = std::env::temp_dir().join(format!("guestloop-bench-{}", std::process::id()));
            embedded = EmbeddedPostgres::start(&dir, free_port()?, Lifetime::Ephemeral).await?;
            embedded.url()
        }
    };
    let settings = Arc::new(settings);
    let kit = server::start(
        &guestloop_complaints::DEFINITION,
        settings.clone(),
        &url,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let issuer = guestloop_kit::auth::TokenIssuer::from_settings(&settings.auth)
        .ok_or_else(|| anyhow::anyhow!("no signing secret"))?;
    let token = issuer.mint(guestloop_kit::auth::Claims::new(
        "bench",
        Role::Agent,
        "bench",
        guestloop_kit::auth::PropertyScope::all(),
    ))?;

    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let bare = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(DiagnosticsServer::new(BareDiagnostics))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(bare_listener).with_nodelay(Some(true)),
            ),
    );

    let mode = Mode::Closed { concurrency };
    let kit_url = format!("http://{}", kit.local_addr);
    let bare_url = format!("http://{bare_addr}");
    // Warm both up so connection set-up is not measured.
    whoami_load("warm-up", &bare_url, None, mode, Duration::from_secs(1)).await?;
    whoami_load(
        "warm-up",
        &kit_url,
        Some(&token),
        mode,
        Duration::from_secs(1),
    )
    .await?;
    let mut ratios = Vec::new();
    println!(
        "no-op RPC (WhoAmI), closed loop, {concurrency} in flight, {} s per run",
        duration.as_secs()
    );
    for round in 1..=rounds {
        let bare_report = whoami_load(
            &format!("bare tonic    #{round}"),
            &bare_url,
            None,
            mode,
            duration,
        )
        .await?;
        let kit_report = whoami_load(
            &format!("kit middleware #{round}"),
            &kit_url,
            Some(&token),
            mode,
            duration,
        )
        .await?;
        bare_report.print();
        kit_report.print();
        if kit_report.ok() != kit_report.total() {
            anyhow::bail!("the kit server answered errors: {:?}", kit_report.codes);
        }
        ratios.push(kit_report.goodput() / bare_report.goodput().max(1e-9));
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "kit throughput / bare throughput: median {:.1} % (rounds: {})",
        median * 100.0,
        ratios
            .iter()
            .map(|r| format!("{:.1} %", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    kit.shutdown().await?;
    bare.abort();
    Ok(())
}
