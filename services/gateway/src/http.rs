//! The gateway's HTTP/JSON side (port 8080 by default), for mobile apps, BI and load balancers.
//! A thin façade over the gRPC services: each request is authenticated with the same bearer JWT,
//! forwarded with the caller's token (so every backend enforces the caller's own scope), and
//! errors come back as RFC 9457 problem details.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use guestloop_kit::auth::{Claims, Role, TokenVerifier};
use guestloop_kit::client::{channel, AuthedChannel, CallContext};
use guestloop_kit::config::Settings;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    verifier: TokenVerifier,
    gateway: Channel,
    complaints: Channel,
    crm: Channel,
}

impl HttpState {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.server.request_timeout_ms);
        Ok(Self {
            verifier: TokenVerifier::from_settings(&settings.auth)?,
            gateway: channel(&settings.endpoint_for("gateway"), timeout)?,
            complaints: channel(&settings.endpoint_for("complaints"), timeout)?,
            crm: channel(&settings.endpoint_for("crm"), timeout)?,
        })
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = Problem {
        kind: format!("https://guestloop.io/problems/{}", status.as_u16()),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail: detail.into(),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(body),
    )
        .into_response()
}

/// A refusal that becomes a problem document.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    detail: String,
}

impl Refusal {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        problem(self.status, self.detail)
    }
}

fn from_status(status: tonic::Status) -> Response {
    use tonic::Code;
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(http, status.message().to_string())
}

/// The caller's verified claims and a channel factory carrying the caller's token.
struct Caller {
    claims: Claims,
    token: String,
}

impl Caller {
    fn from_headers(state: &HttpState, headers: &HeaderMap) -> Result<Self, Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "missing authorization: Bearer <token>",
                )
            })?;
        let claims = state
            .verifier
            .verify(token)
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(Self {
            claims,
            token: token.to_string(),
        })
    }

    fn channel(&self, raw: &Channel) -> Result<AuthedChannel, Refusal> {
        let context = CallContext::with_token(&SecretString::from(self.token.clone()))
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(InterceptedService::new(raw.clone(), context))
    }

    fn guest_id(&self) -> Result<String, Refusal> {
        match (self.claims.role, &self.claims.guest_id) {
            (Role::Guest, Some(id)) => Ok(id.clone()),
            _ => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "this endpoint is for guest tokens",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ScorecardQuery {
    /// RFC 3339 instants.
    start: String,
    end: String,
    #[serde(default)]
    region: String,
    /// Comma-separated property ids.
    #[serde(default)]
    properties: String,
    /// `json` (default) or `csv`.
    #[serde(default)]
    format: String,
}

fn instant(text: &str, field: &str) -> Result<prost_types::Timestamp, Refusal> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
        .map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("{field}: must be an RFC 3339 instant, e.g. 2026-11-01T00:00:00Z"),
            )
        })
}

fn unit_json(unit: &pb::ScoredUnit) -> Value {
    json!({
        "key": unit.key,
        "region": unit.region,
        "sqs": unit.sqs,
        "previous_sqs": unit.previous_sqs,
        "rank": unit.rank,
        "complaints": unit.complaints,
        "components": unit.components.iter().map(|c| json!({
            "kpi": c.kpi, "value": c.value, "normalized": c.normalized, "weight": c.weight,
            "contribution": c.contribution, "target": c.target, "floor": c.floor,
        })).collect::<Vec<_>>(),
    })
}

/// One row per property × KPI (long form), stable column names.
fn scorecard_csv(card: &pb::Scorecard) -> String {
    let mut out = String::from("property_id,region,kpi,value,normalized,weight,contribution,sqs\n");
    let number = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for unit in &card.properties {
        for c in &unit.components {
            out.push_str(&format!(
                "{},{},{},{},{},{:.4},{},{}\n",
                unit.key,
                unit.region,
                c.kpi,
                number(c.value),
                number(c.normalized),
                c.weight,
                number(c.contribution),
                number(unit.sqs)
            ));
        }
    }
    out
}

async fn scorecard(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(query): Query<ScorecardQuery>,
) -> Response {
    let caller = match Caller::from_headers(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let period = match (instant(&query.start, "start"), instant(&query.end, "end")) {
        (Ok(start), Ok(end)) => TimeRange {
            start_time: Some(start),
            end_time: Some(end),
        },
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let channel = match caller.channel(&state.gateway) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let request = pb::GetScorecardRequest {
        property_ids: query
            .properties
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        region: query.region.clone(),
        period: Some(period),
    };
    match GatewayServiceClient::new(channel)
        .get_scorecard(request)
        .await
    {
        Ok(response) => {
            let card = response.into_inner();
            if query.format == "csv" {
                return (
                    [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                    scorecard_csv(&card),
                )
                    .into_response();
            }
            Json(json!({
                "properties": card.properties.iter().map(unit_json).collect::<Vec<_>>(),
                "regions": card.regions.iter().map(unit_json).collect::<Vec<_>>(),
                "scope": card.scope.as_ref().map(unit_json),
                "missing": card.missing,
            }))
            .into_response()
        }
        Err(status) => from_status(status),
    }
}

fn complaint_json(c: &complaints::Complaint) -> Value {
    json!({
        "complaint_id": c.complaint_id,
        "property_id": c.property_id,
        "status": complaints::Status::try_from(c.status).map(|s| s.as_str_name()).unwrap_or("STATUS_UNSPECIFIED"),
        "category": c.category,
        "description": c.description,
        "created": c.create_time.map(|t| t.seconds),
        "resolved": c.resolve_time.map(|t| t.seconds),
    })
}

async fn my_complaints(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let caller = match Caller::from_headers(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = caller.guest_id() {
        return r.into_response();
    }
    let channel = match caller.channel(&state.complaints) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match ComplaintsServiceClient::new(channel).list_complaints(complaints::ListComplaintsRequest::default()).await {
        Ok(list) => Json(json!({ "complaints": list.into_inner().complaints.iter().map(complaint_json).collect::<Vec<_>>() })).into_response(),
        Err(status) => from_status(status),
    }
}

#[derive(Debug, Deserialize)]
struct NewComplaint {
    request_id: String,
    property_id: String,
    category: String,
    description: String,
    #[serde(default)]
    room: String,
}

async fn file_complaint(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Json(body): Json<NewComplaint>,
) -> Response {
    let caller = match Caller::from_headers(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = caller.guest_id() {
        return r.into_response();
    }
    let channel = match caller.channel(&state.complaints) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let request = complaints::CreateComplaintRequest {
        request_id: body.request_id,
        complaint: Some(complaints::Complaint {
            property_id: body.property_id,
            category: body.category,
            description: body.description,
            channel: complaints::Channel::App as i32,
            stay: Some(complaints::StayContext {
                room: body.room,
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    match ComplaintsServiceClient::new(channel)
        .create_complaint(request)
        .await
    {
        Ok(c) => (StatusCode::CREATED, Json(complaint_json(c.get_ref()))).into_response(),
        Err(status) => from_status(status),
    }
}

#[derive(Debug, Deserialize)]
struct RatingBody {
    csat: i32,
    nps: Option<i32>,
    #[serde(default)]
    comment: String,
}

async fn rate(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<RatingBody>,
) -> Response {
    let caller = match Caller::from_headers(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let channel = match caller.channel(&state.complaints) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let request = complaints::RateComplaintRequest {
        complaint_id: id,
        csat: body.csat,
        nps: body.nps,
        comment: body.comment,
    };
    match ComplaintsServiceClient::new(channel)
        .rate_complaint(request)
        .await
    {
        Ok(c) => Json(complaint_json(c.get_ref())).into_response(),
        Err(status) => from_status(status),
    }
}

async fn my_loyalty(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let caller = match Caller::from_headers(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let guest_id = match caller.guest_id() {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let channel = match caller.channel(&state.crm) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let mut crm_client = CrmServiceClient::new(channel);
    let account = match crm_client
        .get_loyalty_account(crm::GetLoyaltyAccountRequest {
            guest_id: guest_id.clone(),
        })
        .await
    {
        Ok(a) => a.into_inner(),
        Err(status) => return from_status(status),
    };
    let profile = match crm_client
        .get_guest(crm::GetGuestRequest {
            guest_id,
            property_id: String::new(),
        })
        .await
    {
        Ok(g) => g.into_inner(),
        Err(status) => return from_status(status),
    };
    let pref = |p: &crm::Preference| json!({ "group": p.group, "value": p.value });
    Json(json!({
        "tier": account.tier,
        "balance": account.balance,
        "lifetime_earned": account.lifetime_earned,
        "likes": profile.preferences.iter().map(pref).collect::<Vec<_>>(),
        "avoid": profile.avoid.iter().map(pref).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/scorecard", get(scorecard))
        .route("/v1/me/complaints", get(my_complaints).post(file_complaint))
        .route("/v1/me/complaints/{id}/rating", post(rate))
        .route("/v1/me/loyalty", get(my_loyalty))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// Serves HTTP on `addr` until `stop` becomes true; returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the gateway HTTP API: {e}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(error) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "gateway HTTP server failed");
        }
    });
    Ok((local, task))
}
