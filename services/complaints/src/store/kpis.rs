//! KPI rollups: the worker that keeps `kpi_daily` equal to the grouped per-complaint facts, and
//! the queries over it (or, for comparison, over the raw facts).

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use guestloop_kit::ApiResult;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// The additive counters of one complaint, in `kpi_daily` column order.
pub const COUNTERS: [&str; 30] = [
    "complaints",
    "responded",
    "first_response_seconds",
    "resolved",
    "first_resolution_seconds",
    "currently_resolved",
    "total_resolution_seconds",
    "resolved_first_contact",
    "rated",
    "csat_sum",
    "csat_top_two",
    "nps_answers",
    "nps_promoters",
    "nps_detractors",
    "escalated",
    "escalation_seconds",
    "reopened",
    "repeat_issues",
    "compensation_points",
    "compensation_minor",
    "met_acknowledge",
    "missed_acknowledge",
    "met_investigation",
    "missed_investigation",
    "met_remedy_plan",
    "missed_remedy_plan",
    "met_answer",
    "missed_answer",
    "met_resolution",
    "missed_resolution",
];

/// Index of a counter in [`COUNTERS`].
pub fn counter(name: &str) -> usize {
    COUNTERS.iter().position(|c| *c == name).unwrap_or(0)
}

/// Counters that are all zero, one per [`COUNTERS`].
fn zeros() -> Vec<i64> {
    vec![0; COUNTERS.len()]
}

/// Adds `values` into `total`, counter by counter.
fn add_into(total: &mut [i64], values: &[i64]) {
    for (t, v) in total.iter_mut().zip(values) {
        *t += v;
    }
}

/// `sum(c)::bigint AS c` for every counter: the select list of a grouped rollup query.
fn summed_counters() -> String {
    COUNTERS
        .iter()
        .map(|c| format!("sum({c})::bigint AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rollup key of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Key {
    /// Absent in facts applied before chain-wide rollups existed (the migration adds it).
    #[serde(default)]
    chain_id: String,
    property_id: String,
    day: NaiveDate,
    category: String,
    channel: i16,
    department: String,
}

/// What a complaint contributes, as stored in `kpi_applied_facts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fact {
    key: Key,
    values: Vec<i64>,
}

fn fact_from_row(row: &sqlx::postgres::PgRow) -> Result<(Uuid, Fact), sqlx::Error> {
    let key = Key {
        chain_id: row.try_get("chain_id")?,
        property_id: row.try_get("property_id")?,
        day: row.try_get("day")?,
        category: row.try_get("category")?,
        channel: row.try_get("channel")?,
        department: row.try_get("department")?,
    };
    let values = COUNTERS
        .iter()
        .map(|c| row.try_get::<i64, _>(*c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((row.try_get("complaint_id")?, Fact { key, values }))
}

/// The most marked complaints one rollup step folds in.
pub const BATCH: usize = 2_000;

/// Applies the changes of up to one batch of marked complaints; returns how many it applied.
pub async fn roll_up_batch(pool: &PgPool) -> ApiResult<usize> {
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM kpi_dirty WHERE complaint_id IN \
         (SELECT complaint_id FROM kpi_dirty ORDER BY marked_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING complaint_id",
    )
    .bind(BATCH as i64)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let new_rows = sqlx::query(&format!(
        "SELECT complaint_id, chain_id, property_id, day, category, channel, department, {} \
         FROM complaint_kpi_facts WHERE complaint_id = ANY($1)",
        COUNTERS.join(", ")
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut new_facts = HashMap::new();
    for row in &new_rows {
        let (id, fact) = fact_from_row(row)?;
        new_facts.insert(id, fact);
    }
    let old_rows: Vec<(Uuid, sqlx::types::Json<Fact>)> = sqlx::query_as(
        "SELECT complaint_id, fact FROM kpi_applied_facts WHERE complaint_id = ANY($1) FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;

    let mut deltas: HashMap<Key, Vec<i64>> = HashMap::new();
    for (_, old) in &old_rows {
        let removed: Vec<i64> = old.values.iter().map(|v| -v).collect();
        add_into(
            deltas.entry(old.key.clone()).or_insert_with(zeros),
            &removed,
        );
    }
    for fact in new_facts.values() {
        add_into(
            deltas.entry(fact.key.clone()).or_insert_with(zeros),
            &fact.values,
        );
    }
    // Summed per daily key (facts differing only in chain share a row), in a fixed order that
    // keeps concurrent workers from deadlocking on rollup rows.
    type DailyKey<'k> = (&'k str, NaiveDate, &'k str, i16, &'k str);
    let mut daily: std::collections::BTreeMap<DailyKey<'_>, Vec<i64>> =
        std::collections::BTreeMap::new();
    for (key, delta) in deltas.iter().filter(|(_, d)| d.iter().any(|v| *v != 0)) {
        let entry = daily
            .entry((
                key.property_id.as_str(),
                key.day,
                key.category.as_str(),
                key.channel,
                key.department.as_str(),
            ))
            .or_insert_with(zeros);
        add_into(entry, delta);
    }
    if !daily.is_empty() {
        let sql = additive_upsert(
            "kpi_daily",
            &[
                ("property_id", "text"),
                ("day", "date"),
                ("category", "text"),
                ("channel", "smallint"),
                ("department", "text"),
            ],
            &[],
        );
        let query = sqlx::query(&sql)
            .bind(daily.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.2).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.3).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.4).collect::<Vec<_>>());
        bind_counters(query, daily.values().map(Vec::as_slice))
            .execute(&mut *tx)
            .await?;
    }
    apply_monthly(&mut tx, &deltas).await?;
    apply_chain(&mut tx, &deltas).await?;
    let (kept, facts): (Vec<Uuid>, Vec<sqlx::types::Json<&Fact>>) = ids
        .iter()
        .filter_map(|id| new_facts.get(id).map(|f| (*id, sqlx::types::Json(f))))
        .unzip();
    let gone: Vec<Uuid> = ids
        .iter()
        .filter(|id| !new_facts.contains_key(id))
        .copied()
        .collect();
    if !kept.is_empty() {
        sqlx::query(
            "INSERT INTO kpi_applied_facts (complaint_id, fact) \
             SELECT * FROM unnest($1::uuid[], $2::jsonb[]) \
             ON CONFLICT (complaint_id) DO UPDATE SET fact = EXCLUDED.fact",
        )
        .bind(&kept)
        .bind(&facts)
        .execute(&mut *tx)
        .await?;
    }
    if !gone.is_empty() {
        sqlx::query("DELETE FROM kpi_applied_facts WHERE complaint_id = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

fn month_of(day: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
}

/// The first day of the seven-day block holding `day`: months split into the days 1-7, 8-14,
/// 15-21, 22-28 and 29 to the end.
pub fn block_of(day: NaiveDate) -> NaiveDate {
    let first = (day.day0() / 7).min(4) * 7 + 1;
    NaiveDate::from_ymd_opt(day.year(), day.month(), first).unwrap_or(day)
}

/// The day after the block starting at `start` (see [`block_of`]).
fn block_end(start: NaiveDate) -> NaiveDate {
    if start.day() >= 29 {
        next_month(start)
    } else {
        start + chrono::Duration::days(7)
    }
}

/// The whole months inside `[from, to)`, as `[first, end)`, if there are any.
fn whole_months(from: NaiveDate, to: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let first = if from.day() == 1 {
        from
    } else {
        next_month(from)
    };
    let end = month_of(to);
    (first < end).then_some((first, end))
}

fn next_month(day: NaiveDate) -> NaiveDate {
    month_of(day)
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(NaiveDate::MAX)
}

/// The (dimension, key) rows of the chain rollups a full rollup key contributes to: the total
/// and the category, channel and department breakdowns.
fn chain_keys(key: &Key) -> [(&'static str, String); 4] {
    [
        ("total", String::new()),
        ("category", key.category.clone()),
        ("channel", key.channel.to_string()),
        ("department", key.department.clone()),
    ]
}

/// The (dimension, key) rows of `kpi_monthly` a full rollup key contributes to: those of
/// [`chain_keys`], its day and its seven-day block.
fn monthly_keys(key: &Key) -> impl Iterator<Item = (&'static str, String)> {
    chain_keys(key).into_iter().chain([
        ("day", key.day.to_string()),
        ("block", block_of(key.day).to_string()),
    ])
}

/// Folds daily deltas into the chain-wide rollups (per day and per month), in a fixed order (no
/// deadlocks between workers).
async fn apply_chain(conn: &mut PgConnection, deltas: &HashMap<Key, Vec<i64>>) -> ApiResult<()> {
    type ChainKey<'k> = (&'k str, &'static str, NaiveDate, String);
    let mut daily: std::collections::BTreeMap<ChainKey<'_>, Vec<i64>> =
        std::collections::BTreeMap::new();
    let mut monthly: std::collections::BTreeMap<ChainKey<'_>, Vec<i64>> =
        std::collections::BTreeMap::new();
    for (key, delta) in deltas {
        if delta.iter().all(|v| *v == 0) {
            continue;
        }
        for (dimension, value) in chain_keys(key) {
            for (rows, period) in [(&mut daily, key.day), (&mut monthly, month_of(key.day))] {
                let entry = rows
                    .entry((key.chain_id.as_str(), dimension, period, value.clone()))
                    .or_insert_with(zeros);
                add_into(entry, delta);
            }
        }
    }
    for (table, period, rows) in [
        ("kpi_chain_daily", "day", &daily),
        ("kpi_chain_monthly", "month", &monthly),
    ] {
        if rows.is_empty() {
            continue;
        }
        let sql = additive_upsert(
            table,
            &[
                ("chain_id", "text"),
                ("dimension", "text"),
                (period, "date"),
                ("key", "text"),
            ],
            &[],
        );
        let query = sqlx::query(&sql)
            .bind(rows.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(rows.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(rows.keys().map(|k| k.2).collect::<Vec<_>>())
            .bind(rows.keys().map(|k| k.3.as_str()).collect::<Vec<_>>());
        bind_counters(query, rows.values().map(Vec::as_slice))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Folds daily deltas into the monthly rollup, in a fixed order (no deadlocks between workers).
async fn apply_monthly(conn: &mut PgConnection, deltas: &HashMap<Key, Vec<i64>>) -> ApiResult<()> {
    type MonthlyKey<'k> = (&'k str, NaiveDate, &'static str, String);
    // Per row: the chain it is filed under when created, and the summed delta.
    let mut monthly: std::collections::BTreeMap<MonthlyKey<'_>, (&str, Vec<i64>)> =
        std::collections::BTreeMap::new();
    for (key, delta) in deltas {
        if delta.iter().all(|v| *v == 0) {
            continue;
        }
        for (dimension, value) in monthly_keys(key) {
            let entry = monthly
                .entry((
                    key.property_id.as_str(),
                    month_of(key.day),
                    dimension,
                    value,
                ))
                .or_insert_with(|| (key.chain_id.as_str(), zeros()));
            add_into(&mut entry.1, delta);
        }
    }
    if monthly.is_empty() {
        return Ok(());
    }
    let sql = additive_upsert(
        "kpi_monthly",
        &[
            ("property_id", "text"),
            ("month", "date"),
            ("dimension", "text"),
            ("key", "text"),
        ],
        &[("chain_id", "text")],
    );
    let query = sqlx::query(&sql)
        .bind(monthly.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.2).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.3.as_str()).collect::<Vec<_>>())
        .bind(monthly.values().map(|v| v.0).collect::<Vec<_>>());
    bind_counters(query, monthly.values().map(|v| v.1.as_slice()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One statement that adds per-key counter deltas into a rollup `table`: the key columns
/// (name, SQL type), then the `attributes` (set when a row is created, never changed), then
/// [`COUNTERS`] arrive as parallel arrays, one element per key; the keys must be distinct.
fn additive_upsert(table: &str, keys: &[(&str, &str)], attributes: &[(&str, &str)]) -> String {
    let key_columns = keys
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    let columns = keys
        .iter()
        .chain(attributes)
        .map(|(name, _)| *name)
        .chain(COUNTERS.iter().copied())
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = keys
        .iter()
        .chain(attributes)
        .map(|(_, ty)| *ty)
        .chain(COUNTERS.iter().map(|_| "bigint"))
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}[]", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let sets = COUNTERS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) \
         ON CONFLICT ({key_columns}) DO UPDATE SET {sets}"
    )
}

/// Binds the counters of `rows` as one array per counter, in [`COUNTERS`] order.
fn bind_counters<'q, 'r>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: impl Iterator<Item = &'r [i64]>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let rows: Vec<&[i64]> = rows.collect();
    for i in 0..COUNTERS.len() {
        query = query.bind(
            rows.iter()
                .map(|r| r.get(i).copied().unwrap_or(0))
                .collect::<Vec<i64>>(),
        );
    }
    query
}

/// Rebuilds every rollup from the facts (after bulk loads). Call it inside a transaction: it
/// locks the rollup tables against the rollup worker until that transaction ends, so the worker
/// cannot add a row between the delete and the insert.
pub async fn rebuild(conn: &mut PgConnection) -> ApiResult<()> {
    sqlx::query(
        "LOCK TABLE kpi_dirty, kpi_daily, kpi_monthly, kpi_chain_daily, kpi_chain_monthly, \
         kpi_applied_facts IN SHARE ROW EXCLUSIVE MODE",
    )
    .execute(&mut *conn)
    .await?;
    let cols = COUNTERS.join(", ");
    let sums = COUNTERS
        .iter()
        .map(|c| format!("sum({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    for table in [
        "kpi_dirty",
        "kpi_daily",
        "kpi_monthly",
        "kpi_chain_daily",
        "kpi_chain_monthly",
        "kpi_applied_facts",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *conn)
            .await?;
    }
    // The facts are grouped once, with their chain; every rollup is summed from that.
    sqlx::query("DROP TABLE IF EXISTS pg_temp.kpi_rebuild")
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TEMP TABLE kpi_rebuild AS \
         SELECT chain_id, property_id, day, category, channel, department, {sums_as} \
         FROM complaint_kpi_facts GROUP BY chain_id, property_id, day, category, channel, department",
        sums_as = summed_counters()
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO kpi_daily (property_id, day, category, channel, department, {cols}) \
         SELECT property_id, day, category, channel, department, {sums} FROM kpi_rebuild \
         GROUP BY property_id, day, category, channel, department"
    ))
    .execute(&mut *conn)
    .await?;
    for (dimension, key) in [
        ("total", "''"),
        ("category", "category"),
        ("channel", "channel::text"),
        ("department", "department"),
        ("day", "day::text"),
        (
            "block",
            "(date_trunc('month', day)::date + ((extract(day FROM day)::int - 1) / 7) * 7)::text",
        ),
    ] {
        let group_key = if dimension == "total" { "" } else { ", 4" };
        // A property's rows are filed under one chain (its complaints name one).
        sqlx::query(&format!(
            "INSERT INTO kpi_monthly (property_id, month, dimension, key, chain_id, {cols}) \
             SELECT property_id, date_trunc('month', day)::date, '{dimension}', {key}, min(chain_id), {sums} \
             FROM kpi_rebuild GROUP BY 1, 2{group_key}"
        ))
        .execute(&mut *conn)
        .await?;
        if dimension == "day" || dimension == "block" {
            continue;
        }
        sqlx::query(&format!(
            "INSERT INTO kpi_chain_daily (chain_id, day, dimension, key, {cols}) \
             SELECT chain_id, day, '{dimension}', {key}, {sums} FROM kpi_rebuild \
             GROUP BY 1, 2{group_key}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(&format!(
        "INSERT INTO kpi_chain_monthly (chain_id, dimension, month, key, {cols}) \
         SELECT chain_id, dimension, date_trunc('month', day)::date, key, {sums} FROM kpi_chain_daily \
         GROUP BY 1, 2, 3, 4"
    ))
    .execute(&mut *conn)
    .await?;
    let fact_json = format!(
        "jsonb_build_object('key', jsonb_build_object('chain_id', chain_id, 'property_id', property_id, 'day', day, \
         'category', category, 'channel', channel, 'department', department), 'values', jsonb_build_array({cols}))"
    );
    sqlx::query(&format!(
        "INSERT INTO kpi_applied_facts (complaint_id, fact) SELECT complaint_id, {fact_json} FROM complaint_kpi_facts"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DROP TABLE kpi_rebuild")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Where KPI sums are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The maintained daily rollup (what the API serves).
    Rollup,
    /// The per-complaint facts grouped on the fly (the baseline the rollup must equal).
    Raw,
}

/// Sums for one breakdown group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// "total", "property", "category", "channel", "department" or "day".
    pub dimension: &'static str,
    pub key: String,
    pub values: Vec<i64>,
}

/// Which breakdowns a KPI query adds to the total and the per-property sums.
#[derive(Debug, Clone, Copy)]
struct Detail {
    daily: bool,
    /// Category, channel and department.
    dimensions: bool,
}

/// What a KPI query sums.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The properties summed and broken down.
    pub properties: &'a [String],
    /// Set when `properties` are all the properties of this chain: the chain-wide sums, breakdowns
    /// and daily series then come from the chain rollup.
    pub chain: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// Some properties.
    pub fn properties(properties: &'a [String]) -> Self {
        Self {
            properties,
            chain: None,
        }
    }

    /// A whole chain, whose properties are `properties`.
    pub fn chain(chain_id: &'a str, properties: &'a [String]) -> Self {
        Self {
            properties,
            chain: Some(chain_id),
        }
    }
}

/// KPI sums over `[from, to)` (UTC creation days) for `scope`: the total, per property, and
/// optionally per category, channel and department (`dimensions`) and per day (`daily`).
///
/// The raw source groups the per-complaint facts directly. The rollup reads whole months from
/// `kpi_monthly`, the partial months as seven-day blocks and single days (or, with breakdowns
/// for some properties, from `kpi_daily`), and chain-wide sums from `kpi_chain_daily`. Both
/// give the same groups with the same sums.
pub async fn query(
    conn: &mut PgConnection,
    source: Source,
    scope: Scope<'_>,
    from: NaiveDate,
    to: NaiveDate,
    daily: bool,
    dimensions: bool,
) -> ApiResult<Vec<Group>> {
    let detail = Detail { daily, dimensions };
    let properties = scope.properties;
    if source == Source::Raw {
        let facts = table_days("complaint_kpi_facts");
        return Ok(merge(
            query_days(conn, &facts, properties, from, to, detail).await?,
        ));
    }
    // The statements read one snapshot, so their parts add up even while the rollup worker
    // commits. Each reads a few thousand rows at most along an index: parallel workers would
    // cost more to start than they save, and a plan made once per connection serves every
    // period (planning the unions anew took longer than running them).
    let mut tx = sqlx::Connection::begin_with(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SET LOCAL max_parallel_workers_per_gather = 0; \
         SET LOCAL plan_cache_mode = force_generic_plan",
    )
    .await?;
    let parts = if let Some(chain) = scope.chain {
        let mut parts = query_pieces(&mut tx, scope, from, to, false).await?;
        parts.extend(query_chain(&mut tx, chain, from, to, detail).await?);
        parts
    } else if !daily && !dimensions {
        query_pieces(&mut tx, scope, from, to, true).await?
    } else {
        query_months_and_days(&mut tx, properties, from, to, detail).await?
    };
    tx.commit().await?;
    Ok(merge(parts))
}

/// Sums groups with the same dimension and key, in (dimension, key) order. Groups that count
/// nothing (rollup rows whose complaints moved to another key, a cancelled complaint that missed
/// no deadline) are dropped; the total is always there. A group of cancelled complaints only
/// stays while they count a missed deadline, so the breakdowns add up to the total.
fn merge(parts: Vec<Group>) -> Vec<Group> {
    let mut merged: std::collections::BTreeMap<(&'static str, String), Vec<i64>> =
        std::collections::BTreeMap::new();
    for group in parts {
        add_into(
            merged
                .entry((group.dimension, group.key))
                .or_insert_with(zeros),
            &group.values,
        );
    }
    merged.entry(("total", String::new())).or_insert_with(zeros);
    merged
        .into_iter()
        .filter(|((dimension, _), values)| *dimension == "total" || values.iter().any(|v| *v != 0))
        .map(|((dimension, key), values)| Group {
            dimension,
            key,
            values,
        })
        .collect()
}

/// The dimension names groups carry.
fn dimension_name(name: &str) -> &'static str {
    match name {
        "property" => "property",
        "total" => "total",
        "category" => "category",
        "channel" => "channel",
        "department" => "department",
        _ => "day",
    }
}

/// Some properties with breakdowns: whole months from the monthly rollup, the days around them
/// from the daily rollup (or, without category/channel/department, from the monthly rollup's
/// per-property day rows: one row per property and day instead of one per property, day,
/// category, channel and department).
async fn query_months_and_days(
    conn: &mut PgConnection,
    properties: &[String],
    from: NaiveDate,
    to: NaiveDate,
    detail: Detail,
) -> ApiResult<Vec<Group>> {
    let day_rows = if detail.dimensions {
        table_days("kpi_daily")
    } else {
        monthly_day_rows()
    };
    let day_rows = day_rows.as_str();
    let Some((first_full, end_full)) = whole_months(from, to) else {
        return query_days(conn, day_rows, properties, from, to, detail).await;
    };
    let mut parts = query_months(conn, properties, first_full, end_full, detail).await?;
    if from < first_full {
        parts.extend(query_days(conn, day_rows, properties, from, first_full, detail).await?);
    }
    if end_full < to {
        parts.extend(query_days(conn, day_rows, properties, end_full, to, detail).await?);
    }
    Ok(parts)
}

/// A run of `kpi_monthly` rows covering part of a period: whole months (dimension `total`), or
/// consecutive seven-day blocks or days of one month (keys `first..=last`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub month: NaiveDate,
    pub dimension: &'static str,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Splits `[from, to)` into the fewest `kpi_monthly` rows per property: whole months, then whole
/// seven-day blocks, then single days; consecutive rows of one kind and month form one piece.
pub fn pieces(from: NaiveDate, to: NaiveDate) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut day = from;
    while day < to {
        let (dimension, end) = if day.day() == 1 && next_month(day) <= to {
            ("total", next_month(day))
        } else if block_of(day) == day && block_end(day) <= to {
            ("block", block_end(day))
        } else {
            ("day", day + chrono::Duration::days(1))
        };
        let month = month_of(day);
        match out.last_mut() {
            Some(last)
                if dimension != "total" && last.dimension == dimension && last.month == month =>
            {
                last.last = day;
            }
            _ => out.push(Piece {
                month,
                dimension,
                first: day,
                last: day,
            }),
        }
        day = end;
    }
    out
}

/// Per-property sums (and the total over them when `with_total`) over `[from, to)`, read from
/// the monthly rollup as [`pieces`]: a few rows per property whatever the period. A chain's
/// rows are read through the chain index, a range per piece rather than a lookup per property.
async fn query_pieces(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    from: NaiveDate,
    to: NaiveDate,
    with_total: bool,
) -> ApiResult<Vec<Group>> {
    let pieces = pieces(from, to);
    let months: Vec<NaiveDate> = pieces
        .iter()
        .filter(|p| p.dimension == "total")
        .map(|p| p.month)
        .collect();
    let counters = COUNTERS.join(", ");
    let rows_of = if scope.chain.is_some() {
        "chain_id = $1"
    } else {
        "property_id = ANY($1)"
    };
    let mut branches = Vec::new();
    if !months.is_empty() {
        branches.push(format!(
            "SELECT property_id, {counters} FROM kpi_monthly \
             WHERE {rows_of} AND month = ANY($2) AND dimension = 'total' AND key = ''"
        ));
    }
    let runs: Vec<&Piece> = pieces.iter().filter(|p| p.dimension != "total").collect();
    for (i, _) in runs.iter().enumerate() {
        let n = 3 + 4 * i;
        branches.push(format!(
            "SELECT property_id, {counters} FROM kpi_monthly \
             WHERE {rows_of} AND month = ${n} AND dimension = ${} \
               AND key >= ${} AND key <= ${}",
            n + 1,
            n + 2,
            n + 3
        ));
    }
    if branches.is_empty() {
        return Ok(Vec::new());
    }
    let sums = summed_counters();
    let sets = if with_total {
        "(property_id), ()"
    } else {
        "(property_id)"
    };
    let sql = format!(
        "SELECT grouping(property_id) AS gp, property_id, {sums} FROM ({}) AS pieces \
         GROUP BY GROUPING SETS ({sets})",
        branches.join(" UNION ALL ")
    );
    let query = sqlx::query(&sql);
    let mut query = match scope.chain {
        Some(chain) => query.bind(chain),
        None => query.bind(scope.properties),
    }
    .bind(&months);
    for run in runs {
        query = query
            .bind(run.month)
            .bind(run.dimension)
            .bind(run.first.to_string())
            .bind(run.last.to_string());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let (dimension, key) = if row.try_get::<i32, _>("gp")? == 0 {
            ("property", row.try_get::<String, _>("property_id")?)
        } else {
            ("total", String::new())
        };
        groups.push(Group {
            dimension,
            key,
            values: counter_values(&row)?,
        });
    }
    Ok(groups)
}

/// Chain-wide total, and per category, channel and department and per day as `detail` asks,
/// from the chain rollups: whole months from `kpi_chain_monthly`, the days around them and the
/// daily series from `kpi_chain_daily`; a few rows per month and day whatever the number of
/// properties.
async fn query_chain(
    conn: &mut PgConnection,
    chain: &str,
    from: NaiveDate,
    to: NaiveDate,
    detail: Detail,
) -> ApiResult<Vec<Group>> {
    let sums = summed_counters();
    let counters = COUNTERS.join(", ");
    let dimensions = if detail.dimensions {
        "'total', 'category', 'channel', 'department'"
    } else {
        "'total'"
    };
    // Whole months [$4, $5); the days [$2, $4) and [$5, $3) around them.
    let (months_from, months_to) = whole_months(from, to).unwrap_or((to, to));
    let mut sql = format!(
        "SELECT dimension, key, {sums} FROM ( \
           SELECT dimension, key, {counters} FROM kpi_chain_monthly \
             WHERE chain_id = $1 AND dimension IN ({dimensions}) AND month >= $4 AND month < $5 \
           UNION ALL SELECT dimension, key, {counters} FROM kpi_chain_daily \
             WHERE chain_id = $1 AND dimension IN ({dimensions}) AND day >= $2 AND day < $4 \
           UNION ALL SELECT dimension, key, {counters} FROM kpi_chain_daily \
             WHERE chain_id = $1 AND dimension IN ({dimensions}) AND day >= $5 AND day < $3 \
         ) AS chain_rows GROUP BY dimension, key"
    );
    if detail.daily {
        sql.push_str(&format!(
            " UNION ALL SELECT 'day', day::text, {sums} FROM kpi_chain_daily \
               WHERE chain_id = $1 AND dimension = 'total' AND day >= $2 AND day < $3 GROUP BY day"
        ));
    }
    let rows = sqlx::query(&sql)
        .bind(chain)
        .bind(from)
        .bind(to)
        .bind(months_from)
        .bind(months_to)
        .fetch_all(&mut *conn)
        .await?;
    Ok(keyed_groups(&rows)?)
}

/// Groups from rows with `dimension`, `key` and the summed counters.
fn keyed_groups(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Group>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            Ok(Group {
                dimension: dimension_name(row.try_get::<String, _>("dimension")?.as_str()),
                key: row.try_get("key")?,
                values: counter_values(row)?,
            })
        })
        .collect()
}

/// The summed counters of a result row, in [`COUNTERS`] order (a sum over no rows is zero).
fn counter_values(row: &sqlx::postgres::PgRow) -> Result<Vec<i64>, sqlx::Error> {
    COUNTERS
        .iter()
        .map(|c| row.try_get::<Option<i64>, _>(*c).map(|v| v.unwrap_or(0)))
        .collect()
}

/// The rows of a day-keyed table (the daily rollup or the raw facts) for [`query_days`]: its
/// `$1` properties and days in `[$2, $3)`.
fn table_days(table: &str) -> String {
    format!("{table} WHERE property_id = ANY($1) AND day >= $2 AND day < $3")
}

/// The monthly rollup's `day` rows for [`query_days`] (property, day and the counters; no
/// category, channel or department), selected on the primary key: `$1` properties, the months
/// holding days in `[$2, $3)`, and the day keys (ISO dates, which sort as text) in that range.
/// The day is cast in the select list only, so only `day` keys are ever cast.
fn monthly_day_rows() -> String {
    format!(
        "(SELECT property_id, key::date AS day, {counters} FROM kpi_monthly \
           WHERE property_id = ANY($1) AND dimension = 'day' \
             AND month >= date_trunc('month', $2::date)::date AND month < $3 \
             AND key >= to_char($2::date, 'YYYY-MM-DD') AND key < to_char($3::date, 'YYYY-MM-DD')) AS day_rows",
        counters = COUNTERS.join(", ")
    )
}

/// Whole months `[from, to)` from the monthly rollup.
async fn query_months(
    conn: &mut PgConnection,
    properties: &[String],
    from: NaiveDate,
    to: NaiveDate,
    detail: Detail,
) -> ApiResult<Vec<Group>> {
    let sums = summed_counters();
    let mut wanted: Vec<&str> = Vec::new();
    if detail.dimensions {
        wanted.extend(["'category'", "'channel'", "'department'"]);
    }
    if detail.daily {
        wanted.push("'day'");
    }
    let breakdowns = if wanted.is_empty() {
        String::new()
    } else {
        format!(
            " UNION ALL SELECT dimension, key, {sums} FROM kpi_monthly \
               WHERE property_id = ANY($1) AND month >= $2 AND month < $3 AND dimension IN ({}) \
               GROUP BY dimension, key",
            wanted.join(", ")
        )
    };
    let sql = format!(
        "SELECT 'property' AS dimension, property_id AS key, {sums} FROM kpi_monthly \
           WHERE property_id = ANY($1) AND month >= $2 AND month < $3 AND dimension = 'total' GROUP BY property_id \
         UNION ALL SELECT 'total', '', {sums} FROM kpi_monthly \
           WHERE property_id = ANY($1) AND month >= $2 AND month < $3 AND dimension = 'total'{breakdowns}"
    );
    let rows = sqlx::query(&sql)
        .bind(properties)
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await?;
    Ok(keyed_groups(&rows)?)
}

/// Days `[from, to)` from day-keyed `rows` ([`table_days`] or [`monthly_day_rows`]).
async fn query_days(
    conn: &mut PgConnection,
    rows: &str,
    properties: &[String],
    from: NaiveDate,
    to: NaiveDate,
    detail: Detail,
) -> ApiResult<Vec<Group>> {
    let sums = summed_counters();
    let day_set = if detail.daily { ", (day)" } else { "" };
    // grouping() accepts only grouped columns: a column outside every set is never grouped.
    let gday = if detail.daily { "grouping(day)" } else { "1" };
    let day_column = if detail.daily {
        "day"
    } else {
        "NULL::date AS day"
    };
    let (dimension_sets, dimension_columns) = if detail.dimensions {
        (
            ", (category), (channel), (department)",
            "grouping(category) AS gc, grouping(channel) AS gch, grouping(department) AS gd, \
             category, channel, department",
        )
    } else {
        (
            "",
            "1 AS gc, 1 AS gch, 1 AS gd, NULL::text AS category, NULL::smallint AS channel, \
             NULL::text AS department",
        )
    };
    let sql = format!(
        "SELECT grouping(property_id) AS gp, {dimension_columns}, {gday} AS gday, \
                property_id, {day_column}, {sums} \
         FROM {rows} \
         GROUP BY GROUPING SETS ((), (property_id){dimension_sets}{day_set})"
    );
    let rows = sqlx::query(&sql)
        .bind(properties)
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let values = counter_values(&row)?;
        let grouped = |name: &str| row.try_get::<i32, _>(name).map(|g| g == 0);
        let (dimension, key) = if grouped("gp")? {
            ("property", row.try_get::<String, _>("property_id")?)
        } else if grouped("gc")? {
            ("category", row.try_get::<String, _>("category")?)
        } else if grouped("gch")? {
            ("channel", row.try_get::<i16, _>("channel")?.to_string())
        } else if grouped("gd")? {
            ("department", row.try_get::<String, _>("department")?)
        } else if grouped("gday")? {
            ("day", row.try_get::<NaiveDate, _>("day")?.to_string())
        } else {
            ("total", String::new())
        };
        groups.push(Group {
            dimension,
            key,
            values,
        });
    }
    groups.sort_by(|a, b| (a.dimension, &a.key).cmp(&(b.dimension, &b.key)));
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    /// The days a piece covers.
    fn days_of(piece: &Piece) -> Vec<NaiveDate> {
        let end = match piece.dimension {
            "total" => next_month(piece.month),
            "block" => block_end(piece.last),
            _ => piece.last + chrono::Duration::days(1),
        };
        piece.first.iter_days().take_while(|d| *d < end).collect()
    }

    #[test]
    fn blocks_split_months_into_weeks_and_the_rest() {
        assert_eq!(block_of(date(2026, 11, 1)), date(2026, 11, 1));
        assert_eq!(block_of(date(2026, 11, 7)), date(2026, 11, 1));
        assert_eq!(block_of(date(2026, 11, 8)), date(2026, 11, 8));
        assert_eq!(block_of(date(2026, 11, 28)), date(2026, 11, 22));
        assert_eq!(block_of(date(2026, 12, 31)), date(2026, 12, 29));
        assert_eq!(block_end(date(2026, 12, 29)), date(2027, 1, 1));
        assert_eq!(block_of(date(2028, 2, 29)), date(2028, 2, 29));
        assert_eq!(block_end(date(2027, 2, 22)), date(2027, 3, 1));
    }

    #[test]
    fn a_ninety_day_period_reads_a_handful_of_rows() {
        let ninety_days = pieces(date(2026, 9, 3), date(2026, 12, 2));
        assert_eq!(
            ninety_days,
            vec![
                Piece {
                    month: date(2026, 9, 1),
                    dimension: "day",
                    first: date(2026, 9, 3),
                    last: date(2026, 9, 7),
                },
                Piece {
                    month: date(2026, 9, 1),
                    dimension: "block",
                    first: date(2026, 9, 8),
                    last: date(2026, 9, 29),
                },
                Piece {
                    month: date(2026, 10, 1),
                    dimension: "total",
                    first: date(2026, 10, 1),
                    last: date(2026, 10, 1),
                },
                Piece {
                    month: date(2026, 11, 1),
                    dimension: "total",
                    first: date(2026, 11, 1),
                    last: date(2026, 11, 1),
                },
                Piece {
                    month: date(2026, 12, 1),
                    dimension: "day",
                    first: date(2026, 12, 1),
                    last: date(2026, 12, 1),
                },
            ]
        );
        assert!(pieces(date(2026, 9, 3), date(2026, 9, 3)).is_empty());
    }

    proptest! {
        /// The pieces cover every day of the period exactly once, in order; single days are only
        /// the edges no whole block fits (at most six on either side).
        #[test]
        fn pieces_cover_the_period_exactly_once(start in 0i64..1_500, len in 0i64..800) {
            let from = date(2025, 1, 1) + chrono::Duration::days(start);
            let to = from + chrono::Duration::days(len);
            let split = pieces(from, to);
            let covered: Vec<NaiveDate> = split.iter().flat_map(days_of).collect();
            let expected: Vec<NaiveDate> = from.iter_days().take_while(|d| *d < to).collect();
            prop_assert_eq!(covered, expected);
            for piece in &split {
                prop_assert_eq!(month_of(piece.first), piece.month);
                prop_assert_eq!(month_of(piece.last), piece.month);
                if piece.dimension == "day" {
                    // Single days never stand in for a whole block they hold.
                    for day in piece.first.iter_days().take_while(|d| *d <= piece.last) {
                        prop_assert!(
                            block_of(day) != day || block_end(day) > piece.last + chrono::Duration::days(1),
                            "{day} starts a whole block inside the single days of {piece:?}"
                        );
                    }
                }
            }
            let single_days: i64 = split
                .iter()
                .filter(|p| p.dimension == "day")
                .map(|p| (p.last - p.first).num_days() + 1)
                .sum();
            prop_assert!(single_days <= 12, "{single_days} single days");
        }
    }
}
