//! Facilities: assets, preventive inspections, defects and work orders, out-of-order rooms.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy};
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::facilities::v1::facilities_service_server::FacilitiesServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[];

/// The facilities service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "facilities",
    grpc_service: "guestloop.facilities.v1.FacilitiesService",
    migrator: &MIGRATOR,
    policy: PolicyTable::new(POLICIES),
    mount,
    demo: None,
};

fn mount(
    context: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<Vec<BackgroundTask>> {
    let api = api::Api::new(context.clone());
    routes.add_service(
        FacilitiesServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    Ok(Vec::new())
}
