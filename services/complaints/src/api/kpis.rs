//! `GetComplaintKpis`: sums from the daily rollup for a set of properties and a period (by UTC
//! day of filing), with numerators and denominators so callers can roll up further, derived
//! values, and breakdowns by property, category, channel and department, plus a daily series.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use guestloop_kit::auth::{principal, PropertyScope, Role};
use guestloop_kit::time::{required_period, whole_utc_days};
use guestloop_kit::{tenancy, ApiError, ApiResult};
use guestloop_proto::common::v1::Money;
use guestloop_proto::complaints::v1 as pb;
use tonic::Request;

use super::Api;
use crate::store::kpis::{counter, query, Group, Scope, Source};

const MAX_DAYS: i64 = 1_100;

/// Converts summed counters to the wire message.
pub fn counts(values: &[i64], currency: Option<&str>) -> pb::KpiCounts {
    let c = |name: &str| values.get(counter(name)).copied().unwrap_or(0);
    let clock = |stage: pb::Stage, met: &str, missed: &str| pb::ClockAttainment {
        stage: stage as i32,
        met: c(met),
        missed: c(missed),
    };
    pb::KpiCounts {
        complaints: c("complaints"),
        responded: c("responded"),
        first_response_seconds_sum: c("first_response_seconds"),
        resolved: c("resolved"),
        first_resolution_seconds_sum: c("first_resolution_seconds"),
        currently_resolved: c("currently_resolved"),
        total_resolution_seconds_sum: c("total_resolution_seconds"),
        resolved_first_contact: c("resolved_first_contact"),
        rated: c("rated"),
        csat_sum: c("csat_sum"),
        csat_top_two: c("csat_top_two"),
        nps_answers: c("nps_answers"),
        nps_promoters: c("nps_promoters"),
        nps_detractors: c("nps_detractors"),
        escalated: c("escalated"),
        escalation_seconds_sum: c("escalation_seconds"),
        reopened: c("reopened"),
        repeat_issues: c("repeat_issues"),
        compensation_points: c("compensation_points"),
        compensation: currency
            .map(|code| {
                vec![Money {
                    currency_code: code.to_string(),
                    minor_units: c("compensation_minor"),
                }]
            })
            .unwrap_or_default(),
        clocks: vec![
            clock(
                pb::Stage::Acknowledge,
                "met_acknowledge",
                "missed_acknowledge",
            ),
            clock(
                pb::Stage::FirstInvestigation,
                "met_investigation",
                "missed_investigation",
            ),
            clock(
                pb::Stage::RemedyPlan,
                "met_remedy_plan",
                "missed_remedy_plan",
            ),
            clock(pb::Stage::AnswerToGuest, "met_answer", "missed_answer"),
            clock(pb::Stage::Resolution, "met_resolution", "missed_resolution"),
        ],
    }
}

/// The UTC days `[from, to)` a period covers (a partial last day counts).
pub fn period_days(
    period: Option<&guestloop_proto::common::v1::TimeRange>,
) -> ApiResult<(NaiveDate, NaiveDate)> {
    let (start, end) = whole_utc_days(required_period(period)?);
    let (from, to) = (start.date_naive(), end.date_naive());
    if (to - from).num_days() > MAX_DAYS {
        return Err(ApiError::invalid(
            "period",
            format!("must span at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

pub async fn get(
    api: &Api,
    request: Request<pb::GetComplaintKpisRequest>,
) -> ApiResult<pb::ComplaintKpis> {
    let principal = principal(&request)?.clone();
    if principal.role() == Role::Guest {
        return Err(ApiError::PermissionDenied("guests cannot read KPIs".into()));
    }
    let request = request.into_inner();
    let (from, to) = period_days(request.period.as_ref())?;
    let mut conn = api.context.pool.acquire().await?;
    // The chain's properties: those registered to it (by a complaint or by settings saved for
    // them, so a property with settings but no complaint yet has its row of zeros), and those it
    // has had complaints at, unless another chain holds them now.
    let chain_properties = || {
        sqlx::query_scalar::<_, String>(
            "SELECT property_id FROM property_chains WHERE chain_id = $1 \
             UNION \
             SELECT k.property_id FROM known_properties k WHERE k.chain_id = $1 AND NOT EXISTS ( \
                 SELECT 1 FROM property_chains p WHERE p.property_id = k.property_id AND p.chain_id <> $1) \
             ORDER BY 1",
        )
        .bind(principal.chain_id())
    };
    // The whole chain is summed from the chain rollup: asked for by naming no property (with a
    // chain-wide scope), or by naming every property the chain has complaints for.
    let (properties, whole_chain): (Vec<String>, bool) = if request.property_ids.is_empty() {
        match &principal.claims.props {
            PropertyScope::Listed(ids) => (ids.clone(), false),
            PropertyScope::All(_) => (chain_properties().fetch_all(&mut *conn).await?, true),
        }
    } else {
        for property in &request.property_ids {
            principal.require_property(property)?;
        }
        let mut named = request.property_ids.clone();
        named.sort();
        named.dedup();
        let breakdowns = request.daily_series || !request.totals_only;
        let whole_chain = breakdowns
            && matches!(principal.claims.props, PropertyScope::All(_))
            && chain_properties().fetch_all(&mut *conn).await? == named;
        (named, whole_chain)
    };
    let named: Vec<&str> = properties.iter().map(String::as_str).collect();
    tenancy::require_properties(&mut conn, &principal, &named).await?;
    let scope = if whole_chain {
        Scope::chain(principal.chain_id(), &properties)
    } else {
        Scope::properties(&properties)
    };
    let groups = query(
        &mut conn,
        Source::Rollup,
        scope,
        from,
        to,
        request.daily_series,
        !request.totals_only,
    )
    .await?;
    let currencies: BTreeMap<String, String> =
        crate::store::settings::get_many(&mut conn, principal.chain_id(), &properties)
            .await?
            .into_iter()
            .map(|(property, settings)| {
                let currency = crate::settings::currency_of(&settings);
                (property, currency)
            })
            .collect();
    let distinct: std::collections::BTreeSet<&String> = currencies.values().collect();
    let single_currency = (distinct.len() == 1)
        .then(|| distinct.iter().next().map(|s| s.as_str()))
        .flatten();
    let mut kpis = assemble(&groups, &currencies, single_currency);
    with_every_property(&mut kpis, &properties, &currencies);
    Ok(kpis)
}

/// Adds a row of zeros for each of `properties` the data had no complaints for in the period,
/// keeping the rows in property order: a league table or roll-up built from the rows keeps
/// every property of the scope, not only those with complaints.
fn with_every_property(
    kpis: &mut pb::ComplaintKpis,
    properties: &[String],
    currencies: &BTreeMap<String, String>,
) {
    let present: std::collections::BTreeSet<String> =
        kpis.by_property.iter().map(|b| b.key.clone()).collect();
    for property in properties.iter().filter(|p| !present.contains(*p)) {
        let zero = counts(&[], currencies.get(property).map(String::as_str));
        kpis.by_property.push(pb::KpiBreakdown {
            key: property.clone(),
            values: Some(zero.values()),
            counts: Some(zero),
        });
    }
    kpis.by_property.sort_by(|a, b| a.key.cmp(&b.key));
}

/// Builds the response from grouped sums.
pub fn assemble(
    groups: &[Group],
    currencies: &BTreeMap<String, String>,
    single_currency: Option<&str>,
) -> pb::ComplaintKpis {
    let mut out = pb::ComplaintKpis::default();
    let breakdown = |group: &Group, currency: Option<&str>| {
        let counts = counts(&group.values, currency);
        pb::KpiBreakdown {
            key: group.key.clone(),
            values: Some(counts.values()),
            counts: Some(counts),
        }
    };
    for group in groups {
        match group.dimension {
            "total" => {
                let total = counts(&group.values, single_currency);
                out.values = Some(total.values());
                out.counts = Some(total);
            }
            "property" => out.by_property.push(breakdown(
                group,
                currencies.get(&group.key).map(String::as_str),
            )),
            "category" => out.by_category.push(breakdown(group, single_currency)),
            "channel" => {
                let mut entry = breakdown(group, single_currency);
                entry.key = group
                    .key
                    .parse::<i32>()
                    .ok()
                    .and_then(|c| pb::Channel::try_from(c).ok())
                    .map_or(group.key.clone(), |c| c.as_str_name().to_string());
                out.by_channel.push(entry);
            }
            "department" => out.by_department.push(breakdown(group, single_currency)),
            "day" => out.daily.push(pb::KpiDay {
                day: group.key.clone(),
                counts: Some(counts(&group.values, single_currency)),
            }),
            _ => {}
        }
    }
    if out.counts.is_none() {
        let empty = counts(&[], single_currency);
        out.values = Some(empty.values());
        out.counts = Some(empty);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_of_the_request_has_its_row() {
        let row = |key: &str, complaints: i64| {
            let mut counts = counts(&[], Some("EUR"));
            counts.complaints = complaints;
            pb::KpiBreakdown {
                key: key.into(),
                values: Some(counts.values()),
                counts: Some(counts),
            }
        };
        let mut kpis = pb::ComplaintKpis {
            by_property: vec![row("lisbon", 4), row("vienna", 2)],
            ..Default::default()
        };
        let currencies = BTreeMap::from([("madrid".to_string(), "EUR".to_string())]);
        let properties: Vec<String> = ["vienna", "madrid", "lisbon"]
            .iter()
            .map(|p| p.to_string())
            .collect();
        with_every_property(&mut kpis, &properties, &currencies);
        let rows: Vec<(String, i64)> = kpis
            .by_property
            .iter()
            .map(|b| {
                let counts = b.counts.clone().unwrap_or_default();
                (b.key.clone(), counts.complaints)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("lisbon".to_string(), 4),
                ("madrid".to_string(), 0),
                ("vienna".to_string(), 2),
            ]
        );
        assert!(kpis.by_property.iter().all(|b| b.values.is_some()));
    }
}
