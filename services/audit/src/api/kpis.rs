//! Audit KPIs as counts and sums per property, section, dimension and series bucket: audit score
//! (sum and count), pass rate, findings and repeats, corrective actions due, done on time and
//! overdue; staff-score bands and SERVQUAL sums per dimension. Section and dimension scores come
//! from each submitted audit's stored result.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::time::required_period;
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::audit::v1 as pb;
use prost::Message;
use tonic::Request;

use super::Api;
use crate::domain::servqual::dimension_of;
use crate::domain::staff::{band, NamedComplaint, StaffRecord, BANDS};

fn add(into: &mut pb::AuditKpiCounts, from: &pb::AuditKpiCounts) {
    into.audits += from.audits;
    into.score_sum += from.score_sum;
    into.passed += from.passed;
    into.findings += from.findings;
    into.repeat_findings += from.repeat_findings;
    into.actions_due += from.actions_due;
    into.actions_on_time += from.actions_on_time;
    into.actions_overdue += from.actions_overdue;
}

/// One submitted audit's share of the counts. `audits` and `score_sum` are the pair an average
/// score is read from (score_sum / audits), so an audit without an overall score (every item
/// not applicable) counts in neither: it is not an audit that scored 0. (It cannot have passed.)
fn audit_counts(overall: Option<f64>, passed: bool) -> pb::AuditKpiCounts {
    pb::AuditKpiCounts {
        audits: i64::from(overall.is_some()),
        score_sum: overall.unwrap_or(0.0),
        passed: i64::from(passed),
        ..Default::default()
    }
}

/// The series bucket a day falls in.
pub fn bucket_of(day: NaiveDate, granularity: pb::SeriesGranularity) -> Option<String> {
    match granularity {
        pb::SeriesGranularity::Day => Some(day.to_string()),
        pb::SeriesGranularity::Month => day.with_day(1).map(|d| d.to_string()),
        pb::SeriesGranularity::Unspecified => None,
    }
}

fn buckets(map: BTreeMap<String, pb::AuditKpiCounts>) -> Vec<pb::AuditKpiBucket> {
    map.into_iter()
        .map(|(key, counts)| pb::AuditKpiBucket {
            key,
            counts: Some(counts),
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    property_id: String,
    submitted_at: DateTime<Utc>,
    overall: Option<f64>,
    passed: bool,
    result: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct FindingRow {
    property_id: String,
    created_at: DateTime<Utc>,
    repeat: bool,
    in_period: bool,
    due_date: Option<NaiveDate>,
    done_at: Option<DateTime<Utc>>,
}

/// The longest period audit KPIs cover (ten years).
const MAX_PERIOD_DAYS: i64 = 3_653;

pub async fn get(api: &Api, request: Request<pb::GetAuditKpisRequest>) -> ApiResult<pb::AuditKpis> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_ids.is_empty() || request.property_ids.len() > 500 {
        return Err(ApiError::invalid(
            "property_ids",
            "name between 1 and 500 properties",
        ));
    }
    let named: Vec<&str> = request.property_ids.iter().map(String::as_str).collect();
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_properties_on_behalf(
        &mut conn,
        &principal,
        &request.on_behalf_of_chain,
        &named,
    )
    .await?;
    drop(conn);
    // Whole UTC days, as actions are due on days: a period ending at noon counts that day's
    // audits and the actions due that day alike. At most ten years: the audits are read whole.
    let (start, end) =
        guestloop_kit::time::whole_utc_days(required_period(request.period.as_ref())?);
    if (end - start).num_days() > MAX_PERIOD_DAYS {
        return Err(ApiError::invalid(
            "period",
            format!("covers at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let granularity = pb::SeriesGranularity::try_from(request.series)
        .map_err(|_| ApiError::invalid("series", "is not a series granularity"))?;
    if granularity == pb::SeriesGranularity::Day && (end - start).num_days() > 400 {
        return Err(ApiError::invalid(
            "series",
            "a daily series covers at most 400 days; use MONTH",
        ));
    }
    let pool = &api.context.pool;
    let audits: Vec<AuditRow> = sqlx::query_as(
        "SELECT property_id, submitted_at, overall, passed, result FROM audits \
         WHERE property_id = ANY($1) AND submitted_at >= $2 AND submitted_at < $3",
    )
    .bind(&request.property_ids)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    // Findings raised in the period, and actions due in it.
    let findings: Vec<FindingRow> = sqlx::query_as(
        "SELECT property_id, created_at, repeat, (created_at >= $2 AND created_at < $3) AS in_period, due_date, done_at \
         FROM findings WHERE property_id = ANY($1) AND ((created_at >= $2 AND created_at < $3) \
         OR (due_date >= $2::date AND due_date < $3::date))",
    )
    .bind(&request.property_ids)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;

    let as_of = end.min(Utc::now());
    let mut by_property: BTreeMap<String, pb::AuditKpiCounts> = request
        .property_ids
        .iter()
        .map(|p| (p.clone(), pb::AuditKpiCounts::default()))
        .collect();
    let mut by_section: BTreeMap<String, pb::AuditKpiCounts> = BTreeMap::new();
    let mut by_dimension: BTreeMap<String, pb::AuditKpiCounts> = BTreeMap::new();
    let mut series: BTreeMap<String, pb::AuditKpiCounts> = BTreeMap::new();

    for audit in &audits {
        let counts = audit_counts(audit.overall, audit.passed);
        if let Some(p) = by_property.get_mut(&audit.property_id) {
            add(p, &counts);
        }
        if let Some(key) = bucket_of(audit.submitted_at.date_naive(), granularity) {
            add(series.entry(key).or_default(), &counts);
        }
        let Some(result) = audit
            .result
            .as_deref()
            .and_then(|bytes| pb::Audit::decode(bytes).ok())
        else {
            continue;
        };
        for (lines, into) in [
            (&result.sections, &mut by_section),
            (&result.dimensions, &mut by_dimension),
        ] {
            for line in lines {
                if let Some(score) = line.score {
                    let entry = into.entry(line.key.clone()).or_default();
                    entry.audits += 1;
                    entry.score_sum += score;
                }
            }
        }
    }
    let start_day = start.date_naive();
    let end_day = end.date_naive();
    for finding in &findings {
        let mut counts = pb::AuditKpiCounts::default();
        if finding.in_period {
            counts.findings = 1;
            counts.repeat_findings = i64::from(finding.repeat);
        }
        if let Some(due) = finding.due_date.filter(|d| start_day <= *d && *d < end_day) {
            counts.actions_due = 1;
            match finding.done_at {
                Some(done) if done.date_naive() <= due => counts.actions_on_time = 1,
                Some(_) => {}
                None if due < as_of.date_naive() => counts.actions_overdue = 1,
                None => {}
            }
        }
        if let Some(p) = by_property.get_mut(&finding.property_id) {
            add(p, &counts);
        }
        let day = if finding.in_period {
            finding.created_at.date_naive()
        } else {
            finding.due_date.unwrap_or(start_day)
        };
        if let Some(key) = bucket_of(day, granularity) {
            add(series.entry(key).or_default(), &counts);
        }
    }
    let mut total = pb::AuditKpiCounts::default();
    for counts in by_property.values() {
        add(&mut total, counts);
    }
    let staff_bands = staff_bands(api, &request.property_ids, start, end).await?;
    let servqual = servqual(api, &request.property_ids, start, end).await?;
    Ok(pb::AuditKpis {
        total: Some(total),
        by_property: buckets(by_property),
        by_section: buckets(by_section),
        by_dimension: buckets(by_dimension),
        series: buckets(series),
        staff_bands,
        servqual,
    })
}

/// Staff scores (per property and staff member, audit observations and complaints) in bands.
async fn staff_bands(
    api: &Api,
    properties: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> ApiResult<Vec<pb::StaffScoreBand>> {
    let observed: Vec<(String, String, f64, i64)> = sqlx::query_as(
        "SELECT property_id, staff_id, 100 * avg(score)::float8, count(*) FROM staff_observations \
         WHERE property_id = ANY($1) AND observed_at >= $2 AND observed_at < $3 GROUP BY 1, 2",
    )
    .bind(properties)
    .bind(start)
    .bind(end)
    .fetch_all(&api.context.pool)
    .await?;
    let named: Vec<(String, String, i16, bool, Option<i16>)> = sqlx::query_as(
        "SELECT l.property_id, s.staff_id, l.cause, l.resolved, l.csat \
         FROM complaint_links l, unnest(l.staff_involved) AS s(staff_id) \
         WHERE l.property_id = ANY($1) AND l.filed_at >= $2 AND l.filed_at < $3",
    )
    .bind(properties)
    .bind(start)
    .bind(end)
    .fetch_all(&api.context.pool)
    .await?;
    let mut records: BTreeMap<(String, String), StaffRecord> = BTreeMap::new();
    for (property, staff, score, observations) in observed {
        records.entry((property, staff)).or_default().audit = Some((score, observations));
    }
    for (property, staff, cause, resolved, csat) in named {
        records
            .entry((property, staff))
            .or_default()
            .complaints
            .push(NamedComplaint {
                cause: i32::from(cause),
                resolved,
                csat,
            });
    }
    let mut bands: Vec<pb::StaffScoreBand> = BANDS
        .iter()
        .enumerate()
        .map(|(i, upper)| pb::StaffScoreBand {
            from: if i == 0 { 0.0 } else { BANDS[i - 1] },
            to: *upper,
            staff: 0,
            score_sum: 0.0,
        })
        .collect();
    for score in records.values().filter_map(StaffRecord::score) {
        if let Some(entry) = bands.get_mut(band(score)) {
            entry.staff += 1;
            entry.score_sum += score;
        }
    }
    Ok(bands)
}

/// SERVQUAL answer sums per dimension for surveys submitted in the period.
async fn servqual(
    api: &Api,
    properties: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> ApiResult<Vec<pb::ServqualSums>> {
    let rows: Vec<(i16, i64, i64, i64)> = sqlx::query_as(
        "SELECT a.item, count(*), sum(a.expectation)::bigint, sum(a.perception)::bigint \
         FROM servqual_answers a JOIN servqual_surveys s USING (survey_id) \
         WHERE s.property_id = ANY($1) AND s.submitted_at >= $2 AND s.submitted_at < $3 GROUP BY a.item",
    )
    .bind(properties)
    .bind(start)
    .bind(end)
    .fetch_all(&api.context.pool)
    .await?;
    let mut sums: Vec<pb::ServqualSums> = (1..=5)
        .map(|dimension| pb::ServqualSums {
            dimension,
            ..Default::default()
        })
        .collect();
    for (item, answers, expectation, perception) in rows {
        if let Some(entry) = dimension_of(i32::from(item)).and_then(|d| sums.get_mut(d)) {
            entry.answers += answers;
            entry.expectation_sum += expectation;
            entry.perception_sum += perception;
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_fall_in_their_bucket() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 17).unwrap_or_default();
        assert_eq!(
            bucket_of(day, pb::SeriesGranularity::Month).as_deref(),
            Some("2026-11-01")
        );
        assert_eq!(
            bucket_of(day, pb::SeriesGranularity::Day).as_deref(),
            Some("2026-11-17")
        );
        assert_eq!(bucket_of(day, pb::SeriesGranularity::Unspecified), None);
    }

    #[test]
    fn unscored_audits_leave_the_average_alone() {
        let mut total = pb::AuditKpiCounts::default();
        for (overall, passed) in [(Some(90.0), true), (None, false), (Some(60.0), false)] {
            add(&mut total, &audit_counts(overall, passed));
        }
        assert_eq!((total.audits, total.passed), (2, 1));
        assert!((total.score_sum / total.audits as f64 - 75.0).abs() < 1e-9);
    }

    #[test]
    fn counts_add_field_by_field() {
        let mut a = pb::AuditKpiCounts {
            audits: 1,
            score_sum: 80.0,
            passed: 1,
            actions_due: 2,
            ..Default::default()
        };
        add(
            &mut a,
            &pb::AuditKpiCounts {
                audits: 2,
                score_sum: 150.0,
                actions_overdue: 1,
                ..Default::default()
            },
        );
        assert_eq!(
            (a.audits, a.passed, a.actions_due, a.actions_overdue),
            (3, 1, 2, 1)
        );
        assert!((a.score_sum - 230.0).abs() < 1e-9);
    }
}
