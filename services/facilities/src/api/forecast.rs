//! Replacement forecast: assets reaching the end of their expected life (install date plus
//! expected life), per year and category, with the cost of replacing them per currency.

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::common::v1::Money;
use guestloop_proto::facilities::v1 as pb;
use tonic::Request;

use super::Api;

const DEFAULT_YEARS: i32 = 5;
const MAX_YEARS: i32 = 30;

/// (year or 0 for overdue, category) → (assets, cost per currency).
type Lines = BTreeMap<(i32, i16), (i64, BTreeMap<String, i64>)>;

fn to_lines(lines: Lines) -> Vec<pb::ReplacementLine> {
    lines
        .into_iter()
        .map(|((year, category), (assets, cost))| pb::ReplacementLine {
            year,
            category: i32::from(category),
            assets,
            cost: money(cost),
        })
        .collect()
}

fn money(cost: BTreeMap<String, i64>) -> Vec<Money> {
    cost.into_iter()
        .map(|(currency_code, minor_units)| Money {
            currency_code,
            minor_units,
        })
        .collect()
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetReplacementForecastRequest>,
) -> ApiResult<pb::ReplacementForecast> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_ids.is_empty() {
        return Err(ApiError::invalid(
            "property_ids",
            "name at least one property",
        ));
    }
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    tenancy::require_properties(&mut *api.context.pool.acquire().await?, &principal, &named)
        .await?;
    let from_year = match request.from_year {
        0 => Utc::now().year(),
        year if (1900..=9999).contains(&year) => year,
        year => {
            return Err(ApiError::invalid(
                "from_year",
                format!("{year} is not a year between 1900 and 9999"),
            ))
        }
    };
    let years = match request.years {
        0 => DEFAULT_YEARS,
        n if (1..=MAX_YEARS).contains(&n) => n,
        n => {
            return Err(ApiError::invalid(
                "years",
                format!("must be between 1 and {MAX_YEARS}, not {n}"),
            ))
        }
    };
    let last_year = from_year + years - 1;
    // Grouped in SQL; the end-of-life year is computed once per asset.
    let rows: Vec<(i32, i16, String, i64, i64)> = sqlx::query_as(
        "SELECT extract(year FROM install_date + make_interval(years => expected_life_years))::int AS eol, \
                category, replacement_currency, count(*), coalesce(sum(replacement_minor), 0)::bigint \
         FROM assets WHERE property_id = ANY($1) AND status <> 'retired' \
           AND install_date IS NOT NULL AND expected_life_years > 0 \
           AND extract(year FROM install_date + make_interval(years => expected_life_years)) <= $2 \
         GROUP BY 1, 2, 3",
    )
    .bind(&request.property_ids)
    .bind(last_year)
    .fetch_all(&api.context.pool)
    .await?;
    let mut lines = Lines::new();
    let mut overdue = Lines::new();
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    for (year, category, currency, assets, cost) in rows {
        let (target, year) = if year < from_year {
            (&mut overdue, 0)
        } else {
            (&mut lines, year)
        };
        let entry = target.entry((year, category)).or_default();
        entry.0 += assets;
        if cost > 0 {
            *entry.1.entry(currency.clone()).or_default() += cost;
            *total.entry(currency).or_default() += cost;
        }
    }
    let (flagged_assets, unknown_life_assets): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE replacement_flagged), \
                count(*) FILTER (WHERE install_date IS NULL OR expected_life_years <= 0) \
         FROM assets WHERE property_id = ANY($1) AND status <> 'retired'",
    )
    .bind(&request.property_ids)
    .fetch_one(&api.context.pool)
    .await?;
    Ok(pb::ReplacementForecast {
        lines: to_lines(lines),
        overdue: to_lines(overdue),
        total_cost: money(total),
        flagged_assets,
        unknown_life_assets,
    })
}
