//! `guestloop bench scorecard`: the gateway's scorecard (complaints, facilities, audit and CRM
//! fanned out over gRPC, scored per property, region and scope) for the demo chain over 90 days, cold
//! and warm, and for 200 properties at each size, against the same numbers computed by raw
//! queries over the complaints, facilities and audit tables in the same run (CRM's loyalty part is
//! left out of the raw side, which favours the raw side).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestloop_complaints::store::kpis::{query, Scope, Source};
use guestloop_kit::auth::{Claims, PropertyScope, Role, TokenIssuer};
use guestloop_kit::client::{channel, CallContext};
use guestloop_kit::config::Settings;
use guestloop_kit::embedded_pg::free_port;
use guestloop_kit::server;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::service::interceptor::InterceptedService;

fn pool_for(url: &SecretString, schema: &str, settings: &Settings) -> anyhow::Result<PgPool> {
    let options = guestloop_kit::db::connect_options(url, schema, &settings.database)?;
    Ok(guestloop_kit::db::pool(options, &settings.database))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Pools {
    complaints: PgPool,
    facilities: PgPool,
    audit: PgPool,
}

/// The scorecard's inputs straight from the tables: complaint facts per property (raw GROUP BY),
/// work orders done and on time, audits and their scores.
async fn raw(pools: &Pools, properties: &[String], days: i64) -> anyhow::Result<Duration> {
    let end = chrono::Utc::now();
    let start = end - chrono::Duration::days(days);
    let started = Instant::now();
    let mut conn = pools.complaints.acquire().await?;
    let (complaints, orders, audits) = tokio::join!(
        query(
            &mut conn,
            Source::Raw,
            Scope::properties(properties),
            start.date_naive(),
            end.date_naive(),
            false,
            false,
        ),
        sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT property_id, count(*) FILTER (WHERE done_at IS NOT NULL), count(*) FILTER (WHERE done_at <= fix_due_at) \
             FROM work_orders WHERE property_id = ANY($1) AND created_at >= $2 AND created_at < $3 GROUP BY 1",
        )
        .bind(properties)
        .bind(start)
        .bind(end)
        .fetch_all(&pools.facilities),
        sqlx::query_as::<_, (String, i64, f64)>(
            "SELECT property_id, count(*), coalesce(sum(overall), 0)::float8 FROM audits \
             WHERE property_id = ANY($1) AND submitted_at >= $2 AND submitted_at < $3 GROUP BY 1",
        )
        .bind(properties)
        .bind(start)
        .bind(end)
        .fetch_all(&pools.audit),
    );
    complaints?;
    orders?;
    audits?;
    Ok(started.elapsed())
}

pub type Gateway = GatewayServiceClient<guestloop_kit::client::AuthedChannel>;

pub async fn scorecard(
    client: &mut Gateway,
    days: i64,
) -> anyhow::Result<(Duration, pb::Scorecard)> {
    let end = chrono::Utc::now();
    let start = end - chrono::Duration::days(days);
    let period = TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(start)),
        end_time: Some(guestloop_kit::time::to_timestamp(end)),
    };
    let started = Instant::now();
    let card = client
        .get_scorecard(pb::GetScorecardRequest {
            property_ids: Vec::new(),
            region: String::new(),
            period: Some(period),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((started.elapsed(), card))
}

async fn measure(label: &str, suite: &Suite, chain: &str) -> anyhow::Result<()> {
    let pools = &suite.pools;
    let mut client = quality_client(suite, chain)?;
    let (cold, card) = scorecard(&mut client, 90).await?;
    let properties: Vec<String> = card.properties.iter().map(|p| p.key.clone()).collect();
    let complaints = card.scope.as_ref().map_or(0, |s| s.complaints);
    let mut warm = Vec::new();
    let mut base = Vec::new();
    // Alternate, so both see the same machine.
    for _ in 0..15 {
        warm.push(scorecard(&mut client, 90).await?.0);
        base.push(raw(pools, &properties, 90).await?);
    }
    let (warm, base) = (median(warm), median(base));
    println!(
        "{label:<34} {:>5} {:>9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>7.1}×  {}",
        properties.len(),
        complaints,
        ms(cold),
        ms(warm),
        ms(base),
        ms(base) / ms(warm).max(1e-9),
        if card.missing.is_empty() {
            "complete".to_string()
        } else {
            format!("missing: {}", card.missing.join("; "))
        }
    );
    Ok(())
}

/// The services a scorecard needs, on the bench database with the demo chain loaded and its
/// rollup settled. `gateway_limit` overrides the gateway's concurrency limit (load shedding).
pub struct Suite {
    pub running: Vec<server::RunningService>,
    pub gateway: String,
    pub issuer: TokenIssuer,
    pools: Pools,
    _embedded: Option<guestloop_kit::embedded_pg::EmbeddedPostgres>,
}

pub async fn start_suite(
    mut settings: Settings,
    gateway_limit: Option<usize>,
) -> anyhow::Result<(Suite, Settings)> {
    crate::dev_secret::ensure(&mut settings)?;
    settings.demo = true;
    settings.database.statement_timeout_ms = 1_800_000;
    settings.server.request_timeout_ms = 60_000;
    let (url, embedded) = crate::bench::bench_database(&settings).await?;
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    let names = ["complaints", "facilities", "audit", "gateway", "crm"];
    for (name, port) in names.iter().zip(&ports) {
        settings
            .endpoints
            .insert((*name).into(), format!("http://127.0.0.1:{port}"));
    }
    let shared = Arc::new(settings.clone());
    let mut gateway_settings = settings.clone();
    if let Some(limit) = gateway_limit {
        gateway_settings.server.max_concurrent_requests = limit;
    }
    let gateway_settings = Arc::new(gateway_settings);
    let on = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut running = Vec::new();
    for (definition, port) in [
        &guestloop_complaints::DEFINITION,
        &guestloop_facilities::DEFINITION,
        &guestloop_audit::DEFINITION,
        &guestloop_gateway::DEFINITION,
        &guestloop_crm::DEFINITION,
    ]
    .into_iter()
    .zip(&ports)
    {
        let settings = if definition.name == "gateway" {
            gateway_settings.clone()
        } else {
            shared.clone()
        };
        // Each on a runtime of its own, as each runs in its own process when deployed.
        running.push(server::start_on_own_runtime(definition, settings, &url, on(*port), 2).await?);
    }
    let pools = Pools {
        complaints: pool_for(&url, "complaints", &settings)?,
        facilities: pool_for(&url, "facilities", &settings)?,
        audit: pool_for(&url, "audit", &settings)?,
    };
    // Let the demo's rollup settle.
    for _ in 0..600 {
        let dirty: i64 = sqlx::query_scalar("SELECT count(*) FROM kpi_dirty")
            .fetch_one(&pools.complaints)
            .await?;
        if dirty == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let issuer = TokenIssuer::from_settings(&settings.auth)
        .ok_or_else(|| anyhow::anyhow!("no signing secret"))?;
    Ok((
        Suite {
            running,
            gateway: format!("http://127.0.0.1:{}", ports[3]),
            issuer,
            pools,
            _embedded: embedded,
        },
        settings,
    ))
}

/// A client of the suite's gateway as a chain quality manager of `chain`.
pub fn quality_client(suite: &Suite, chain: &str) -> anyhow::Result<Gateway> {
    quality_client_of(&suite.gateway, &suite.issuer, chain)
}

/// A client of the gateway at `gateway` as a chain quality manager of `chain`.
pub fn quality_client_of(
    gateway: &str,
    issuer: &TokenIssuer,
    chain: &str,
) -> anyhow::Result<Gateway> {
    let token = issuer.mint(Claims {
        sub: "bench-quality".into(),
        role: Role::ChainQualityManager,
        chain: chain.into(),
        props: PropertyScope::all(),
        guest_id: None,
        department: None,
        iss: String::new(),
        aud: String::new(),
        iat: 0,
        exp: 0,
    })?;
    let context = CallContext::with_token(&SecretString::from(token))?;
    Ok(GatewayServiceClient::new(InterceptedService::new(
        channel(gateway, Duration::from_secs(60))?,
        context,
    )))
}

pub async fn run(settings: Settings, sizes: &[i64]) -> anyhow::Result<()> {
    let (suite, _settings) = start_suite(settings, None).await?;
    let pools = &suite.pools;
    println!("Scorecard over 90 days through the gateway (gRPC fan-out to complaints, facilities, audit, CRM)");
    println!(
        "vs the raw queries over the same tables; warm and raw are medians of 15 alternating runs."
    );
    println!(
        "{:<34} {:>5} {:>9} {:>12} {:>12} {:>12} {:>8}",
        "scope", "props", "complaints", "cold", "warm", "raw", "raw/warm"
    );
    measure("demo chain", &suite, guestloop_kit::demo::DEMO_CHAIN).await?;
    let end = chrono::Utc::now().date_naive();
    for &size in sizes {
        let seeding = Instant::now();
        crate::bench_kpi::grow_to(&pools.complaints, size, end).await?;
        // The synthetic chain's properties, as intake would have recorded them.
        sqlx::query(
            "INSERT INTO known_properties (property_id, chain_id) SELECT id, $2 \
             FROM unnest($1::text[]) AS id ON CONFLICT DO NOTHING",
        )
        .bind(crate::bench_kpi::property_ids())
        .bind(crate::bench_kpi::CHAIN)
        .execute(&pools.complaints)
        .await?;
        eprintln!(
            "seeded {size} complaints in {:.0} s",
            seeding.elapsed().as_secs_f64()
        );
        measure(
            &format!(
                "{} properties, {size} complaints",
                crate::bench_kpi::PROPERTIES
            ),
            &suite,
            crate::bench_kpi::CHAIN,
        )
        .await?;
    }
    for service in suite.running {
        service.shutdown().await?;
    }
    Ok(())
}
