//! `guestloop bench scorecard`: the gateway's scorecard (complaints, facilities, audit and CRM
//! fanned out over gRPC, scored per property, region and scope) for the demo chain over 90 days, cold
//! and warm, and for 200 properties at each size (with CRM data in proportion: a guest per ten
//! complaints, a stay per complaint), against the same numbers computed by raw queries over the
//! complaints, facilities and audit tables plus CRM's own KPI call (CRM keeps no rollup) in the
//! same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use guestloop_complaints::store::kpis::{query, Scope, Source};
use guestloop_kit::auth::{Claims, PropertyScope, Role, TokenIssuer};
use guestloop_kit::client::{channel, CallContext};
use guestloop_kit::config::Settings;
use guestloop_kit::ports::free_port;
use guestloop_kit::server;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::crm::v1::GetCrmKpisRequest;
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
    crm: PgPool,
}

/// The last `days` days up to now: their bounds and the same period on the wire.
pub(crate) fn last_days(days: i64) -> (DateTime<Utc>, DateTime<Utc>, TimeRange) {
    let end = Utc::now();
    let start = end - chrono::Duration::days(days);
    let period = TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(start)),
        end_time: Some(guestloop_kit::time::to_timestamp(end)),
    };
    (start, end, period)
}

/// The scorecard's inputs straight from the tables: complaint facts per property (raw GROUP BY),
/// work orders done and on time, audits and their scores, and CRM's own KPI call (CRM keeps no
/// rollup, so that call is its raw computation).
async fn raw(
    pools: &Pools,
    crm: &mut Crm,
    properties: &[String],
    days: i64,
) -> anyhow::Result<Duration> {
    let (start, end, period) = last_days(days);
    let started = Instant::now();
    let mut conn = pools.complaints.acquire().await?;
    let (complaints, orders, audits, loyalty) = tokio::join!(
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
        crm.get_crm_kpis(GetCrmKpisRequest {
            property_ids: properties.to_vec(),
            period: Some(period),
            loyalty_only: true,
        }),
    );
    complaints?;
    orders?;
    audits?;
    loyalty?;
    Ok(started.elapsed())
}

pub type Gateway = GatewayServiceClient<guestloop_kit::client::AuthedChannel>;
type Crm = CrmServiceClient<guestloop_kit::client::AuthedChannel>;

/// The scorecard of the last `days` days, ending `earlier` before now.
pub async fn scorecard(
    client: &mut Gateway,
    days: i64,
    earlier: Duration,
) -> anyhow::Result<(Duration, pb::Scorecard)> {
    let (_, _, mut period) = last_days(days);
    for bound in [&mut period.start_time, &mut period.end_time]
        .into_iter()
        .flatten()
    {
        bound.seconds -= i64::try_from(earlier.as_secs())?;
    }
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
    let mut crm = CrmServiceClient::new(quality_channel(&suite.crm, &suite.issuer, chain)?);
    let (cold, card) = scorecard(&mut client, 90, Duration::ZERO).await?;
    let properties: Vec<String> = card.properties.iter().map(|p| p.key.clone()).collect();
    let complaints = card.scope.as_ref().map_or(0, |s| s.complaints);
    let mut warm = Vec::new();
    let mut fresh = Vec::new();
    let mut base = Vec::new();
    // Alternate, so all three see the same machine. "Fresh" asks for periods that end further
    // back each time, each in a window of its own, so CRM computes its loyalty part every time.
    let window = suite.loyalty_max_age + Duration::from_secs(1);
    for round in 1..=15 {
        warm.push(scorecard(&mut client, 90, Duration::ZERO).await?.0);
        fresh.push(scorecard(&mut client, 90, window * round).await?.0);
        base.push(raw(pools, &mut crm, &properties, 90).await?);
    }
    let (warm, fresh, base) = (median(warm), median(fresh), median(base));
    println!(
        "{label:<34} {:>5} {:>9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>7.1}×  {}",
        properties.len(),
        complaints,
        ms(cold),
        ms(warm),
        ms(fresh),
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
    crm: String,
    /// How long the gateway reuses CRM's loyalty summary.
    loyalty_max_age: Duration,
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
        crm: pool_for(&url, "crm", &settings)?,
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
            crm: format!("http://127.0.0.1:{}", ports[4]),
            loyalty_max_age: Duration::from_secs(settings.scorecard.loyalty_max_age_seconds),
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
    Ok(GatewayServiceClient::new(quality_channel(
        gateway, issuer, chain,
    )?))
}

/// A channel to `endpoint` carrying a chain quality manager's token for `chain`.
fn quality_channel(
    endpoint: &str,
    issuer: &TokenIssuer,
    chain: &str,
) -> anyhow::Result<guestloop_kit::client::AuthedChannel> {
    let token = issuer.mint(Claims::new(
        "bench-quality",
        Role::ChainQualityManager,
        chain,
        PropertyScope::all(),
    ))?;
    let context = CallContext::with_token(&SecretString::from(token))?;
    Ok(InterceptedService::new(
        channel(endpoint, Duration::from_secs(60))?,
        context,
    ))
}

/// Grows the synthetic chain's CRM data in proportion to `complaints`: a guest per ten
/// complaints, a checked-out stay per complaint at the same 200 properties over the three years
/// before `end`, and an earning per 1.25 stays, so the scorecard's loyalty part reads a chain of
/// that size too. Ranges already seeded by an earlier size are kept.
async fn grow_crm_to(pool: &PgPool, complaints: i64, end: NaiveDate) -> anyhow::Result<()> {
    let guests = (complaints / 10).max(1);
    let ledger = complaints * 4 / 5;
    let count = |sql: &'static str| {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(crate::bench_kpi::CHAIN)
            .fetch_one(pool)
    };
    let have = count("SELECT count(*) FROM guests WHERE chain_id = $1").await?;
    sqlx::query(
        "INSERT INTO guests (guest_id, chain_id, given_name, email, language) \
         SELECT $1 || '-g' || n, $1, 'Guest ' || n, 'guest' || n || '@bench.invalid', 'en' \
         FROM generate_series($2::bigint, $3::bigint - 1) AS n",
    )
    .bind(crate::bench_kpi::CHAIN)
    .bind(have)
    .bind(guests)
    .execute(pool)
    .await?;
    let have = count("SELECT count(*) FROM stays WHERE pms_reservation_id LIKE $1 || '-%'").await?;
    sqlx::query(
        "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, \
           room, rate_currency, rate_minor, spend_currency, spend_minor, status) \
         SELECT $1 || '-p' || (n % 200), $1 || '-' || n, $1 || '-g' || (n % $4), d, d + 1 + (n % 4)::int, \
           (100 + n % 300)::text, 'EUR', 12000, 'EUR', (n % 9) * 1000, 'checked_out' \
         FROM generate_series($2::bigint, $3::bigint - 1) AS n, \
              LATERAL (SELECT $5::date - 5 - (n % 1095)::int AS d) AS x",
    )
    .bind(crate::bench_kpi::CHAIN)
    .bind(have)
    .bind(complaints)
    .bind(guests)
    .bind(end)
    .execute(pool)
    .await?;
    let have = count("SELECT count(*) FROM ledger WHERE source LIKE $1 || ':%'").await?;
    sqlx::query(
        "INSERT INTO ledger (guest_id, kind, points, balance_after, reason, actor, source, posted_at) \
         SELECT $1 || '-g' || (n % $4), CASE WHEN n % 5 = 0 THEN 'redeem' ELSE 'earn' END, \
           CASE WHEN n % 5 = 0 THEN -100 ELSE 300 END, 1000, 'bench', 'system', $1 || ':' || n, \
           $5::date - (n % 1095)::int \
         FROM generate_series($2::bigint, $3::bigint - 1) AS n",
    )
    .bind(crate::bench_kpi::CHAIN)
    .bind(have)
    .bind(ledger)
    .bind(guests)
    .bind(end)
    .execute(pool)
    .await?;
    sqlx::raw_sql("ANALYZE guests; ANALYZE stays; ANALYZE ledger")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn run(settings: Settings, sizes: &[i64]) -> anyhow::Result<()> {
    let (suite, _settings) = start_suite(settings, None).await?;
    let pools = &suite.pools;
    println!("Scorecard over 90 days through the gateway (gRPC fan-out to complaints, facilities, audit, CRM)");
    println!(
        "vs the raw queries over the same tables plus CRM's own KPI call (CRM keeps no rollup); \
         warm and raw are medians of 15 alternating runs."
    );
    println!(
        "Warm reuses CRM's loyalty summary (up to {} s old); fresh asks CRM for it every time.",
        suite.loyalty_max_age.as_secs()
    );
    println!(
        "{:<34} {:>5} {:>9} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "scope", "props", "complaints", "cold", "warm", "fresh", "raw", "raw/warm"
    );
    measure("demo chain", &suite, guestloop_kit::demo::DEMO_CHAIN).await?;
    let end = chrono::Utc::now().date_naive();
    for &size in sizes {
        let seeding = Instant::now();
        crate::bench_kpi::grow_to(&pools.complaints, size, end).await?;
        grow_crm_to(&pools.crm, size, end).await?;
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
            "seeded {size} complaints (and CRM: {} guests, {size} stays, {} ledger entries) in {:.0} s",
            size / 10,
            size * 4 / 5,
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
