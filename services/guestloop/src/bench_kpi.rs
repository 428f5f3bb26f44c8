//! `guestloop bench kpi`: KPI latency from the maintained rollup against the raw GROUP BY over
//! the same complaints, at growing sizes, with the sums checked equal.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use guestloop_complaints::store::kpis::{query, rebuild, Scope, Source};
use sqlx::PgPool;

/// Properties the synthetic complaints are spread over.
pub(crate) const PROPERTIES: i64 = 200;

/// The chain of the synthetic complaints: theirs alone, so that complaints other benchmarks
/// leave in a reused database neither count towards a size nor enter the chain's rollups.
pub(crate) const CHAIN: &str = "bench-kpi";

/// What the synthetic properties' ids start with (followed by 0..`PROPERTIES`): like the chain,
/// no other complaint in the database uses them.
const PROPERTY_PREFIX: &str = "bench-kpi-p";

/// The synthetic properties' ids.
pub(crate) fn property_ids() -> Vec<String> {
    (0..PROPERTIES)
        .map(|n| format!("{PROPERTY_PREFIX}{n}"))
        .collect()
}

/// Adds synthetic complaints until the database holds `target` of them, spread over
/// `PROPERTIES` properties and the 365 days before `end`.
pub(crate) async fn grow_to(pool: &PgPool, target: i64, end: NaiveDate) -> anyhow::Result<()> {
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints WHERE chain_id = $1")
        .bind(CHAIN)
        .fetch_one(pool)
        .await?;
    let mut start = have;
    while start < target {
        let batch = (target - start).min(500_000);
        sqlx::query(
            "INSERT INTO complaints (complaint_id, chain_id, property_id, guest_id, channel, category, department, urgency, \
               description, status, reopen_count, escalation_count, first_escalated_at, repeat_issue, csat, nps, \
               created_at, created_by, updated_at, first_response_at, first_resolved_at, resolved_at, etag) \
             SELECT gen_random_uuid(), $5, $6 || (n % $3), 'g' || (n % 50000), 1 + n % 7, \
               (ARRAY['noise','wifi','cleanliness','plumbing','billing'])[1 + n % 5], \
               (ARRAY['front_office','housekeeping','engineering'])[1 + n % 3], 1 + n % 4, 'bench', \
               CASE WHEN n % 10 = 0 THEN 'received' ELSE 'closed' END, (n % 23 = 0)::int, (n % 17 = 0)::int, \
               CASE WHEN n % 17 = 0 THEN ts + interval '40 minutes' END, n % 31 = 0, \
               CASE WHEN n % 3 = 0 THEN 1 + n % 5 END, CASE WHEN n % 4 = 0 THEN n % 11 END, \
               ts, 'bench', ts, ts + interval '12 minutes', \
               CASE WHEN n % 10 <> 0 THEN ts + interval '3 hours' END, CASE WHEN n % 10 <> 0 THEN ts + interval '3 hours' END, \
               gen_random_uuid() \
             FROM (SELECT n, ($4::date - (n % 365) * interval '1 day' + (n % 86400) * interval '1 second')::timestamptz AS ts \
                   FROM generate_series($1::bigint, $2::bigint) AS n) s",
        )
        .bind(start)
        .bind(start + batch - 1)
        .bind(PROPERTIES)
        .bind(end)
        .bind(CHAIN)
        .bind(PROPERTY_PREFIX)
        .execute(pool)
        .await?;
        start += batch;
    }
    let mut conn = pool.acquire().await?;
    sqlx::query("ANALYZE complaints")
        .execute(&mut *conn)
        .await?;
    let mut tx = pool.begin().await?;
    rebuild(&mut tx).await?;
    tx.commit().await?;
    // The rebuild leaves the old rollup rows dead; autovacuum would clear them before long, so
    // measure the tables as they would be then.
    sqlx::raw_sql("VACUUM ANALYZE kpi_daily")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE kpi_monthly")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE kpi_chain_daily")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn timed(
    pool: &PgPool,
    source: Source,
    scope: Scope<'_>,
    from: NaiveDate,
    to: NaiveDate,
    runs: u32,
) -> anyhow::Result<(Duration, Vec<guestloop_complaints::store::kpis::Group>)> {
    let mut best = Duration::MAX;
    let mut last = Vec::new();
    for _ in 0..runs {
        let mut conn = pool.acquire().await?;
        let started = Instant::now();
        last = query(&mut conn, source, scope, from, to, true, true).await?;
        best = best.min(started.elapsed());
    }
    Ok((best, last))
}

/// Runs the comparison at each size in `sizes`, for a month-aligned and a day-aligned period.
pub async fn run(pool: &PgPool, sizes: &[i64]) -> anyhow::Result<()> {
    use chrono::Datelike;
    let end = chrono::Utc::now().date_naive();
    let this_month = chrono::NaiveDate::from_ymd_opt(end.year(), end.month(), 1).unwrap_or(end);
    let windows = [
        (
            "last 3 whole months",
            this_month - chrono::Months::new(3),
            this_month,
        ),
        ("last 90 days", end - chrono::Duration::days(90), end),
    ];
    let all = property_ids();
    println!(
        "KPI query: the whole chain (all {PROPERTIES} properties), breakdowns by property/category/channel/department/day"
    );
    println!(
        "{:>12} {:<20} {:>14} {:>14} {:>10}  sums",
        "complaints", "period", "raw GROUP BY", "rollup", "speed-up"
    );
    for &size in sizes {
        let seeding = Instant::now();
        grow_to(pool, size, end).await?;
        let seeded = seeding.elapsed();
        for (label, from, to) in windows {
            let (raw_time, raw) =
                timed(pool, Source::Raw, Scope::properties(&all), from, to, 2).await?;
            let (rollup_time, rollup) =
                timed(pool, Source::Rollup, Scope::chain(CHAIN, &all), from, to, 5).await?;
            let equal = raw == rollup;
            println!(
                "{:>12} {:<20} {:>11.1} ms {:>11.2} ms {:>9.0}×  {} (seeded in {:.0} s)",
                size,
                label,
                raw_time.as_secs_f64() * 1000.0,
                rollup_time.as_secs_f64() * 1000.0,
                raw_time.as_secs_f64() / rollup_time.as_secs_f64().max(1e-9),
                if equal { "equal" } else { "DIFFERENT" },
                seeded.as_secs_f64()
            );
            if !equal {
                anyhow::bail!("rollup and raw sums differ at {size} complaints ({label})");
            }
        }
    }
    Ok(())
}
