//! Quality audits: the chain's service standards (hard and soft, five service-quality
//! dimensions), versioned weighted templates, audit programs with an idempotent scheduler,
//! scoring with the "100 − 1 = 0" rule, findings with corrective actions, SERVQUAL gap surveys
//! and staff-behaviour scores (audit observations and, from the complaints feed, complaint
//! outcomes); complaints' root causes linked to standards.
//!
//! A library crate: [`DEFINITION`] is what the `guestloop` binary (or a test) hands to the
//! service kit to run it.

mod api;
mod consumer;
pub mod demo;
pub mod domain;

use guestloop_kit::auth::policy::{PolicyTable, RpcPolicy, ScopeCheck};
use guestloop_kit::auth::Role;
use guestloop_kit::events::Consumer;
use guestloop_kit::server::{BackgroundTask, ServiceContext, ServiceDefinition};
use guestloop_proto::audit::v1::audit_service_server::AuditServiceServer;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
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
const QUALITY: &[Role] = &[
    Role::DepartmentHead,
    Role::GeneralManager,
    Role::ChainQualityManager,
    Role::ChainAdmin,
    Role::Service,
];
const GUESTS_AND_STAFF: &[Role] = &Role::ALL;

const fn row(method: &'static str, roles: &'static [Role]) -> RpcPolicy {
    RpcPolicy {
        method,
        roles,
        scope: ScopeCheck::Property,
    }
}

/// Who may call which RPC of this service.
pub const POLICIES: &[RpcPolicy] = &[
    row("/guestloop.audit.v1.AuditService/CreateStandard", QUALITY),
    row("/guestloop.audit.v1.AuditService/ListStandards", STAFF),
    row("/guestloop.audit.v1.AuditService/PublishTemplate", QUALITY),
    row("/guestloop.audit.v1.AuditService/CreateProgram", QUALITY),
    row("/guestloop.audit.v1.AuditService/ScheduleAudits", QUALITY),
    row("/guestloop.audit.v1.AuditService/AssignAuditor", QUALITY),
    row("/guestloop.audit.v1.AuditService/SubmitAudit", STAFF),
    row("/guestloop.audit.v1.AuditService/GetAudit", STAFF),
    row("/guestloop.audit.v1.AuditService/ListFindings", STAFF),
    row(
        "/guestloop.audit.v1.AuditService/UpdateCorrectiveAction",
        STAFF,
    ),
    row(
        "/guestloop.audit.v1.AuditService/RecordServqualSurvey",
        GUESTS_AND_STAFF,
    ),
    row("/guestloop.audit.v1.AuditService/GetServqualGaps", STAFF),
    row("/guestloop.audit.v1.AuditService/GetStaffScores", QUALITY),
    row("/guestloop.audit.v1.AuditService/GetAuditKpis", QUALITY),
    row(
        "/guestloop.audit.v1.AuditService/GetStandardFailures",
        QUALITY,
    ),
    row(
        "/guestloop.audit.v1.AuditService/RecordTouchpointRatings",
        GUESTS_AND_STAFF,
    ),
    row(
        "/guestloop.audit.v1.AuditService/GetTouchpointImportance",
        STAFF,
    ),
];

/// The audit service as the kit runs it.
pub static DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "audit",
    grpc_service: "guestloop.audit.v1.AuditService",
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
        AuditServiceServer::new(api).max_decoding_message_size(context.max_message_bytes()),
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
