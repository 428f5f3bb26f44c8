//! For staff apps in engineering: a property's work orders and inspections, and work-order
//! actions (assign, start, hold, resume, complete with costs, verify, cancel).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use guestloop_proto::common::v1::Money;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{page_size, HttpResult, Problem, Refusal};
use super::schemas::{Inspection, InspectionList, WorkOrder, WorkOrderAction, WorkOrderList};
use super::{Caller, HttpState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkOrderQuery {
    /// `open` (default): not done, verified or cancelled; `all`: every status.
    #[serde(default)]
    #[param(pattern = "^(open|all)$")]
    state: Option<String>,
    /// Only this room.
    #[serde(default)]
    room: Option<String>,
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    /// The former name of `page_size`, still read when `page_size` is absent.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i32>,
    /// From the previous page's `next_page_token`; absent for the first page.
    #[serde(default)]
    page_token: Option<String>,
}

/// A property's work orders, most urgent repair deadline first.
#[utoipa::path(get, path = "/v1/properties/{property_id}/work-orders", tag = "staff",
    params(("property_id" = String, Path, description = "The property"), WorkOrderQuery),
    responses(
        (status = 200, description = "Work orders", body = WorkOrderList),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Work orders cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn work_orders(
    State(state): State<HttpState>,
    caller: Caller,
    property_id: Result<Path<String>, PathRejection>,
    query: Result<Query<WorkOrderQuery>, QueryRejection>,
) -> HttpResult<Json<WorkOrderList>> {
    let Path(property_id) = property_id?;
    let Query(query) = query?;
    caller.staff()?;
    let open_only = match query.state.as_deref() {
        None | Some("" | "open") => true,
        Some("all") => false,
        Some(_) => return Err(Refusal::bad_request("state: must be open or all")),
    };
    let limit = page_size(query.page_size.or(query.limit), 50, 500)?;
    let list = FacilitiesServiceClient::new(caller.channel(&state.facilities)?)
        .list_work_orders(facilities::ListWorkOrdersRequest {
            property_id,
            open_only,
            page_size: limit,
            rooms: query.room.into_iter().filter(|r| !r.is_empty()).collect(),
            page_token: query.page_token.unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(WorkOrderList {
        work_orders: list.work_orders.iter().map(WorkOrder::from).collect(),
        next_page_token: list.next_page_token,
    }))
}

fn work_order_action(word: &str) -> Option<facilities::WorkOrderAction> {
    use facilities::WorkOrderAction as A;
    Some(match word {
        "assign" => A::Assign,
        "start" => A::Start,
        "hold" => A::Hold,
        "resume" => A::Resume,
        "complete" => A::Complete,
        "verify" => A::Verify,
        "cancel" => A::Cancel,
        _ => return None,
    })
}

/// Moves a work order on. Completing it records labour and parts; holding it pauses the repair
/// clock. A move its state does not allow is refused with 422 and changes nothing.
#[utoipa::path(post, path = "/v1/work-orders/{work_order_id}/actions", tag = "staff",
    params(("work_order_id" = String, Path, description = "The work order")),
    request_body = WorkOrderAction,
    responses(
        (status = 200, description = "The work order after the action", body = WorkOrder),
        (status = 400, description = "A field is missing or invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order in the caller's scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent change won; read and retry", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The work order's state does not allow the action", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Work orders cannot be changed now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn act_on_work_order(
    State(state): State<HttpState>,
    caller: Caller,
    work_order_id: Result<Path<String>, PathRejection>,
    body: Result<Json<WorkOrderAction>, JsonRejection>,
) -> HttpResult<Json<WorkOrder>> {
    let Path(work_order_id) = work_order_id?;
    let Json(body) = body?;
    caller.staff()?;
    let action = work_order_action(&body.action).ok_or_else(|| {
        Refusal::bad_request(
            "action: must be assign, start, hold, resume, complete, verify or cancel",
        )
    })?;
    if body.labour_minor < 0 || body.parts_minor < 0 {
        return Err(Refusal::bad_request(
            "labour_minor, parts_minor: must not be negative",
        ));
    }
    let cost = |minor: i64| {
        (minor > 0).then(|| Money {
            currency_code: body.currency.clone(),
            minor_units: minor,
        })
    };
    let order = FacilitiesServiceClient::new(caller.channel(&state.facilities)?)
        .transition_work_order(facilities::TransitionWorkOrderRequest {
            work_order_id,
            action: action as i32,
            assignee: body.assignee.clone(),
            reason: body.reason.clone(),
            labour_cost: cost(body.labour_minor),
            parts_cost: cost(body.parts_minor),
        })
        .await?
        .into_inner();
    Ok(Json(WorkOrder::from(&order)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InspectionQuery {
    /// Only inspections past their due time and not done.
    #[serde(default)]
    overdue: Option<bool>,
    /// 1–500, default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i32>,
    /// The former name of `page_size`, still read when `page_size` is absent.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i32>,
    /// From the previous page's `next_page_token`; absent for the first page.
    #[serde(default)]
    page_token: Option<String>,
}

/// A property's inspections that are due, oldest due first.
#[utoipa::path(get, path = "/v1/properties/{property_id}/inspections", tag = "staff",
    params(("property_id" = String, Path, description = "The property"), InspectionQuery),
    responses(
        (status = 200, description = "Inspections", body = InspectionList),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role or property scope refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Inspections cannot be read now", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before sending the request again"))),
    ))]
pub async fn inspections(
    State(state): State<HttpState>,
    caller: Caller,
    property_id: Result<Path<String>, PathRejection>,
    query: Result<Query<InspectionQuery>, QueryRejection>,
) -> HttpResult<Json<InspectionList>> {
    let Path(property_id) = property_id?;
    let Query(query) = query?;
    caller.staff()?;
    let limit = page_size(query.page_size.or(query.limit), 50, 500)?;
    let list = FacilitiesServiceClient::new(caller.channel(&state.facilities)?)
        .list_inspections(facilities::ListInspectionsRequest {
            property_id,
            overdue_only: query.overdue.unwrap_or(false),
            page_size: limit,
            page_token: query.page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(InspectionList {
        inspections: list.inspections.iter().map(Inspection::from).collect(),
        next_page_token: list.next_page_token,
    }))
}
