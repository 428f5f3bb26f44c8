//! The gRPC handlers of the audit service.

mod audits;
mod failures;
mod kpis;
mod library;
mod surveys;
mod touchpoints;

use guestloop_kit::server::ServiceContext;
use guestloop_proto::audit::v1 as pb;
use guestloop_proto::audit::v1::audit_service_server::AuditService;
use tonic::{Request, Response, Status};

/// The longest names and titles clients give (standard titles, departments, template and
/// section names, action owners, auditors), in characters.
const MAX_NAME: usize = 200;
/// The longest notes (audit evidence, corrective actions), in characters.
const MAX_NOTE: usize = 2000;
/// The longest codes and ids clients give (standard codes, staff ids), in characters: as long as
/// the complaints service lets a complaint name them.
const MAX_CODE: usize = 64;
/// The longest touchpoint name, in characters.
const MAX_TOUCHPOINT: usize = 100;
/// The longest unit of a numeric standard ("rings", "minutes"), in characters.
const MAX_UNIT: usize = 50;
/// The longest room number, in characters.
const MAX_ROOM: usize = 32;

pub struct Api {
    context: ServiceContext,
}

impl Api {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuditService for Api {
    async fn create_standard(
        &self,
        request: Request<pb::CreateStandardRequest>,
    ) -> Reply<pb::Standard> {
        Ok(Response::new(
            library::create_standard(self, request).await?,
        ))
    }
    async fn list_standards(
        &self,
        request: Request<pb::ListStandardsRequest>,
    ) -> Reply<pb::ListStandardsResponse> {
        Ok(Response::new(library::list_standards(self, request).await?))
    }
    async fn publish_template(
        &self,
        request: Request<pb::PublishTemplateRequest>,
    ) -> Reply<pb::Template> {
        Ok(Response::new(
            library::publish_template(self, request).await?,
        ))
    }
    async fn create_program(
        &self,
        request: Request<pb::CreateProgramRequest>,
    ) -> Reply<pb::Program> {
        Ok(Response::new(audits::create_program(self, request).await?))
    }
    async fn schedule_audits(
        &self,
        request: Request<pb::ScheduleAuditsRequest>,
    ) -> Reply<pb::ScheduleAuditsResponse> {
        Ok(Response::new(audits::schedule(self, request).await?))
    }
    async fn assign_auditor(&self, request: Request<pb::AssignAuditorRequest>) -> Reply<pb::Audit> {
        Ok(Response::new(audits::assign(self, request).await?))
    }
    async fn submit_audit(&self, request: Request<pb::SubmitAuditRequest>) -> Reply<pb::Audit> {
        Ok(Response::new(audits::submit(self, request).await?))
    }
    async fn get_audit(&self, request: Request<pb::GetAuditRequest>) -> Reply<pb::Audit> {
        Ok(Response::new(audits::get(self, request).await?))
    }
    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Reply<pb::ListFindingsResponse> {
        Ok(Response::new(audits::list_findings(self, request).await?))
    }
    async fn update_corrective_action(
        &self,
        request: Request<pb::UpdateCorrectiveActionRequest>,
    ) -> Reply<pb::Finding> {
        Ok(Response::new(audits::update_action(self, request).await?))
    }
    async fn record_servqual_survey(
        &self,
        request: Request<pb::RecordServqualSurveyRequest>,
    ) -> Reply<pb::RecordServqualSurveyResponse> {
        Ok(Response::new(surveys::record(self, request).await?))
    }
    async fn get_servqual_gaps(
        &self,
        request: Request<pb::GetServqualGapsRequest>,
    ) -> Reply<pb::ServqualGaps> {
        Ok(Response::new(surveys::gaps(self, request).await?))
    }
    async fn get_staff_scores(
        &self,
        request: Request<pb::GetStaffScoresRequest>,
    ) -> Reply<pb::StaffScores> {
        Ok(Response::new(surveys::staff_scores(self, request).await?))
    }
    async fn get_audit_kpis(
        &self,
        request: Request<pb::GetAuditKpisRequest>,
    ) -> Reply<pb::AuditKpis> {
        Ok(Response::new(kpis::get(self, request).await?))
    }
    async fn get_standard_failures(
        &self,
        request: Request<pb::GetStandardFailuresRequest>,
    ) -> Reply<pb::StandardFailures> {
        Ok(Response::new(failures::get(self, request).await?))
    }
    async fn record_touchpoint_ratings(
        &self,
        request: Request<pb::RecordTouchpointRatingsRequest>,
    ) -> Reply<pb::RecordTouchpointRatingsResponse> {
        Ok(Response::new(touchpoints::record(self, request).await?))
    }
    async fn get_touchpoint_importance(
        &self,
        request: Request<pb::GetTouchpointImportanceRequest>,
    ) -> Reply<pb::TouchpointImportance> {
        Ok(Response::new(touchpoints::importance(self, request).await?))
    }
}
