//! Customer value: the chain's formula parameters and segments, the batch that scores every guest,
//! and one guest's value with its parts.

use std::collections::HashMap;

use chrono::{DateTime, Months, NaiveDate, Utc};
use guestloop_kit::auth::principal;
use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::AuditStamps;
use guestloop_proto::crm::v1 as pb;
use sqlx::{PgExecutor, PgPool};
use tonic::Request;

use super::loyalty::as_of;
use super::store::load;
use super::Api;
use crate::domain::value::{
    customer_value, segment, to_major, validate, Segment, ValueInputs, ValuePolicy,
};

#[derive(sqlx::FromRow)]
struct PolicyRow {
    window_months: i32,
    spend_weight: f64,
    satisfaction_weight: f64,
    min_relationship_years: f64,
    segments: sqlx::types::Json<Vec<Segment>>,
    updated_at: DateTime<Utc>,
    updated_by: String,
}

/// The chain's policy (defaults when never set) and who set it.
async fn load_policy<'e>(
    db: impl PgExecutor<'e>,
    chain_id: &str,
) -> ApiResult<(ValuePolicy, Option<(DateTime<Utc>, String)>)> {
    let row: Option<PolicyRow> = sqlx::query_as(
        "SELECT window_months, spend_weight, satisfaction_weight, min_relationship_years, segments, updated_at, updated_by \
         FROM value_policies WHERE chain_id = $1",
    )
    .bind(chain_id)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => (ValuePolicy::default(), None),
        Some(r) => (
            ValuePolicy {
                window_months: u32::try_from(r.window_months).unwrap_or(12),
                spend_weight: r.spend_weight,
                satisfaction_weight: r.satisfaction_weight,
                min_relationship_years: r.min_relationship_years,
                segments: r.segments.0,
            },
            Some((r.updated_at, r.updated_by)),
        ),
    })
}

fn policy_to_proto(
    policy: &ValuePolicy,
    stamp: Option<(DateTime<Utc>, String)>,
) -> pb::ValuePolicy {
    pb::ValuePolicy {
        window_months: i32::try_from(policy.window_months).unwrap_or(i32::MAX),
        spend_weight: policy.spend_weight,
        satisfaction_weight: policy.satisfaction_weight,
        min_relationship_years: policy.min_relationship_years,
        segments: policy
            .segments
            .iter()
            .map(|s| pb::ValueSegment {
                name: s.name.clone(),
                min_value: s.min_value,
            })
            .collect(),
        stamps: stamp.map(|(at, by)| AuditStamps {
            update_time: Some(to_timestamp(at)),
            updated_by: by,
            ..Default::default()
        }),
    }
}

pub async fn get_policy(
    api: &Api,
    request: Request<pb::GetValuePolicyRequest>,
) -> ApiResult<pb::ValuePolicy> {
    let principal = principal(&request)?.clone();
    let (policy, stamp) = load_policy(&api.context.pool, principal.chain_id()).await?;
    Ok(policy_to_proto(&policy, stamp))
}

pub async fn update_policy(
    api: &Api,
    request: Request<pb::UpdateValuePolicyRequest>,
) -> ApiResult<pb::ValuePolicy> {
    let principal = principal(&request)?.clone();
    let wire = request
        .into_inner()
        .policy
        .ok_or_else(|| ApiError::invalid("policy", "is required"))?;
    let policy = ValuePolicy {
        window_months: u32::try_from(wire.window_months).unwrap_or(0),
        spend_weight: wire.spend_weight,
        satisfaction_weight: wire.satisfaction_weight,
        min_relationship_years: wire.min_relationship_years,
        segments: wire
            .segments
            .iter()
            .map(|s| Segment {
                name: s.name.trim().to_string(),
                min_value: s.min_value,
            })
            .collect(),
    };
    let faults = validate(&policy);
    if !faults.is_empty() {
        return Err(ApiError::InvalidArgument(
            faults
                .into_iter()
                .map(|(f, d)| FieldViolation::new(f, d))
                .collect(),
        ));
    }
    sqlx::query(
        "INSERT INTO value_policies (chain_id, window_months, spend_weight, satisfaction_weight, min_relationship_years, \
         segments, updated_by) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (chain_id) DO UPDATE SET \
         window_months = EXCLUDED.window_months, spend_weight = EXCLUDED.spend_weight, \
         satisfaction_weight = EXCLUDED.satisfaction_weight, min_relationship_years = EXCLUDED.min_relationship_years, \
         segments = EXCLUDED.segments, updated_at = now(), updated_by = EXCLUDED.updated_by",
    )
    .bind(principal.chain_id())
    .bind(i32::try_from(policy.window_months).unwrap_or(12))
    .bind(policy.spend_weight)
    .bind(policy.satisfaction_weight)
    .bind(policy.min_relationship_years)
    .bind(sqlx::types::Json(&policy.segments))
    .bind(principal.subject())
    .execute(&api.context.pool)
    .await?;
    let (policy, stamp) = load_policy(&api.context.pool, principal.chain_id()).await?;
    Ok(policy_to_proto(&policy, stamp))
}

#[derive(sqlx::FromRow)]
struct GuestValueRow {
    guest_id: String,
    customer_value: f64,
    value_segment: String,
    created_at: DateTime<Utc>,
    first_stay: Option<NaiveDate>,
    consent_profiling: bool,
}

/// One guest's formula inputs with what was stored from the last evaluation, or `None` for a
/// guest who has not consented to profiling (their value is not computed).
type ValueRow = (String, f64, String, Option<ValueInputs>);

/// The formula's inputs for some guests (all of the chain when `only` is None), as of `as_of`.
async fn inputs(
    pool: &sqlx::PgPool,
    chain_id: &str,
    only: Option<&str>,
    policy: &ValuePolicy,
    as_of: DateTime<Utc>,
) -> ApiResult<Vec<ValueRow>> {
    let end = as_of.date_naive();
    let since = end
        .checked_sub_months(Months::new(policy.window_months))
        .unwrap_or(NaiveDate::MIN);
    let guests: Vec<GuestValueRow> = sqlx::query_as(
        "SELECT g.guest_id, g.customer_value, g.value_segment, g.created_at, g.consent_profiling, \
                (SELECT min(s.arrival_date) FROM stays s WHERE s.guest_id = g.guest_id AND s.status = 'checked_out') \
                AS first_stay \
         FROM guests g WHERE g.chain_id = $1 AND g.merged_into IS NULL AND NOT g.erased \
         AND ($2::text IS NULL OR g.guest_id = $2)",
    )
    .bind(chain_id)
    .bind(only)
    .fetch_all(pool)
    .await?;
    let spend: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT s.guest_id, s.spend_currency, sum(s.spend_minor)::bigint, count(*) FROM stays s \
         JOIN guests g ON g.guest_id = s.guest_id \
         WHERE g.chain_id = $1 AND ($2::text IS NULL OR g.guest_id = $2) AND s.status = 'checked_out' \
         AND s.departure_date > $3 AND s.departure_date <= $4 GROUP BY 1, 2",
    )
    .bind(chain_id)
    .bind(only)
    .bind(since)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let ratings: Vec<(String, i64)> = sqlx::query_as(
        "SELECT f.guest_id, sum(f.csat)::bigint FROM service_failures f JOIN guests g ON g.guest_id = f.guest_id \
         WHERE g.chain_id = $1 AND ($2::text IS NULL OR g.guest_id = $2) AND f.csat > 0 AND f.occurred_at <= $3 \
         GROUP BY 1",
    )
    .bind(chain_id)
    .bind(only)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    let mut recent: HashMap<&str, (f64, i64)> = HashMap::new();
    for (guest, currency, minor, stays) in &spend {
        let entry = recent.entry(guest.as_str()).or_default();
        entry.0 += to_major(currency, *minor);
        entry.1 += stays;
    }
    let ratings: HashMap<&str, i64> = ratings.iter().map(|(g, s)| (g.as_str(), *s)).collect();
    Ok(guests
        .iter()
        .map(|row| {
            let GuestValueRow {
                guest_id,
                customer_value: value,
                value_segment: segment,
                created_at,
                first_stay,
                consent_profiling,
            } = row;
            if !consent_profiling {
                return (guest_id.clone(), *value, segment.clone(), None);
            }
            let start = first_stay
                .map(|d| d.min(created_at.date_naive()))
                .unwrap_or_else(|| created_at.date_naive());
            let (recent_spend, recent_stays) =
                recent.get(guest_id.as_str()).copied().unwrap_or_default();
            let inputs = ValueInputs {
                recent_spend,
                recent_stays,
                satisfaction_sum: ratings.get(guest_id.as_str()).copied().unwrap_or(0),
                relationship_years: (end - start).num_days().max(0) as f64 / 365.25,
            };
            (guest_id.clone(), *value, segment.clone(), Some(inputs))
        })
        .collect())
}

pub async fn evaluate(
    api: &Api,
    request: Request<pb::EvaluateCustomerValuesRequest>,
) -> ApiResult<pb::EvaluateCustomerValuesResponse> {
    let principal = principal(&request)?.clone();
    let as_of = as_of(request.get_ref().as_of.as_ref())?;
    // Values a year on would rank every guest by a recency they do not have yet.
    super::loyalty::not_ahead_for_staff(
        &principal,
        as_of,
        "an evaluation replaces every guest's value and segment at once",
    )?;
    let pool = &api.context.pool;
    // The caller's chain, or every chain for the service role (as the tier evaluation).
    let chains = super::loyalty::batch_chains(api, &principal).await?;
    let (mut evaluated, mut changed) = (0, 0);
    for chain in &chains {
        let (e, c) = evaluate_chain(pool, chain, as_of).await?;
        evaluated += e;
        changed += c;
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT value_segment, count(*) FROM guests WHERE chain_id = ANY($1) AND merged_into IS NULL AND NOT erased \
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(&chains)
    .fetch_all(pool)
    .await?;
    Ok(pb::EvaluateCustomerValuesResponse {
        evaluated: i32::try_from(evaluated).unwrap_or(i32::MAX),
        changed: i32::try_from(changed).unwrap_or(i32::MAX),
        segments: counts
            .into_iter()
            .map(|(segment, guests)| pb::SegmentCount { segment, guests })
            .collect(),
    })
}

/// Re-evaluates the customer value and segment of every guest of `chain` as of `as_of`, under
/// the chain's policy; writes only the guests whose value or segment moved. Returns
/// (evaluated, changed); a second run at the same instant changes nothing.
pub async fn evaluate_chain(
    pool: &PgPool,
    chain: &str,
    as_of: DateTime<Utc>,
) -> ApiResult<(usize, usize)> {
    let (policy, _) = load_policy(pool, chain).await?;
    let rows = inputs(pool, chain, None, &policy, as_of).await?;
    let evaluated = rows.len();
    let (mut ids, mut values, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for (guest_id, old_value, old_segment, inputs) in rows {
        // Scoring and segmenting a guest is profiling: without their consent they keep no value
        // and no segment (an earlier one is cleared).
        let (value, name) = match inputs {
            Some(inputs) => {
                let value = customer_value(&policy, &inputs);
                (value, segment(&policy, value).to_string())
            }
            None => (0.0, String::new()),
        };
        if (value - old_value).abs() > 1e-9 || name != old_segment {
            ids.push(guest_id);
            values.push(value);
            segments.push(name);
        }
    }
    // A guest who withdrew consent to profiling since the inputs were read keeps no value: only
    // a clearing (no value, no segment) reaches them, never a value below every segment.
    let mut tx = pool.begin().await?;
    for ((ids, values), segments) in ids
        .chunks(5_000)
        .zip(values.chunks(5_000))
        .zip(segments.chunks(5_000))
    {
        sqlx::query(
            "UPDATE guests g SET customer_value = v.value, value_segment = v.segment \
             FROM unnest($1::text[], $2::float8[], $3::text[]) AS v(guest_id, value, segment) \
             WHERE g.guest_id = v.guest_id AND (g.consent_profiling OR (v.segment = '' AND v.value = 0))",
        )
        .bind(ids)
        .bind(values)
        .bind(segments)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((evaluated, ids.len()))
}

/// The scheduled run: every chain's customer values as of now. Returns 0 so the background loop
/// waits its period (values drift with the clock, so "changed" is never a backlog).
pub async fn evaluate_all_chains(pool: &PgPool) -> ApiResult<usize> {
    let chains: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT chain_id FROM guests WHERE merged_into IS NULL AND NOT erased",
    )
    .fetch_all(pool)
    .await?;
    for chain in chains {
        let (evaluated, changed) = evaluate_chain(pool, &chain, Utc::now()).await?;
        tracing::info!(%chain, evaluated, changed, "customer values evaluated");
    }
    Ok(0)
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetCustomerValueRequest>,
) -> ApiResult<pb::CustomerValue> {
    let principal = principal(&request)?.clone();
    let guest_id = request.into_inner().guest_id;
    super::store::require_guest_id("guest_id", &guest_id)?;
    let mut conn = api.context.pool.acquire().await?;
    let guest = load(&mut conn, &principal, &guest_id, false, true).await?;
    drop(conn);
    let (policy, _) = load_policy(&api.context.pool, &guest.chain_id).await?;
    let rows = inputs(
        &api.context.pool,
        &guest.chain_id,
        Some(&guest.guest_id),
        &policy,
        Utc::now(),
    )
    .await?;
    let (_, _, _, inputs) = rows
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("guest", guest_id.clone()))?;
    let inputs = inputs.ok_or_else(|| {
        ApiError::failed_precondition(
            "CONSENT_REQUIRED",
            format!("guests/{}", guest.guest_id),
            "the guest has not consented to profiling: no customer value is computed",
        )
    })?;
    let value = customer_value(&policy, &inputs);
    Ok(pb::CustomerValue {
        guest_id: guest.guest_id,
        value,
        segment: segment(&policy, value).to_string(),
        recent_spend: inputs.recent_spend,
        recent_stays: inputs.recent_stays,
        satisfaction_sum: inputs.satisfaction_sum,
        relationship_years: inputs.relationship_years,
    })
}
