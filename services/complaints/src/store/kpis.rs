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

/// The rollup key of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Key {
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
        "SELECT complaint_id, property_id, day, category, channel, department, {} \
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
        let entry = deltas
            .entry(old.key.clone())
            .or_insert_with(|| vec![0; COUNTERS.len()]);
        for (d, v) in entry.iter_mut().zip(&old.values) {
            *d -= v;
        }
    }
    for fact in new_facts.values() {
        let entry = deltas
            .entry(fact.key.clone())
            .or_insert_with(|| vec![0; COUNTERS.len()]);
        for (d, v) in entry.iter_mut().zip(&fact.values) {
            *d += v;
        }
    }
    // A fixed order keeps concurrent workers from deadlocking on rollup rows.
    let mut daily: Vec<(&Key, &Vec<i64>)> = deltas
        .iter()
        .filter(|(_, d)| d.iter().any(|v| *v != 0))
        .collect();
    daily.sort_by(|a, b| {
        (
            &a.0.property_id,
            a.0.day,
            &a.0.category,
            a.0.channel,
            &a.0.department,
        )
            .cmp(&(
                &b.0.property_id,
                b.0.day,
                &b.0.category,
                b.0.channel,
                &b.0.department,
            ))
    });
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
        );
        let query = sqlx::query(&sql)
            .bind(
                daily
                    .iter()
                    .map(|(k, _)| k.property_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(daily.iter().map(|(k, _)| k.day).collect::<Vec<_>>())
            .bind(
                daily
                    .iter()
                    .map(|(k, _)| k.category.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(daily.iter().map(|(k, _)| k.channel).collect::<Vec<_>>())
            .bind(
                daily
                    .iter()
                    .map(|(k, _)| k.department.as_str())
                    .collect::<Vec<_>>(),
            );
        bind_counters(query, daily.iter().map(|(_, d)| d.as_slice()))
            .execute(&mut *tx)
            .await?;
    }
    apply_monthly(&mut tx, &deltas).await?;
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

/// The (dimension, key) rows of `kpi_monthly` a full rollup key contributes to.
fn monthly_keys(key: &Key) -> [(&'static str, String); 5] {
    [
        ("total", String::new()),
        ("category", key.category.clone()),
        ("channel", key.channel.to_string()),
        ("department", key.department.clone()),
        ("day", key.day.to_string()),
    ]
}

/// Folds daily deltas into the monthly rollup, in a fixed order (no deadlocks between workers).
async fn apply_monthly(conn: &mut PgConnection, deltas: &HashMap<Key, Vec<i64>>) -> ApiResult<()> {
    let mut monthly: std::collections::BTreeMap<
        (String, NaiveDate, &'static str, String),
        Vec<i64>,
    > = std::collections::BTreeMap::new();
    for (key, delta) in deltas {
        if delta.iter().all(|v| *v == 0) {
            continue;
        }
        for (dimension, value) in monthly_keys(key) {
            let entry = monthly
                .entry((key.property_id.clone(), month_of(key.day), dimension, value))
                .or_insert_with(|| vec![0; COUNTERS.len()]);
            for (e, d) in entry.iter_mut().zip(delta) {
                *e += d;
            }
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
    );
    let query = sqlx::query(&sql)
        .bind(monthly.keys().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.2).collect::<Vec<_>>())
        .bind(monthly.keys().map(|k| k.3.as_str()).collect::<Vec<_>>());
    bind_counters(query, monthly.values().map(Vec::as_slice))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One statement that adds per-key counter deltas into a rollup `table`: the key columns
/// (name, SQL type) and then [`COUNTERS`] arrive as parallel arrays, one element per key; the
/// keys must be distinct.
fn additive_upsert(table: &str, keys: &[(&str, &str)]) -> String {
    let key_columns = keys
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = keys
        .iter()
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
        "INSERT INTO {table} ({key_columns}, {counters}) SELECT * FROM unnest({arrays}) \
         ON CONFLICT ({key_columns}) DO UPDATE SET {sets}",
        counters = COUNTERS.join(", ")
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
        "LOCK TABLE kpi_dirty, kpi_daily, kpi_monthly, kpi_applied_facts IN SHARE ROW EXCLUSIVE MODE",
    )
    .execute(&mut *conn)
    .await?;
    let cols = COUNTERS.join(", ");
    let sums = COUNTERS
        .iter()
        .map(|c| format!("sum({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query("DELETE FROM kpi_dirty")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM kpi_daily")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM kpi_applied_facts")
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO kpi_daily (property_id, day, category, channel, department, {cols}) \
         SELECT property_id, day, category, channel, department, {sums} FROM complaint_kpi_facts \
         GROUP BY property_id, day, category, channel, department"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM kpi_monthly")
        .execute(&mut *conn)
        .await?;
    for (dimension, key) in [
        ("total", "''"),
        ("category", "category"),
        ("channel", "channel::text"),
        ("department", "department"),
        ("day", "day::text"),
    ] {
        let group_key = if dimension == "total" {
            String::new()
        } else {
            format!(", {key}")
        };
        sqlx::query(&format!(
            "INSERT INTO kpi_monthly (property_id, month, dimension, key, {cols}) \
             SELECT property_id, date_trunc('month', day)::date, '{dimension}', {key}, {sums} FROM kpi_daily \
             GROUP BY property_id, date_trunc('month', day)::date{group_key}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    let fact_json = format!(
        "jsonb_build_object('key', jsonb_build_object('property_id', property_id, 'day', day, 'category', category, \
         'channel', channel, 'department', department), 'values', jsonb_build_array({cols}))"
    );
    sqlx::query(&format!(
        "INSERT INTO kpi_applied_facts (complaint_id, fact) SELECT complaint_id, {fact_json} FROM complaint_kpi_facts"
    ))
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

/// KPI sums over `[from, to)` (UTC creation days) for `properties`, grouped every useful way.
/// The rollup answers whole months from `kpi_monthly` and the days around them from
/// `kpi_daily`; the raw source groups the per-complaint facts directly.
/// Which breakdowns a KPI query adds to the total and the per-property sums.
#[derive(Debug, Clone, Copy)]
struct Detail {
    daily: bool,
    /// Category, channel and department.
    dimensions: bool,
}

pub async fn query(
    conn: &mut PgConnection,
    source: Source,
    properties: &[String],
    from: NaiveDate,
    to: NaiveDate,
    daily: bool,
    dimensions: bool,
) -> ApiResult<Vec<Group>> {
    let detail = Detail { daily, dimensions };
    if source == Source::Raw {
        let facts = table_days("complaint_kpi_facts");
        return query_days(conn, &facts, properties, from, to, detail).await;
    }
    // Without category/channel/department breakdowns, the days at the edges come from the
    // monthly rollup's per-property day rows (one row per property and day) instead of
    // `kpi_daily` (one per property, day, category, channel and department).
    let day_rows = if dimensions {
        table_days("kpi_daily")
    } else {
        monthly_day_rows()
    };
    let day_rows = day_rows.as_str();
    let first_full = if from.day() == 1 {
        from
    } else {
        month_of(from)
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(to)
    };
    let end_full = month_of(to);
    if first_full >= end_full {
        return query_days(conn, day_rows, properties, from, to, detail).await;
    }
    let mut parts = query_months(conn, properties, first_full, end_full, detail).await?;
    if from < first_full {
        parts.extend(query_days(conn, day_rows, properties, from, first_full, detail).await?);
    }
    if end_full < to {
        parts.extend(query_days(conn, day_rows, properties, end_full, to, detail).await?);
    }
    let mut merged: std::collections::BTreeMap<(&'static str, String), Vec<i64>> =
        std::collections::BTreeMap::new();
    for group in parts {
        let entry = merged
            .entry((group.dimension, group.key))
            .or_insert_with(|| vec![0; COUNTERS.len()]);
        for (e, v) in entry.iter_mut().zip(&group.values) {
            *e += v;
        }
    }
    merged
        .entry(("total", String::new()))
        .or_insert_with(|| vec![0; COUNTERS.len()]);
    Ok(merged
        .into_iter()
        .map(|((dimension, key), values)| Group {
            dimension,
            key,
            values,
        })
        .collect())
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
    let sums = COUNTERS
        .iter()
        .map(|c| format!("sum({c})::bigint AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
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
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let dimension = match row.try_get::<String, _>("dimension")?.as_str() {
            "property" => "property",
            "total" => "total",
            "category" => "category",
            "channel" => "channel",
            "department" => "department",
            _ => "day",
        };
        let values = COUNTERS
            .iter()
            .map(|c| row.try_get::<Option<i64>, _>(*c).map(|v| v.unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(Group {
            dimension,
            key: row.try_get("key")?,
            values,
        });
    }
    Ok(groups)
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
    let sums = COUNTERS
        .iter()
        .map(|c| format!("sum({c})::bigint AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
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
        let values = COUNTERS
            .iter()
            .map(|c| row.try_get::<Option<i64>, _>(*c).map(|v| v.unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
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
