//! For guest apps: file, list and rate my complaints; my loyalty account, points history and
//! preferences.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;

use super::problem::{page_size, HttpResult, Problem, Refusal};
use super::schemas::{
    ComplaintList, ComplaintSummary, LedgerEntry, LedgerPage, Loyalty, NewComplaint, Preference,
    Rating,
};
use super::{Caller, HttpState};

/// A page of a list: `page_token` from the previous page's `next_page_token`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    #[serde(default)]
    page_token: Option<String>,
}

/// The caller's own complaints, newest first, page by page.
#[utoipa::path(get, path = "/v1/me/complaints", tag = "guest", params(PageQuery),
    responses(
        (status = 200, description = "My complaints", body = ComplaintList),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a guest token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn my_complaints(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> HttpResult<Json<ComplaintList>> {
    caller.guest_id()?;
    let axum::extract::Query(query) = query?;
    let list = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .list_complaints(complaints::ListComplaintsRequest {
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

/// Files a complaint from the app. Retrying with the same `request_id` returns the first result.
#[utoipa::path(post, path = "/v1/me/complaints", tag = "guest", request_body = NewComplaint,
    responses(
        (status = 201, description = "Filed", body = ComplaintSummary),
        (status = 400, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a guest token, or the property is not the guest's chain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent change won; retry", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The request id was already used for a different request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be filed now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn file_complaint(
    State(state): State<HttpState>,
    caller: Caller,
    body: Result<Json<NewComplaint>, JsonRejection>,
) -> HttpResult<(StatusCode, Json<ComplaintSummary>)> {
    caller.guest_id()?;
    let Json(body) = body?;
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
    let complaint = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .create_complaint(request)
        .await
        .map_err(|s| {
            Refusal::from(s).renaming(&[("complaint.stay.room", "room"), ("complaint", "")])
        })?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(ComplaintSummary::from(&complaint)),
    ))
}

/// Rates a resolved complaint (CSAT 1–5, optional NPS 0–10).
#[utoipa::path(post, path = "/v1/me/complaints/{complaint_id}/rating", tag = "guest",
    params(("complaint_id" = String, Path, description = "The complaint's id")),
    request_body = Rating,
    responses(
        (status = 200, description = "Rated", body = ComplaintSummary),
        (status = 400, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a guest token, or not the caller's complaint", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such complaint", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The complaint is not resolved yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Complaints cannot be rated now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn rate(
    State(state): State<HttpState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Rating>, JsonRejection>,
) -> HttpResult<Json<ComplaintSummary>> {
    // A guest's own rating: staff record ratings through the complaints API.
    caller.guest_id()?;
    let Path(id) = id?;
    let Json(body) = body?;
    let request = complaints::RateComplaintRequest {
        complaint_id: id,
        csat: body.csat,
        nps: body.nps,
        comment: body.comment,
    };
    let complaint = ComplaintsServiceClient::new(caller.channel(&state.complaints)?)
        .rate_complaint(request)
        .await?
        .into_inner();
    Ok(Json(ComplaintSummary::from(&complaint)))
}

/// The caller's loyalty tier, balance, likes and dislikes.
#[utoipa::path(get, path = "/v1/me/loyalty", tag = "guest",
    responses(
        (status = 200, description = "My loyalty account", body = Loyalty),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a guest token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The guest is not registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "CRM cannot answer now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn my_loyalty(
    State(state): State<HttpState>,
    caller: Caller,
) -> HttpResult<Json<Loyalty>> {
    let guest_id = caller.guest_id()?;
    let mut client = CrmServiceClient::new(caller.channel(&state.crm)?);
    let account = client
        .get_loyalty_account(crm::GetLoyaltyAccountRequest {
            guest_id: guest_id.clone(),
        })
        .await?
        .into_inner();
    let profile = client
        .get_guest(crm::GetGuestRequest {
            guest_id,
            property_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(Json(Loyalty {
        tier: account.tier,
        balance: account.balance,
        lifetime_earned: account.lifetime_earned,
        likes: profile.preferences.iter().map(Preference::from).collect(),
        avoid: profile.avoid.iter().map(Preference::from).collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    #[serde(default)]
    page_token: Option<String>,
}

/// The caller's points history in posting order, page by page.
#[utoipa::path(get, path = "/v1/me/loyalty/history", tag = "guest", params(LedgerQuery),
    responses(
        (status = 200, description = "My ledger", body = LedgerPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a guest token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile for this guest", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Loyalty cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn my_ledger(
    State(state): State<HttpState>,
    caller: Caller,
    query: Result<axum::extract::Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> HttpResult<Json<LedgerPage>> {
    let guest_id = caller.guest_id()?;
    let axum::extract::Query(query) = query?;
    let page = CrmServiceClient::new(caller.channel(&state.crm)?)
        .list_ledger(crm::ListLedgerRequest {
            guest_id,
            page_size: page_size(query.page_size, 50, 500)?,
            page_token: query.page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(LedgerPage {
        entries: page.entries.iter().map(LedgerEntry::from).collect(),
        next_page_token: page.next_page_token,
    }))
}
