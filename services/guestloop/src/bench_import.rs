//! `guestloop bench import`: N generated stays (default 1M) imported in one run by PostgreSQL's
//! own `COPY` into a copy of the stays table, by multi-row `INSERT`s (1,000 rows per statement, on
//! one connection and on as many as the importer has workers) into another copy, and by
//! `guestloop import stays` through CRM's gRPC `UpsertStays` into the real table (which also
//! validates every row and posts the points each checked-out stay earns). Then the same feed is
//! sent again with one stay in ten corrected, as a PMS re-sends its stays: the unchanged ones
//! are left alone and the corrected ones give points back. Prints rows/s, the importer's ratio
//! to each baseline, the corrections posted and how many accounts' balances differ from their
//! ledgers (0).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestloop_kit::auth::Role;
use guestloop_kit::config::Settings;
use guestloop_kit::server;
use sqlx::{PgPool, Postgres, QueryBuilder};

const COLUMNS: &str =
    "property_id, pms_reservation_id, guest_id, arrival_date, departure_date, room, \
    rate_currency, rate_minor, spend_currency, spend_minor, status";

/// How many guests the generated feed's stays belong to (`bench-guest-0` …).
const GUESTS: u64 = 100_000;

/// Writes `rows` deterministic stays: 200 properties, 100,000 guests, stays of 1–7 nights over
/// three years, 80 % checked out, 10 % cancelled, 10 % booked. With `corrected`, the same feed as
/// a PMS sends it again after correcting one stay in ten, all of them checked out: a night
/// fewer, or cancelled when it had one night.
fn generate(path: &Path, rows: u64, corrected: bool) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{}", COLUMNS.replace(' ', ""))?;
    let start =
        chrono::NaiveDate::from_ymd_opt(2023, 1, 1).ok_or_else(|| anyhow::anyhow!("date"))?;
    for n in 0..rows {
        let arrival = start + chrono::Duration::days((n * 7919 % 1095) as i64);
        let mut nights = 1 + (n % 7) as i64;
        let mut status = match n % 10 {
            0 => "cancelled",
            1 => "booked",
            _ => "checked_out",
        };
        if corrected && n % 10 == 2 {
            if nights > 1 {
                nights -= 1;
            } else {
                status = "cancelled";
            }
        }
        let departure = arrival + chrono::Duration::days(nights);
        writeln!(
            out,
            "p{},R{n:08},bench-guest-{},{arrival},{departure},{},EUR,{},EUR,{},{status}",
            n % 200,
            n % GUESTS,
            100 + n % 400,
            9_000 + (n % 50) * 100,
            (n % 13) * 2_500,
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

async fn scratch_table(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("CREATE TABLE {name} (LIKE stays INCLUDING ALL)"))
        .execute(pool)
        .await?;
    Ok(())
}

async fn copy(pool: &PgPool, path: &Path) -> anyhow::Result<Duration> {
    scratch_table(pool, "bench_copy").await?;
    let bytes = tokio::fs::read(path).await?;
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY bench_copy ({COLUMNS}) FROM STDIN WITH (FORMAT csv, HEADER true)"
        ))
        .await?;
    for chunk in bytes.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    Ok(started.elapsed())
}

/// Multi-row INSERTs of 1,000 rows, `workers` statements in flight.
async fn insert(pool: &PgPool, path: &Path, workers: usize) -> anyhow::Result<Duration> {
    scratch_table(pool, "bench_insert").await?;
    let text = tokio::fs::read_to_string(path).await?;
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(str::to_string).collect())
        .collect();
    let chunks: Vec<&[Vec<String>]> = rows.chunks(1_000).collect();
    let started = Instant::now();
    let mut stream = futures::stream::iter(chunks.into_iter().map(|chunk| {
        let pool = pool.clone();
        async move {
            let mut query: QueryBuilder<Postgres> =
                QueryBuilder::new(format!("INSERT INTO bench_insert ({COLUMNS}) "));
            query.push_values(chunk, |mut b, r| {
                b.push_bind(&r[0])
                    .push_bind(&r[1])
                    .push_bind(&r[2])
                    .push_bind(r[3].parse::<chrono::NaiveDate>().unwrap_or_default())
                    .push_bind(r[4].parse::<chrono::NaiveDate>().unwrap_or_default())
                    .push_bind(&r[5])
                    .push_bind(&r[6])
                    .push_bind(r[7].parse::<i64>().unwrap_or_default())
                    .push_bind(&r[8])
                    .push_bind(r[9].parse::<i64>().unwrap_or_default())
                    .push_bind(&r[10]);
            });
            query.build().execute(&pool).await.map(|_| ())
        }
    }))
    .buffer_unordered(workers);
    use futures::StreamExt;
    while let Some(result) = stream.next().await {
        result?;
    }
    Ok(started.elapsed())
}

/// The machine's CPU time so far (busy, all), from `/proc/stat` (Linux); `None` elsewhere.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let all: u64 = fields.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((all - idle, all))
}

/// This process's CPU time so far (user + system), in the same ticks as `/proc/stat`.
fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // plain. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Some(fields.first()? + fields.get(1)?)
}

/// The share of the machine's CPU that was busy during a phase, and the part of it this
/// process (bench client, CRM server) used; the rest is PostgreSQL and the machine's other work.
#[derive(Clone, Copy, Default)]
struct Cpu {
    busy: Option<f64>,
    own: Option<f64>,
}

/// Runs `phase`, returning its result and the CPU used meanwhile.
async fn with_cpu<T>(
    phase: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Cpu)> {
    let (before, own_before) = (cpu_ticks(), own_ticks());
    let result = phase.await?;
    let (after, own_after) = (cpu_ticks(), own_ticks());
    let mut cpu = Cpu::default();
    if let (Some((b0, a0)), Some((b1, a1))) = (before, after) {
        if a1 > a0 {
            let all = (a1 - a0) as f64;
            cpu.busy = Some(100.0 * (b1 - b0) as f64 / all);
            if let (Some(o0), Some(o1)) = (own_before, own_after) {
                cpu.own = Some(100.0 * o1.saturating_sub(o0) as f64 / all);
            }
        }
    }
    Ok((result, cpu))
}

fn percent_text(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_string(), |b| format!("{b:.0} %"))
}

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-9)
}

pub async fn run(
    mut settings: Settings,
    rows: u64,
    batch: usize,
    workers: usize,
) -> anyhow::Result<()> {
    crate::dev_secret::ensure(&mut settings)?;
    settings.database.max_connections = (workers as u32 + 4).max(16);
    settings.database.statement_timeout_ms = 1_800_000;
    settings.server.request_timeout_ms = 120_000;
    settings.server.max_message_bytes = 64 * 1024 * 1024;
    let (url, _embedded) = crate::bench::bench_database(&settings).await?;
    let crm = server::start(
        &guestloop_crm::DEFINITION,
        Arc::new(settings.clone()),
        &url,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let options = guestloop_kit::db::connect_options(&url, "crm", &settings.database)?;
    let pool = guestloop_kit::db::pool(options, &settings.database);
    let dir = std::env::temp_dir().join(format!("guestloop-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("stays.csv");
    let bytes = generate(&file, rows, false)?;
    let corrections_file = dir.join("stays-corrected.csv");
    let corrections_bytes = generate(&corrections_file, rows, true)?;
    // The importer writes into the real tables: start without any row an earlier run left
    // (stays, the points they earned, the accounts they opened), or a rerun would find every
    // earning already posted and skip that work.
    for statement in [
        "DELETE FROM stays WHERE pms_reservation_id LIKE 'R%' AND property_id LIKE 'p%'",
        "DELETE FROM ledger WHERE source LIKE 'stay:p%/R%'",
        "DELETE FROM loyalty_accounts WHERE guest_id LIKE 'bench-guest-%'",
        "DELETE FROM guests WHERE guest_id LIKE 'bench-guest-%'",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    // The feed's guests are members CRM holds, as a real feed's are: the importer resolves each
    // one (merge redirects, tier, chain) and locks the profiles it credits.
    sqlx::query(&format!(
        "INSERT INTO guests (guest_id, chain_id, given_name, family_name) \
         SELECT 'bench-guest-' || n, 'bench', 'Bench', 'Guest ' || n FROM generate_series(0, {}) AS n",
        GUESTS - 1
    ))
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM (ANALYZE) guests, stays, ledger, loyalty_accounts")
        .execute(&pool)
        .await?;
    let (copied, copy_busy) = with_cpu(copy(&pool, &file)).await?;
    let (inserted_one, insert_one_busy) = with_cpu(insert(&pool, &file, 1)).await?;
    let (inserted, insert_busy) = with_cpu(insert(&pool, &file, workers)).await?;
    let token = crate::bench::bench_token(&settings, Role::ChainAdmin)?;
    let endpoint = format!("http://{}", crm.local_addr);
    let (stats, import_busy) = with_cpu(crate::import::import_stays(
        crate::import::client(&endpoint, &token)?,
        std::io::BufReader::new(std::fs::File::open(&file)?),
        Some(bytes),
        batch,
        workers,
        false,
    ))
    .await?;
    let earned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger WHERE source LIKE 'stay:p%/R%'")
            .fetch_one(&pool)
            .await?;
    // The PMS sends the whole feed again with one stay in ten corrected: nine in ten are
    // unchanged, the rest give back a night's points or all of them.
    let (resent, resend_busy) = with_cpu(crate::import::import_stays(
        crate::import::client(&endpoint, &token)?,
        std::io::BufReader::new(std::fs::File::open(&corrections_file)?),
        Some(corrections_bytes),
        batch,
        workers,
        false,
    ))
    .await?;
    let given_back: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger WHERE source LIKE 'stay:p%/R%#%'")
            .fetch_one(&pool)
            .await?;
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT a.guest_id FROM loyalty_accounts a JOIN ledger l USING (guest_id) \
         WHERE a.guest_id LIKE 'bench-guest-%' GROUP BY a.guest_id, a.balance HAVING a.balance <> sum(l.points)) x",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "{rows} stays ({:.0} MB CSV), importer: batches of {batch}, {workers} in flight",
        bytes as f64 / 1e6
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    // CPU time per row, all processes (PostgreSQL, this one): what a path costs whatever the
    // machine; with every core busy, a path cannot go faster than cores / that time.
    let cpu_per_row = |elapsed: Duration, busy: Cpu| {
        busy.busy
            .map(|b| b / 100.0 * cores * elapsed.as_secs_f64() * 1e6 / rows.max(1) as f64)
    };
    println!(
        "{:<44} {:>9} {:>12} {:>9} {:>10} {:>11}",
        "path", "seconds", "rows/s", "CPU busy", "guestloop", "CPU µs/row"
    );
    for (path, elapsed, busy) in [
        (
            "COPY FROM STDIN (scratch copy of stays)".to_string(),
            copied,
            copy_busy,
        ),
        (
            "multi-row INSERT, 1000 rows, 1 connection".to_string(),
            inserted_one,
            insert_one_busy,
        ),
        (
            format!("multi-row INSERT, 1000 rows, {workers} connections"),
            inserted,
            insert_busy,
        ),
        (
            "guestloop import stays (gRPC UpsertStays)".to_string(),
            stats.elapsed,
            import_busy,
        ),
        (
            "the same, sent again with 10 % corrected".to_string(),
            resent.elapsed,
            resend_busy,
        ),
    ] {
        println!(
            "{path:<44} {:>9.1} {:>12.0} {:>9} {:>10} {:>11}",
            elapsed.as_secs_f64(),
            rate(rows, elapsed),
            percent_text(busy.busy),
            percent_text(busy.own),
            cpu_per_row(elapsed, busy).map_or_else(|| "-".to_string(), |us| format!("{us:.1}"))
        );
    }
    if let (Some(importer), Some(insert)) = (
        cpu_per_row(stats.elapsed, import_busy),
        cpu_per_row(inserted_one, insert_one_busy),
    ) {
        println!(
            "CPU per row: importer {importer:.1} µs, INSERT {insert:.1} µs ({:.1}x); with all {cores:.0} \
             cores busy the importer could reach {:.0} rows/s, 2x INSERT on 1 connection is {:.0}",
            importer / insert,
            cores * 1e6 / importer,
            2.0 * rate(rows, inserted_one)
        );
    }
    println!(
        "importer / COPY = {:.0} % (goal >= 50 %); importer / INSERT = {:.2}x on 1 connection, \
         {:.2}x on {workers} (goal >= 2x); {} inserted, {} earnings posted (the baselines write \
         stays only)",
        100.0 * stats.rows_per_second() / rate(rows, copied),
        stats.rows_per_second() / rate(rows, inserted_one),
        stats.rows_per_second() / rate(rows, inserted),
        stats.inserted,
        earned
    );
    println!(
        "sent again: {} updated, {} unchanged, {given_back} corrections posted; accounts whose \
         balance differs from their ledger: {unbalanced}",
        resent.updated, resent.unchanged
    );
    for table in ["bench_copy", "bench_insert"] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(&pool)
            .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    crm.shutdown().await
}
