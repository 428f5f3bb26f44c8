//! The gRPC handlers of the facilities service.

use guestloop_kit::server::ServiceContext;
use guestloop_proto::facilities::v1::facilities_service_server::FacilitiesService;

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
impl FacilitiesService for Api {}
