//! Guest memory and loyalty: chain-wide profiles with likes and dislikes, consent, stays from
//! property management systems, a points ledger that never double-spends, tiers, each guest's
//! service-failure history, merge, export and erasure.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;

/// Most stays one `UpsertStays` call may carry.
pub const MAX_STAYS_PER_CALL: usize = 5_000;
pub mod consumer;
pub mod demo;
pub mod domain;
mod tiers;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::events::Consumer;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::crm::v1::crm_service_server::CrmServiceServer;
use sqlx::migrate::Migrator;
use tonic::service::RoutesBuilder;

/// How often the day's care tasks are (re)generated; generation is idempotent.
const CARE_TASK_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);
/// How often every chain's customer values are re-evaluated (the first run one period after
/// start-up; the demo load evaluates its chain itself).
const CUSTOMER_VALUE_PERIOD: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

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
const STAFF_SERVICES: &[Role] = &[
    Role::Agent,
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];
const EVERYONE: &[Role] = &Role::ALL;
const MANAGERS: &[Role] = &[
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
];
const MANAGERS_AND_SERVICES: &[Role] = &[
    Role::Supervisor,
    Role::DutyManager,
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];
const LOYALTY_STAFF: &[Role] = &[
    Role::Supervisor,
    Role::DutyManager,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
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
        "/guestloop.crm.v1.CrmService/GetGuestTier",
        STAFF_SERVICES,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/CreateGuest",
        STAFF_SERVICES,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetGuest",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/UpdateGuest",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/FindDuplicates",
        STAFF,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/MergeGuests",
        LOYALTY_STAFF,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/AddPreference",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/RemovePreference",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/UpsertStays",
        &[Role::Service, Role::ChainAdmin, Role::GeneralManager],
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetLoyaltyAccount",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/ListLedger",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/PostPoints",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/RunPointsExpiry",
        &[Role::Service, Role::ChainAdmin],
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/EvaluateTiers",
        &[Role::Service, Role::ChainAdmin],
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetLoyaltyProgram",
        MANAGERS,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/UpdateLoyaltyProgram",
        &[Role::ChainQualityManager, Role::ChainAdmin],
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/SetStrategicTier",
        MANAGERS,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/ExportGuestData",
        EVERYONE,
        ScopeCheck::OwnGuestOrProperty,
    ),
    row(
        "/guestloop.crm.v1.CrmService/EraseGuest",
        MANAGERS,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/ListArrivals",
        STAFF_SERVICES,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GenerateCareTasks",
        STAFF_SERVICES,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/ListCareTasks",
        STAFF_SERVICES,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/AssignCareTask",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/CompleteCareTask",
        STAFF,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetValuePolicy",
        MANAGERS,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/UpdateValuePolicy",
        &[Role::ChainQualityManager, Role::ChainAdmin],
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/EvaluateCustomerValues",
        &[Role::Service, Role::ChainAdmin],
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetCustomerValue",
        STAFF_SERVICES,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetCrmKpis",
        MANAGERS_AND_SERVICES,
        ScopeCheck::Property,
    ),
    row(
        "/guestloop.crm.v1.CrmService/GetOccupancy",
        MANAGERS_AND_SERVICES,
        ScopeCheck::Property,
    ),
];

/// The CRM service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "crm",
    grpc_service: "guestloop.crm.v1.CrmService",
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
        CrmServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
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
    let pool = context.pool.clone();
    let care_tasks = guestloop_kit::background::every(
        "care-tasks",
        CARE_TASK_PERIOD,
        context.stop.clone(),
        move || {
            let pool = pool.clone();
            async move { api::generate_due_care_tasks(&pool).await }
        },
    );
    let pool = context.pool.clone();
    let mut stop = context.stop.clone();
    let values_stop = context.stop.clone();
    let customer_values = async move {
        tokio::select! {
            _ = tokio::time::sleep(CUSTOMER_VALUE_PERIOD) => {}
            _ = stop.changed() => return,
        }
        guestloop_kit::background::every(
            "customer-values",
            CUSTOMER_VALUE_PERIOD,
            values_stop,
            move || {
                let pool = pool.clone();
                async move { api::evaluate_all_customer_values(&pool).await }
            },
        )
        .await
    };
    Ok(vec![
        Box::pin(consumer.run(feed, context.stop.clone())),
        Box::pin(care_tasks),
        Box::pin(customer_values),
    ])
}
