//! `GetScoreTrend`: the composite score per day, week or month, each bucket scored exactly as a
//! scorecard scores a period (same fan-out, same weights), at most 8 buckets at a time.

use chrono::{DateTime, Duration, Months, Utc};
use futures::stream::{self, StreamExt};
use guestloop_kit::auth::{principal, BearerToken, Principal};
use guestloop_kit::time::{required_period, to_timestamp};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::gateway::v1 as pb;
use sqlx::PgPool;
use tonic::Request;

use crate::scorecard::{compute, Detail};
use crate::Backends;

/// At most this many buckets per trend.
pub const MAX_BUCKETS: usize = 120;

/// The buckets of `[start, end)` for a granularity: the first starts at `start`, the others at
/// UTC midnight, `k` steps after the start's date (months counted from it, so the 31st stays
/// the 31st where the month has one), and each ends where the next starts. Complaint KPIs count
/// whole UTC days, so boundaries at midnight put every day in exactly one bucket.
pub fn buckets(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    granularity: pb::Granularity,
) -> ApiResult<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let base = start
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let boundary = |k: u32| -> Option<DateTime<Utc>> {
        match granularity {
            pb::Granularity::Day => Some(base + Duration::days(i64::from(k))),
            pb::Granularity::Week => Some(base + Duration::days(7 * i64::from(k))),
            pb::Granularity::Month => base.checked_add_months(Months::new(k)),
            pb::Granularity::Unspecified => None,
        }
    };
    let mut out = Vec::new();
    let mut at = start;
    let mut k = 1u32;
    while at < end {
        if out.len() == MAX_BUCKETS {
            return Err(ApiError::invalid(
                "period",
                format!("spans more than {MAX_BUCKETS} buckets at this granularity"),
            ));
        }
        let next = boundary(k)
            .ok_or_else(|| ApiError::invalid("granularity", "must be DAY, WEEK or MONTH"))?;
        out.push((at, next.min(end)));
        at = next;
        k += 1;
    }
    Ok(out)
}

pub async fn get(
    backends: &Backends,
    pool: &PgPool,
    request: Request<pb::GetScoreTrendRequest>,
) -> ApiResult<pb::ScoreTrend> {
    let principal = principal(&request)?.clone();
    let token = request
        .extensions()
        .get::<BearerToken>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let request = request.into_inner();
    let granularity = pb::Granularity::try_from(request.granularity)
        .ok()
        .filter(|g| *g != pb::Granularity::Unspecified)
        .ok_or_else(|| ApiError::invalid("granularity", "must be DAY, WEEK or MONTH"))?;
    let (start, end) = required_period(request.period.as_ref())?;
    for property in &request.property_ids {
        principal.require_property(property)?;
    }
    let scope = Scope {
        property_ids: &request.property_ids,
        region: &request.region,
    };
    let (points, missing) = points(
        backends,
        pool,
        &principal,
        &token,
        scope,
        buckets(start, end, granularity)?,
    )
    .await?;
    Ok(pb::ScoreTrend { points, missing })
}

/// Which properties a trend scores.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub property_ids: &'a [String],
    pub region: &'a str,
}

/// Each bucket scored as a scorecard (8 at a time), and the parts missing from any bucket, one
/// line per backend.
pub async fn points(
    backends: &Backends,
    pool: &PgPool,
    principal: &Principal,
    token: &str,
    scope: Scope<'_>,
    buckets: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> ApiResult<(Vec<pb::TrendPoint>, Vec<String>)> {
    let results: Vec<ApiResult<(pb::TrendPoint, Vec<String>)>> = stream::iter(buckets)
        .map(|(from, to)| {
            let bucket = TimeRange {
                start_time: Some(to_timestamp(from)),
                end_time: Some(to_timestamp(to)),
            };
            let card_request = pb::GetScorecardRequest {
                property_ids: scope.property_ids.to_vec(),
                region: scope.region.to_string(),
                period: Some(bucket),
                granularity: pb::Granularity::Unspecified as i32,
            };
            async move {
                let card = compute(
                    backends,
                    pool,
                    principal,
                    token,
                    card_request,
                    Detail::TrendPoint,
                )
                .await?;
                let scope = card.scope.unwrap_or_default();
                let point = pb::TrendPoint {
                    // The days the point's figures cover: the bucket widened to whole UTC days,
                    // as the card computed it.
                    bucket: card.period.or(Some(bucket)),
                    sqs: scope.sqs,
                    complaints: scope.complaints,
                    components: scope.components,
                    kpis: scope.kpis,
                };
                Ok((point, card.missing))
            }
        })
        .buffered(8)
        .collect()
        .await;
    let mut points = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for result in results {
        let (point, parts) = result?;
        points.push(point);
        for part in parts {
            // One line per backend, however many buckets it failed in.
            let backend = part.split(':').next().unwrap_or_default().to_string();
            if !missing
                .iter()
                .any(|m| m.starts_with(&format!("{backend}:")))
            {
                missing.push(part);
            }
        }
    }
    Ok((points, missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn buckets_tile_the_period_without_gaps() {
        let b =
            buckets(at(2026, 11, 1), at(2026, 11, 20), pb::Granularity::Week).unwrap_or_default();
        assert_eq!(
            b,
            vec![
                (at(2026, 11, 1), at(2026, 11, 8)),
                (at(2026, 11, 8), at(2026, 11, 15)),
                (at(2026, 11, 15), at(2026, 11, 20))
            ]
        );
        let months =
            buckets(at(2026, 1, 31), at(2026, 4, 1), pb::Granularity::Month).unwrap_or_default();
        assert_eq!(
            months,
            vec![
                (at(2026, 1, 31), at(2026, 2, 28)),
                (at(2026, 2, 28), at(2026, 3, 31)),
                (at(2026, 3, 31), at(2026, 4, 1))
            ],
            "months count from the start's date, without drifting"
        );
    }

    #[test]
    fn a_mid_day_start_puts_later_boundaries_at_midnight() {
        let start = at(2026, 11, 1) + Duration::hours(15);
        let end = at(2026, 11, 4) + Duration::hours(9);
        let b = buckets(start, end, pb::Granularity::Day).unwrap_or_default();
        assert_eq!(
            b,
            vec![
                (start, at(2026, 11, 2)),
                (at(2026, 11, 2), at(2026, 11, 3)),
                (at(2026, 11, 3), at(2026, 11, 4)),
                (at(2026, 11, 4), end)
            ]
        );
    }

    #[test]
    fn too_many_buckets_or_no_granularity_are_refused() {
        assert!(buckets(at(2026, 1, 1), at(2026, 12, 31), pb::Granularity::Day).is_err());
        assert!(buckets(at(2026, 1, 1), at(2026, 2, 1), pb::Granularity::Unspecified).is_err());
        assert_eq!(
            buckets(at(2026, 1, 1), at(2026, 4, 30), pb::Granularity::Day)
                .map(|b| b.len())
                .ok(),
            Some(119)
        );
    }
}
