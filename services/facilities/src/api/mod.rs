//! The gRPC handlers of the facilities service.

mod assets;
mod forecast;
mod inspections;
mod kpis;
mod settings;
pub mod work_orders;

use guestloop_kit::server::ServiceContext;
use guestloop_proto::facilities::v1 as pb;
use guestloop_proto::facilities::v1::facilities_service_server::FacilitiesService;
use tonic::{Request, Response, Status};

pub struct Api {
    context: ServiceContext,
}

impl Api {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The longest free text each kind of field takes, in characters. Every client-supplied text is
/// checked with [`guestloop_kit::text::free_text`]: trimmed, bounded, no NUL character and no
/// payment card number.
mod limits {
    /// Names and titles: an asset's, a checklist's, a work order's; a vendor, an assignee, a
    /// checklist item's choice.
    pub const NAME: usize = 200;
    /// Labels of a place or a role: a building, a floor, a responsible role.
    pub const LABEL: usize = 100;
    /// A room number or area name ("lobby", "pool").
    pub const ROOM: usize = 64;
    /// Codes and references: a checklist item's code, a work order's source id.
    pub const CODE: usize = 64;
    /// A unit of a numeric checklist item ("°C", "bar").
    pub const UNIT: usize = 32;
    /// The text (the question) of a checklist item.
    pub const ITEM_TEXT: usize = 500;
    /// Notes, reasons and the text answer of an inspection item.
    pub const NOTE: usize = 2000;
    /// A work order's description.
    pub const DESCRIPTION: usize = 4000;
}

#[tonic::async_trait]
impl FacilitiesService for Api {
    async fn create_asset(&self, request: Request<pb::CreateAssetRequest>) -> Reply<pb::Asset> {
        Ok(Response::new(assets::create(self, request).await?))
    }
    async fn get_asset(&self, request: Request<pb::GetAssetRequest>) -> Reply<pb::Asset> {
        Ok(Response::new(assets::get(self, request).await?))
    }
    async fn list_assets(
        &self,
        request: Request<pb::ListAssetsRequest>,
    ) -> Reply<pb::ListAssetsResponse> {
        Ok(Response::new(assets::list(self, request).await?))
    }
    async fn record_meter_reading(
        &self,
        request: Request<pb::RecordMeterReadingRequest>,
    ) -> Reply<pb::Asset> {
        Ok(Response::new(assets::meter(self, request).await?))
    }
    async fn publish_checklist(
        &self,
        request: Request<pb::PublishChecklistRequest>,
    ) -> Reply<pb::Checklist> {
        Ok(Response::new(
            inspections::publish_checklist(self, request).await?,
        ))
    }
    async fn create_plan(&self, request: Request<pb::CreatePlanRequest>) -> Reply<pb::Plan> {
        Ok(Response::new(
            inspections::create_plan(self, request).await?,
        ))
    }
    async fn schedule_inspections(
        &self,
        request: Request<pb::ScheduleInspectionsRequest>,
    ) -> Reply<pb::ScheduleInspectionsResponse> {
        Ok(Response::new(inspections::schedule(self, request).await?))
    }
    async fn list_inspections(
        &self,
        request: Request<pb::ListInspectionsRequest>,
    ) -> Reply<pb::ListInspectionsResponse> {
        Ok(Response::new(inspections::list(self, request).await?))
    }
    async fn record_inspection(
        &self,
        request: Request<pb::RecordInspectionRequest>,
    ) -> Reply<pb::Inspection> {
        Ok(Response::new(inspections::record(self, request).await?))
    }
    async fn create_work_order(
        &self,
        request: Request<pb::CreateWorkOrderRequest>,
    ) -> Reply<pb::WorkOrder> {
        Ok(Response::new(work_orders::create(self, request).await?))
    }
    async fn get_work_order(
        &self,
        request: Request<pb::GetWorkOrderRequest>,
    ) -> Reply<pb::WorkOrder> {
        Ok(Response::new(work_orders::get(self, request).await?))
    }
    async fn list_work_orders(
        &self,
        request: Request<pb::ListWorkOrdersRequest>,
    ) -> Reply<pb::ListWorkOrdersResponse> {
        Ok(Response::new(work_orders::list(self, request).await?))
    }
    async fn transition_work_order(
        &self,
        request: Request<pb::TransitionWorkOrderRequest>,
    ) -> Reply<pb::WorkOrder> {
        Ok(Response::new(work_orders::transition(self, request).await?))
    }
    async fn set_room_status(
        &self,
        request: Request<pb::SetRoomStatusRequest>,
    ) -> Reply<pb::RoomStatus> {
        Ok(Response::new(
            work_orders::set_room_status(self, request).await?,
        ))
    }
    async fn list_room_statuses(
        &self,
        request: Request<pb::ListRoomStatusesRequest>,
    ) -> Reply<pb::ListRoomStatusesResponse> {
        Ok(Response::new(
            work_orders::list_room_statuses(self, request).await?,
        ))
    }
    async fn get_facilities_kpis(
        &self,
        request: Request<pb::GetFacilitiesKpisRequest>,
    ) -> Reply<pb::FacilitiesKpis> {
        Ok(Response::new(kpis::get(self, request).await?))
    }
    async fn get_replacement_forecast(
        &self,
        request: Request<pb::GetReplacementForecastRequest>,
    ) -> Reply<pb::ReplacementForecast> {
        Ok(Response::new(forecast::get(self, request).await?))
    }
    async fn get_engineering_settings(
        &self,
        request: Request<pb::GetEngineeringSettingsRequest>,
    ) -> Reply<pb::EngineeringSettings> {
        Ok(Response::new(settings::get(self, request).await?))
    }
    async fn update_engineering_settings(
        &self,
        request: Request<pb::UpdateEngineeringSettingsRequest>,
    ) -> Reply<pb::EngineeringSettings> {
        Ok(Response::new(settings::update(self, request).await?))
    }
}
