//! The gRPC handlers of the crm service.

use guestloop_kit::server::ServiceContext;
use guestloop_proto::crm::v1::crm_service_server::CrmService;

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
impl CrmService for Api {}
