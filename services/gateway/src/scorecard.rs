//! `GetScorecard`: fans out to complaints (KPIs per property, property regions) and facilities
//! (work-order attainment) in parallel with deadlines, on the caller's own token, and scores
//! every property, region and the whole scope from summed numerators and denominators. A backend
//! that fails is named in `missing`, and its KPIs leave the score visibly rather than silently.

use std::collections::BTreeMap;

use futures::future::join_all;
use guestloop_kit::auth::{principal, BearerToken, Principal, PropertyScope};
use guestloop_kit::time::{required_period, whole_utc_days};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::audit::v1 as audit;
use guestloop_proto::audit::v1::audit_service_client::AuditServiceClient;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_proto::gateway::v1 as pb;
use sqlx::PgPool;
use tonic::{Request, Status};

use crate::sqs::{default_weights, score, Counts, Weight};
use crate::Backends;

fn counts_of(k: &complaints::KpiCounts) -> Counts {
    let met: i64 = k.clocks.iter().map(|c| c.met).sum();
    let missed: i64 = k.clocks.iter().map(|c| c.missed).sum();
    Counts {
        complaints: k.complaints,
        rated: k.rated,
        csat_sum: k.csat_sum,
        clocks_met: met,
        clocks_decided: met + missed,
        resolved: k.resolved,
        resolved_first_contact: k.resolved_first_contact,
        nps_answers: k.nps_answers,
        nps_promoters: k.nps_promoters,
        nps_detractors: k.nps_detractors,
        repeat_issues: k.repeat_issues,
        ..Counts::default()
    }
}

/// The chain's weights, or the defaults.
pub async fn weights(pool: &PgPool, chain: &str) -> ApiResult<Vec<Weight>> {
    let rows: Vec<(String, f64, f64, f64)> = sqlx::query_as(
        "SELECT kpi, weight, target, floor FROM score_weights WHERE chain_id = $1 ORDER BY kpi",
    )
    .bind(chain)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(default_weights());
    }
    Ok(rows
        .into_iter()
        .map(|(kpi, weight, target, floor)| Weight {
            kpi,
            weight,
            target,
            floor,
        })
        .collect())
}

/// Complaint KPI counts per property for a period, or why not.
async fn complaint_counts(
    backends: &Backends,
    token: &str,
    properties: &[String],
    period: TimeRange,
) -> Result<BTreeMap<String, complaints::KpiCounts>, Status> {
    let channel = backends
        .as_caller("complaints", token)
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let request = complaints::GetComplaintKpisRequest {
        property_ids: properties.to_vec(),
        period: Some(period),
        daily_series: false,
        // Scorecards need per-property counts only.
        totals_only: true,
    };
    let client = ComplaintsServiceClient::new(channel);
    match backends
        .reads
        .read("complaints", &client, &request, |mut c, r| async move {
            c.get_complaint_kpis(r).await
        })
        .await
    {
        Ok(response) => Ok(response
            .by_property
            .into_iter()
            .map(|b| (b.key, b.counts.unwrap_or_default()))
            .collect()),
        Err(status) => Err(status),
    }
}

/// Submitted audits and their score sum per property for a period, or why not.
/// Audits and their score sums per property. Asked with the gateway's own token: every role
/// that may read a scorecard gets the same score for the same property (the audit service keeps
/// its KPI call to quality roles, so a supervisor's own token would leave the audit part out and
/// re-weight the rest). The caller's scope is already checked: `properties` are the ones
/// complaints reported on the caller's token or that the caller named and may access.
async fn audit_counts(
    backends: &Backends,
    chain: &str,
    properties: &[String],
    period: TimeRange,
) -> Result<BTreeMap<String, (i64, f64)>, Unavailable> {
    if properties.is_empty() {
        return Ok(BTreeMap::new());
    }
    let channel = backends
        .as_gateway("audit")
        .map_err(|e| Unavailable::Missing(format!("audit: {e}")))?;
    let client = AuditServiceClient::new(channel);
    let mut out = BTreeMap::new();
    for chunk in properties.chunks(500) {
        let request = audit::GetAuditKpisRequest {
            property_ids: chunk.to_vec(),
            period: Some(period),
            series: 0,
            // The gateway's token passes every chain check; audit checks the caller's chain.
            on_behalf_of_chain: chain.to_string(),
        };
        let kpis = backends
            .reads
            .read("audit", &client, &request, |mut c, r| async move {
                c.get_audit_kpis(r).await
            })
            .await
            .map_err(|status| {
                // The gateway's own token may read every property's figures: a refusal is for
                // the caller's chain (another chain's property), and refuses the card.
                if status.code() == tonic::Code::PermissionDenied {
                    Unavailable::Refused(ApiError::PermissionDenied(format!(
                        "audit: {}",
                        status.message()
                    )))
                } else {
                    Unavailable::Missing(format!("audit: {:?} {}", status.code(), status.message()))
                }
            })?;
        for bucket in kpis.by_property {
            let counts = bucket.counts.unwrap_or_default();
            out.insert(bucket.key, (counts.audits, counts.score_sum));
        }
    }
    Ok(out)
}

fn unit(
    key: String,
    region: String,
    counts: &Counts,
    kpi_counts: &complaints::KpiCounts,
    weights: &[Weight],
    unavailable: &[&str],
) -> pb::ScoredUnit {
    let (sqs, components) = score(counts, weights, unavailable);
    pb::ScoredUnit {
        kpis: Some(kpi_counts.values()),
        kpi_counts: Some(kpi_counts.clone()),
        key,
        region,
        sqs,
        components: components
            .into_iter()
            .map(|c| pb::ScoreComponent {
                kpi: c.kpi,
                value: c.value,
                normalized: c.normalized,
                weight: c.weight,
                contribution: c.contribution,
                target: c.target,
                floor: c.floor,
            })
            .collect(),
        complaints: counts.complaints,
        previous_sqs: None,
        rank: 0,
    }
}

pub async fn get(
    backends: &Backends,
    pool: &PgPool,
    request: Request<pb::GetScorecardRequest>,
) -> ApiResult<pb::Scorecard> {
    let principal = principal(&request)?.clone();
    let token = request
        .extensions()
        .get::<BearerToken>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let request = request.into_inner();
    let granularity = pb::Granularity::try_from(request.granularity)
        .map_err(|_| ApiError::invalid("granularity", "must be DAY, WEEK or MONTH"))?;
    if granularity == pb::Granularity::Unspecified {
        return compute(backends, pool, &principal, &token, request, Detail::Full).await;
    }
    // Validate the buckets before any fan-out.
    let (start, end) = required_period(request.period.as_ref())?;
    let buckets = crate::trend::buckets(start, end, granularity)?;
    let scope = crate::trend::Scope {
        property_ids: &request.property_ids,
        region: &request.region,
    };
    let (card, trend) = futures::join!(
        compute(
            backends,
            pool,
            &principal,
            &token,
            request.clone(),
            Detail::Full
        ),
        crate::trend::points(backends, pool, &principal, &token, scope, buckets)
    );
    let mut card = card?;
    let (points, missing) = trend?;
    card.trend = points;
    for part in missing {
        if !card.missing.contains(&part) {
            card.missing.push(part);
        }
    }
    Ok(card)
}

/// The properties a request names: its own list, else a property-scoped caller's properties
/// (a chain-wide caller without a list gets whichever properties the services report).
fn named_properties(principal: &Principal, requested: &[String]) -> Vec<String> {
    if !requested.is_empty() {
        return requested.to_vec();
    }
    match &principal.claims.props {
        PropertyScope::Listed(ids) => ids.clone(),
        PropertyScope::All(_) => Vec::new(),
    }
}

/// How much of a scorecard to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything: the previous period's scores and CRM's loyalty summary included.
    Full,
    /// What a trend point shows: the period's own scores.
    TrendPoint,
}

/// Work orders done and done on time per property, from facilities.
async fn work_order_counts(
    backends: &Backends,
    token: &str,
    properties: &[String],
    period: TimeRange,
) -> Result<BTreeMap<String, (i64, i64)>, Unavailable> {
    if properties.is_empty() {
        return Ok(BTreeMap::new());
    }
    let channel = backends
        .as_caller("facilities", token)
        .map_err(|e| Unavailable::Missing(format!("facilities: {e}")))?;
    let request = facilities::GetFacilitiesKpisRequest {
        property_ids: properties.to_vec(),
        period: Some(period),
        // The scorecard needs work-order counts only.
        skip_occupancy: true,
        ..Default::default()
    };
    let client = FacilitiesServiceClient::new(channel);
    backends
        .reads
        .read("facilities", &client, &request, |mut c, r| async move {
            c.get_facilities_kpis(r).await
        })
        .await
        .map(|k| {
            k.by_property
                .into_iter()
                .map(|row| (row.property_id, (row.work_orders_done, row.fix_met)))
                .collect()
        })
        .map_err(|status| {
            // Asked on the caller's token: whatever facilities refuses it (a role without its
            // KPIs, another chain's property) it has not shown; the part is left out.
            Unavailable::Missing(format!(
                "facilities: {:?} {}",
                status.code(),
                status.message()
            ))
        })
}

/// Why a backend's part of the card is not there: the backend refused the caller's request, so
/// the whole card is refused (as complaints' refusals are), or the backend is in trouble, so
/// the part is left out and named in `missing`.
enum Unavailable {
    Refused(ApiError),
    Missing(String),
}

/// A refusal as the card's own error; trouble as the reason the part is missing.
fn refused_or<T>(result: Result<T, Unavailable>) -> ApiResult<Result<T, String>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(Unavailable::Refused(refusal)) => Err(refusal),
        Err(Unavailable::Missing(why)) => Ok(Err(why)),
    }
}

/// The scorecard for a request, fetched on `token` (the caller's own).
pub async fn compute(
    backends: &Backends,
    pool: &PgPool,
    principal: &Principal,
    token: &str,
    request: pb::GetScorecardRequest,
    detail: Detail,
) -> ApiResult<pb::Scorecard> {
    let token = token.to_string();
    let (start, end) = whole_utc_days(required_period(request.period.as_ref())?);
    let period = TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(start)),
        end_time: Some(guestloop_kit::time::to_timestamp(end)),
    };
    for property in &request.property_ids {
        principal.require_property(property)?;
    }
    let previous_period = TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(start - (end - start))),
        end_time: period.start_time,
    };
    let weights = weights(pool, principal.chain_id()).await?;
    let mut missing = Vec::new();

    let (current, previous) = futures::join!(
        complaint_counts(backends, &token, &request.property_ids, period),
        async {
            if detail == Detail::Full {
                complaint_counts(backends, &token, &request.property_ids, previous_period).await
            } else {
                Ok(BTreeMap::new())
            }
        }
    );
    let mut current = match current {
        Ok(c) => c,
        Err(status) => {
            // A request complaints refuses (a period too long, a property out of scope) is
            // refused here too; only complaints' own trouble leaves an empty, partial card.
            if let Some(refusal) = ApiError::from_peer_refusal("complaints", &status) {
                return Err(refusal);
            }
            missing.push(format!(
                "complaints: {:?} {}",
                status.code(),
                status.message()
            ));
            return Ok(pb::Scorecard {
                missing,
                period: Some(period),
                ..Default::default()
            });
        }
    };
    let (previous, previous_known) = match previous {
        Ok(previous) => (previous, detail == Detail::Full),
        Err(status) => {
            missing.push(format!(
                "complaints: previous period: {:?} {}",
                status.code(),
                status.message()
            ));
            (BTreeMap::new(), false)
        }
    };
    // Complaints reports the properties that had complaints; a property asked for by name (or
    // in the caller's own list) that had none is still on the card, with its facilities and
    // audit figures.
    for property in named_properties(principal, &request.property_ids) {
        current.entry(property).or_default();
    }
    let properties: Vec<String> = current.keys().cloned().collect();

    // Regions from the complaints service's property settings, and facilities KPIs, in parallel.
    let settings_calls = properties.iter().map(|property| {
        let channel = backends.as_caller("complaints", &token);
        let property = property.clone();
        async move {
            if let Some(region) = backends.cached_region(&property) {
                return (property, Ok(region));
            }
            let request = complaints::GetPropertySettingsRequest {
                property_id: property.clone(),
            };
            let settings = match channel {
                Ok(channel) => backends
                    .reads
                    .read(
                        "complaints",
                        &ComplaintsServiceClient::new(channel),
                        &request,
                        |mut c, r| async move { c.get_property_settings(r).await },
                    )
                    .await
                    .map_err(|status| format!("{:?} {}", status.code(), status.message())),
                Err(e) => Err(e.to_string()),
            };
            match settings {
                Ok(settings) => {
                    let region = settings.region;
                    backends.remember_region(&property, &region);
                    (property, Ok(region))
                }
                Err(why) => (property, Err(why)),
            }
        }
    });
    // Regions first (cached after the first card): a card for one region asks the other
    // services, CRM's loyalty summary included, about that region's properties only.
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    for (property, region) in join_all(settings_calls).await {
        match region {
            Ok(region) => {
                regions.insert(property, region);
            }
            Err(why) => missing.push(format!("complaints: region of {property}: {why}")),
        }
    }
    let properties: Vec<String> = properties
        .into_iter()
        .filter(|p| {
            request.region.is_empty() || regions.get(p).is_some_and(|r| *r == request.region)
        })
        .collect();
    // The previous period is scored from the same sources as the current one, so the change
    // between them is a change in the data, not in the formula. Trend points need neither the
    // previous period nor CRM's loyalty summary.
    let full = detail == Detail::Full;
    let (work_orders, previous_work_orders, audits, previous_audits, loyalty) = futures::join!(
        work_order_counts(backends, &token, &properties, period),
        async {
            if full {
                work_order_counts(backends, &token, &properties, previous_period).await
            } else {
                Ok(BTreeMap::new())
            }
        },
        audit_counts(backends, principal.chain_id(), &properties, period),
        async {
            if full {
                audit_counts(backends, principal.chain_id(), &properties, previous_period).await
            } else {
                Ok(BTreeMap::new())
            }
        },
        async {
            if full {
                loyalty(backends, principal, &token, &properties, period).await
            } else {
                Ok(None)
            }
        }
    );
    let work_orders = refused_or(work_orders)?;
    let previous_work_orders = refused_or(previous_work_orders)?;
    let audits = refused_or(audits)?;
    let previous_audits = refused_or(previous_audits)?;
    let loyalty = match loyalty {
        Ok(summary) => summary,
        Err(why) => {
            missing.push(why);
            None
        }
    };
    let current: BTreeMap<String, complaints::KpiCounts> = current
        .into_iter()
        .filter(|(p, _)| properties.contains(p))
        .collect();
    let mut per_property: BTreeMap<String, Counts> = current
        .iter()
        .map(|(p, k)| (p.clone(), counts_of(k)))
        .collect();
    let mut previous: BTreeMap<String, Counts> = previous
        .iter()
        .map(|(p, k)| (p.clone(), counts_of(k)))
        .collect();
    if previous_known {
        // A property without complaints then still has its work orders and audits then.
        for property in &properties {
            previous.entry(property.clone()).or_default();
        }
    }
    let mut unavailable: Vec<&str> = Vec::new();
    let mut previous_unavailable: Vec<&str> = Vec::new();
    for (results, counts, unavailable, what) in [
        (work_orders, &mut per_property, &mut unavailable, ""),
        (
            previous_work_orders,
            &mut previous,
            &mut previous_unavailable,
            "previous period: ",
        ),
    ] {
        match results {
            Ok(rows) => {
                for (property, (done, on_time)) in rows {
                    if let Some(counts) = counts.get_mut(&property) {
                        counts.work_orders_done = done;
                        counts.work_orders_on_time = on_time;
                    }
                }
            }
            Err(why) => {
                missing.push(why.replacen("facilities: ", &format!("facilities: {what}"), 1));
                unavailable.push("work_order_attainment");
            }
        }
    }
    for (results, counts, unavailable, what) in [
        (audits, &mut per_property, &mut unavailable, ""),
        (
            previous_audits,
            &mut previous,
            &mut previous_unavailable,
            "previous period: ",
        ),
    ] {
        match results {
            Ok(rows) => {
                for (property, (count, sum)) in rows {
                    if let Some(counts) = counts.get_mut(&property) {
                        counts.audits = count;
                        counts.audit_score_sum = sum;
                    }
                }
            }
            Err(why) => {
                missing.push(why.replacen("audit: ", &format!("audit: {what}"), 1));
                unavailable.push("audit_score");
            }
        }
    }

    // The change against the previous period compares one formula: when a part is left out of
    // one period only (its backend answered for the other), the previous score is not given
    // rather than scored without a part the current one has, or with one it lacks.
    let comparable = same_parts(&unavailable, &previous_unavailable);
    let previous_score = |counts: &Counts| {
        if comparable {
            score(counts, &weights, &previous_unavailable).0
        } else {
            None
        }
    };
    let mut units: Vec<pb::ScoredUnit> = per_property
        .iter()
        .map(|(p, counts)| {
            let mut u = unit(
                p.clone(),
                regions.get(p).cloned().unwrap_or_default(),
                counts,
                current.get(p).unwrap_or(&complaints::KpiCounts::default()),
                &weights,
                &unavailable,
            );
            u.previous_sqs = previous.get(p).and_then(previous_score);
            u
        })
        .collect();
    units.sort_by(|a, b| {
        b.sqs
            .unwrap_or(-1.0)
            .total_cmp(&a.sqs.unwrap_or(-1.0))
            .then(a.key.cmp(&b.key))
    });
    // Only scored properties are ranked; one without a score (no data in the period) is 0,
    // "not ranked", listed after them.
    for (i, u) in units.iter_mut().filter(|u| u.sqs.is_some()).enumerate() {
        u.rank = i as i32 + 1;
    }

    type Sums = (Counts, Counts, complaints::KpiCounts);
    let mut by_region: BTreeMap<String, Sums> = BTreeMap::new();
    let mut scope: Sums = Default::default();
    for (property, counts) in &per_property {
        let region = regions.get(property).cloned().unwrap_or_default();
        let entry = by_region.entry(region).or_default();
        entry.0.add(counts);
        scope.0.add(counts);
        if let Some(before) = previous.get(property) {
            entry.1.add(before);
            scope.1.add(before);
        }
        if let Some(kpis) = current.get(property) {
            entry.2.add(kpis);
            scope.2.add(kpis);
        }
    }
    let region_units = by_region
        .into_iter()
        .map(|(region, (now, before, kpis))| {
            let mut u = unit(region.clone(), region, &now, &kpis, &weights, &unavailable);
            u.previous_sqs = previous_score(&before);
            u
        })
        .collect();
    let mut scope_unit = unit(
        "scope".into(),
        request.region.clone(),
        &scope.0,
        &scope.2,
        &weights,
        &unavailable,
    );
    scope_unit.previous_sqs = previous_score(&scope.1);
    Ok(pb::Scorecard {
        properties: units,
        regions: region_units,
        scope: Some(scope_unit),
        missing,
        trend: Vec::new(),
        loyalty,
        period: Some(period),
    })
}

/// CRM's loyalty and recovery figures for the scope's properties, or why not: reused for the
/// same caller role, chain, properties and period windows for the configured age, and for a
/// rolling period the earlier windows' summary while the new one is computed (see
/// [`crate::loyalty_cache`]).
async fn loyalty(
    backends: &Backends,
    principal: &Principal,
    token: &str,
    properties: &[String],
    period: TimeRange,
) -> Result<Option<pb::LoyaltySummary>, String> {
    if properties.is_empty() {
        return Ok(None);
    }
    let bounds = required_period(Some(&period)).map_err(|e| format!("crm: {e}"))?;
    // Owned: the cache may finish the call in the background after this scorecard is answered.
    let channel = backends
        .as_caller("crm", token)
        .map_err(|e| format!("crm: {e}"))?;
    let property_ids = properties.to_vec();
    let reads = backends.reads.clone();
    let ask_crm = async move {
        let asked = chrono::Utc::now();
        let request = crm::GetCrmKpisRequest {
            property_ids,
            period: Some(period),
            loyalty_only: true,
        };
        let kpis = reads
            .read(
                "crm",
                &CrmServiceClient::new(channel),
                &request,
                |mut c, r| async move { c.get_crm_kpis(r).await },
            )
            .await
            .map_err(|status| format!("crm: {:?} {}", status.code(), status.message()))?;
        Ok(pb::LoyaltySummary {
            members: kpis.members,
            repeat_guests: kpis.repeat_guests,
            staying_guests: kpis.staying_guests,
            repeat_stay_rate: kpis.repeat_stay_rate,
            recovered_guests: kpis.recovered_guests,
            recovered_returned: kpis.recovered_returned,
            unrecovered_guests: kpis.unrecovered_guests,
            unrecovered_returned: kpis.unrecovered_returned,
            recovered_return_rate: kpis.recovered_return_rate,
            unrecovered_return_rate: kpis.unrecovered_return_rate,
            points_earned: kpis.points_earned,
            points_redeemed: kpis.points_redeemed,
            as_of: Some(guestloop_kit::time::to_timestamp(asked)),
            period: Some(period),
        })
    };
    backends
        .loyalty
        .get_or_compute(
            principal.chain_id(),
            principal.role(),
            properties,
            bounds,
            ask_crm,
        )
        .await
        .map(Some)
}

/// Whether two periods were scored with the same parts left out (in any order).
fn same_parts(left_out: &[&str], previous_left_out: &[&str]) -> bool {
    let now: std::collections::BTreeSet<&str> = left_out.iter().copied().collect();
    let then: std::collections::BTreeSet<&str> = previous_left_out.iter().copied().collect();
    now == then
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_compare_only_when_scored_from_the_same_parts() {
        assert!(same_parts(&[], &[]));
        assert!(same_parts(
            &["audit_score", "work_order_attainment"],
            &["work_order_attainment", "audit_score", "audit_score"]
        ));
        assert!(!same_parts(&["work_order_attainment"], &[]));
        assert!(!same_parts(&[], &["audit_score"]));
    }
}
