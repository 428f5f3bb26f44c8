//! Guest memory and loyalty: profiles, consent and privacy, stays, the points ledger, tiers and care tasks.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::crm::v1::crm_service_server::CrmServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[RpcPolicy {
    method: "/guestloop.crm.v1.CrmService/GetGuestTier",
    roles: &[
        Role::Service,
        Role::Agent,
        Role::Supervisor,
        Role::DutyManager,
        Role::DepartmentHead,
        Role::GeneralManager,
        Role::ChainQualityManager,
        Role::ChainAdmin,
    ],
    scope: ScopeCheck::Chain,
}];

/// The crm service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "crm",
    grpc_service: "guestloop.crm.v1.CrmService",
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
        CrmServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    Ok(Vec::new())
}
