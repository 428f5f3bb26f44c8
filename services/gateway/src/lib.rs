//! The public entry point of Guestloop: aggregates the four backend services for mobile apps and
//! BI consumers, over gRPC (`guestloop.gateway.v1`) and HTTP/JSON.

mod backends;
pub mod brief;
pub mod http;
mod loyalty_cache;
mod scorecard;
pub mod sqs;
mod status;
mod trend;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::gateway::v1::gateway_service_server::GatewayServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

pub use backends::Backends;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may call which RPC of the gateway.
pub const POLICIES: &[RpcPolicy] = &[
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/GetSuiteStatus",
        roles: &[
            Role::ChainAdmin,
            Role::ChainQualityManager,
            Role::GeneralManager,
            Role::Service,
        ],
        scope: ScopeCheck::Caller,
    },
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/GetScorecard",
        roles: &[
            Role::Supervisor,
            Role::DutyManager,
            Role::DepartmentHead,
            Role::GeneralManager,
            Role::ChainQualityManager,
            Role::ChainAdmin,
        ],
        scope: ScopeCheck::Property,
    },
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/GetArrivalBrief",
        roles: &[
            Role::Agent,
            Role::Supervisor,
            Role::DutyManager,
            Role::DepartmentHead,
            Role::GeneralManager,
            Role::ChainQualityManager,
            Role::ChainAdmin,
        ],
        scope: ScopeCheck::Property,
    },
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/GetScoreTrend",
        roles: &[
            Role::Supervisor,
            Role::DutyManager,
            Role::DepartmentHead,
            Role::GeneralManager,
            Role::ChainQualityManager,
            Role::ChainAdmin,
        ],
        scope: ScopeCheck::Property,
    },
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/GetScoreWeights",
        roles: &[
            Role::GeneralManager,
            Role::ChainQualityManager,
            Role::ChainAdmin,
        ],
        scope: ScopeCheck::Chain,
    },
    RpcPolicy {
        method: "/guestloop.gateway.v1.GatewayService/UpdateScoreWeights",
        roles: &[Role::ChainQualityManager, Role::ChainAdmin],
        scope: ScopeCheck::Chain,
    },
];

/// The gateway as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "gateway",
    grpc_service: "guestloop.gateway.v1.GatewayService",
    migrator: &MIGRATOR,
    policy: PolicyTable::new(POLICIES),
    mount,
    demo: None,
};

fn mount(
    context: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<Vec<BackgroundTask>> {
    let backends = Backends::connect(context)?;
    let api = status::Api::new(backends, context.pool.clone());
    routes.add_service(
        GatewayServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
    );
    Ok(Vec::new())
}
