//! BI and operations: the scorecard as JSON or CSV, score trends, event-log exports, and
//! liveness.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::common::v1::{ListEventsRequest, TimeRange};
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{HttpResult, Problem, Refusal};
use super::schemas::{EventPage, ExportedEvent, Health, ScoreTrend, Scorecard};
use super::{Caller, HttpState};

/// Liveness of the HTTP side.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, description = "Serving", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScorecardQuery {
    /// Start of the period, an RFC 3339 instant, e.g. 2026-11-01T00:00:00Z.
    #[param(format = DateTime)]
    start: String,
    /// End of the period (exclusive), an RFC 3339 instant.
    #[param(format = DateTime)]
    end: String,
    /// Only properties of this region.
    #[serde(default)]
    region: Option<String>,
    /// Comma-separated property ids; absent: every property in the caller's scope.
    #[serde(default)]
    properties: Option<String>,
    /// `json` (default) or `csv` (long form: one row per property and KPI).
    #[serde(default)]
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
    /// `day`, `week` or `month`: the JSON answer also carries the scope's trend over the period.
    #[serde(default)]
    #[param(pattern = "^(day|week|month)$")]
    granularity: Option<String>,
}

fn granularity(text: Option<&str>, default: pb::Granularity) -> HttpResult<pb::Granularity> {
    match text {
        None | Some("") => Ok(default),
        Some("day") => Ok(pb::Granularity::Day),
        Some("week") => Ok(pb::Granularity::Week),
        Some("month") => Ok(pb::Granularity::Month),
        Some(_) => Err(Refusal::bad_request(
            "granularity: must be day, week or month",
        )),
    }
}

fn instant(text: &str, field: &str) -> HttpResult<prost_types::Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
        .map_err(|_| {
            Refusal::bad_request(format!(
                "{field}: must be an RFC 3339 instant, e.g. 2026-11-01T00:00:00Z"
            ))
        })
}

/// The CSV scorecard's header naming the backends whose parts are missing, e.g. `audit,crm`.
pub const MISSING_HEADER: &str = "guestloop-missing";

/// The distinct backends named in `missing` (`facilities: Unavailable …` → `facilities`), in
/// order, comma-separated; only names made of lower-case letters (header-safe).
fn missing_backends(missing: &[String]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for part in missing {
        let name = part.split(':').next().unwrap_or_default().trim();
        if !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names.join(",")
}

/// The query parameters a period's bounds arrive in.
const PERIOD_PARAMETERS: &[(&str, &str)] =
    &[("period.start_time", "start"), ("period.end_time", "end")];

/// A text cell of a CSV: quoted when it holds a separator, quote or line break, and never read
/// as a formula by a spreadsheet (a leading `=`, `+`, `-`, `@`, tab or carriage return gets a
/// `'` before it, as OWASP advises): ids and regions come from callers.
pub fn csv_text(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Columns: property_id, region, kpi, value, normalized, weight, contribution, sqs, then level
/// (`property`, `region` or `scope`), previous_sqs, period_start and period_end (the period
/// the figures cover: the request's widened to whole UTC days). Columns are only ever added at
/// the end.
pub const CSV_HEADER: &str = "property_id,region,kpi,value,normalized,weight,contribution,sqs,\
level,previous_sqs,period_start,period_end";

/// One row per unit × KPI (long form), stable column names: the properties, then each region
/// and the scope, whose figures come from summed counts (never averages of the properties').
fn scorecard_csv(card: &pb::Scorecard) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    let number = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let field = csv_text;
    let bound = |t| super::schemas::instant(t).unwrap_or_default();
    let period = card.period.as_ref();
    let (start, end) = (
        bound(period.and_then(|p| p.start_time.as_ref())),
        bound(period.and_then(|p| p.end_time.as_ref())),
    );
    let rows = card
        .properties
        .iter()
        .map(|u| ("property", field(&u.key), field(&u.region), u))
        .chain(
            card.regions
                .iter()
                .map(|u| ("region", String::new(), field(&u.key), u)),
        )
        .chain(
            card.scope
                .iter()
                .map(|u| ("scope", String::new(), String::new(), u)),
        );
    for (level, property, region, unit) in rows {
        for c in &unit.components {
            out.push_str(&format!(
                "{property},{region},{},{},{},{:.4},{},{},{level},{},{start},{end}\n",
                c.kpi,
                number(c.value),
                number(c.normalized),
                c.weight,
                number(c.contribution),
                number(unit.sqs),
                number(unit.previous_sqs),
            ));
        }
    }
    out
}

/// KPIs and the composite service-quality score per property, region and scope, with the change
/// against the previous period; parts a backend could not deliver are listed in `missing`.
#[utoipa::path(get, path = "/v1/scorecard", tag = "bi", params(ScorecardQuery),
    responses(
        (status = 200, description = "The scorecard",
            content((Scorecard = "application/json"), (String = "text/csv")),
            headers(("Guestloop-Missing" = String,
                description = "CSV only, when parts are missing: the backends left out, e.g. `audit,crm`"))),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The gateway cannot answer now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn scorecard(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<Query<ScorecardQuery>, QueryRejection>,
) -> HttpResult<Response> {
    let Query(query) = query?;
    let period = TimeRange {
        start_time: Some(instant(&query.start, "start")?),
        end_time: Some(instant(&query.end, "end")?),
    };
    let csv = match query.format.as_deref() {
        None | Some("" | "json") => false,
        Some("csv") => true,
        Some(_) => return Err(Refusal::bad_request("format: must be json or csv")),
    };
    let request = pb::GetScorecardRequest {
        property_ids: query
            .properties
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        region: query.region.unwrap_or_default(),
        period: Some(period),
        granularity: granularity(query.granularity.as_deref(), pb::Granularity::Unspecified)?
            as i32,
    };
    let card = GatewayServiceClient::new(caller.channel(&state.gateway)?)
        .get_scorecard(request)
        .await
        .map_err(|s| Refusal::from(s).renaming(PERIOD_PARAMETERS))?
        .into_inner();
    if csv {
        // CSV has no place for what is missing: a header names the backends whose parts are
        // left out (their rows blank, the other weights re-scaled), so a BI load can tell a
        // partial card from a full one.
        let missing = missing_backends(&card.missing);
        let mut response = (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            scorecard_csv(&card),
        )
            .into_response();
        if !missing.is_empty() {
            if let Ok(value) = header::HeaderValue::from_str(&missing) {
                response.headers_mut().insert(MISSING_HEADER, value);
            }
        }
        return Ok(response);
    }
    Ok(Json(Scorecard::from(&card)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// Start of the first bucket, an RFC 3339 instant.
    #[param(format = DateTime)]
    start: String,
    /// End of the last bucket (exclusive), an RFC 3339 instant.
    #[param(format = DateTime)]
    end: String,
    /// `day`, `week` (default) or `month`; at most 120 buckets.
    #[serde(default)]
    #[param(pattern = "^(day|week|month)$")]
    granularity: Option<String>,
    #[serde(default)]
    region: Option<String>,
    /// Comma-separated property ids; absent: every property in the caller's scope.
    #[serde(default)]
    properties: Option<String>,
}

/// The composite score of the scope per day, week or month, each bucket scored like a scorecard.
#[utoipa::path(get, path = "/v1/scorecard/trend", tag = "bi", params(TrendQuery),
    responses(
        (status = 200, description = "The trend", body = ScoreTrend),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The gateway cannot answer now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn trend(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<Query<TrendQuery>, QueryRejection>,
) -> HttpResult<Json<ScoreTrend>> {
    let Query(query) = query?;
    let granularity = granularity(query.granularity.as_deref(), pb::Granularity::Week)?;
    let request = pb::GetScoreTrendRequest {
        property_ids: query
            .properties
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        region: query.region.unwrap_or_default(),
        period: Some(TimeRange {
            start_time: Some(instant(&query.start, "start")?),
            end_time: Some(instant(&query.end, "end")?),
        }),
        granularity: granularity as i32,
    };
    let trend = GatewayServiceClient::new(caller.channel(&state.gateway)?)
        .get_score_trend(request)
        .await
        .map_err(|s| Refusal::from(s).renaming(PERIOD_PARAMETERS))?
        .into_inner();
    Ok(Json(ScoreTrend::from(&trend)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Events after this position (0: from the start).
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Comma-separated event types (exact), e.g. complaints.complaint.filed; absent: all.
    #[serde(default)]
    types: Option<String>,
    /// Events read per page, 1–1000 (default 100); a scoped page may hold fewer.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i32>,
}

/// A service's event log for BI exports, paged by position: the caller's chain and property
/// scope only. Chain roles (quality managers, chain admins) may read it.
#[utoipa::path(get, path = "/v1/events/{service}", tag = "bi",
    params(("service" = String, Path, description = "complaints, crm, facilities or audit"), EventQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role refused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn events(
    State(state): State<HttpState>,
    caller: Caller,
    service: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> HttpResult<Json<EventPage>> {
    let axum::extract::Path(service) = service?;
    let Query(query) = query?;
    let raw = state.feed(&service).ok_or_else(|| {
        Refusal::new(
            axum::http::StatusCode::NOT_FOUND,
            "service: must be complaints, crm, facilities or audit",
        )
    })?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(Refusal::bad_request("after: must be 0 or greater"));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Refusal::bad_request("limit: must be between 1 and 1000"));
    }
    let page = EventFeedClient::new(caller.channel(raw)?)
        .list_events(ListEventsRequest {
            after_position: after,
            event_types: query
                .types
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            page_size: limit,
        })
        .await?
        .into_inner();
    Ok(Json(EventPage {
        events: page
            .events
            .iter()
            .map(|e| ExportedEvent {
                position: e.position,
                event_id: e.event_id.clone(),
                event_type: e.event_type.clone(),
                subject: e.subject.clone(),
                chain_id: e.chain_id.clone(),
                property_id: e.property_id.clone(),
                occurred_at: e.occur_time.as_ref().and_then(|t| {
                    chrono::DateTime::from_timestamp(t.seconds, 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }),
                payload_type: e
                    .payload
                    .as_ref()
                    .map(|p| p.type_url.clone())
                    .unwrap_or_default(),
                payload_base64: e
                    .payload
                    .as_ref()
                    .map(|p| base64::engine::general_purpose::STANDARD.encode(&p.value))
                    .unwrap_or_default(),
            })
            .collect(),
        next_after: page.next_after_position,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parts_name_their_backends_once() {
        let missing = vec![
            "facilities: Unavailable connection refused".to_string(),
            "audit: Unavailable down".to_string(),
            "facilities: previous period: Unavailable connection refused".to_string(),
            "complaints: region of p1: Unavailable x".to_string(),
        ];
        assert_eq!(missing_backends(&missing), "facilities,audit,complaints");
        assert_eq!(missing_backends(&[]), "");
        assert_eq!(missing_backends(&["Weird Name: x".to_string()]), "");
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_text("dubai"), "dubai");
        assert_eq!(csv_text("emea, south"), "\"emea, south\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("a\rb"), "\"a\rb\"");
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("+49 30"), "'+49 30");
        assert_eq!(csv_text("-2"), "'-2");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            csv_text("=HYPERLINK(\"https://evil.example/\",\"Open\")"),
            "\"'=HYPERLINK(\"\"https://evil.example/\"\",\"\"Open\"\")\""
        );
    }
}
