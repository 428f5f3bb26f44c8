//! The gRPC handlers of the CRM service.

use guestloop_kit::auth::principal;
use guestloop_kit::server::ServiceContext;
use guestloop_kit::ApiError;
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_server::CrmService;
use tonic::{Request, Response, Status};

pub struct Api {
    context: ServiceContext,
}

impl Api {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl CrmService for Api {
    async fn get_guest_tier(
        &self,
        request: Request<pb::GetGuestTierRequest>,
    ) -> Result<Response<pb::GuestTier>, Status> {
        let principal = principal(&request)?.clone();
        let guest_id = request.into_inner().guest_id;
        if guest_id.is_empty() {
            return Err(ApiError::invalid("guest_id", "is required").into());
        }
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT chain_id, tier FROM guests WHERE guest_id = $1")
                .bind(&guest_id)
                .fetch_optional(&self.context.pool)
                .await
                .map_err(ApiError::from)?;
        match row {
            Some((chain, tier)) if chain == principal.chain_id() || principal.chain_id() == "*" => {
                Ok(Response::new(pb::GuestTier { guest_id, tier }))
            }
            _ => Err(ApiError::not_found("guest", guest_id).into()),
        }
    }
}
