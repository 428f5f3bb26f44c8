//! The gRPC handlers of the complaints service.

use guestloop_kit::server::ServiceContext;
use guestloop_proto::complaints::v1::complaints_service_server::ComplaintsService;

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
impl ComplaintsService for Api {}
