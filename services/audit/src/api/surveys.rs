//! SERVQUAL gap surveys and quarterly staff-behaviour scores from audit observations and the
//! outcomes of complaints that name staff (see `domain::staff` for the fairness rule).

use std::collections::BTreeMap;

use guestloop_kit::auth::principal;
use guestloop_kit::time::required_timestamp;
use guestloop_kit::{idempotency, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::audit::v1 as pb;
use tonic::Request;
use uuid::Uuid;

use super::Api;
use crate::domain::servqual::{dimension_of, valid_rating};
use crate::domain::staff::{NamedComplaint, StaffRecord};

pub async fn record(
    api: &Api,
    request: Request<pb::RecordServqualSurveyRequest>,
) -> ApiResult<pb::RecordServqualSurveyResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let mut v = Vec::new();
    if request.property_id.is_empty() {
        v.push(FieldViolation::new("property_id", "is required"));
    }
    if request.answers.is_empty() {
        v.push(FieldViolation::new("answers", "a survey needs answers"));
    }
    let mut answered = std::collections::HashSet::new();
    for (i, answer) in request.answers.iter().enumerate() {
        if dimension_of(answer.item).is_none() {
            v.push(FieldViolation::new(
                format!("answers[{i}].item"),
                "must be between 1 and 22",
            ));
        } else if !answered.insert(answer.item) {
            v.push(FieldViolation::new(
                format!("answers[{i}].item"),
                format!("item {} is answered twice", answer.item),
            ));
        }
        if !valid_rating(answer.expectation) || !valid_rating(answer.perception) {
            v.push(FieldViolation::new(
                format!("answers[{i}]"),
                "expectation and perception are rated 1–7",
            ));
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    // A retry gets the survey it recorded; a concurrent one waits for it. The same request id
    // with other answers, or from another caller, is refused.
    if let Some(previous) = idempotency::claim::<_, pb::RecordServqualSurveyResponse>(
        &mut tx,
        &principal,
        METHOD,
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    // Surveys recorded before their answers were kept per request: the stored survey answers a
    // retry of one.
    if !request.request_id.is_empty() {
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT survey_id FROM servqual_surveys WHERE property_id = $1 AND request_id = $2",
        )
        .bind(&request.property_id)
        .bind(&request.request_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok(pb::RecordServqualSurveyResponse {
                survey_id: id.to_string(),
            });
        }
    }
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO servqual_surveys (survey_id, property_id, request_id) VALUES ($1, $2, NULLIF($3, ''))")
        .bind(id)
        .bind(&request.property_id)
        .bind(&request.request_id)
        .execute(&mut *tx)
        .await?;
    for answer in &request.answers {
        sqlx::query("INSERT INTO servqual_answers (survey_id, item, expectation, perception) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(answer.item as i16)
            .bind(answer.expectation as i16)
            .bind(answer.perception as i16)
            .execute(&mut *tx)
            .await?;
    }
    let response = pb::RecordServqualSurveyResponse {
        survey_id: id.to_string(),
    };
    idempotency::record(&mut tx, &principal, METHOD, &request.request_id, &response).await?;
    tx.commit().await?;
    Ok(response)
}

const METHOD: &str = "RecordServqualSurvey";

pub async fn gaps(
    api: &Api,
    request: Request<pb::GetServqualGapsRequest>,
) -> ApiResult<pb::ServqualGaps> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let period = request
        .period
        .ok_or_else(|| ApiError::invalid("period", "is required"))?;
    let from = required_timestamp("period.start_time", period.start_time.as_ref())?;
    let to = required_timestamp("period.end_time", period.end_time.as_ref())?;
    let rows: Vec<(i16, f64, f64, i64)> = sqlx::query_as(
        "SELECT CASE WHEN a.item <= 4 THEN 1 WHEN a.item <= 9 THEN 2 WHEN a.item <= 13 THEN 3 WHEN a.item <= 17 THEN 4 ELSE 5 END::smallint AS d, \
                avg(a.expectation)::float8, avg(a.perception)::float8, count(*) \
         FROM servqual_answers a JOIN servqual_surveys s USING (survey_id) \
         WHERE s.property_id = $1 AND s.submitted_at >= $2 AND s.submitted_at < $3 GROUP BY d ORDER BY d",
    )
    .bind(&request.property_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let surveys: i64 = sqlx::query_scalar("SELECT count(*) FROM servqual_surveys WHERE property_id = $1 AND submitted_at >= $2 AND submitted_at < $3")
        .bind(&request.property_id)
        .bind(from)
        .bind(to)
        .fetch_one(&mut *conn)
        .await?;
    Ok(pb::ServqualGaps {
        dimensions: rows
            .into_iter()
            .map(|(d, e, p, n)| pb::DimensionGap {
                dimension: i32::from(d),
                expectation: e,
                perception: p,
                gap: p - e,
                answers: n,
            })
            .collect(),
        surveys,
    })
}

pub async fn staff_scores(
    api: &Api,
    request: Request<pb::GetStaffScoresRequest>,
) -> ApiResult<pb::StaffScores> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let (year, quarter) = request
        .quarter
        .split_once("-Q")
        .and_then(|(y, q)| {
            Some((
                y.parse::<i32>().ok()?,
                q.parse::<u32>().ok().filter(|q| (1..=4).contains(q))?,
            ))
        })
        .ok_or_else(|| ApiError::invalid("quarter", "must look like 2026-Q4"))?;
    let start = chrono::NaiveDate::from_ymd_opt(year, (quarter - 1) * 3 + 1, 1)
        .ok_or_else(|| ApiError::invalid("quarter", "out of range"))?;
    let end = start
        .checked_add_months(chrono::Months::new(3))
        .ok_or_else(|| ApiError::invalid("quarter", "out of range"))?;
    let observed: Vec<(String, f64, i64)> = sqlx::query_as(
        "SELECT staff_id, 100 * avg(score)::float8, count(*) FROM staff_observations \
         WHERE property_id = $1 AND observed_at >= $2 AND observed_at < $3 GROUP BY staff_id",
    )
    .bind(&request.property_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let named: Vec<(String, i16, bool, Option<i16>)> = sqlx::query_as(
        "SELECT s.staff_id, l.cause, l.resolved, l.csat FROM complaint_links l, unnest(l.staff_involved) AS s(staff_id) \
         WHERE l.property_id = $1 AND l.filed_at >= $2 AND l.filed_at < $3",
    )
    .bind(&request.property_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_staff: BTreeMap<String, StaffRecord> = BTreeMap::new();
    for (staff_id, score, observations) in observed {
        by_staff.entry(staff_id).or_default().audit = Some((score, observations));
    }
    for (staff_id, cause, resolved, csat) in named {
        by_staff
            .entry(staff_id)
            .or_default()
            .complaints
            .push(NamedComplaint {
                cause: i32::from(cause),
                resolved,
                csat,
            });
    }
    Ok(pb::StaffScores {
        scores: by_staff
            .into_iter()
            .filter_map(|(staff_id, record)| {
                Some(pb::StaffScore {
                    staff_id,
                    score: record.score()?,
                    observations: record.observations(),
                    audit_score: record.audit_score(),
                    complaints: record.complaints.len() as i64,
                    attributable_complaints: record.attributable(),
                    complaint_score: record.complaint_score(),
                })
            })
            .collect(),
    })
}
