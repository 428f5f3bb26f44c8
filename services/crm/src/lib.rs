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
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_server::CrmServiceServer;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::sync::watch;
use tonic::service::RoutesBuilder;

/// How often the day's care tasks are (re)generated; generation is idempotent.
const CARE_TASK_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);
/// How often every chain's customer values are re-evaluated (the first run one period after
/// start-up; the demo load evaluates its chain itself).
const CUSTOMER_VALUE_PERIOD: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// How often every chain's tiers are re-evaluated ([`run_tier_evaluation`]); idempotent.
const TIER_PERIOD: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// How often points expire under each chain's program ([`run_points_expiry`]); idempotent.
const POINTS_EXPIRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// How long after start-up the first tier evaluation and points expiry run: not at once (a
/// fresh suite or a test sets its data up first), and well within a period so that a service
/// restarted more often than daily still expires points.
const LOYALTY_FIRST_RUN: std::time::Duration = std::time::Duration::from_secs(3600);

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
    // Stays earn points by rule, without the limits staff credits have: only the PMS
    // integration (a service) and chain admins, whose postings are not limited either, feed
    // them. A general manager credits points by hand within their limits.
    row(
        "/guestloop.crm.v1.CrmService/UpsertStays",
        &[Role::Service, Role::ChainAdmin],
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
        "/guestloop.crm.v1.CrmService/GetPreferenceGroups",
        STAFF_SERVICES,
        ScopeCheck::Chain,
    ),
    row(
        "/guestloop.crm.v1.CrmService/UpdatePreferenceGroups",
        &[Role::ChainQualityManager, Role::ChainAdmin],
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
    let customer_values = after(
        CUSTOMER_VALUE_PERIOD,
        context.stop.clone(),
        guestloop_kit::background::every(
            "customer-values",
            CUSTOMER_VALUE_PERIOD,
            context.stop.clone(),
            move || {
                let pool = pool.clone();
                async move { api::evaluate_all_customer_values(&pool).await }
            },
        ),
    );
    let pool = context.pool.clone();
    let events = context.events.clone();
    let tiers = after(
        LOYALTY_FIRST_RUN,
        context.stop.clone(),
        guestloop_kit::background::every("tiers", TIER_PERIOD, context.stop.clone(), move || {
            let pool = pool.clone();
            let events = events.clone();
            async move {
                run_tier_evaluation(&pool, chrono::Utc::now()).await?;
                // Position the tier.changed events now rather than at the relay's next poll.
                events.wake();
                Ok(0)
            }
        }),
    );
    let pool = context.pool.clone();
    let points_expiry = after(
        LOYALTY_FIRST_RUN,
        context.stop.clone(),
        guestloop_kit::background::every(
            "points-expiry",
            POINTS_EXPIRY_PERIOD,
            context.stop.clone(),
            move || {
                let pool = pool.clone();
                async move {
                    run_points_expiry(&pool, chrono::Utc::now()).await?;
                    Ok(0)
                }
            },
        ),
    );
    Ok(vec![
        Box::pin(consumer.run(feed, context.stop.clone())),
        Box::pin(care_tasks),
        Box::pin(customer_values),
        Box::pin(tiers),
        Box::pin(points_expiry),
    ])
}

/// Runs `task` once `delay` has passed, unless shutdown starts first.
async fn after(
    delay: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    task: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => return,
    }
    task.await
}

/// The scheduled tier evaluation (every [`TIER_PERIOD`]): every chain's tiers as of `as_of`, as
/// `EvaluateTiers` does for the service role. Idempotent. Does not wake the event relay, which
/// then finds the `crm.tier.changed` events on its next poll.
pub async fn run_tier_evaluation(
    pool: &PgPool,
    as_of: chrono::DateTime<chrono::Utc>,
) -> guestloop_kit::ApiResult<pb::EvaluateTiersResponse> {
    let response = api::evaluate_all_tiers(pool, as_of).await?;
    tracing::info!(
        evaluated = response.evaluated,
        changed = response.changed,
        "tiers evaluated"
    );
    Ok(response)
}

/// The scheduled points expiry (every [`POINTS_EXPIRY_PERIOD`]): every chain's points as of
/// `as_of` under its program, as `RunPointsExpiry` does for the service role. Idempotent.
pub async fn run_points_expiry(
    pool: &PgPool,
    as_of: chrono::DateTime<chrono::Utc>,
) -> guestloop_kit::ApiResult<pb::RunPointsExpiryResponse> {
    let response = api::expire_all_points(pool, as_of).await?;
    tracing::info!(
        accounts = response.accounts_expired,
        points = response.points_expired,
        "points expired"
    );
    Ok(response)
}
