//! For staff apps at a property: the arrival brief, complaint lists, the work queue and
//! complaint actions.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{page_size, HttpResult, Problem, Refusal};
use super::schemas::{ArrivalBrief, ComplaintAction, ComplaintList, ComplaintSummary};
use super::{Caller, HttpState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BriefQuery {
    /// The property-local business date, YYYY-MM-DD.
    #[param(format = Date)]
    date: String,
}

/// Arriving and in-house guests with tier, likes and dislikes, past failures and their recovery,
/// open complaints, their room's work orders or out-of-order status, and care tasks.
#[utoipa::path(get, path = "/v1/properties/{property_id}/arrival-brief", tag = "staff",
    params(("property_id" = String, Path, description = "The property"), BriefQuery),
    responses(
        (status = 200, description = "The brief", body = ArrivalBrief),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The guest list cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn arrival_brief(
    State(state): State<HttpState>,
    caller: Caller,
    property_id: Result<Path<String>, PathRejection>,
    query: Result<Query<BriefQuery>, QueryRejection>,
) -> HttpResult<Json<ArrivalBrief>> {
    let Path(property_id) = property_id?;
    let Query(query) = query?;
    let brief = GatewayServiceClient::new(caller.channel(&state.gateway)?)
        .get_arrival_brief(pb::GetArrivalBriefRequest {
            property_id,
            date: query.date,
        })
        .await?
        .into_inner();
    Ok(Json(ArrivalBrief::from(&brief)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComplaintQuery {
    /// Only this property (absent: every property in the caller's scope).
    #[serde(default)]
    property_id: Option<String>,
    /// `breached` or `at_risk`: only complaints with such an SLA clock.
    #[serde(default)]
    #[param(pattern = "^(breached|at_risk)$")]
    clock: Option<String>,
    /// `open` (default): not resolved, closed or cancelled; `all`: every status.
    #[serde(default)]
    #[param(pattern = "^(open|all)$")]
    state: Option<String>,
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    #[serde(default)]
    page_token: Option<String>,
}

/// Complaints for staff and quality managers, newest first: SLA breaches and complaints at risk.
#[utoipa::path(get, path = "/v1/complaints", tag = "staff", params(ComplaintQuery),
    responses(
        (status = 200, description = "Complaints", body = ComplaintList),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn complaints(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<Query<ComplaintQuery>, QueryRejection>,
) -> HttpResult<Json<ComplaintList>> {
    let Query(query) = query?;
    caller.staff()?;
    let clock_filter = match query.clock.as_deref() {
        None | Some("") => complaints::ClockFilter::Unspecified,
        Some("breached") => complaints::ClockFilter::Breached,
        Some("at_risk") => complaints::ClockFilter::AtRisk,
        Some(_) => return Err(Refusal::bad_request("clock: must be breached or at_risk")),
    };
    let statuses = match query.state.as_deref() {
        None | Some("" | "open") => crate::brief::OPEN_STATUSES
            .iter()
            .map(|s| *s as i32)
            .collect(),
        Some("all") => Vec::new(),
        Some(_) => return Err(Refusal::bad_request("state: must be open or all")),
    };
    let list = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .list_complaints(complaints::ListComplaintsRequest {
            property_ids: query
                .property_id
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect(),
            statuses,
            clock_filter: clock_filter as i32,
            page_size: page_size(query.page_size, 50, 500)?,
            page_token: query.page_token.unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(ComplaintList {
        complaints: list.complaints.iter().map(ComplaintSummary::from).collect(),
        next_page_token: list.next_page_token,
    }))
}

/// One complaint, with the etag its actions may send.
#[utoipa::path(get, path = "/v1/complaints/{complaint_id}", tag = "staff",
    params(("complaint_id" = String, Path, description = "The complaint")),
    responses(
        (status = 200, description = "The complaint", body = ComplaintSummary),
        (status = 400, description = "The id is not a complaint id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role refused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such complaint in the caller's scope", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn complaint(
    State(state): State<HttpState>,
    caller: Caller,
    complaint_id: Result<Path<String>, PathRejection>,
) -> HttpResult<Json<ComplaintSummary>> {
    let Path(complaint_id) = complaint_id?;
    caller.staff()?;
    let complaint = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .get_complaint(complaints::GetComplaintRequest { complaint_id })
        .await?
        .into_inner();
    Ok(Json(ComplaintSummary::from(&complaint)))
}

fn complaint_action(word: &str) -> Option<complaints::Action> {
    use complaints::Action as A;
    Some(match word {
        "acknowledge" => A::Acknowledge,
        "start_investigation" => A::StartInvestigation,
        "plan_remedy" => A::PlanRemedy,
        "start_remedy" => A::StartRemedy,
        "wait_for_guest" => A::WaitForGuest,
        "guest_responded" => A::GuestResponded,
        "resolve" => A::Resolve,
        "reopen" => A::Reopen,
        "close" => A::Close,
        "cancel" => A::Cancel,
        _ => return None,
    })
}

/// Moves a complaint on (acknowledge, investigate, resolve, …). A move its state does not allow
/// is refused with 422 and changes nothing; with `etag` (from the complaint as last read), a
/// change made since is refused with 409.
#[utoipa::path(post, path = "/v1/complaints/{complaint_id}/actions", tag = "staff",
    params(("complaint_id" = String, Path, description = "The complaint")),
    request_body = ComplaintAction,
    responses(
        (status = 200, description = "The complaint after the action", body = ComplaintSummary),
        (status = 400, description = "A field is missing or invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such complaint in the caller's scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed since the etag was read", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The complaint's state does not allow the action", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be changed now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn act_on_complaint(
    State(state): State<HttpState>,
    caller: Caller,
    complaint_id: Result<Path<String>, PathRejection>,
    body: Result<Json<ComplaintAction>, JsonRejection>,
) -> HttpResult<Json<ComplaintSummary>> {
    let Path(complaint_id) = complaint_id?;
    let Json(body) = body?;
    caller.staff()?;
    let action = complaint_action(&body.action).ok_or_else(|| {
        Refusal::bad_request(
            "action: must be acknowledge, start_investigation, plan_remedy, start_remedy, \
             wait_for_guest, guest_responded, resolve, reopen, close or cancel",
        )
    })?;
    let complaint = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .transition_complaint(complaints::TransitionComplaintRequest {
            complaint_id,
            action: action as i32,
            reason: body.reason,
            etag: body.etag,
        })
        .await?
        .into_inner();
    Ok(Json(ComplaintSummary::from(&complaint)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkQueueQuery {
    /// Only this property (absent: every property in the caller's scope).
    #[serde(default)]
    property_id: Option<String>,
    /// Only complaints assigned to this person.
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    department: Option<String>,
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    #[serde(default)]
    page_token: Option<String>,
}

/// The staff work queue: open complaints, most urgent SLA deadline first, page by page.
#[utoipa::path(get, path = "/v1/work-queue", tag = "staff", params(WorkQueueQuery),
    responses(
        (status = 200, description = "Open complaints by urgency", body = ComplaintList),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn work_queue(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<Query<WorkQueueQuery>, QueryRejection>,
) -> HttpResult<Json<ComplaintList>> {
    let Query(query) = query?;
    caller.staff()?;
    let queue = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .list_work_queue(complaints::ListWorkQueueRequest {
            property_ids: query
                .property_id
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect(),
            assignee: query.assignee.unwrap_or_default(),
            department: query.department.unwrap_or_default(),
            page_size: page_size(query.page_size, 50, 500)?,
            page_token: query.page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(ComplaintList {
        complaints: queue
            .complaints
            .iter()
            .map(ComplaintSummary::from)
            .collect(),
        next_page_token: queue.next_page_token,
    }))
}
