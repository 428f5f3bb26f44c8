//! Touchpoint importance: guests' ratings of how much each touchpoint matters, ranked into the
//! weight factors that touchpoint-weighted templates apply at submission.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::text::free_text;
use guestloop_kit::time::required_period;
use guestloop_kit::{tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::audit::v1 as pb;
use sqlx::PgConnection;
use tonic::Request;
use uuid::Uuid;

use super::{Api, MAX_TOUCHPOINT};
use crate::domain::touchpoints::{factors, Tally, MIN_RATINGS};

/// How far back submissions look for the factors they apply.
const FACTOR_WINDOW_DAYS: i64 = 365;

pub async fn record(
    api: &Api,
    request: Request<pb::RecordTouchpointRatingsRequest>,
) -> ApiResult<pb::RecordTouchpointRatingsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    if request.request_id.trim().is_empty() || request.request_id.len() > 200 {
        v.push(FieldViolation::new(
            "request_id",
            "is required (1–200 characters): it makes the recording idempotent",
        ));
    }
    if request.property_id.is_empty() {
        v.push(FieldViolation::new("property_id", "is required"));
    }
    if request.ratings.is_empty() || request.ratings.len() > 50 {
        v.push(FieldViolation::new(
            "ratings",
            "give 1 to 50 touchpoint ratings",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut touchpoints = Vec::with_capacity(request.ratings.len());
    for (i, rating) in request.ratings.iter().enumerate() {
        let problems = v.len();
        let touchpoint = free_text(
            &rating.touchpoint,
            &format!("ratings[{i}].touchpoint"),
            MAX_TOUCHPOINT,
            true,
            &mut v,
        );
        let key = touchpoint.to_lowercase();
        if v.len() == problems && !seen.insert(key.clone()) {
            v.push(FieldViolation::new(
                format!("ratings[{i}].touchpoint"),
                format!("`{touchpoint}` is rated twice"),
            ));
        }
        if !(1..=5).contains(&rating.importance) {
            v.push(FieldViolation::new(
                format!("ratings[{i}].importance"),
                format!("must be 1–5, not {}", rating.importance),
            ));
        }
        touchpoints.push(key);
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    let inserted: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO touchpoint_responses (response_id, request_id, property_id) VALUES ($1, $2, $3) \
         ON CONFLICT (property_id, request_id) DO NOTHING RETURNING response_id, recorded_at",
    )
    .bind(Uuid::now_v7())
    .bind(&request.request_id)
    .bind(&request.property_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((response_id, recorded_at)) = inserted else {
        let existing: Uuid = sqlx::query_scalar(
            "SELECT response_id FROM touchpoint_responses WHERE property_id = $1 AND request_id = $2",
        )
        .bind(&request.property_id)
        .bind(&request.request_id)
        .fetch_one(&mut *tx)
        .await?;
        return Ok(pb::RecordTouchpointRatingsResponse {
            response_id: existing.to_string(),
            duplicate: true,
        });
    };
    for (rating, touchpoint) in request.ratings.iter().zip(&touchpoints) {
        sqlx::query(
            "INSERT INTO touchpoint_ratings (response_id, property_id, touchpoint, importance, recorded_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(response_id)
        .bind(&request.property_id)
        .bind(touchpoint)
        .bind(i16::try_from(rating.importance).unwrap_or(1))
        .bind(recorded_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(pb::RecordTouchpointRatingsResponse {
        response_id: response_id.to_string(),
        duplicate: false,
    })
}

async fn tallies(
    conn: &mut PgConnection,
    properties: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Tally>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT touchpoint, count(*), sum(importance)::bigint FROM touchpoint_ratings \
         WHERE property_id = ANY($1) AND recorded_at >= $2 AND recorded_at < $3 GROUP BY touchpoint",
    )
    .bind(properties)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(touchpoint, ratings, importance_sum)| {
            (
                touchpoint,
                Tally {
                    ratings,
                    importance_sum,
                },
            )
        })
        .collect())
}

/// The factors a touchpoint-weighted audit of `property` applies when submitted at `now`.
pub async fn factors_for(
    conn: &mut PgConnection,
    property: &str,
    now: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, f64>> {
    let tallies = tallies(
        conn,
        &[property.to_string()],
        now - Duration::days(FACTOR_WINDOW_DAYS),
        now,
    )
    .await?;
    Ok(factors(&tallies)
        .into_iter()
        .map(|(touchpoint, (factor, _))| (touchpoint, factor))
        .collect())
}

pub async fn importance(
    api: &Api,
    request: Request<pb::GetTouchpointImportanceRequest>,
) -> ApiResult<pb::TouchpointImportance> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_ids.is_empty() || request.property_ids.len() > 500 {
        return Err(ApiError::invalid(
            "property_ids",
            "name between 1 and 500 properties",
        ));
    }
    let mut conn = api.context.pool.acquire().await?;
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    tenancy::require_properties(&mut conn, &principal, &named).await?;
    let (from, to) = required_period(request.period.as_ref())?;
    let tallies = tallies(&mut conn, &request.property_ids, from, to).await?;
    let weights = factors(&tallies);
    let mut touchpoints: Vec<pb::TouchpointWeight> = tallies
        .iter()
        .map(|(touchpoint, tally)| {
            let (weight_factor, rank) = weights.get(touchpoint).copied().unwrap_or((1.0, 0));
            pb::TouchpointWeight {
                touchpoint: touchpoint.clone(),
                ratings: tally.ratings,
                importance_sum: tally.importance_sum,
                mean_importance: tally.mean(),
                weight_factor,
                rank,
            }
        })
        .collect();
    touchpoints.sort_by(|a, b| {
        (a.rank == 0, a.rank, &a.touchpoint).cmp(&(b.rank == 0, b.rank, &b.touchpoint))
    });
    Ok(pb::TouchpointImportance {
        touchpoints,
        min_ratings: i32::try_from(MIN_RATINGS).unwrap_or(i32::MAX),
    })
}
