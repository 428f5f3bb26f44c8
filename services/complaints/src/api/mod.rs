//! The gRPC handlers of the complaints service: thin functions that check the caller, convert
//! the request, run the rules in one transaction, and convert the answer.

pub(crate) mod intake;
mod kpis;
mod lifecycle;
mod queries;
mod remedies;
mod settings;
mod tier;

use guestloop_kit::auth::Principal;
use guestloop_kit::server::ServiceContext;
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::complaints::v1::complaints_service_server::ComplaintsService;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use tonic::{Request, Response, Status};

pub use intake::is_priority_tier;
pub(crate) use lifecycle::apply_action;

/// The guest a guest token speaks for. A guest token without one may neither file nor list:
/// an empty id would match every complaint filed without a guest.
pub(crate) fn own_guest_id(principal: &Principal) -> ApiResult<&str> {
    principal
        .guest_id()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::PermissionDenied("the guest token carries no guest id".into()))
}

pub struct Api {
    context: ServiceContext,
    tiers: tier::TierSource,
}

impl Api {
    pub fn new(context: ServiceContext) -> anyhow::Result<Self> {
        let tiers = tier::TierSource::new(CrmServiceClient::new(context.peer("crm")?));
        Ok(Self { context, tiers })
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ComplaintsService for Api {
    async fn create_complaint(
        &self,
        request: Request<pb::CreateComplaintRequest>,
    ) -> Reply<pb::Complaint> {
        Ok(Response::new(intake::create(self, request).await?))
    }

    async fn get_complaint(
        &self,
        request: Request<pb::GetComplaintRequest>,
    ) -> Reply<pb::Complaint> {
        Ok(Response::new(queries::get(self, request).await?))
    }

    async fn list_complaints(
        &self,
        request: Request<pb::ListComplaintsRequest>,
    ) -> Reply<pb::ListComplaintsResponse> {
        Ok(Response::new(queries::list(self, request).await?))
    }

    async fn list_work_queue(
        &self,
        request: Request<pb::ListWorkQueueRequest>,
    ) -> Reply<pb::ListComplaintsResponse> {
        Ok(Response::new(queries::work_queue(self, request).await?))
    }

    async fn update_complaint(
        &self,
        request: Request<pb::UpdateComplaintRequest>,
    ) -> Reply<pb::Complaint> {
        Ok(Response::new(lifecycle::update(self, request).await?))
    }

    async fn transition_complaint(
        &self,
        request: Request<pb::TransitionComplaintRequest>,
    ) -> Reply<pb::Complaint> {
        Ok(Response::new(lifecycle::transition(self, request).await?))
    }

    async fn list_timeline(
        &self,
        request: Request<pb::ListTimelineRequest>,
    ) -> Reply<pb::ListTimelineResponse> {
        Ok(Response::new(queries::timeline(self, request).await?))
    }

    async fn propose_remedy(
        &self,
        request: Request<pb::ProposeRemedyRequest>,
    ) -> Reply<pb::Remedy> {
        Ok(Response::new(remedies::propose(self, request).await?))
    }

    async fn decide_remedy(&self, request: Request<pb::DecideRemedyRequest>) -> Reply<pb::Remedy> {
        Ok(Response::new(remedies::decide(self, request).await?))
    }

    async fn mark_remedy_delivered(
        &self,
        request: Request<pb::MarkRemedyDeliveredRequest>,
    ) -> Reply<pb::Remedy> {
        Ok(Response::new(remedies::delivered(self, request).await?))
    }

    async fn rate_complaint(
        &self,
        request: Request<pb::RateComplaintRequest>,
    ) -> Reply<pb::Complaint> {
        Ok(Response::new(lifecycle::rate(self, request).await?))
    }

    async fn get_property_settings(
        &self,
        request: Request<pb::GetPropertySettingsRequest>,
    ) -> Reply<pb::PropertySettings> {
        Ok(Response::new(settings::get(self, request).await?))
    }

    async fn update_property_settings(
        &self,
        request: Request<pb::UpdatePropertySettingsRequest>,
    ) -> Reply<pb::PropertySettings> {
        Ok(Response::new(settings::update(self, request).await?))
    }

    async fn get_complaint_kpis(
        &self,
        request: Request<pb::GetComplaintKpisRequest>,
    ) -> Reply<pb::ComplaintKpis> {
        Ok(Response::new(kpis::get(self, request).await?))
    }
}
