//! The gRPC handlers of the CRM service.

mod care;
mod chain_settings;
mod guests;
mod kpis;
mod loyalty;
mod preference_groups;
mod privacy;
mod program;
mod stays;
mod store;
mod value;

use guestloop_kit::server::ServiceContext;
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_server::CrmService;
use tonic::{Request, Response, Status};

pub use care::generate_due as generate_due_care_tasks;
pub use loyalty::evaluate_all_chains as evaluate_all_tiers;
pub use loyalty::expire_all_chains as expire_all_points;
pub use loyalty::post_goodwill;
pub use store::current_guest;
pub use value::evaluate_all_chains as evaluate_all_customer_values;
pub use value::evaluate_chain as evaluate_customer_values;

pub struct Api {
    context: ServiceContext,
}

impl Api {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CrmService for Api {
    async fn get_guest_tier(
        &self,
        request: Request<pb::GetGuestTierRequest>,
    ) -> Reply<pb::GuestTier> {
        Ok(Response::new(guests::tier(self, request).await?))
    }
    async fn create_guest(&self, request: Request<pb::CreateGuestRequest>) -> Reply<pb::Guest> {
        Ok(Response::new(guests::create(self, request).await?))
    }
    async fn get_guest(&self, request: Request<pb::GetGuestRequest>) -> Reply<pb::Guest> {
        Ok(Response::new(guests::get(self, request).await?))
    }
    async fn update_guest(&self, request: Request<pb::UpdateGuestRequest>) -> Reply<pb::Guest> {
        Ok(Response::new(guests::update(self, request).await?))
    }
    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Reply<pb::FindDuplicatesResponse> {
        Ok(Response::new(guests::duplicates(self, request).await?))
    }
    async fn merge_guests(&self, request: Request<pb::MergeGuestsRequest>) -> Reply<pb::Guest> {
        Ok(Response::new(guests::merge(self, request).await?))
    }
    async fn add_preference(&self, request: Request<pb::AddPreferenceRequest>) -> Reply<pb::Guest> {
        Ok(Response::new(guests::add_preference(self, request).await?))
    }
    async fn remove_preference(
        &self,
        request: Request<pb::RemovePreferenceRequest>,
    ) -> Reply<pb::Guest> {
        Ok(Response::new(
            guests::remove_preference(self, request).await?,
        ))
    }
    async fn upsert_stays(
        &self,
        request: Request<pb::UpsertStaysRequest>,
    ) -> Reply<pb::UpsertStaysResponse> {
        Ok(Response::new(stays::upsert(self, request).await?))
    }
    async fn get_loyalty_account(
        &self,
        request: Request<pb::GetLoyaltyAccountRequest>,
    ) -> Reply<pb::LoyaltyAccount> {
        Ok(Response::new(loyalty::account(self, request).await?))
    }
    async fn list_ledger(
        &self,
        request: Request<pb::ListLedgerRequest>,
    ) -> Reply<pb::ListLedgerResponse> {
        Ok(Response::new(loyalty::list_ledger(self, request).await?))
    }
    async fn post_points(&self, request: Request<pb::PostPointsRequest>) -> Reply<pb::LedgerEntry> {
        Ok(Response::new(loyalty::post(self, request).await?))
    }
    async fn run_points_expiry(
        &self,
        request: Request<pb::RunPointsExpiryRequest>,
    ) -> Reply<pb::RunPointsExpiryResponse> {
        Ok(Response::new(loyalty::run_expiry(self, request).await?))
    }
    async fn evaluate_tiers(
        &self,
        request: Request<pb::EvaluateTiersRequest>,
    ) -> Reply<pb::EvaluateTiersResponse> {
        Ok(Response::new(loyalty::evaluate_tiers(self, request).await?))
    }
    async fn set_strategic_tier(
        &self,
        request: Request<pb::SetStrategicTierRequest>,
    ) -> Reply<pb::Guest> {
        Ok(Response::new(guests::set_strategic(self, request).await?))
    }
    async fn export_guest_data(
        &self,
        request: Request<pb::ExportGuestDataRequest>,
    ) -> Reply<pb::ExportGuestDataResponse> {
        Ok(Response::new(privacy::export(self, request).await?))
    }
    async fn erase_guest(
        &self,
        request: Request<pb::EraseGuestRequest>,
    ) -> Reply<pb::EraseGuestResponse> {
        Ok(Response::new(privacy::erase(self, request).await?))
    }
    async fn list_arrivals(
        &self,
        request: Request<pb::ListArrivalsRequest>,
    ) -> Reply<pb::ListArrivalsResponse> {
        Ok(Response::new(care::list_arrivals(self, request).await?))
    }
    async fn generate_care_tasks(
        &self,
        request: Request<pb::GenerateCareTasksRequest>,
    ) -> Reply<pb::GenerateCareTasksResponse> {
        Ok(Response::new(care::generate(self, request).await?))
    }
    async fn list_care_tasks(
        &self,
        request: Request<pb::ListCareTasksRequest>,
    ) -> Reply<pb::ListCareTasksResponse> {
        Ok(Response::new(care::list_tasks(self, request).await?))
    }
    async fn assign_care_task(
        &self,
        request: Request<pb::AssignCareTaskRequest>,
    ) -> Reply<pb::CareTask> {
        Ok(Response::new(care::assign(self, request).await?))
    }
    async fn complete_care_task(
        &self,
        request: Request<pb::CompleteCareTaskRequest>,
    ) -> Reply<pb::CareTask> {
        Ok(Response::new(care::complete(self, request).await?))
    }
    async fn get_value_policy(
        &self,
        request: Request<pb::GetValuePolicyRequest>,
    ) -> Reply<pb::ValuePolicy> {
        Ok(Response::new(value::get_policy(self, request).await?))
    }
    async fn update_value_policy(
        &self,
        request: Request<pb::UpdateValuePolicyRequest>,
    ) -> Reply<pb::ValuePolicy> {
        Ok(Response::new(value::update_policy(self, request).await?))
    }
    async fn evaluate_customer_values(
        &self,
        request: Request<pb::EvaluateCustomerValuesRequest>,
    ) -> Reply<pb::EvaluateCustomerValuesResponse> {
        Ok(Response::new(value::evaluate(self, request).await?))
    }
    async fn get_customer_value(
        &self,
        request: Request<pb::GetCustomerValueRequest>,
    ) -> Reply<pb::CustomerValue> {
        Ok(Response::new(value::get(self, request).await?))
    }
    async fn get_crm_kpis(&self, request: Request<pb::GetCrmKpisRequest>) -> Reply<pb::CrmKpis> {
        Ok(Response::new(kpis::get(self, request).await?))
    }
    async fn get_preference_groups(
        &self,
        request: Request<pb::GetPreferenceGroupsRequest>,
    ) -> Reply<pb::PreferenceGroups> {
        Ok(Response::new(preference_groups::get(self, request).await?))
    }
    async fn update_preference_groups(
        &self,
        request: Request<pb::UpdatePreferenceGroupsRequest>,
    ) -> Reply<pb::PreferenceGroups> {
        Ok(Response::new(
            preference_groups::update(self, request).await?,
        ))
    }
    async fn get_loyalty_program(
        &self,
        request: Request<pb::GetLoyaltyProgramRequest>,
    ) -> Reply<pb::LoyaltyProgram> {
        Ok(Response::new(program::get(self, request).await?))
    }
    async fn update_loyalty_program(
        &self,
        request: Request<pb::UpdateLoyaltyProgramRequest>,
    ) -> Reply<pb::LoyaltyProgram> {
        Ok(Response::new(program::update(self, request).await?))
    }
    async fn get_occupancy(
        &self,
        request: Request<pb::GetOccupancyRequest>,
    ) -> Reply<pb::Occupancy> {
        Ok(Response::new(kpis::occupancy(self, request).await?))
    }
}
