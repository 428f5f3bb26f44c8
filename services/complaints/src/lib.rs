//! Service recovery: complaint intake, classification, SLA clocks, escalation, remedies and follow-up.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy};
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::complaints::v1::complaints_service_server::ComplaintsServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[];

/// The complaints service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "complaints",
    grpc_service: "guestloop.complaints.v1.ComplaintsService",
    migrator: &MIGRATOR,
    policy: PolicyTable::new(POLICIES),
    mount,
};

fn mount(
    context: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<Vec<BackgroundTask>> {
    let api = api::Api::new(context.clone());
    routes.add_service(
        ComplaintsServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    Ok(Vec::new())
}
