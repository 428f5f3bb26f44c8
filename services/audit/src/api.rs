//! The gRPC handlers of the audit service.

use guestloop_kit::server::ServiceContext;
use guestloop_proto::audit::v1::audit_service_server::AuditService;

pub struct Api {
    #[allow(dead_code)]
    context: ServiceContext,
}

impl Api {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl AuditService for Api {}
