//! For staff apps at a property: the arrival brief.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{HttpResult, Problem};
use super::schemas::ArrivalBrief;
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
        (status = 503, description = "The guest list cannot be read now", body = Problem, content_type = "application/problem+json"),
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
