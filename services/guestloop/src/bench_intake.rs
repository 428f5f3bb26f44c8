//! `guestloop bench intake`: filing complaints over gRPC (auth, validation, CRM tier lookup,
//! repeat detection, clocks, timeline, outbox, KPI mark, idempotency key) against `pgbench`
//! running the same SQL transaction on the same database, in the same run.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use guestloop_kit::client::{channel, CallContext};
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use secrecy::{ExposeSecret, SecretString};
use tonic::service::interceptor::InterceptedService;

use crate::load::{self, Mode, Report};

/// The statements intake runs, in order, as one pgbench transaction.
pub const INTAKE_SQL: &str = r#"\set n random(1, 2000000000)
\set guest random(1, 5000)
\set room random(100, 599)
BEGIN;
INSERT INTO idempotency_keys (chain_id, method, request_id, request_hash) SELECT 'bench', 'CreateComplaint', 'pgb-' || :n::text || '-' || :client_id::text || '-' || txid_current(), '\x00' WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE chain_id = '' AND method = 'CreateComplaint' AND request_id = 'pgb-' || :n::text || '-' || :client_id::text || '-' || txid_current()) ON CONFLICT DO NOTHING;
SELECT property_id, settings, etag FROM property_settings WHERE property_id = ANY(ARRAY['bench-p', 'chain:' || 'bench']);
SELECT complaint_id FROM complaints WHERE guest_id = 'g' || :guest::text AND guest_id <> '' AND category = 'noise' AND created_at >= now() - interval '30 days' AND status <> 'cancelled' ORDER BY created_at DESC LIMIT 1;
SELECT count(*) FROM (SELECT 1 FROM complaints WHERE property_id = 'bench-p' AND room = :room::text AND room <> '' AND category = 'noise' AND created_at >= now() - interval '30 days' AND status <> 'cancelled' LIMIT 3) recent;
INSERT INTO complaints (complaint_id, chain_id, property_id, guest_id, room, channel, category, urgency, description, status, escalation_level, created_at, created_by, updated_at, etag) VALUES (gen_random_uuid(), 'bench', 'bench-p', 'g' || :guest::text, :room::text, 1, 'noise', 3, 'noisy neighbours', 'received', 'agent', now(), 'bench', now(), gen_random_uuid()) RETURNING complaint_id \gset c_
INSERT INTO known_properties (property_id, chain_id) VALUES ('bench-p', 'bench') ON CONFLICT DO NOTHING;
INSERT INTO complaint_timeline (complaint_id, at, actor, kind, from_status, to_status, note) VALUES (:c_complaint_id::uuid, now(), 'bench', 'filed', NULL, 'received', '');
UPDATE complaints SET status = 'received', updated_at = now(), next_escalation_at = now() + interval '12 hours', etag = gen_random_uuid() WHERE complaint_id = :c_complaint_id::uuid;
WITH stale AS (DELETE FROM complaint_clocks WHERE complaint_id = :c_complaint_id::uuid AND NOT (stage = ANY('{1,2,3,4,5}'))), marked AS (INSERT INTO kpi_dirty (complaint_id) VALUES (:c_complaint_id::uuid) ON CONFLICT (complaint_id) DO UPDATE SET marked_at = now()) INSERT INTO complaint_clocks (complaint_id, stage, target_minutes, target_days, started_at, stopped_at, due_at, breached_at) SELECT :c_complaint_id::uuid, * FROM unnest('{1,2,3,4,5}'::int2[], '{30,120,240,1440,1440}'::int4[], '{0,0,0,0,0}'::int4[], ARRAY[now(), now(), now(), now(), now()], ARRAY[NULL, NULL, NULL, NULL, NULL]::timestamptz[], ARRAY[now() + interval '30 minutes', now() + interval '2 hours', now() + interval '4 hours', now() + interval '24 hours', now() + interval '24 hours'], ARRAY[NULL, NULL, NULL, NULL, NULL]::timestamptz[]) ON CONFLICT (complaint_id, stage) DO UPDATE SET target_minutes = EXCLUDED.target_minutes, target_days = EXCLUDED.target_days, started_at = EXCLUDED.started_at, stopped_at = EXCLUDED.stopped_at, due_at = EXCLUDED.due_at, breached_at = EXCLUDED.breached_at;
INSERT INTO outbox_events (event_id, event_type, subject, chain_id, property_id, occur_time, payload_type, payload, traceparent) VALUES (gen_random_uuid(), 'complaints.complaint.filed', 'complaints/x', 'bench', 'bench-p', now(), 'type.googleapis.com/guestloop.complaints.v1.ComplaintChanged', repeat('x', 600)::bytea, '');
UPDATE idempotency_keys SET response = repeat('x', 600)::bytea WHERE chain_id = 'bench' AND method = 'CreateComplaint' AND request_id = 'pgb-' || :n::text || '-' || :client_id::text || '-' || txid_current();
COMMIT;
"#;

/// The KPI mark inside the intake transaction's clocks statement (as the service writes it).
const ROLLUP_MARK: &str = ", marked AS (INSERT INTO kpi_dirty (complaint_id) VALUES (:c_complaint_id::uuid) ON CONFLICT (complaint_id) DO UPDATE SET marked_at = now())";

/// The intake transaction without the KPI mark (the cost baseline for fresh rollups).
fn without_rollup_mark() -> String {
    INTAKE_SQL.replace(ROLLUP_MARK, "")
}

/// What pgbench reported.
#[derive(Debug)]
pub struct PgbenchResult {
    pub tps: f64,
    /// Per-transaction latencies in microseconds, when logged.
    pub latencies_us: Vec<u64>,
}

/// Runs pgbench with the intake transaction.
pub fn pgbench(
    bin_dir: &Path,
    url: &SecretString,
    script_text: &str,
    clients: usize,
    seconds: u64,
    rate: Option<f64>,
) -> anyhow::Result<PgbenchResult> {
    let work = std::env::temp_dir().join(format!("guestloop-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let script = work.join("intake.sql");
    std::fs::write(&script, script_text)?;
    let mut command = Command::new(bin_dir.join("pgbench"));
    command
        .env("PGOPTIONS", "-c search_path=complaints")
        .arg("-n")
        .arg("-M")
        .arg("prepared")
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg("2")
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script);
    if let Some(rate) = rate {
        command
            .arg("-R")
            .arg(format!("{rate:.0}"))
            .arg("-l")
            .arg(format!("--log-prefix={}", work.join("log").display()));
    }
    command.arg(url.expose_secret());
    let output = command
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", bin_dir.join("pgbench").display()))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {text}"))?;
    let mut latencies_us = Vec::new();
    if rate.is_some() {
        for entry in std::fs::read_dir(&work)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("log"))
            {
                for line in std::fs::read_to_string(&path)?.lines() {
                    // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
                    if let Some(us) = line
                        .split_whitespace()
                        .nth(2)
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        latencies_us.push(us);
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(PgbenchResult { tps, latencies_us })
}

fn percentile(sorted: &[u64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Numbers the filed complaints across every load run of this process: each call carries a
/// request id never used before, so no round is answered from the idempotency store.
static FILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_request_number() -> u64 {
    FILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Files complaints over gRPC under `mode`.
pub async fn file_load(
    label: &str,
    endpoint: &str,
    token: &str,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Report> {
    let context = CallContext::with_token(&SecretString::from(token.to_string()))?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(ComplaintsServiceClient::new(InterceptedService::new(
            channel(endpoint, Duration::from_secs(10))?,
            context.clone(),
        )));
    }
    let clients = Arc::new(clients);
    let run = std::process::id();
    load::run(label, mode, duration, move |i| {
        let mut client = clients[(i % clients.len() as u64) as usize].clone();
        let number = next_request_number();
        async move {
            client
                .create_complaint(pb::CreateComplaintRequest {
                    request_id: format!("bench-{run}-{number}"),
                    complaint: Some(pb::Complaint {
                        property_id: "bench-p".into(),
                        guest: Some(pb::GuestRef {
                            guest_id: format!("g{}", i % 5000),
                            ..Default::default()
                        }),
                        stay: Some(pb::StayContext {
                            room: (100 + i % 500).to_string(),
                            ..Default::default()
                        }),
                        channel: pb::Channel::Phone as i32,
                        category: "noise".into(),
                        urgency: pb::Urgency::Medium as i32,
                        description: "noisy neighbours".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    })
    .await
}

/// Waits until the rollup worker has folded in every marked complaint, so one measurement does
/// not pay for the previous one's backlog.
async fn settle(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    for _ in 0..600 {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.kpi_dirty")
            .fetch_one(pool)
            .await?;
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the KPI rollup did not catch up within 60 s")
}

/// Runs `work` while sampling the age of the oldest unfolded KPI mark; returns the work's
/// output and the largest lag seen, including the drain after the work ends.
async fn with_rollup_lag<T>(
    pool: &sqlx::PgPool,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<(T, f64)> {
    let worst = Arc::new(std::sync::Mutex::new(0.0f64));
    let sampler = {
        let pool = pool.clone();
        let worst = worst.clone();
        tokio::spawn(async move {
            loop {
                let lag: Option<f64> =
                    sqlx::query_scalar("SELECT extract(epoch FROM now() - min(marked_at))::float8 FROM complaints.kpi_dirty")
                        .fetch_one(&pool)
                        .await
                        .unwrap_or(None);
                if let (Some(lag), Ok(mut worst)) = (lag, worst.lock()) {
                    *worst = worst.max(lag);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let output = work.await;
    settle(pool).await?;
    sampler.abort();
    let lag = worst.lock().map(|w| *w).unwrap_or(f64::NAN);
    Ok((output, lag))
}

/// Rounds each side of a throughput comparison runs, alternating with the other side.
const ROUNDS: usize = 5;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the comparison: throughput at `clients` in flight, p99 at half of pgbench's rate, and
/// what keeping the KPI rollup fresh costs. Every measurement starts with the rollup caught up.
pub async fn compare(
    bin_dir: &Path,
    url: &SecretString,
    endpoint: &str,
    token: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url.expose_secret())
        .await?;
    compare_intake(
        bin_dir,
        url,
        &pool,
        clients,
        seconds,
        |label, mode, duration| file_load(label, endpoint, token, mode, duration),
    )
    .await?;
    rollup_cost(bin_dir, url, &pool, clients, seconds).await
}

/// Intake under `ours` (a load function: label, mode, duration) against pgbench: throughput at
/// `clients` in flight and p99 at half of pgbench's rate, each side alternating with the other
/// for ROUNDS rounds (commit latency on a shared machine drifts by several times within a
/// minute), compared by medians.
pub async fn compare_intake<F, Fut>(
    bin_dir: &Path,
    url: &SecretString,
    pool: &sqlx::PgPool,
    clients: usize,
    seconds: u64,
    ours: F,
) -> anyhow::Result<()>
where
    F: Fn(&'static str, Mode, Duration) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Report>>,
{
    let duration = Duration::from_secs(seconds);
    let closed = Mode::Closed {
        concurrency: clients,
    };
    ours("warm-up", closed, Duration::from_secs(2)).await?;
    let mut base_runs = Vec::new();
    let mut ours_runs = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        settle(pool).await?;
        base_runs.push(pgbench(bin_dir, url, INTAKE_SQL, clients, seconds, None)?.tps);
        settle(pool).await?;
        let run = ours("intake", closed, duration).await?;
        ours_runs.push(run.goodput());
        last = Some(run);
    }
    let base_tps = median(&mut base_runs);
    let ours_tps = median(&mut ours_runs);
    println!("closed loop, {clients} in flight, {seconds} s each, {ROUNDS} alternating rounds:");
    println!(
        "  pgbench (same SQL transaction)   {base_tps:>8.0} tps median (runs {})",
        list(&base_runs)
    );
    println!(
        "  intake                           {ours_tps:>8.0} ok/s median (runs {})",
        list(&ours_runs)
    );
    if let Some(last) = last {
        last.print();
    }
    println!(
        "  throughput ratio: {:.1} % of pgbench (goal ≥ 60 %)",
        100.0 * ours_tps / base_tps.max(1e-9)
    );

    let half = base_tps / 2.0;
    println!(
        "open loop at {half:.0}/s (half of pgbench's median peak), {ROUNDS} alternating rounds:"
    );
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        settle(pool).await?;
        let mut base_half = pgbench(bin_dir, url, INTAKE_SQL, clients, seconds, Some(half))?;
        base_half.latencies_us.sort_unstable();
        settle(pool).await?;
        let ours_half = ours(
            "intake @ half",
            Mode::Open {
                rate: half,
                max_in_flight: 256,
            },
            duration,
        )
        .await?;
        let base_p99 = percentile(&base_half.latencies_us, 0.99);
        println!(
            "  pgbench p50 {:.2} ms  p99 {:.2} ms ({} transactions)",
            percentile(&base_half.latencies_us, 0.5),
            base_p99,
            base_half.latencies_us.len()
        );
        ours_half.print();
        ratios.push(ours_half.percentile_ms(0.99) / base_p99.max(1e-9));
    }
    let listed = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "  p99 ratio: {:.2}× pgbench's median (rounds {listed}) (goal ≤ 3×)",
        median(&mut ratios)
    );
    Ok(())
}

/// The cost of fresh rollups: the same transaction with and without the KPI mark, the worker
/// folding marks in concurrently; the lag is the age of the oldest unfolded mark.
async fn rollup_cost(
    bin_dir: &Path,
    url: &SecretString,
    pool: &sqlx::PgPool,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let (mut without, mut with, mut lag) = (Vec::new(), Vec::new(), 0.0f64);
    for _ in 0..ROUNDS {
        settle(pool).await?;
        without.push(pgbench(bin_dir, url, &without_rollup_mark(), clients, seconds, None)?.tps);
        settle(pool).await?;
        let (run, worst) = with_rollup_lag(pool, async {
            pgbench(bin_dir, url, INTAKE_SQL, clients, seconds, None)
        })
        .await?;
        with.push(run?.tps);
        lag = lag.max(worst);
    }
    let (without_tps, with_tps) = (median(&mut without), median(&mut with));
    println!(
        "keeping KPI rollups fresh (pgbench, {clients} clients, {ROUNDS} alternating rounds):"
    );
    println!(
        "  without KPI marks {without_tps:>8.0} tps median (runs {})",
        list(&without)
    );
    println!(
        "  with KPI marks    {with_tps:>8.0} tps median (runs {})  (cost {:.1} %, goal ≤ 15 %)",
        list(&with),
        100.0 * (1.0 - with_tps / without_tps.max(1e-9))
    );
    println!("  largest rollup lag (oldest unfolded change) {lag:.2} s (goal ≤ 5 s)");
    Ok(())
}

/// Files complaints as guests through the gateway's HTTP/JSON API (HTTP → gateway → gRPC →
/// complaints, with CRM's tier lookup), over keep-alive HTTP/1.1 connections.
pub async fn file_load_http(
    label: &str,
    http: std::net::SocketAddr,
    tokens: Arc<Vec<String>>,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Report> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let run = std::process::id();
    load::run(label, mode, duration, move |i| {
        let client = client.clone();
        let token = tokens[(i % tokens.len() as u64) as usize].clone();
        let number = next_request_number();
        async move {
            let body = format!(
                r#"{{"request_id":"http-{run}-{number}","property_id":"bench-p","category":"noise","description":"noisy neighbours","room":"{}"}}"#,
                100 + i % 500
            );
            let request = http::Request::post(format!("http://{http}/v1/me/complaints"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(body)))
                .map_err(|_| tonic::Code::InvalidArgument)?;
            let response = client.request(request).await.map_err(|_| tonic::Code::Unavailable)?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            match status.as_u16() {
                201 => Ok(()),
                429 => Err(tonic::Code::ResourceExhausted),
                503 => Err(tonic::Code::Unavailable),
                400 => Err(tonic::Code::InvalidArgument),
                _ => Err(tonic::Code::Internal),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_baseline_differs_by_the_mark_alone() {
        let without = super::without_rollup_mark();
        assert!(super::INTAKE_SQL.contains(super::ROLLUP_MARK));
        assert!(!without.contains("kpi_dirty"));
        assert_eq!(
            without.len() + super::ROLLUP_MARK.len(),
            super::INTAKE_SQL.len()
        );
    }
}
