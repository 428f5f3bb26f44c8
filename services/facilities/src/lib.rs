//! Facilities: assets and locations, preventive inspections from versioned checklists (calendar
//! or meter plans), defects and work orders with repair clocks, out-of-order rooms, repeat-fix
//! rules, and work orders opened from facility complaints.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;
pub mod consumer;
pub mod demo;
pub mod domain;
mod erasure;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::events::Consumer;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::facilities::v1::facilities_service_server::FacilitiesServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

const STAFF: &[Role] = &[
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];
const PLANNERS: &[Role] = &[
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];

const fn row(method: &'static str, roles: &'static [Role]) -> RpcPolicy {
    RpcPolicy {
        method,
        roles,
        scope: ScopeCheck::Property,
    }
}

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[
    row(
        "/guestloop.facilities.v1.FacilitiesService/CreateAsset",
        PLANNERS,
    ),
    row("/guestloop.facilities.v1.FacilitiesService/GetAsset", STAFF),
    row(
        "/guestloop.facilities.v1.FacilitiesService/ListAssets",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/RecordMeterReading",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/PublishChecklist",
        PLANNERS,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/CreatePlan",
        PLANNERS,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/ScheduleInspections",
        PLANNERS,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/ListInspections",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/RecordInspection",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/CreateWorkOrder",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/GetWorkOrder",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/ListWorkOrders",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/TransitionWorkOrder",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/SetRoomStatus",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/ListRoomStatuses",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/GetFacilitiesKpis",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/GetReplacementForecast",
        PLANNERS,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/GetEngineeringSettings",
        STAFF,
    ),
    row(
        "/guestloop.facilities.v1.FacilitiesService/UpdateEngineeringSettings",
        PLANNERS,
    ),
];

/// The facilities service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "facilities",
    grpc_service: "guestloop.facilities.v1.FacilitiesService",
    migrator: &MIGRATOR,
    policy: PolicyTable::new(POLICIES),
    mount,
    demo: Some(|pool| Box::pin(async move { demo::load(&pool).await })),
};

fn mount(
    context: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<Vec<BackgroundTask>> {
    let api = api::Api::new(context.clone());
    routes.add_service(
        FacilitiesServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    let consumer = Consumer::new(
        consumer::CONSUMER,
        context.pool.clone(),
        consumer::EVENT_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        consumer::ComplaintEvents,
    );
    let feed = EventFeedClient::new(context.peer("complaints")?);
    Ok(vec![Box::pin(consumer.run(feed, context.stop.clone()))])
}
