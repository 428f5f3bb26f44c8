//! Which standards fail guests most: complaints whose root cause analysis named a standard (kept
//! from the complaints feed) ranked per standard, beside the audit findings on the same standard,
//! so the quality team sees where what guests suffer and what auditors find agree or differ.

use guestloop_kit::auth::principal;
use guestloop_kit::time::required_period;
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::audit::v1 as pb;
use tonic::Request;

use super::library::{library_chains, library_condition};
use super::Api;

const DEFAULT_LIMIT: i32 = 20;
const MAX_LIMIT: i32 = 200;

pub async fn get(
    api: &Api,
    request: Request<pb::GetStandardFailuresRequest>,
) -> ApiResult<pb::StandardFailures> {
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
    tenancy::require_properties(&mut conn, &principal, &named).await?;
    // Titles, touchpoints and dimensions come from the library of the properties' chains.
    let chains = library_chains(&mut conn, &principal, &named).await?;
    let (start, end) = required_period(request.period.as_ref())?;
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n if (1..=MAX_LIMIT).contains(&n) => n,
        n => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, not {n}"),
            ))
        }
    };
    type Row = (String, String, String, i32, bool, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "WITH l AS (SELECT code, l.resolved, l.csat FROM complaint_links l, unnest(l.standard_codes) AS code \
                    WHERE l.property_id = ANY($1) AND l.filed_at >= $2 AND l.filed_at < $3), \
              c AS (SELECT code, count(*) AS complaints, \
                           count(*) FILTER (WHERE NOT resolved OR csat <= 2) AS unrecovered FROM l GROUP BY code), \
              f AS (SELECT f.standard_code AS code, count(*) AS findings FROM findings f \
                    JOIN audits a ON a.audit_id = f.audit_id \
                    WHERE f.property_id = ANY($1) AND a.submitted_at >= $2 AND a.submitted_at < $3 GROUP BY 1), \
              s AS (SELECT DISTINCT ON (s.code) s.code, s.title, s.touchpoint, s.dimension FROM standards s \
                    WHERE {} \
                    ORDER BY s.code, (s.property_id = '') DESC, (s.chain_id = ''), s.chain_id, s.property_id) \
         SELECT coalesce(c.code, f.code), coalesce(s.title, ''), coalesce(s.touchpoint, ''), \
                coalesce(s.dimension, 0)::int, s.code IS NOT NULL, coalesce(c.complaints, 0), \
                coalesce(c.unrecovered, 0), coalesce(f.findings, 0) \
         FROM c FULL JOIN f ON f.code = c.code LEFT JOIN s ON s.code = coalesce(c.code, f.code) \
         ORDER BY 6 DESC, 8 DESC, 1 LIMIT $4",
        library_condition(5, 1)
    ))
    .bind(&request.property_ids)
    .bind(start)
    .bind(end)
    .bind(i64::from(limit))
    .bind(&chains)
    .fetch_all(&mut *conn)
    .await?;
    let (linked_complaints, complaints): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE cardinality(standard_codes) > 0), count(*) FROM complaint_links \
         WHERE property_id = ANY($1) AND filed_at >= $2 AND filed_at < $3",
    )
    .bind(&request.property_ids)
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;
    Ok(pb::StandardFailures {
        standards: rows
            .into_iter()
            .map(
                |(
                    code,
                    title,
                    touchpoint,
                    dimension,
                    in_library,
                    complaints,
                    unrecovered,
                    audit_findings,
                )| {
                    pb::StandardFailure {
                        code,
                        title,
                        touchpoint,
                        dimension,
                        in_library,
                        complaints,
                        unrecovered,
                        audit_findings,
                    }
                },
            )
            .collect(),
        linked_complaints,
        complaints,
    })
}
