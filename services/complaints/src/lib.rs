//! Service recovery: complaint intake from every channel, classification, per-stage SLA clocks
//! on property calendars, escalation ladders, remedies within authority limits, follow-up
//! ratings, reopening, root causes, repeat-issue and hotspot detection, and KPIs.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;
mod clocks;
pub mod consumer;
mod convert;
pub mod demo;
mod engine;
pub mod erasure;
mod rules;
mod settings;
pub mod store;
pub mod workers;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::complaints::v1::complaints_service_server::ComplaintsServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

pub use api::is_priority_tier;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

const STAFF: &[Role] = &[
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
];
const STAFF_AND_GUESTS: &[Role] = &[
    Role::Guest,
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
];
const STAFF_GUESTS_SERVICES: &[Role] = &[
    Role::Guest,
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];
const MANAGERS: &[Role] = &[
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
];
const READERS: &[Role] = &[
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];

const fn row(method: &'static str, roles: &'static [Role], scope: ScopeCheck) -> RpcPolicy {
    RpcPolicy {
        method,
        roles,
        scope,
    }
}

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[
    row(
        "/guestloop.complaints.v1.ComplaintsService/CreateComplaint",
        STAFF_AND_GUESTS,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/GetComplaint",
        STAFF_GUESTS_SERVICES,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/ListComplaints",
        STAFF_GUESTS_SERVICES,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/ListWorkQueue",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/UpdateComplaint",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/TransitionComplaint",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/ListTimeline",
        STAFF_AND_GUESTS,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/ProposeRemedy",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/DecideRemedy",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/MarkRemedyDelivered",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/RateComplaint",
        STAFF_AND_GUESTS,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/GetPropertySettings",
        READERS,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/UpdatePropertySettings",
        MANAGERS,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.complaints.v1.ComplaintsService/GetComplaintKpis",
        READERS,
        ScopeCheck::Property,
    ),
];

/// The complaints service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "complaints",
    grpc_service: "guestloop.complaints.v1.ComplaintsService",
    migrator: &MIGRATOR,
    policy: PolicyTable::new(POLICIES),
    mount,
    demo: Some(|pool| Box::pin(async move { demo::load(&pool).await })),
};

fn mount(
    context: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<Vec<BackgroundTask>> {
    let api = api::Api::new(context.clone())?;
    routes.add_service(
        ComplaintsServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    let consumer = guestloop_kit::events::Consumer::new(
        consumer::CONSUMER,
        context.pool.clone(),
        consumer::EVENT_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        consumer::WorkOrderEvents,
    );
    let feed = guestloop_proto::common::v1::event_feed_client::EventFeedClient::new(
        context.peer("facilities")?,
    );
    let erasures = guestloop_kit::events::Consumer::new(
        erasure::CONSUMER,
        context.pool.clone(),
        erasure::EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
        erasure::GuestErasures,
    );
    let crm_feed =
        guestloop_proto::common::v1::event_feed_client::EventFeedClient::new(context.peer("crm")?);
    Ok(vec![
        Box::pin(consumer.run(feed, context.stop.clone())),
        Box::pin(erasures.run(crm_feed, context.stop.clone())),
        Box::pin(workers::run_watcher(context.clone())),
        Box::pin(workers::run_rollup(context.clone())),
        Box::pin(workers::run_tier_enrichment(context.clone())),
    ])
}
