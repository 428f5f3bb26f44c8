//! `GetScoreTrend`: the composite score per day, week or month, each bucket scored exactly as a
//! scorecard scores a period (same fan-out, same weights), at most 8 buckets at a time.

use chrono::{DateTime, Duration, Months, Utc};
use futures::stream::{self, StreamExt};
use guestloop_kit::auth::{principal, BearerToken};
use guestloop_kit::time::{required_period, to_timestamp};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::gateway::v1 as pb;
use sqlx::PgPool;
use tonic::Request;

use crate::scorecard::compute;
use crate::Backends;

/// At most this many buckets per trend.
pub const MAX_BUCKETS: usize = 120;

/// The buckets of `[start, end)` for a granularity: each starts where the last ended.
pub fn buckets(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    granularity: pb::Granularity,
) -> ApiResult<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let step = |t: DateTime<Utc>| -> Option<DateTime<Utc>> {
        match granularity {
            pb::Granularity::Day => Some(t + Duration::days(1)),
            pb::Granularity::Week => Some(t + Duration::days(7)),
            pb::Granularity::Month => t.checked_add_months(Months::new(1)),
            pb::Granularity::Unspecified => None,
        }
    };
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        if out.len() == MAX_BUCKETS {
            return Err(ApiError::invalid(
                "period",
                format!("spans more than {MAX_BUCKETS} buckets at this granularity"),
            ));
        }
        let next = step(at)
            .ok_or_else(|| ApiError::invalid("granularity", "must be DAY, WEEK or MONTH"))?;
        out.push((at, next.min(end)));
        at = next;
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
    let buckets = buckets(start, end, granularity)?;
    let results: Vec<ApiResult<(pb::TrendPoint, Vec<String>)>> = stream::iter(buckets)
        .map(|(from, to)| {
            let bucket = TimeRange {
                start_time: Some(to_timestamp(from)),
                end_time: Some(to_timestamp(to)),
            };
            let card_request = pb::GetScorecardRequest {
                property_ids: request.property_ids.clone(),
                region: request.region.clone(),
                period: Some(bucket),
            };
            let (principal, token) = (&principal, &token);
            async move {
                let card = compute(backends, pool, principal, token, card_request).await?;
                let scope = card.scope.unwrap_or_default();
                let point = pb::TrendPoint {
                    bucket: Some(bucket),
                    sqs: scope.sqs,
                    complaints: scope.complaints,
                    components: scope.components,
                };
                Ok((point, card.missing))
            }
        })
        .buffered(8)
        .collect()
        .await;
    let mut trend = pb::ScoreTrend::default();
    for result in results {
        let (point, missing) = result?;
        trend.points.push(point);
        for part in missing {
            // One line per backend, however many buckets it failed in.
            let backend = part.split(':').next().unwrap_or_default().to_string();
            if !trend
                .missing
                .iter()
                .any(|m| m.starts_with(&format!("{backend}:")))
            {
                trend.missing.push(part);
            }
        }
    }
    Ok(trend)
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
        assert_eq!(months[0], (at(2026, 1, 31), at(2026, 2, 28)));
        assert_eq!(months.last().map(|b| b.1), Some(at(2026, 4, 1)));
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
