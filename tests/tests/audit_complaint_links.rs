//! Complaints meet audits: root cause analysis links complaints to standards and names staff;
//! the audit service takes both from the complaints feed. GetStandardFailures ranks the standards
//! that fail guests most beside audit findings on them; staff scores combine audit observations
//! with complaint outcomes without blaming staff for system causes. Bad updates name the field.

use std::time::Duration;

use chrono::{Datelike, Utc};
use guestloop_kit::auth::Role;
use guestloop_proto::audit::v1 as pb;
use guestloop_proto::audit::v1::audit_service_client::AuditServiceClient;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::complaints::v1 as cpb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};
use tonic::Code;

const PROPERTY: &str = "links-p";

type Complaints = ComplaintsServiceClient<guestloop_kit::client::AuthedChannel>;

/// Files a complaint, records its root cause analysis, resolves it and (optionally) rates it.
async fn recovered(
    client: &mut Complaints,
    cause: cpb::Cause,
    standards: &[&str],
    staff: &[&str],
    resolve: bool,
    csat: Option<i32>,
) -> anyhow::Result<String> {
    let filed = client
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            complaint: Some(cpb::Complaint {
                property_id: PROPERTY.into(),
                guest: Some(cpb::GuestRef {
                    guest_id: "guest-links".into(),
                    ..Default::default()
                }),
                channel: cpb::Channel::FrontDesk as i32,
                category: "service".into(),
                urgency: cpb::Urgency::Medium as i32,
                description: "Not greeted at arrival".into(),
                department: "front_office".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    client
        .update_complaint(cpb::UpdateComplaintRequest {
            complaint: Some(cpb::Complaint {
                complaint_id: filed.complaint_id.clone(),
                cause: cause as i32,
                standard_codes: standards.iter().map(|s| s.to_string()).collect(),
                staff_involved: staff.iter().map(|s| s.to_string()).collect(),
                root_cause_summary: "found in the debrief".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "cause".into(),
                    "standard_codes".into(),
                    "staff_involved".into(),
                    "root_cause_summary".into(),
                ],
            }),
            etag: String::new(),
        })
        .await?;
    if resolve {
        client
            .transition_complaint(cpb::TransitionComplaintRequest {
                complaint_id: filed.complaint_id.clone(),
                action: cpb::Action::Resolve as i32,
                ..Default::default()
            })
            .await?;
        if let Some(csat) = csat {
            client
                .rate_complaint(cpb::RateComplaintRequest {
                    complaint_id: filed.complaint_id.clone(),
                    csat,
                    ..Default::default()
                })
                .await?;
        }
    }
    Ok(filed.complaint_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standards_that_fail_guests_and_fair_staff_scores() -> anyhow::Result<()> {
    let ports: Vec<u16> = (0..2)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    settings.endpoints.insert(
        "complaints".into(),
        format!("http://127.0.0.1:{}", ports[0]),
    );
    settings
        .endpoints
        .insert("crm".into(), "http://127.0.0.1:9".into());
    let complaints_service = spawn_service_on(
        &guestloop_complaints::DEFINITION,
        settings.clone(),
        None,
        ports[0],
    )
    .await?;
    let audit_service =
        spawn_service_on(&guestloop_audit::DEFINITION, settings, None, ports[1]).await?;
    let manager = TokenBuilder::new(Role::GeneralManager)
        .properties(&[PROPERTY])
        .subject("gm-links")
        .mint()?;
    let mut complaints =
        ComplaintsServiceClient::new(complaints_service.channel_with_token(&manager).await?);
    let mut audit = AuditServiceClient::new(audit_service.channel_with_token(&manager).await?);

    // Bad root-cause updates name the entry and change nothing.
    let probe = recovered(&mut complaints, cpb::Cause::Process, &[], &[], false, None).await?;
    let refused = complaints
        .update_complaint(cpb::UpdateComplaintRequest {
            complaint: Some(cpb::Complaint {
                complaint_id: probe.clone(),
                standard_codes: vec!["FO-GREET".into(), "no spaces allowed".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["standard_codes".into()],
            }),
            etag: String::new(),
        })
        .await
        .expect_err("a bad code");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("complaint.standard_codes[1]"),
        "{}",
        refused.message()
    );
    let unchanged = complaints
        .get_complaint(cpb::GetComplaintRequest {
            complaint_id: probe.clone(),
        })
        .await?
        .into_inner();
    assert!(unchanged.standard_codes.is_empty());

    // The library knows the greeting standard; "FO-WAIT" is not in it.
    audit
        .create_standard(pb::CreateStandardRequest {
            standard: Some(pb::Standard {
                code: "FO-GREET".into(),
                // The manager's property's own: their token creates no chain-wide standard.
                property_id: PROPERTY.into(),
                title: "Greet from three metres".into(),
                department: "front_office".into(),
                touchpoint: "arrival".into(),
                kind: pb::StandardKind::HardBinary as i32,
                dimension: pb::Dimension::Empathy as i32,
                weight: 1.0,
                ..Default::default()
            }),
        })
        .await?;

    // Anna: her own behaviour, recovered (50). Carl: a process failure he recovered (100).
    // Ben: a facility failure left unrecovered, which does not count against him.
    recovered(
        &mut complaints,
        cpb::Cause::StaffBehaviour,
        &["FO-GREET"],
        &["anna"],
        true,
        Some(4),
    )
    .await?;
    recovered(
        &mut complaints,
        cpb::Cause::StaffBehaviour,
        &["FO-GREET", "FO-WAIT"],
        &[],
        true,
        Some(1),
    )
    .await?;
    recovered(
        &mut complaints,
        cpb::Cause::Process,
        &["FO-WAIT"],
        &["carl"],
        true,
        Some(5),
    )
    .await?;
    recovered(
        &mut complaints,
        cpb::Cause::Facility,
        &["FO-GREET"],
        &["ben"],
        false,
        None,
    )
    .await?;

    // An audit fails the greeting standard and observes Anna (0) and Carl (100).
    let template = audit
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Arrival".into(),
            sections: vec![pb::TemplateSection {
                name: "front desk".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "FO-GREET".into(),
                    weight: 1.0,
                    critical: false,
                }],
            }],
            critical_rule: pb::CriticalRule::FailSection as i32,
            pass_threshold: 80.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let program = audit
        .create_program(pb::CreateProgramRequest {
            request_id: String::new(),
            program: Some(pb::Program {
                property_id: PROPERTY.into(),
                kind: pb::ProgramKind::Internal as i32,
                template_id: template.template_id.clone(),
                cadence: pb::Cadence::Monthly as i32,
                audits_per_period: 2,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    audit
        .schedule_audits(pb::ScheduleAuditsRequest {
            property_id: PROPERTY.into(),
            until: Some(guestloop_kit::time::to_timestamp(Utc::now())),
        })
        .await?;
    let pool = audit_service.database.admin_pool().await?;
    let audit_ids: Vec<String> = sqlx::query_scalar(
        "SELECT audit_id::text FROM audit.audits WHERE program_id = $1::uuid ORDER BY slot",
    )
    .bind(&program.program_id)
    .fetch_all(&pool)
    .await?;
    assert_eq!(audit_ids.len(), 2);
    for (audit_id, kind, staff) in [
        (&audit_ids[0], pb::AnswerKind::Fail, "anna"),
        (&audit_ids[1], pb::AnswerKind::Pass, "carl"),
    ] {
        audit
            .submit_audit(pb::SubmitAuditRequest {
                audit_id: audit_id.clone(),
                answers: vec![pb::Answer {
                    standard_code: "FO-GREET".into(),
                    kind: kind as i32,
                    staff_ids: vec![staff.into()],
                    ..Default::default()
                }],
            })
            .await?;
    }

    // The audit service sees every complaint from the feed (five, the probe included).
    let now = Utc::now();
    let period = Some(TimeRange {
        start_time: Some(guestloop_kit::time::to_timestamp(
            now - chrono::Duration::days(1),
        )),
        end_time: Some(guestloop_kit::time::to_timestamp(
            now + chrono::Duration::days(1),
        )),
    });
    let request = pb::GetStandardFailuresRequest {
        property_ids: vec![PROPERTY.into()],
        period,
        limit: 0,
    };
    let mut failures = audit
        .get_standard_failures(request.clone())
        .await?
        .into_inner();
    for _ in 0..100 {
        if failures.complaints == 5 && failures.linked_complaints == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        failures = audit
            .get_standard_failures(request.clone())
            .await?
            .into_inner();
    }
    assert_eq!((failures.complaints, failures.linked_complaints), (5, 4));
    let ranked: Vec<(&str, bool, i64, i64, i64)> = failures
        .standards
        .iter()
        .map(|s| {
            (
                s.code.as_str(),
                s.in_library,
                s.complaints,
                s.unrecovered,
                s.audit_findings,
            )
        })
        .collect();
    // FO-GREET: 3 complaints, of which the one rated 1 (reopened) and the unresolved one are
    // unrecovered; one failed audit item. FO-WAIT: 2 complaints, one unrecovered.
    assert_eq!(
        ranked,
        [("FO-GREET", true, 3, 2, 1), ("FO-WAIT", false, 2, 1, 0)]
    );
    assert_eq!(failures.standards[0].title, "Greet from three metres");
    assert_eq!(
        failures.standards[0].dimension,
        pb::Dimension::Empathy as i32
    );
    let top = audit
        .get_standard_failures(pb::GetStandardFailuresRequest {
            limit: 1,
            ..request.clone()
        })
        .await?
        .into_inner();
    assert_eq!(top.standards.len(), 1);

    // Staff scores for this quarter.
    let quarter = format!("{}-Q{}", now.year(), (now.month() - 1) / 3 + 1);
    let scores = audit
        .get_staff_scores(pb::GetStaffScoresRequest {
            property_id: PROPERTY.into(),
            quarter,
        })
        .await?
        .into_inner();
    type Line<'a> = (&'a str, f64, Option<f64>, Option<f64>, i64, i64);
    let by_staff: Vec<Line> = scores
        .scores
        .iter()
        .map(|s| {
            (
                s.staff_id.as_str(),
                (s.score * 1e6).round() / 1e6,
                s.audit_score,
                s.complaint_score,
                s.complaints,
                s.attributable_complaints,
            )
        })
        .collect();
    assert_eq!(
        by_staff,
        [
            // 0.7 × 0 + 0.3 × 50.
            ("anna", 15.0, Some(0.0), Some(50.0), 1, 1),
            // Ben is absent: his only complaint is an unrecovered facility failure, which does
            // not count against him, and no audit observed him.
            ("carl", 100.0, Some(100.0), Some(100.0), 1, 0),
        ]
    );

    // Bad requests name the field.
    for (bad, field) in [
        (
            pb::GetStandardFailuresRequest {
                limit: 201,
                ..request.clone()
            },
            "limit",
        ),
        (
            pb::GetStandardFailuresRequest {
                period: None,
                ..request.clone()
            },
            "period",
        ),
        (
            pb::GetStandardFailuresRequest {
                property_ids: Vec::new(),
                ..request.clone()
            },
            "property_ids",
        ),
    ] {
        let refused = audit.get_standard_failures(bad).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let other = TokenBuilder::new(Role::GeneralManager)
        .properties(&["elsewhere"])
        .mint()?;
    let mut outsider = AuditServiceClient::new(audit_service.channel_with_token(&other).await?);
    assert_eq!(
        outsider
            .get_standard_failures(request)
            .await
            .expect_err("out of scope")
            .code(),
        Code::PermissionDenied
    );

    audit_service.shutdown().await?;
    complaints_service.shutdown().await?;
    Ok(())
}
