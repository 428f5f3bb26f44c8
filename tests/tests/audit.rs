//! Audits end to end: standards, template versioning, the idempotent scheduler, scoring with the
//! "100 − 1 = 0" rule, repeat findings and corrective actions, the mystery-guest conflict rule,
//! SERVQUAL gaps and staff scores.

use guestloop_kit::auth::Role;
use guestloop_proto::audit::v1 as pb;
use guestloop_proto::audit::v1::audit_service_client::AuditServiceClient;
use guestloop_proto::common::v1::TimeRange;
use guestloop_testkit::{spawn_service, violated_fields, TokenBuilder};
use tonic::Code;

type Client = AuditServiceClient<guestloop_kit::client::AuthedChannel>;

fn standard(
    code: &str,
    kind: pb::StandardKind,
    dimension: pb::Dimension,
) -> pb::CreateStandardRequest {
    pb::CreateStandardRequest {
        standard: Some(pb::Standard {
            code: code.into(),
            title: code.replace('_', " "),
            department: "front_office".into(),
            touchpoint: "check-in".into(),
            kind: kind as i32,
            min: 0.0,
            max: 3.0,
            dimension: dimension as i32,
            weight: 1.0,
            ..Default::default()
        }),
    }
}

/// [`standard`] as Vienna's own: a token scoped to some properties creates no chain-wide one.
fn vienna_standard(
    code: &str,
    kind: pb::StandardKind,
    dimension: pb::Dimension,
) -> pb::CreateStandardRequest {
    let mut request = standard(code, kind, dimension);
    if let Some(s) = request.standard.as_mut() {
        s.property_id = "vienna".into();
    }
    request
}

fn answer(code: &str, kind: pb::AnswerKind, value: f64, rating: i32, staff: &[&str]) -> pb::Answer {
    pb::Answer {
        standard_code: code.into(),
        kind: kind as i32,
        value,
        rating,
        staff_ids: staff.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn scheduled(client: &mut Client) -> anyhow::Result<pb::ScheduleAuditsResponse> {
    let until = Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    });
    Ok(client
        .schedule_audits(pb::ScheduleAuditsRequest {
            property_id: "vienna".into(),
            until,
        })
        .await?
        .into_inner())
}

#[tokio::test]
async fn audits_score_version_schedule_and_follow_up() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainQualityManager)
        .properties(&["vienna"])
        .subject("qm-1")
        .mint()?;
    let mut client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    client
        .create_standard(vienna_standard(
            "greet_within_3m",
            pb::StandardKind::HardBinary,
            pb::Dimension::Empathy,
        ))
        .await?;
    client
        .create_standard(vienna_standard(
            "phone_rings",
            pb::StandardKind::HardNumeric,
            pb::Dimension::Responsiveness,
        ))
        .await?;
    client
        .create_standard(vienna_standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    let bad = client
        .create_standard(vienna_standard(
            "",
            pb::StandardKind::Soft,
            pb::Dimension::Unspecified,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let sections = |greeting_weight: f64| {
        vec![
            pb::TemplateSection {
                name: "front desk".into(),
                items: vec![
                    pb::TemplateItem {
                        standard_code: "greet_within_3m".into(),
                        weight: greeting_weight,
                        critical: true,
                    },
                    pb::TemplateItem {
                        standard_code: "phone_rings".into(),
                        weight: 1.0,
                        critical: false,
                    },
                ],
            },
            pb::TemplateSection {
                name: "atmosphere".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "warmth".into(),
                    weight: 2.0,
                    critical: false,
                }],
            },
        ]
    };
    let v1 = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Arrival".into(),
            sections: sections(1.0),
            critical_rule: pb::CriticalRule::FailAudit as i32,
            pass_threshold: 80.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let create_program = pb::CreateProgramRequest {
        request_id: "vienna-monthly".into(),
        program: Some(pb::Program {
            program_id: String::new(),
            property_id: "vienna".into(),
            kind: pb::ProgramKind::Internal as i32,
            template_id: v1.template_id.clone(),
            cadence: pb::Cadence::Monthly as i32,
            audits_per_period: 2,
            ..Default::default()
        }),
    };
    let program = client
        .create_program(create_program.clone())
        .await?
        .into_inner();
    // A retry (the answer was lost) gets the same program, not a second one that would schedule
    // every audit twice; the same id for another program is refused.
    let retried = client
        .create_program(create_program.clone())
        .await?
        .into_inner();
    assert_eq!(retried.program_id, program.program_id);
    let mut other = create_program.clone();
    if let Some(p) = other.program.as_mut() {
        p.audits_per_period = 3;
    }
    let reused = client
        .create_program(other)
        .await
        .expect_err("request id reused for another program");
    assert_eq!(reused.code(), tonic::Code::FailedPrecondition);
    let too_far = client
        .schedule_audits(pb::ScheduleAuditsRequest {
            property_id: "vienna".into(),
            until: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 5 * 366 * 86_400,
                nanos: 0,
            }),
        })
        .await
        .expect_err("five years ahead");
    assert_eq!(too_far.code(), Code::InvalidArgument);
    let first = scheduled(&mut client).await?;
    assert_eq!(first.created, 2, "two audits this month");
    let again = scheduled(&mut client).await?;
    assert_eq!(
        (again.created, again.already_scheduled),
        (0, 2),
        "scheduling twice creates nothing twice"
    );

    // A new template version leaves scheduled audits on the version they were made with. Sent
    // twice with one request id, it is published once.
    let revision = pb::PublishTemplateRequest {
        template_id: v1.template_id.clone(),
        name: "Arrival".into(),
        sections: sections(3.0),
        critical_rule: pb::CriticalRule::FailAudit as i32,
        pass_threshold: 80.0,
        touchpoint_weighted: false,
        request_id: "arrival-v2".into(),
    };
    let v2 = client
        .publish_template(revision.clone())
        .await?
        .into_inner();
    let retried = client
        .publish_template(revision.clone())
        .await?
        .into_inner();
    assert_eq!(
        (retried.template_id.as_str(), retried.version),
        (v2.template_id.as_str(), v2.version)
    );
    let reused = client
        .publish_template(pb::PublishTemplateRequest {
            pass_threshold: 70.0,
            ..revision.clone()
        })
        .await
        .expect_err("the request id was used for another revision");
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
    // A template id nobody published is not there: it starts no new template.
    let unknown = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: uuid::Uuid::now_v7().to_string(),
            request_id: String::new(),
            ..revision.clone()
        })
        .await
        .expect_err("no such template");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!((v1.version, v2.version), (1, 2));
    let pool = service.database.admin_pool().await?;
    let audits: Vec<(String, i32)> = sqlx::query_as("SELECT audit_id::text, template_version FROM audit.audits WHERE program_id = $1::uuid ORDER BY slot")
        .bind(&program.program_id)
        .fetch_all(&pool)
        .await?;
    assert!(audits.iter().all(|(_, v)| *v == 1));

    // 100 − 1 = 0: a missed critical greeting fails the whole audit.
    let failed = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[0].0.clone(),
            answers: vec![
                answer("greet_within_3m", pb::AnswerKind::Fail, 0.0, 0, &["anna"]),
                answer("phone_rings", pb::AnswerKind::Value, 2.0, 0, &["anna"]),
                answer("warmth", pb::AnswerKind::Rating, 0.0, 5, &["ben"]),
            ],
        })
        .await?
        .into_inner();
    assert_eq!(failed.overall, Some(0.0));
    assert!(failed.critical_failed && !failed.passed);
    assert_eq!(
        failed.sections.iter().map(|s| s.score).collect::<Vec<_>>(),
        vec![Some(0.0), Some(100.0)],
        "the critical miss zeroes its section"
    );
    let twice = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[0].0.clone(),
            answers: vec![],
        })
        .await
        .expect_err("submitted");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    // Nor is a submitted audit's auditor rewritten.
    let reassigned = client
        .assign_auditor(pb::AssignAuditorRequest {
            audit_id: audits[0].0.clone(),
            auditor_id: "someone-else".into(),
            auditor_property_id: String::new(),
        })
        .await
        .expect_err("submitted");
    assert_eq!(
        reassigned.code(),
        Code::FailedPrecondition,
        "{reassigned:?}"
    );
    // To another chain's staff the audit is not there, as for GetAudit: the answer names
    // neither it nor its property.
    let mut stranger = AuditServiceClient::new(
        service
            .channel_with_token(
                &TokenBuilder::new(Role::ChainQualityManager)
                    .chain("other-chain")
                    .properties(&["oslo"])
                    .mint()?,
            )
            .await?,
    );
    let hidden = stranger
        .assign_auditor(pb::AssignAuditorRequest {
            audit_id: audits[1].0.clone(),
            auditor_id: "x".into(),
            auditor_property_id: String::new(),
        })
        .await
        .expect_err("another chain's audit");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert!(!hidden.message().contains("vienna"), "{}", hidden.message());
    // A value that is not a number is refused, naming the answer.
    let not_a_number = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[1].0.clone(),
            answers: vec![answer(
                "phone_rings",
                pb::AnswerKind::Value,
                f64::NAN,
                0,
                &[],
            )],
        })
        .await
        .expect_err("NaN");
    assert_eq!(violated_fields(&not_a_number), vec!["answers[0].value"]);
    let missing = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[1].0.clone(),
            answers: vec![answer("warmth", pb::AnswerKind::Rating, 0.0, 4, &[])],
        })
        .await
        .expect_err("unanswered items");
    assert_eq!(missing.code(), Code::InvalidArgument);
    // A standard answered twice, or a staff member named twice, is refused with the answer
    // named; the audit stays open.
    let doubled = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[1].0.clone(),
            answers: vec![
                answer("greet_within_3m", pb::AnswerKind::Fail, 0.0, 0, &["s1"]),
                answer("greet_within_3m", pb::AnswerKind::Pass, 0.0, 0, &["s2"]),
                answer("phone_rings", pb::AnswerKind::NotApplicable, 0.0, 0, &[]),
                answer("warmth", pb::AnswerKind::Rating, 0.0, 3, &["s3", "s3"]),
            ],
        })
        .await
        .expect_err("answered twice");
    assert_eq!(doubled.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&doubled),
        vec!["answers[1].standard_code", "answers[3].staff_ids[1]"]
    );

    let second = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[1].0.clone(),
            answers: vec![
                answer("greet_within_3m", pb::AnswerKind::Fail, 0.0, 0, &[]),
                answer("phone_rings", pb::AnswerKind::NotApplicable, 0.0, 0, &[]),
                answer("warmth", pb::AnswerKind::Rating, 0.0, 3, &[]),
            ],
        })
        .await?
        .into_inner();
    assert_eq!(
        second.previous_overall,
        Some(0.0),
        "compared with the previous audit of the program"
    );
    let findings = client
        .list_findings(pb::ListFindingsRequest {
            property_id: "vienna".into(),
            open_only: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(findings.findings.len(), 2);
    // A page at a time, in the order they were raised.
    let first_page = client
        .list_findings(pb::ListFindingsRequest {
            property_id: "vienna".into(),
            open_only: true,
            page_size: 1,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let second_page = client
        .list_findings(pb::ListFindingsRequest {
            property_id: "vienna".into(),
            open_only: true,
            page_size: 1,
            page_token: first_page.next_page_token.clone(),
        })
        .await?
        .into_inner();
    assert!(!first_page.next_page_token.is_empty());
    assert!(second_page.next_page_token.is_empty());
    assert_eq!(
        first_page
            .findings
            .iter()
            .chain(&second_page.findings)
            .map(|f| f.finding_id.clone())
            .collect::<Vec<_>>(),
        findings
            .findings
            .iter()
            .map(|f| f.finding_id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        findings
            .findings
            .iter()
            .map(|f| f.repeat)
            .collect::<Vec<_>>(),
        vec![false, true],
        "the greeting failed again: repeat"
    );

    // Corrective actions: overdue when late, verified only after done.
    let finding = findings.findings[1].clone();
    let late = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            action: "greeting refresher".into(),
            owner: "fo-head".into(),
            due_date: (chrono::Utc::now().date_naive() - chrono::Days::new(1)).to_string(),
            status: "in_progress".into(),
        })
        .await?
        .into_inner();
    assert!(late.overdue);
    let early = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "verified".into(),
            ..Default::default()
        })
        .await
        .expect_err("not done yet");
    assert_eq!(early.code(), Code::FailedPrecondition);
    client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "done".into(),
            ..Default::default()
        })
        .await?;
    let verified = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "verified".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            verified.status.as_str(),
            verified.verified_by.as_str(),
            verified.overdue
        ),
        ("verified", "qm-1", false)
    );
    // Once done, the due date stays: moving it would turn a late action into one on time.
    let moved = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            due_date: (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string(),
            ..Default::default()
        })
        .await
        .expect_err("a done action's due date moved");
    assert_eq!(moved.code(), Code::FailedPrecondition, "{moved:?}");
    for nonsense in ["-5000-01-01", "9999-12-31", "2026-13-01"] {
        let refused = client
            .update_corrective_action(pb::UpdateCorrectiveActionRequest {
                finding_id: findings.findings[0].finding_id.clone(),
                due_date: nonsense.into(),
                ..Default::default()
            })
            .await
            .expect_err(nonsense);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), vec!["due_date"]);
    }
    // A verified action is reopened or changed by a verifier only; it never moves backwards to
    // done; and done needs an action, an owner and a due date.
    let agent = AuditServiceClient::new(
        service
            .channel_with_token(
                &TokenBuilder::new(Role::Agent)
                    .properties(&["vienna"])
                    .mint()?,
            )
            .await?,
    );
    let refused = agent
        .clone()
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "in_progress".into(),
            ..Default::default()
        })
        .await
        .expect_err("an agent reopens a verified action");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let backwards = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "done".into(),
            ..Default::default()
        })
        .await
        .expect_err("verified back to done");
    assert_eq!(backwards.code(), Code::FailedPrecondition);
    let reopened = client
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: finding.finding_id.clone(),
            status: "in_progress".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        (reopened.status.as_str(), reopened.verified_by.as_str()),
        ("in_progress", ""),
        "reopening clears the verification"
    );
    let bare = findings
        .findings
        .iter()
        .find(|f| f.finding_id != finding.finding_id && f.action.is_empty())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("a finding without an action"))?;
    let incomplete = agent
        .clone()
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id: bare.finding_id.clone(),
            status: "done".into(),
            ..Default::default()
        })
        .await
        .expect_err("done without action, owner, due date");
    assert_eq!(incomplete.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&incomplete)
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(details, vec!["action", "owner", "due_date"]);

    // Staff scores from observations: anna missed the greeting (0) and met the phone standard (1).
    let quarter = {
        use chrono::Datelike;
        let now = chrono::Utc::now();
        format!("{}-Q{}", now.year(), now.month0() / 3 + 1)
    };
    let staff = client
        .get_staff_scores(pb::GetStaffScoresRequest {
            property_id: "vienna".into(),
            quarter,
        })
        .await?
        .into_inner();
    let scores: Vec<(String, i64, i64)> = staff
        .scores
        .iter()
        .map(|s| (s.staff_id.clone(), s.score.round() as i64, s.observations))
        .collect();
    assert_eq!(
        scores,
        vec![("anna".to_string(), 50, 2), ("ben".to_string(), 100, 1)]
    );
    service.shutdown().await
}

#[tokio::test]
async fn mystery_guests_come_from_elsewhere_and_servqual_gaps_add_up() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainQualityManager)
        .properties(&["vienna"])
        .mint()?;
    let mut client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    client
        .create_standard(vienna_standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Mystery stay".into(),
            sections: vec![pb::TemplateSection {
                name: "stay".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "warmth".into(),
                    weight: 1.0,
                    critical: false,
                }],
            }],
            critical_rule: pb::CriticalRule::FailSection as i32,
            pass_threshold: 70.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let pool = service.database.admin_pool().await?;
    let audits = scheduled_program(
        &mut client,
        &pool,
        &template.template_id,
        pb::ProgramKind::MysteryGuest,
        pb::Cadence::Quarterly,
        1,
    )
    .await?;
    assert_eq!(audits.len(), 1);
    let audit_id = audits[0].clone();
    let conflict = client
        .assign_auditor(pb::AssignAuditorRequest {
            audit_id: audit_id.clone(),
            auditor_id: "insider".into(),
            auditor_property_id: "vienna".into(),
        })
        .await
        .expect_err("same property");
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    let assigned = client
        .assign_auditor(pb::AssignAuditorRequest {
            audit_id: audit_id.clone(),
            auditor_id: "shopper-7".into(),
            auditor_property_id: "external".into(),
        })
        .await?
        .into_inner();
    assert_eq!(assigned.auditor_id, "shopper-7");

    let mut guest = AuditServiceClient::new(
        service
            .channel_with_token(&TokenBuilder::new(Role::Guest).guest("g1").mint()?)
            .await?,
    );
    for (request_id, expectation, perception) in [("s1", 7, 5), ("s2", 6, 6), ("s1", 7, 5)] {
        guest
            .record_servqual_survey(pb::RecordServqualSurveyRequest {
                request_id: request_id.into(),
                property_id: "vienna".into(),
                answers: (1..=22)
                    .map(|item| pb::ServqualAnswer {
                        item,
                        expectation,
                        perception,
                    })
                    .collect(),
            })
            .await?;
    }
    let bad = guest
        .record_servqual_survey(pb::RecordServqualSurveyRequest {
            request_id: "s3".into(),
            property_id: "vienna".into(),
            answers: vec![pb::ServqualAnswer {
                item: 23,
                expectation: 8,
                perception: 1,
            }],
        })
        .await
        .expect_err("out of range");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let survey =
        |request_id: &str, answers: Vec<(i32, i32, i32)>| pb::RecordServqualSurveyRequest {
            request_id: request_id.into(),
            property_id: "vienna".into(),
            answers: answers
                .into_iter()
                .map(|(item, expectation, perception)| pb::ServqualAnswer {
                    item,
                    expectation,
                    perception,
                })
                .collect(),
        };
    // An item answered twice is refused, naming the answer.
    let doubled = guest
        .record_servqual_survey(survey("s4", vec![(1, 7, 1), (1, 1, 7)]))
        .await
        .expect_err("item 1 twice");
    assert_eq!(doubled.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&doubled), vec!["answers[1].item"]);
    // The same request id with other answers is refused; retries sent at once (at Graz, so
    // Vienna's gaps below stay as they are) record one survey.
    let reused = guest
        .record_servqual_survey(survey("s2", vec![(1, 1, 1)]))
        .await
        .expect_err("s2 recorded other answers");
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let mut guest = guest.clone();
            tokio::spawn(async move {
                guest
                    .record_servqual_survey(pb::RecordServqualSurveyRequest {
                        property_id: "graz".into(),
                        ..survey("s5", vec![(2, 5, 5)])
                    })
                    .await
                    .map(|r| r.into_inner().survey_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for retry in retries {
        ids.push(retry.await??);
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "one survey for six concurrent retries: {ids:?}"
    );
    let now = chrono::Utc::now().timestamp();
    let gaps = client
        .get_servqual_gaps(pb::GetServqualGapsRequest {
            property_id: "vienna".into(),
            period: Some(TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: now - 3600,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: now + 3600,
                    nanos: 0,
                }),
            }),
        })
        .await?
        .into_inner();
    assert_eq!(gaps.surveys, 2, "the repeated survey counted once");
    assert_eq!(gaps.dimensions.len(), 5);
    for dimension in &gaps.dimensions {
        assert!(
            (dimension.gap - (-1.0)).abs() < 1e-9,
            "mean perception 5.5 − expectation 6.5 = −1"
        );
    }
    assert_eq!(gaps.dimensions.iter().map(|d| d.answers).sum::<i64>(), 44);
    service.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kpis_add_up_to_the_stored_audits_and_actions() -> anyhow::Result<()> {
    let mut settings = guestloop_testkit::test_settings();
    settings.demo = true;
    let service =
        guestloop_testkit::spawn_service_with(&guestloop_audit::DEFINITION, settings, None).await?;
    let token = TokenBuilder::new(Role::ChainQualityManager)
        .chain(guestloop_kit::demo::DEMO_CHAIN)
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    let properties: Vec<String> = guestloop_kit::demo::DEMO_PROPERTIES
        .iter()
        .map(|p| p.property_id.to_string())
        .collect();
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::days(365);
    let period = TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: start.timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
    };
    let kpis = client
        .get_audit_kpis(pb::GetAuditKpisRequest {
            property_ids: properties.clone(),
            period: Some(period),
            series: pb::SeriesGranularity::Month as i32,
            on_behalf_of_chain: String::new(),
        })
        .await?
        .into_inner();
    let total = kpis.total.unwrap_or_default();

    // The same figures straight from the tables.
    let pool = service.database.admin_pool().await?;
    // The KPIs cover the period widened to whole UTC days.
    let (start_s, now_s) = guestloop_kit::time::whole_utc_days((
        chrono::DateTime::from_timestamp(start.timestamp(), 0).unwrap_or_default(),
        chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or_default(),
    ));
    let (audits, score_sum, passed): (i64, f64, i64) = sqlx::query_as(
        "SELECT count(overall), coalesce(sum(overall), 0)::float8, count(*) FILTER (WHERE passed) FROM audit.audits \
         WHERE property_id = ANY($1) AND submitted_at >= $2 AND submitted_at < $3",
    )
    .bind(&properties)
    .bind(start_s)
    .bind(now_s)
    .fetch_one(&pool)
    .await?;
    let (findings, due, on_time, overdue): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE created_at >= $2 AND created_at < $3), \
                count(*) FILTER (WHERE due_date >= $2::date AND due_date < $3::date), \
                count(*) FILTER (WHERE due_date >= $2::date AND due_date < $3::date AND done_at::date <= due_date), \
                count(*) FILTER (WHERE due_date >= $2::date AND due_date < $3::date AND done_at IS NULL AND due_date < $3::date) \
         FROM audit.findings WHERE property_id = ANY($1)",
    )
    .bind(&properties)
    .bind(start_s)
    .bind(now_s)
    .fetch_one(&pool)
    .await?;
    // Staff bands count every observed staff member of every property once; SERVQUAL sums
    // equal the answers' sums.
    let (staff, staff_score_sum): (i64, f64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(s), 0)::float8 FROM (SELECT 100 * avg(score) AS s FROM audit.staff_observations \
         WHERE property_id = ANY($1) AND observed_at >= $2 AND observed_at < $3 GROUP BY property_id, staff_id) x",
    )
    .bind(&properties)
    .bind(start_s)
    .bind(now_s)
    .fetch_one(&pool)
    .await?;
    assert!(staff > 0, "demo audits observe staff");
    assert_eq!(kpis.staff_bands.len(), 5);
    assert_eq!(kpis.staff_bands.iter().map(|b| b.staff).sum::<i64>(), staff);
    assert!(
        (kpis.staff_bands.iter().map(|b| b.score_sum).sum::<f64>() - staff_score_sum).abs() < 1e-6
    );
    for band in &kpis.staff_bands {
        if band.staff > 0 {
            let mean = band.score_sum / band.staff as f64;
            assert!(mean >= band.from && mean <= band.to, "{band:?}");
        }
    }
    let (answers, expectations, perceptions): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(a.expectation), 0)::bigint, coalesce(sum(a.perception), 0)::bigint \
         FROM audit.servqual_answers a JOIN audit.servqual_surveys s USING (survey_id) \
         WHERE s.property_id = ANY($1) AND s.submitted_at >= $2 AND s.submitted_at < $3",
    )
    .bind(&properties)
    .bind(start_s)
    .bind(now_s)
    .fetch_one(&pool)
    .await?;
    assert_eq!(kpis.servqual.len(), 5);
    assert_eq!(
        kpis.servqual.iter().map(|d| d.answers).sum::<i64>(),
        answers
    );
    assert_eq!(
        kpis.servqual.iter().map(|d| d.expectation_sum).sum::<i64>(),
        expectations
    );
    assert_eq!(
        kpis.servqual.iter().map(|d| d.perception_sum).sum::<i64>(),
        perceptions
    );
    assert!(audits > 20, "a year of demo audits: {audits}");
    assert_eq!((total.audits, total.passed), (audits, passed));
    assert!((total.score_sum - score_sum).abs() < 1e-6);
    assert_eq!(total.findings, findings);
    assert_eq!(
        (
            total.actions_due,
            total.actions_on_time,
            total.actions_overdue
        ),
        (due, on_time, overdue)
    );
    assert!(
        on_time > 0 && on_time < due,
        "some actions late, some on time"
    );
    // Every breakdown adds up to the total.
    let series_audits: i64 = kpis
        .series
        .iter()
        .map(|b| b.counts.as_ref().map_or(0, |c| c.audits))
        .sum();
    assert_eq!(series_audits, audits);
    assert!(
        kpis.series.len() >= 12,
        "a monthly series: {}",
        kpis.series.len()
    );
    let property_audits: i64 = kpis
        .by_property
        .iter()
        .map(|b| b.counts.as_ref().map_or(0, |c| c.audits))
        .sum();
    assert_eq!(property_audits, audits);
    assert_eq!(kpis.by_dimension.len(), 5, "all five dimensions scored");
    assert!(!kpis.by_section.is_empty());

    // Bad requests change nothing and name the field.
    for (request, field) in [
        (
            pb::GetAuditKpisRequest {
                property_ids: Vec::new(),
                period: Some(period),
                series: 0,
                on_behalf_of_chain: String::new(),
            },
            "property_ids",
        ),
        (
            pb::GetAuditKpisRequest {
                property_ids: properties.clone(),
                period: None,
                series: 0,
                on_behalf_of_chain: String::new(),
            },
            "period",
        ),
        (
            pb::GetAuditKpisRequest {
                property_ids: properties.clone(),
                period: Some(TimeRange {
                    start_time: period.end_time,
                    end_time: period.start_time,
                }),
                series: 0,
                on_behalf_of_chain: String::new(),
            },
            "period.end_time",
        ),
    ] {
        let status = client.get_audit_kpis(request).await.err();
        assert!(
            status
                .as_ref()
                .is_some_and(|s| s.code() == Code::InvalidArgument && s.message().contains(field)),
            "{field}: {status:?}"
        );
    }
    let scoped = TokenBuilder::new(Role::GeneralManager)
        .chain(guestloop_kit::demo::DEMO_CHAIN)
        .properties(&["paris-opera"])
        .mint()?;
    let refused = AuditServiceClient::new(service.channel_with_token(&scoped).await?)
        .get_audit_kpis(pb::GetAuditKpisRequest {
            property_ids: properties.clone(),
            period: Some(period),
            series: 0,
            on_behalf_of_chain: String::new(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(refused, Some(Code::PermissionDenied));
    service.shutdown().await
}

#[tokio::test]
async fn room_inspections_cover_a_share_of_rooms_each_month() -> anyhow::Result<()> {
    use chrono::Datelike;
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    client
        .create_standard(vienna_standard(
            "bathroom_clean",
            pb::StandardKind::HardBinary,
            pb::Dimension::Tangibles,
        ))
        .await?;
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Room".into(),
            sections: vec![pb::TemplateSection {
                name: "bathroom".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "bathroom_clean".into(),
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
    let rooms: Vec<String> = (101..=110).map(|r| r.to_string()).collect();
    let program = |rooms: Vec<String>, percent: i32, per_period: i32, kind: pb::ProgramKind| {
        pb::CreateProgramRequest {
            request_id: String::new(),
            program: Some(pb::Program {
                property_id: "vienna".into(),
                kind: kind as i32,
                template_id: template.template_id.clone(),
                cadence: pb::Cadence::Monthly as i32,
                audits_per_period: per_period,
                rooms,
                rooms_percent: percent,
                ..Default::default()
            }),
        }
    };

    // Bad programs name the field and create nothing.
    let mut twice = rooms.clone();
    twice.push("105".into());
    for (request, field) in [
        (
            program(Vec::new(), 25, 0, pb::ProgramKind::RoomInspection),
            "program.rooms",
        ),
        (
            program(rooms.clone(), 0, 0, pb::ProgramKind::RoomInspection),
            "program.rooms_percent",
        ),
        (
            program(twice, 25, 0, pb::ProgramKind::RoomInspection),
            "program.rooms[10]",
        ),
        (
            program(rooms.clone(), 25, 5, pb::ProgramKind::RoomInspection),
            "program.audits_per_period",
        ),
        (
            program(rooms.clone(), 25, 2, pb::ProgramKind::Internal),
            "program.rooms",
        ),
    ] {
        let refused = client.create_program(request).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    let pool = service.database.admin_pool().await?;
    let programs: i64 = sqlx::query_scalar("SELECT count(*) FROM audit.programs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(programs, 0);

    // 25 % of 10 rooms is 3 a month; three months walk through nine different rooms.
    let created = client
        .create_program(program(
            rooms.clone(),
            25,
            0,
            pb::ProgramKind::RoomInspection,
        ))
        .await?
        .into_inner();
    assert_eq!(created.audits_per_period, 3);
    let today = chrono::Utc::now().date_naive();
    let first = chrono::NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    let third_month = first + chrono::Months::new(2);
    let until = chrono::TimeZone::from_utc_datetime(
        &chrono::Utc,
        &third_month.and_hms_opt(12, 0, 0).unwrap_or_default(),
    );
    let request = pb::ScheduleAuditsRequest {
        property_id: "vienna".into(),
        until: Some(guestloop_kit::time::to_timestamp(until)),
    };
    let scheduled = client.schedule_audits(request.clone()).await?.into_inner();
    assert_eq!(scheduled.created, 9);
    let again = client.schedule_audits(request).await?.into_inner();
    assert_eq!((again.created, again.already_scheduled), (0, 9));
    let assigned: Vec<(String, String)> = sqlx::query_as(
        "SELECT period, room FROM audit.audits WHERE program_id = $1::uuid ORDER BY period, slot",
    )
    .bind(&created.program_id)
    .fetch_all(&pool)
    .await?;
    let rooms_in_order: Vec<&str> = assigned.iter().map(|(_, room)| room.as_str()).collect();
    assert_eq!(
        rooms_in_order,
        ["101", "102", "103", "104", "105", "106", "107", "108", "109"]
    );
    let audit_id: String = sqlx::query_scalar(
        "SELECT audit_id::text FROM audit.audits WHERE program_id = $1::uuid AND room = '104'",
    )
    .bind(&created.program_id)
    .fetch_one(&pool)
    .await?;
    let audit = client
        .get_audit(pb::GetAuditRequest { audit_id })
        .await?
        .into_inner();
    assert_eq!(audit.room, "104");
    service.shutdown().await
}

#[tokio::test]
async fn touchpoint_importance_reweights_touchpoint_weighted_templates() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    let rating = |touchpoint: &str, importance: i32| pb::TouchpointRating {
        touchpoint: touchpoint.into(),
        importance,
    };
    // Twelve guests: arrival matters most (5), the minibar least (1); two mention the spa.
    for n in 0..12 {
        let mut ratings = vec![rating("Arrival", 5), rating("minibar", 1)];
        if n < 2 {
            ratings.push(rating("spa", 4));
        }
        let recorded = client
            .record_touchpoint_ratings(pb::RecordTouchpointRatingsRequest {
                request_id: format!("survey-{n}"),
                property_id: "vienna".into(),
                ratings,
            })
            .await?
            .into_inner();
        assert!(!recorded.duplicate);
    }
    let again = client
        .record_touchpoint_ratings(pb::RecordTouchpointRatingsRequest {
            request_id: "survey-0".into(),
            property_id: "vienna".into(),
            ratings: vec![rating("minibar", 5)],
        })
        .await?
        .into_inner();
    assert!(again.duplicate, "a resent survey is recorded once");
    // Another chain's own "survey-0", at its own property, is its own response.
    let mut other_chain: Client = AuditServiceClient::new(
        service
            .channel_with_token(
                &TokenBuilder::new(Role::GeneralManager)
                    .chain("other-chain")
                    .properties(&["oslo"])
                    .mint()?,
            )
            .await?,
    );
    for expected_duplicate in [false, true] {
        let theirs = other_chain
            .record_touchpoint_ratings(pb::RecordTouchpointRatingsRequest {
                request_id: "survey-0".into(),
                property_id: "oslo".into(),
                ratings: vec![rating("minibar", 5)],
            })
            .await?
            .into_inner();
        assert_eq!(theirs.duplicate, expected_duplicate);
        assert_ne!(theirs.response_id, again.response_id);
    }
    let survey = |property: &str| pb::RecordServqualSurveyRequest {
        request_id: "survey-0".into(),
        property_id: property.into(),
        answers: vec![pb::ServqualAnswer {
            item: 1,
            expectation: 5,
            perception: 5,
        }],
    };
    let ours = client.record_servqual_survey(survey("vienna")).await?;
    let theirs = other_chain.record_servqual_survey(survey("oslo")).await?;
    assert_ne!(ours.into_inner().survey_id, theirs.into_inner().survey_id);
    let refused = client
        .record_touchpoint_ratings(pb::RecordTouchpointRatingsRequest {
            request_id: "survey-bad".into(),
            property_id: "vienna".into(),
            ratings: vec![rating("arrival", 6), rating("ARRIVAL", 3), rating("", 2)],
        })
        .await
        .expect_err("bad ratings");
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in [
        "ratings[0].importance",
        "ratings[1].touchpoint",
        "ratings[2].touchpoint",
    ] {
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }

    let now = chrono::Utc::now();
    let importance = client
        .get_touchpoint_importance(pb::GetTouchpointImportanceRequest {
            property_ids: vec!["vienna".into()],
            period: Some(TimeRange {
                start_time: Some(guestloop_kit::time::to_timestamp(
                    now - chrono::Duration::days(1),
                )),
                end_time: Some(guestloop_kit::time::to_timestamp(
                    now + chrono::Duration::days(1),
                )),
            }),
        })
        .await?
        .into_inner();
    let ranked: Vec<(&str, i64, i32)> = importance
        .touchpoints
        .iter()
        .map(|t| (t.touchpoint.as_str(), t.ratings, t.rank))
        .collect();
    assert_eq!(
        ranked,
        [("arrival", 12, 1), ("minibar", 12, 2), ("spa", 2, 0)]
    );
    let factor = |name: &str| {
        importance
            .touchpoints
            .iter()
            .find(|t| t.touchpoint == name)
            .map(|t| t.weight_factor)
    };
    assert_eq!(factor("arrival"), Some(5.0 / 3.0));
    assert_eq!(factor("minibar"), Some(1.0 / 3.0));
    assert_eq!(factor("spa"), Some(1.0), "too few ratings to move a weight");

    // A touchpoint-weighted template: the greeting (arrival) passes, the minibar fails. Equal
    // item weights would score 50; weighted by importance the audit scores 5/6.
    for (code, touchpoint) in [("greet", "arrival"), ("minibar_stocked", "minibar")] {
        client
            .create_standard(pb::CreateStandardRequest {
                standard: Some(pb::Standard {
                    code: code.into(),
                    title: code.into(),
                    touchpoint: touchpoint.into(),
                    property_id: "vienna".into(),
                    kind: pb::StandardKind::HardBinary as i32,
                    dimension: pb::Dimension::Reliability as i32,
                    weight: 1.0,
                    ..Default::default()
                }),
            })
            .await?;
    }
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Stay".into(),
            sections: vec![pb::TemplateSection {
                name: "stay".into(),
                items: ["greet", "minibar_stocked"]
                    .into_iter()
                    .map(|code| pb::TemplateItem {
                        standard_code: code.into(),
                        weight: 1.0,
                        critical: false,
                    })
                    .collect(),
            }],
            critical_rule: pb::CriticalRule::FailSection as i32,
            pass_threshold: 80.0,
            touchpoint_weighted: true,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    assert!(template.touchpoint_weighted);
    let pool = service.database.admin_pool().await?;
    let audits = scheduled_program(
        &mut client,
        &pool,
        &template.template_id,
        pb::ProgramKind::Internal,
        pb::Cadence::Monthly,
        1,
    )
    .await?;
    assert_eq!(audits.len(), 1);
    let audit_id = audits[0].clone();
    let submitted = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id,
            answers: vec![
                answer("greet", pb::AnswerKind::Pass, 0.0, 0, &[]),
                answer("minibar_stocked", pb::AnswerKind::Fail, 0.0, 0, &[]),
            ],
        })
        .await?
        .into_inner();
    let overall = submitted
        .overall
        .ok_or_else(|| anyhow::anyhow!("no score"))?;
    assert!((overall - 100.0 * 5.0 / 6.0).abs() < 1e-9, "{overall}");
    assert!(submitted.passed);
    assert_eq!(
        submitted.touchpoint_factors.get("arrival"),
        Some(&(5.0 / 3.0))
    );
    assert_eq!(
        submitted.touchpoint_factors.get("minibar"),
        Some(&(1.0 / 3.0))
    );
    service.shutdown().await
}

/// A "warmth" standard, a one-section template over it and a program of `kind` at vienna with
/// `per_period` audits, scheduled; returns the program's audit ids in slot order.
async fn one_standard_program(
    client: &mut Client,
    pool: &sqlx::PgPool,
    kind: pb::ProgramKind,
    per_period: i32,
) -> anyhow::Result<Vec<String>> {
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: format!("{kind:?}"),
            sections: vec![pb::TemplateSection {
                name: "stay".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "warmth".into(),
                    weight: 1.0,
                    critical: false,
                }],
            }],
            critical_rule: pb::CriticalRule::FailSection as i32,
            pass_threshold: 70.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    scheduled_program(
        client,
        pool,
        &template.template_id,
        kind,
        pb::Cadence::Monthly,
        per_period,
    )
    .await
}

/// A program of `kind` for `template_id` in vienna, scheduled up to now; its audits' ids.
async fn scheduled_program(
    client: &mut Client,
    pool: &sqlx::PgPool,
    template_id: &str,
    kind: pb::ProgramKind,
    cadence: pb::Cadence,
    per_period: i32,
) -> anyhow::Result<Vec<String>> {
    let program = client
        .create_program(pb::CreateProgramRequest {
            request_id: String::new(),
            program: Some(pb::Program {
                property_id: "vienna".into(),
                kind: kind as i32,
                template_id: template_id.to_string(),
                cadence: cadence as i32,
                audits_per_period: per_period,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    scheduled(client).await?;
    Ok(sqlx::query_scalar(
        "SELECT audit_id::text FROM audit.audits WHERE program_id = $1::uuid ORDER BY period, slot",
    )
    .bind(&program.program_id)
    .fetch_all(pool)
    .await?)
}

#[tokio::test]
async fn audits_are_submitted_in_scope_and_mystery_guest_audits_by_their_auditor(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let client_as = |token: String| {
        let service = &service;
        async move {
            anyhow::Ok(AuditServiceClient::new(
                service.channel_with_token(&token).await?,
            ))
        }
    };
    let mut quality = client_as(
        TokenBuilder::new(Role::ChainQualityManager)
            .properties(&["vienna"])
            .subject("qm-vienna")
            .mint()?,
    )
    .await?;
    quality
        .create_standard(vienna_standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    let pool = service.database.admin_pool().await?;
    let internal = one_standard_program(&mut quality, &pool, pb::ProgramKind::Internal, 1).await?;
    let mystery =
        one_standard_program(&mut quality, &pool, pb::ProgramKind::MysteryGuest, 1).await?;
    let (internal, mystery) = (internal[0].clone(), mystery[0].clone());
    let submit = |audit_id: &str| pb::SubmitAuditRequest {
        audit_id: audit_id.into(),
        answers: vec![answer("warmth", pb::AnswerKind::Rating, 0.0, 5, &[])],
    };
    let stored = |audit_id: &str| {
        let pool = pool.clone();
        let audit_id = audit_id.to_string();
        async move {
            anyhow::Ok(
                sqlx::query_as::<_, (String, String)>(
                    "SELECT status, auditor_id FROM audit.audits WHERE audit_id = $1::uuid",
                )
                .bind(audit_id)
                .fetch_one(&pool)
                .await?,
            )
        }
    };

    // A chain quality manager whose scope lists other properties cannot submit vienna's audits.
    let mut elsewhere = client_as(
        TokenBuilder::new(Role::ChainQualityManager)
            .properties(&["lisbon"])
            .subject("qm-lisbon")
            .mint()?,
    )
    .await?;
    for audit_id in [&internal, &mystery] {
        let refused = elsewhere
            .submit_audit(submit(audit_id))
            .await
            .expect_err("outside the caller's properties");
        assert_eq!(refused.code(), Code::NotFound, "{}", refused.message());
        assert_eq!(stored(audit_id).await?, ("scheduled".into(), String::new()));
    }

    // Staff of the audited property cannot submit (and so become the auditor of) its mystery
    // guest audit: none assigned yet is a precondition, another auditor assigned a refusal.
    let mut insider = client_as(
        TokenBuilder::new(Role::Agent)
            .properties(&["vienna"])
            .subject("vienna-front-desk")
            .mint()?,
    )
    .await?;
    let unassigned = insider
        .submit_audit(submit(&mystery))
        .await
        .expect_err("no auditor assigned");
    assert_eq!(unassigned.code(), Code::FailedPrecondition);
    assert_eq!(stored(&mystery).await?, ("scheduled".into(), String::new()));
    quality
        .assign_auditor(pb::AssignAuditorRequest {
            audit_id: mystery.clone(),
            auditor_id: "shopper-7".into(),
            auditor_property_id: "external".into(),
        })
        .await?;
    let mut chain_wide = client_as(
        TokenBuilder::new(Role::ChainQualityManager)
            .subject("qm-chain")
            .mint()?,
    )
    .await?;
    for client in [&mut insider, &mut quality, &mut chain_wide] {
        let refused = client
            .submit_audit(submit(&mystery))
            .await
            .expect_err("not the assigned auditor");
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{}",
            refused.message()
        );
    }
    assert_eq!(
        stored(&mystery).await?,
        ("scheduled".into(), "shopper-7".into())
    );
    let mut shopper = client_as(
        TokenBuilder::new(Role::Agent)
            .properties(&["vienna"])
            .subject("shopper-7")
            .mint()?,
    )
    .await?;
    let submitted = shopper.submit_audit(submit(&mystery)).await?.into_inner();
    assert_eq!(
        (submitted.status.as_str(), submitted.auditor_id.as_str()),
        ("submitted", "shopper-7")
    );

    // An internal audit: a chain-wide quality manager may submit it and becomes its auditor.
    let internal_done = chain_wide
        .submit_audit(submit(&internal))
        .await?
        .into_inner();
    assert_eq!(internal_done.status, "submitted");
    assert_eq!(
        stored(&internal).await?,
        ("submitted".into(), "qm-chain".into())
    );
    service.shutdown().await
}

#[tokio::test]
async fn a_critical_item_rated_below_full_marks_fails_the_audit_with_a_finding(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    for (code, kind) in [
        ("warmth", pb::StandardKind::Soft),
        ("greet", pb::StandardKind::HardBinary),
    ] {
        client
            .create_standard(vienna_standard(code, kind, pb::Dimension::Empathy))
            .await?;
    }
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Welcome".into(),
            sections: vec![pb::TemplateSection {
                name: "arrival".into(),
                items: vec![
                    pb::TemplateItem {
                        standard_code: "warmth".into(),
                        weight: 1.0,
                        critical: true,
                    },
                    pb::TemplateItem {
                        standard_code: "greet".into(),
                        weight: 1.0,
                        critical: false,
                    },
                ],
            }],
            critical_rule: pb::CriticalRule::FailAudit as i32,
            pass_threshold: 50.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let pool = service.database.admin_pool().await?;
    let audits = scheduled_program(
        &mut client,
        &pool,
        &template.template_id,
        pb::ProgramKind::Internal,
        pb::Cadence::Monthly,
        1,
    )
    .await?;
    assert_eq!(audits.len(), 1);
    let audit_id = audits[0].clone();
    // Warmth rated 4 of 5 (0.75): short of the critical standard, so the whole audit fails.
    let submitted = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audit_id.clone(),
            answers: vec![
                answer("warmth", pb::AnswerKind::Rating, 0.0, 4, &[]),
                answer("greet", pb::AnswerKind::Pass, 0.0, 0, &[]),
            ],
        })
        .await?
        .into_inner();
    assert!(submitted.critical_failed && !submitted.passed);
    assert_eq!(submitted.overall, Some(0.0));
    // ... and a finding says why, ready for a corrective action.
    let findings = client
        .list_findings(pb::ListFindingsRequest {
            property_id: "vienna".into(),
            open_only: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let raised: Vec<(&str, &str)> = findings
        .findings
        .iter()
        .map(|f| (f.audit_id.as_str(), f.standard_code.as_str()))
        .collect();
    assert_eq!(raised, vec![(audit_id.as_str(), "warmth")]);
    service.shutdown().await
}

#[tokio::test]
async fn audit_kpis_average_only_audits_with_a_score() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    client
        .create_standard(vienna_standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    let pool = service.database.admin_pool().await?;
    let audits = one_standard_program(&mut client, &pool, pb::ProgramKind::Internal, 2).await?;
    assert_eq!(audits.len(), 2);
    // One audit scores 75; on the other every item was not applicable: no score at all.
    let scored = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[0].clone(),
            answers: vec![answer("warmth", pb::AnswerKind::Rating, 0.0, 4, &[])],
        })
        .await?
        .into_inner();
    assert_eq!(scored.overall, Some(75.0));
    let unscored = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[1].clone(),
            answers: vec![answer("warmth", pb::AnswerKind::NotApplicable, 0.0, 0, &[])],
        })
        .await?
        .into_inner();
    assert_eq!((unscored.overall, unscored.passed), (None, false));

    let now = chrono::Utc::now();
    let kpis = client
        .get_audit_kpis(pb::GetAuditKpisRequest {
            property_ids: vec!["vienna".into()],
            period: Some(TimeRange {
                start_time: Some(guestloop_kit::time::to_timestamp(
                    now - chrono::Duration::days(1),
                )),
                end_time: Some(guestloop_kit::time::to_timestamp(
                    now + chrono::Duration::days(1),
                )),
            }),
            series: pb::SeriesGranularity::Day as i32,
            on_behalf_of_chain: String::new(),
        })
        .await?
        .into_inner();
    // The average (score_sum / audits) is 75, not 37.5, everywhere it can be read.
    let total = kpis.total.unwrap_or_default();
    let by_property = kpis
        .by_property
        .iter()
        .find(|b| b.key == "vienna")
        .and_then(|b| b.counts)
        .unwrap_or_default();
    let series_audits: i64 = kpis
        .series
        .iter()
        .map(|b| b.counts.as_ref().map_or(0, |c| c.audits))
        .sum();
    for counts in [&total, &by_property] {
        assert_eq!((counts.audits, counts.passed), (1, 1), "{counts:?}");
        assert!((counts.score_sum - 75.0).abs() < 1e-9, "{counts:?}");
    }
    assert_eq!(series_audits, 1);
    service.shutdown().await
}

/// A template names standards of the library, each once; a standard the audited property's
/// library lacks stops the submission as a precondition, not as the auditor's input error.
#[tokio::test]
async fn templates_name_known_standards_once() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::ChainQualityManager)
        .subject("qm-1")
        .mint()?;
    let mut client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    client
        .create_standard(standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    let mut salzburg_only = standard(
        "alpine_breakfast",
        pb::StandardKind::HardBinary,
        pb::Dimension::Tangibles,
    );
    if let Some(s) = salzburg_only.standard.as_mut() {
        s.property_id = "salzburg".into();
    }
    client.create_standard(salzburg_only).await?;
    let item = |code: &str| pb::TemplateItem {
        standard_code: code.into(),
        weight: 1.0,
        critical: false,
    };
    let template = |items: Vec<pb::TemplateItem>| pb::PublishTemplateRequest {
        template_id: String::new(),
        name: "Stay".into(),
        sections: vec![pb::TemplateSection {
            name: "stay".into(),
            items,
        }],
        critical_rule: pb::CriticalRule::FailSection as i32,
        pass_threshold: 70.0,
        touchpoint_weighted: false,
        request_id: String::new(),
    };
    let unknown = client
        .publish_template(template(vec![item("warmth"), item("wramth")]))
        .await
        .expect_err("a typo");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&unknown),
        vec!["sections[0].items[1].standard_code"]
    );
    let twice = client
        .publish_template(template(vec![item("warmth"), item("warmth")]))
        .await
        .expect_err("the same standard twice");
    assert_eq!(
        violated_fields(&twice),
        vec!["sections[0].items[1].standard_code"]
    );
    let published = client
        .publish_template(template(vec![item("warmth"), item("alpine_breakfast")]))
        .await?
        .into_inner();
    let pool = service.database.admin_pool().await?;
    let audits = scheduled_program(
        &mut client,
        &pool,
        &published.template_id,
        pb::ProgramKind::Internal,
        pb::Cadence::Monthly,
        1,
    )
    .await?;
    let refused = client
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audits[0].clone(),
            answers: vec![
                answer("warmth", pb::AnswerKind::Rating, 0.0, 5, &[]),
                answer("alpine_breakfast", pb::AnswerKind::Pass, 0.0, 0, &[]),
            ],
        })
        .await
        .expect_err("vienna's library lacks the Salzburg standard");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("alpine_breakfast"),
        "{refused:?}"
    );
    service.shutdown().await
}

/// A whole-chain token reaches every property of its own chain, never another chain's: the first
/// write that names a property registers it under the writer's chain, and from then on another
/// chain's quality managers can neither start, read, submit nor change its audits, findings and
/// scores. Each refusal leaves every table as it was.
#[tokio::test]
async fn a_chain_wide_quality_role_stays_in_its_chain() -> anyhow::Result<()> {
    use guestloop_kit::auth::PropertyScope;

    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let quality_manager = |chain: &str| {
        let token = TokenBuilder::new(Role::ChainQualityManager)
            .chain(chain)
            .scope(PropertyScope::all())
            .subject(&format!("qm-{chain}"))
            .mint();
        let service = &service;
        async move {
            anyhow::Ok(AuditServiceClient::new(
                service.channel_with_token(&token?).await?,
            ))
        }
    };
    let mut nordic: Client = quality_manager("nordic").await?;
    let mut other: Client = quality_manager("other").await?;

    // Chain "nordic" starts two audits at oslo and submits one, which raises a finding and
    // observes a staff member.
    for (code, kind) in [
        ("greet_within_3m", pb::StandardKind::HardBinary),
        ("warmth", pb::StandardKind::Soft),
    ] {
        nordic
            .create_standard(standard(code, kind, pb::Dimension::Empathy))
            .await?;
    }
    let mut own = standard(
        "oslo_fjord_view",
        pb::StandardKind::Soft,
        pb::Dimension::Tangibles,
    );
    if let Some(s) = own.standard.as_mut() {
        s.property_id = "oslo".into();
    }
    nordic.create_standard(own).await?;
    let template = nordic
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Arrival".into(),
            sections: vec![pb::TemplateSection {
                name: "front desk".into(),
                items: ["greet_within_3m", "warmth"]
                    .into_iter()
                    .map(|code| pb::TemplateItem {
                        standard_code: code.into(),
                        weight: 1.0,
                        critical: false,
                    })
                    .collect(),
            }],
            critical_rule: pb::CriticalRule::FailSection as i32,
            pass_threshold: 80.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let program = |property: &str, request_id: &str| pb::CreateProgramRequest {
        request_id: request_id.into(),
        program: Some(pb::Program {
            property_id: property.into(),
            kind: pb::ProgramKind::Internal as i32,
            template_id: template.template_id.clone(),
            cadence: pb::Cadence::Monthly as i32,
            audits_per_period: 2,
            ..Default::default()
        }),
    };
    let now = chrono::Utc::now().timestamp();
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let schedule = |property: &str| pb::ScheduleAuditsRequest {
        property_id: property.into(),
        until: at(now),
    };
    nordic
        .create_program(program("oslo", "oslo-monthly"))
        .await?;
    let scheduled = nordic.schedule_audits(schedule("oslo")).await?.into_inner();
    assert_eq!(scheduled.created, 2);
    let pool = service.database.admin_pool().await?;
    let audit_ids: Vec<String> = sqlx::query_scalar(
        "SELECT audit_id::text FROM audit.audits WHERE property_id = 'oslo' ORDER BY slot",
    )
    .fetch_all(&pool)
    .await?;
    let answers = |greeting: pb::AnswerKind| {
        vec![
            answer("greet_within_3m", greeting, 0.0, 0, &["anna"]),
            answer("warmth", pb::AnswerKind::Rating, 0.0, 4, &["anna"]),
        ]
    };
    nordic
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audit_ids[0].clone(),
            answers: answers(pb::AnswerKind::Fail),
        })
        .await?;
    let findings = nordic
        .list_findings(pb::ListFindingsRequest {
            property_id: "oslo".into(),
            open_only: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings;
    assert_eq!(findings.len(), 1);
    let finding_id = findings[0].finding_id.clone();

    // Everything the other chain could touch, in one line.
    let state = || {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, String>(
                    "SELECT concat_ws(' | ', \
                       (SELECT count(*) FROM audit.programs), \
                       (SELECT string_agg(concat_ws(',', audit_id, status, auditor_id, overall), ';' ORDER BY audit_id) FROM audit.audits), \
                       (SELECT string_agg(concat_ws(',', finding_id, status, action, owner, due_date), ';' ORDER BY finding_id) FROM audit.findings), \
                       (SELECT count(*) FROM audit.staff_observations), \
                       (SELECT count(*) FROM audit.standards), \
                       (SELECT count(*) FROM audit.servqual_surveys), \
                       (SELECT count(*) FROM audit.touchpoint_responses), \
                       (SELECT string_agg(property_id || '=' || chain_id, ',' ORDER BY property_id) FROM audit.property_chains))",
                )
                .fetch_one(&pool)
                .await?,
            )
        }
    };
    let before = state().await?;
    assert!(before.ends_with("oslo=nordic"), "{before}");
    let foreign = |status: &tonic::Status| {
        status.code() == Code::PermissionDenied && status.message().contains("another chain")
    };

    // (a) The other chain cannot start audits, programs, surveys or standards at oslo.
    let refusals = [
        other
            .create_program(program("oslo", "oslo-monthly"))
            .await
            .err(),
        other
            .create_program(program("oslo", "other-oslo"))
            .await
            .err(),
        other.schedule_audits(schedule("oslo")).await.err(),
        other
            .record_servqual_survey(pb::RecordServqualSurveyRequest {
                request_id: "other-survey".into(),
                property_id: "oslo".into(),
                answers: vec![pb::ServqualAnswer {
                    item: 1,
                    expectation: 7,
                    perception: 1,
                }],
            })
            .await
            .err(),
        other
            .record_touchpoint_ratings(pb::RecordTouchpointRatingsRequest {
                request_id: "other-ratings".into(),
                property_id: "oslo".into(),
                ratings: vec![pb::TouchpointRating {
                    touchpoint: "arrival".into(),
                    importance: 5,
                }],
            })
            .await
            .err(),
        other
            .create_standard({
                let mut own = standard(
                    "oslo_sauna",
                    pb::StandardKind::Soft,
                    pb::Dimension::Tangibles,
                );
                if let Some(s) = own.standard.as_mut() {
                    s.property_id = "oslo".into();
                }
                own
            })
            .await
            .err(),
    ];
    for (i, refusal) in refusals.iter().enumerate() {
        assert!(
            refusal.as_ref().is_some_and(foreign),
            "write {i}: {refusal:?}"
        );
    }
    assert_eq!(state().await?, before, "refused writes change nothing");

    // (b) Its audits and findings are not found by id, to read, assign, submit or follow up.
    let not_found = [
        other
            .get_audit(pb::GetAuditRequest {
                audit_id: audit_ids[0].clone(),
            })
            .await
            .err(),
        other
            .submit_audit(pb::SubmitAuditRequest {
                audit_id: audit_ids[1].clone(),
                answers: answers(pb::AnswerKind::Pass),
            })
            .await
            .err(),
        other
            .assign_auditor(pb::AssignAuditorRequest {
                audit_id: audit_ids[1].clone(),
                auditor_id: "other-auditor".into(),
                auditor_property_id: String::new(),
            })
            .await
            .err(),
        other
            .update_corrective_action(pb::UpdateCorrectiveActionRequest {
                finding_id: finding_id.clone(),
                action: "retrain".into(),
                owner: "other".into(),
                due_date: "2030-01-01".into(),
                status: "in_progress".into(),
            })
            .await
            .err(),
    ];
    for (i, refusal) in not_found.iter().enumerate() {
        assert_eq!(
            refusal.as_ref().map(|s| s.code()),
            Some(Code::NotFound),
            "by id {i}: {refusal:?}"
        );
    }
    assert_eq!(state().await?, before, "refused changes change nothing");

    // (c) Lists: naming no property lists nothing, naming oslo is refused; its library is not
    // the other chain's either (oslo's own standard cannot go into the other chain's template).
    let unnamed = other
        .list_findings(pb::ListFindingsRequest::default())
        .await?
        .into_inner();
    assert!(unnamed.findings.is_empty(), "{unnamed:?}");
    let listed = other
        .list_findings(pb::ListFindingsRequest {
            property_id: "oslo".into(),
            open_only: false,
            ..Default::default()
        })
        .await
        .err();
    assert!(listed.as_ref().is_some_and(foreign), "{listed:?}");
    let standards = other
        .list_standards(pb::ListStandardsRequest {
            property_id: "oslo".into(),
        })
        .await
        .err();
    assert!(standards.as_ref().is_some_and(foreign), "{standards:?}");
    let borrowed = other
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Borrowed".into(),
            sections: vec![pb::TemplateSection {
                name: "view".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "oslo_fjord_view".into(),
                    weight: 1.0,
                    critical: false,
                }],
            }],
            critical_rule: 0,
            pass_threshold: 80.0,
            touchpoint_weighted: false,
            request_id: String::new(),
        })
        .await
        .err();
    assert!(
        borrowed.as_ref().is_some_and(
            |s| s.code() == Code::InvalidArgument && s.message().contains("oslo_fjord_view")
        ),
        "{borrowed:?}"
    );

    // (d) KPIs, failures, scores, gaps and importance of oslo are refused, alone or beside a
    // property of the other chain's own.
    other.schedule_audits(schedule("bergen")).await?;
    let period = Some(TimeRange {
        start_time: at(now - 86_400),
        end_time: at(now + 3_600),
    });
    let quarter = {
        use chrono::Datelike;
        let today = chrono::Utc::now();
        format!("{}-Q{}", today.year(), today.month0() / 3 + 1)
    };
    for properties in [vec!["oslo"], vec!["bergen", "oslo"]] {
        let property_ids: Vec<String> = properties.iter().map(|p| p.to_string()).collect();
        let kpis = other
            .get_audit_kpis(pb::GetAuditKpisRequest {
                property_ids: property_ids.clone(),
                period,
                series: 0,
                on_behalf_of_chain: String::new(),
            })
            .await
            .err();
        assert!(
            kpis.as_ref().is_some_and(foreign),
            "{properties:?}: {kpis:?}"
        );
        let failures = other
            .get_standard_failures(pb::GetStandardFailuresRequest {
                property_ids: property_ids.clone(),
                period,
                limit: 0,
            })
            .await
            .err();
        assert!(failures.as_ref().is_some_and(foreign), "{failures:?}");
        let importance = other
            .get_touchpoint_importance(pb::GetTouchpointImportanceRequest {
                property_ids,
                period,
            })
            .await
            .err();
        assert!(importance.as_ref().is_some_and(foreign), "{importance:?}");
    }
    let scores = other
        .get_staff_scores(pb::GetStaffScoresRequest {
            property_id: "oslo".into(),
            quarter: quarter.clone(),
        })
        .await
        .err();
    assert!(scores.as_ref().is_some_and(foreign), "{scores:?}");
    let gaps = other
        .get_servqual_gaps(pb::GetServqualGapsRequest {
            property_id: "oslo".into(),
            period,
        })
        .await
        .err();
    assert!(gaps.as_ref().is_some_and(foreign), "{gaps:?}");
    // Bergen is now the other chain's: nordic cannot start audits there.
    let taken = nordic
        .create_program(program("bergen", "bergen-monthly"))
        .await
        .err();
    assert!(taken.as_ref().is_some_and(foreign), "{taken:?}");

    // The owning chain still sees and does everything; so do services (the gateway asks for
    // KPIs with its own token after checking the caller's scope).
    nordic
        .get_audit(pb::GetAuditRequest {
            audit_id: audit_ids[0].clone(),
        })
        .await?;
    let kpis_request = pb::GetAuditKpisRequest {
        property_ids: vec!["oslo".into()],
        period,
        series: 0,
        on_behalf_of_chain: String::new(),
    };
    let kpis = nordic
        .get_audit_kpis(kpis_request.clone())
        .await?
        .into_inner()
        .total
        .unwrap_or_default();
    assert_eq!((kpis.audits, kpis.findings), (1, 1));
    let gateway = TokenBuilder::new(Role::Service).subject("gateway").mint()?;
    let as_service = AuditServiceClient::new(service.channel_with_token(&gateway).await?)
        .get_audit_kpis(kpis_request)
        .await?
        .into_inner()
        .total
        .unwrap_or_default();
    assert_eq!(as_service, kpis);
    let staff = nordic
        .get_staff_scores(pb::GetStaffScoresRequest {
            property_id: "oslo".into(),
            quarter,
        })
        .await?
        .into_inner();
    assert_eq!(
        staff
            .scores
            .iter()
            .map(|s| s.staff_id.as_str())
            .collect::<Vec<_>>(),
        vec!["anna"]
    );
    nordic
        .update_corrective_action(pb::UpdateCorrectiveActionRequest {
            finding_id,
            action: "greeting refresher".into(),
            owner: "fo-head".into(),
            due_date: "2030-01-01".into(),
            status: "in_progress".into(),
        })
        .await?;
    let submitted = nordic
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: audit_ids[1].clone(),
            answers: answers(pb::AnswerKind::Pass),
        })
        .await?
        .into_inner();
    assert!(submitted.passed, "{submitted:?}");
    service.shutdown().await
}

/// Templates and chain-wide standards are the chain's that made them. Another chain can neither
/// publish a version of a chain's template nor build programs on it (both NOT_FOUND, as for an
/// unknown template), nor name its chain-wide standards; it defines its own under the same codes,
/// and each chain's lists and scores use its own. Shared rows from before rows had a chain are
/// everyone's, a chain's own standard winning on code; the first chain to revise a shared
/// template owns it from its new version on, and the others keep the last shared version.
#[tokio::test]
async fn templates_and_chain_wide_standards_are_their_chains() -> anyhow::Result<()> {
    use guestloop_kit::auth::PropertyScope;

    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let quality_manager = |chain: &str| {
        let token = TokenBuilder::new(Role::ChainQualityManager)
            .chain(chain)
            .scope(PropertyScope::all())
            .subject(&format!("qm-{chain}"))
            .mint();
        let service = &service;
        async move {
            anyhow::Ok(AuditServiceClient::new(
                service.channel_with_token(&token?).await?,
            ))
        }
    };
    let mut alpine: Client = quality_manager("alpine").await?;
    let mut baltic: Client = quality_manager("baltic").await?;

    // Shared standards, as stored before standards had a chain: a soft "greeting" and "towels".
    sqlx::query(
        "INSERT INTO audit.standards (standard_id, code, title, kind, dimension, weight) VALUES \
         (gen_random_uuid(), 'greeting', 'shared greeting', 3, 5, 1), \
         (gen_random_uuid(), 'towels', 'shared towels', 1, 1, 1)",
    )
    .execute(&pool)
    .await?;
    // Alpine's own chain-wide standards: a pass/fail "greeting" beside the shared one.
    for (code, dimension) in [
        ("greeting", pb::Dimension::Empathy),
        ("alpine_only", pb::Dimension::Tangibles),
    ] {
        alpine
            .create_standard(standard(code, pb::StandardKind::HardBinary, dimension))
            .await?;
    }
    let publish = |template_id: &str, codes: &[&str]| pb::PublishTemplateRequest {
        template_id: template_id.into(),
        name: "Arrival".into(),
        sections: vec![pb::TemplateSection {
            name: "arrival".into(),
            items: codes
                .iter()
                .map(|code| pb::TemplateItem {
                    standard_code: code.to_string(),
                    weight: 1.0,
                    critical: false,
                })
                .collect(),
        }],
        critical_rule: pb::CriticalRule::FailSection as i32,
        pass_threshold: 50.0,
        touchpoint_weighted: false,
        request_id: String::new(),
    };
    let program = |property: &str, template_id: &str| pb::CreateProgramRequest {
        request_id: String::new(),
        program: Some(pb::Program {
            property_id: property.into(),
            kind: pb::ProgramKind::Internal as i32,
            template_id: template_id.into(),
            cadence: pb::Cadence::Monthly as i32,
            audits_per_period: 1,
            ..Default::default()
        }),
    };
    let arrival = alpine
        .publish_template(publish("", &["greeting", "towels"]))
        .await?
        .into_inner();
    let versions = |template_id: String| {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_as::<_, (i32, String)>(
                    "SELECT version, chain_id FROM audit.templates WHERE template_id = $1::uuid ORDER BY version",
                )
                .bind(template_id)
                .fetch_all(&pool)
                .await?,
            )
        }
    };
    assert_eq!(
        versions(arrival.template_id.clone()).await?,
        vec![(1, "alpine".to_string())]
    );

    // Baltic cannot revise alpine's template nor build a program on it: not found, as an
    // unknown template is, and nothing changes (riga is not registered either).
    let unknown_template = "0194a000-0000-7000-8000-000000000001";
    let unknown = baltic
        .create_program(program("riga", unknown_template))
        .await
        .expect_err("no such template");
    assert_eq!(unknown.code(), Code::NotFound);
    let not_there = format!("template {} not found", arrival.template_id);
    assert_eq!(
        unknown.message(),
        not_there.replace(&arrival.template_id, unknown_template)
    );
    let revised = baltic
        .publish_template(publish(&arrival.template_id, &["towels"]))
        .await
        .expect_err("alpine's template");
    let used = baltic
        .create_program(program("riga", &arrival.template_id))
        .await
        .expect_err("alpine's template");
    for refusal in [&revised, &used] {
        assert_eq!(
            (refusal.code(), refusal.message()),
            (Code::NotFound, not_there.as_str())
        );
    }
    assert_eq!(
        versions(arrival.template_id.clone()).await?,
        vec![(1, "alpine".to_string())]
    );
    let (programs, riga): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit.programs), \
                (SELECT count(*) FROM audit.property_chains WHERE property_id = 'riga')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((programs, riga), (0, 0));
    // Nor can its templates name alpine's chain-wide standards.
    let borrowed = baltic
        .publish_template(publish("", &["alpine_only"]))
        .await
        .expect_err("alpine's standard");
    assert_eq!(borrowed.code(), Code::InvalidArgument);
    assert!(borrowed.message().contains("alpine_only"), "{borrowed:?}");

    // Baltic defines its own soft "greeting"; alpine's stays as it was.
    let mut own_greeting = standard("greeting", pb::StandardKind::Soft, pb::Dimension::Empathy);
    if let Some(s) = own_greeting.standard.as_mut() {
        s.title = "baltic greeting".into();
    }
    baltic.create_standard(own_greeting).await?;
    let greetings: Vec<(String, i16, String)> = sqlx::query_as(
        "SELECT chain_id, kind, title FROM audit.standards WHERE code = 'greeting' ORDER BY chain_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        greetings,
        vec![
            ("".to_string(), 3, "shared greeting".to_string()),
            ("alpine".to_string(), 1, "greeting".to_string()),
            ("baltic".to_string(), 3, "baltic greeting".to_string()),
        ]
    );
    let hard = pb::StandardKind::HardBinary as i32;
    let soft = pb::StandardKind::Soft as i32;
    for (mut client, property, expected) in [
        (
            alpine.clone(),
            "",
            vec![("alpine_only", hard), ("greeting", hard), ("towels", hard)],
        ),
        (
            alpine.clone(),
            "innsbruck",
            vec![("alpine_only", hard), ("greeting", hard), ("towels", hard)],
        ),
        (
            baltic.clone(),
            "",
            vec![("greeting", soft), ("towels", hard)],
        ),
        (
            baltic.clone(),
            "riga",
            vec![("greeting", soft), ("towels", hard)],
        ),
    ] {
        let listed = client
            .list_standards(pb::ListStandardsRequest {
                property_id: property.into(),
            })
            .await?
            .into_inner()
            .standards;
        let listed: Vec<(&str, i32)> = listed.iter().map(|s| (s.code.as_str(), s.kind)).collect();
        assert_eq!(listed, expected, "{property:?}");
    }

    // Each chain's audits are scored against its own "greeting": pass/fail at alpine's
    // innsbruck, rated at baltic's riga (an answer of the other kind would be refused).
    let now = chrono::Utc::now().timestamp();
    let schedule = |property: &str| pb::ScheduleAuditsRequest {
        property_id: property.into(),
        until: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
    };
    let audits_of = |template_id: String| {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_as::<_, (String, String, i32)>(
                    "SELECT audit_id::text, property_id, template_version FROM audit.audits \
                     WHERE template_id = $1::uuid ORDER BY property_id",
                )
                .bind(template_id)
                .fetch_all(&pool)
                .await?,
            )
        }
    };
    alpine
        .create_program(program("innsbruck", &arrival.template_id))
        .await?;
    alpine.schedule_audits(schedule("innsbruck")).await?;
    let innsbruck = audits_of(arrival.template_id.clone()).await?;
    assert_eq!(innsbruck.len(), 1);
    let scored = alpine
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: innsbruck[0].0.clone(),
            answers: vec![
                answer("greeting", pb::AnswerKind::Pass, 0.0, 0, &[]),
                answer("towels", pb::AnswerKind::Pass, 0.0, 0, &[]),
            ],
        })
        .await?
        .into_inner();
    assert_eq!((scored.overall, scored.passed), (Some(100.0), true));
    let baltic_arrival = baltic
        .publish_template(publish("", &["greeting", "towels"]))
        .await?
        .into_inner();
    baltic
        .create_program(program("riga", &baltic_arrival.template_id))
        .await?;
    baltic.schedule_audits(schedule("riga")).await?;
    let riga = audits_of(baltic_arrival.template_id.clone()).await?;
    assert_eq!(riga.len(), 1);
    let scored = baltic
        .submit_audit(pb::SubmitAuditRequest {
            audit_id: riga[0].0.clone(),
            answers: vec![
                answer("greeting", pb::AnswerKind::Rating, 0.0, 1, &[]),
                answer("towels", pb::AnswerKind::Pass, 0.0, 0, &[]),
            ],
        })
        .await?
        .into_inner();
    assert_eq!((scored.overall, scored.passed), (Some(50.0), true));
    // The failed greeting is ranked with baltic's title for it.
    let failures = baltic
        .get_standard_failures(pb::GetStandardFailuresRequest {
            property_ids: vec!["riga".into()],
            period: Some(TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: now - 86_400,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: now + 3_600,
                    nanos: 0,
                }),
            }),
            limit: 0,
        })
        .await?
        .into_inner();
    let ranked: Vec<(&str, &str, i64)> = failures
        .standards
        .iter()
        .map(|s| (s.code.as_str(), s.title.as_str(), s.audit_findings))
        .collect();
    assert_eq!(ranked, vec![("greeting", "baltic greeting", 1)]);

    // A shared template (as stored before templates had a chain) is every chain's to use; the
    // first chain to revise it owns it from that version on, and the other chain's programs keep
    // the last shared version.
    let shared = alpine
        .publish_template(publish("", &["towels"]))
        .await?
        .into_inner();
    sqlx::query("UPDATE audit.templates SET chain_id = '' WHERE template_id = $1::uuid")
        .bind(&shared.template_id)
        .execute(&pool)
        .await?;
    alpine
        .create_program(program("innsbruck", &shared.template_id))
        .await?;
    baltic
        .create_program(program("riga", &shared.template_id))
        .await?;
    let taken = baltic
        .publish_template(publish(&shared.template_id, &["greeting", "towels"]))
        .await?
        .into_inner();
    assert_eq!(taken.version, 2);
    let late = alpine
        .publish_template(publish(&shared.template_id, &["towels"]))
        .await
        .expect_err("baltic's now");
    assert_eq!(late.code(), Code::NotFound);
    assert_eq!(
        versions(shared.template_id.clone()).await?,
        vec![(1, String::new()), (2, "baltic".to_string())]
    );
    alpine.schedule_audits(schedule("innsbruck")).await?;
    baltic.schedule_audits(schedule("riga")).await?;
    let scheduled: Vec<(String, i32)> = audits_of(shared.template_id.clone())
        .await?
        .into_iter()
        .map(|(_, property, version)| (property, version))
        .collect();
    assert_eq!(
        scheduled,
        vec![("innsbruck".to_string(), 1), ("riga".to_string(), 2)]
    );
    // Alpine may still start programs on the shared versions.
    alpine
        .create_program(program("innsbruck", &shared.template_id))
        .await?;
    service.shutdown().await
}

#[tokio::test]
async fn audit_free_text_is_bounded_and_never_holds_a_card_number() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .subject("gm-vienna")
        .mint()?;
    let mut client: Client = AuditServiceClient::new(service.channel_with_token(&token).await?);
    let pool = service.database.admin_pool().await?;
    let card = "guest paid with 4111 1111 1111 1111 exp 12/29";

    // A standard's title: a card number is refused and no standard is created.
    let mut carded = vienna_standard(
        "greet",
        pb::StandardKind::HardBinary,
        pb::Dimension::Empathy,
    );
    if let Some(s) = carded.standard.as_mut() {
        s.title = card.into();
    }
    let refused = client
        .create_standard(carded)
        .await
        .expect_err("a card number in a title");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["standard.title"]);
    let standards: i64 = sqlx::query_scalar("SELECT count(*) FROM audit.standards")
        .fetch_one(&pool)
        .await?;
    assert_eq!(standards, 0, "nothing stored");
    client
        .create_standard(vienna_standard(
            "greet",
            pb::StandardKind::HardBinary,
            pb::Dimension::Empathy,
        ))
        .await?;
    let template = client
        .publish_template(pb::PublishTemplateRequest {
            template_id: String::new(),
            name: "Arrival".into(),
            sections: vec![pb::TemplateSection {
                name: "front desk".into(),
                items: vec![pb::TemplateItem {
                    standard_code: "greet".into(),
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
    let audits = scheduled_program(
        &mut client,
        &pool,
        &template.template_id,
        pb::ProgramKind::Internal,
        pb::Cadence::Monthly,
        1,
    )
    .await?;
    let audit_id = audits
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("an audit scheduled"))?;

    // Evidence of an answer: a card number or more than 2,000 characters is refused, and the
    // audit stays scheduled with no answers, findings or staff observations.
    let submit = |evidence: &str| pb::SubmitAuditRequest {
        audit_id: audit_id.clone(),
        answers: vec![pb::Answer {
            evidence: evidence.into(),
            ..answer("greet", pb::AnswerKind::Fail, 0.0, 0, &["anna"])
        }],
    };
    let stored_audit = || {
        let pool = pool.clone();
        let audit_id = audit_id.clone();
        async move {
            anyhow::Ok(
                sqlx::query_as::<_, (String, bool, i64, i64)>(
                    "SELECT status, answers IS NULL, \
                     (SELECT count(*) FROM audit.findings f WHERE f.audit_id = a.audit_id), \
                     (SELECT count(*) FROM audit.staff_observations o WHERE o.audit_id = a.audit_id) \
                     FROM audit.audits a WHERE audit_id = $1::uuid",
                )
                .bind(audit_id)
                .fetch_one(&pool)
                .await?,
            )
        }
    };
    for evidence in [card.to_string(), "e".repeat(2001)] {
        let refused = client
            .submit_audit(submit(&evidence))
            .await
            .expect_err("bad evidence");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{}",
            refused.message()
        );
        assert_eq!(violated_fields(&refused), vec!["answers[0].evidence"]);
        assert_eq!(stored_audit().await?, ("scheduled".into(), true, 0, 0));
    }
    let submitted = client
        .submit_audit(submit(&format!("  {}  ", "e".repeat(2000))))
        .await?
        .into_inner();
    assert_eq!(submitted.status, "submitted");
    assert_eq!(stored_audit().await?, ("submitted".into(), false, 1, 1));
    let read = client
        .get_audit(pb::GetAuditRequest {
            audit_id: audit_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        read.answers.first().map(|a| a.evidence.clone()),
        Some("e".repeat(2000)),
        "the evidence is kept trimmed"
    );

    // A finding's corrective action and owner: a card number, more than 2,000 (action) or 200
    // (owner) characters, or blank text is refused, and the finding is left as it was.
    let finding = client
        .list_findings(pb::ListFindingsRequest {
            property_id: "vienna".into(),
            open_only: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("a finding"))?;
    let update = |action: &str, owner: &str| pb::UpdateCorrectiveActionRequest {
        finding_id: finding.finding_id.clone(),
        action: action.into(),
        owner: owner.into(),
        due_date: "2031-01-31".into(),
        status: "in_progress".into(),
    };
    let long_action = "a".repeat(2001);
    let long_owner = "o".repeat(201);
    for (request, fields) in [
        (update(card, "fo-head"), vec!["action"]),
        (update("retrain the desk team", card), vec!["owner"]),
        (update(&long_action, "fo-head"), vec!["action"]),
        (update("retrain the desk team", &long_owner), vec!["owner"]),
        (update("   ", "fo-head"), vec!["action"]),
    ] {
        let refused = client
            .update_corrective_action(request)
            .await
            .expect_err("bad action text");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{}",
            refused.message()
        );
        assert_eq!(violated_fields(&refused), fields);
        let stored: (String, String, String, Option<chrono::NaiveDate>) = sqlx::query_as(
            "SELECT action, owner, status, due_date FROM audit.findings WHERE finding_id = $1::uuid",
        )
        .bind(&finding.finding_id)
        .fetch_one(&pool)
        .await?;
        assert_eq!(
            stored,
            (String::new(), String::new(), "open".into(), None),
            "nothing stored"
        );
    }
    let updated = client
        .update_corrective_action(update("  retrain the desk team  ", &"o".repeat(200)))
        .await?
        .into_inner();
    assert_eq!(
        (
            updated.action.as_str(),
            updated.owner.chars().count(),
            updated.status.as_str()
        ),
        ("retrain the desk team", 200, "in_progress")
    );
    let stored: String =
        sqlx::query_scalar("SELECT action FROM audit.findings WHERE finding_id = $1::uuid")
            .bind(&finding.finding_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(stored, "retrain the desk team");
    service.shutdown().await
}

/// A token scoped to some properties changes nothing that applies beyond them: no chain-wide
/// standard, and no revision of a template a program elsewhere uses.
#[tokio::test]
async fn a_token_for_some_properties_changes_nothing_beyond_them() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_audit::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let gm = TokenBuilder::new(Role::GeneralManager)
        .properties(&["vienna"])
        .subject("gm-vienna")
        .mint()?;
    let quality = TokenBuilder::new(Role::ChainQualityManager)
        .scope(guestloop_kit::auth::PropertyScope::all())
        .subject("qm-chain")
        .mint()?;
    let mut vienna: Client = AuditServiceClient::new(service.channel_with_token(&gm).await?);
    let mut chain: Client = AuditServiceClient::new(service.channel_with_token(&quality).await?);
    let standards = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit.standards")
            .fetch_one(&pool)
            .await
    };

    // A chain-wide standard from Vienna's manager is refused and nothing is stored; Vienna's own
    // is taken.
    let refused = vienna
        .create_standard(standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await
        .expect_err("a chain-wide standard from a property's manager");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("chain-wide"),
        "{}",
        refused.message()
    );
    assert_eq!(standards().await?, 0, "nothing stored");
    vienna
        .create_standard(vienna_standard(
            "warmth",
            pb::StandardKind::Soft,
            pb::Dimension::Empathy,
        ))
        .await?;
    chain
        .create_standard(standard(
            "greeting",
            pb::StandardKind::HardBinary,
            pb::Dimension::Empathy,
        ))
        .await?;
    assert_eq!(standards().await?, 2);

    // Vienna's manager publishes a template, uses it and revises it while only Vienna uses it.
    let publish = |template_id: &str, pass_threshold: f64| pb::PublishTemplateRequest {
        template_id: template_id.to_string(),
        name: "Stay".into(),
        sections: vec![pb::TemplateSection {
            name: "stay".into(),
            items: vec![
                pb::TemplateItem {
                    standard_code: "warmth".into(),
                    weight: 1.0,
                    critical: false,
                },
                pb::TemplateItem {
                    standard_code: "greeting".into(),
                    weight: 1.0,
                    critical: false,
                },
            ],
        }],
        critical_rule: pb::CriticalRule::FailSection as i32,
        pass_threshold,
        touchpoint_weighted: false,
        request_id: String::new(),
    };
    let template = vienna
        .publish_template(publish("", 70.0))
        .await?
        .into_inner();
    let id = template.template_id.clone();
    scheduled_program(
        &mut vienna,
        &pool,
        &id,
        pb::ProgramKind::Internal,
        pb::Cadence::Monthly,
        1,
    )
    .await?;
    let second = vienna
        .publish_template(publish(&id, 75.0))
        .await?
        .into_inner();
    assert_eq!(second.version, 2);

    // Once a program at Lisbon uses it, Vienna's manager may no longer revise it, and no
    // version is added; the chain's quality manager may.
    chain
        .create_program(pb::CreateProgramRequest {
            request_id: String::new(),
            program: Some(pb::Program {
                property_id: "lisbon".into(),
                kind: pb::ProgramKind::Internal as i32,
                template_id: id.clone(),
                cadence: pb::Cadence::Monthly as i32,
                audits_per_period: 1,
                ..Default::default()
            }),
        })
        .await?;
    let refused = vienna
        .publish_template(publish(&id, 80.0))
        .await
        .expect_err("a revision reaching Lisbon's audits");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("lisbon"),
        "{}",
        refused.message()
    );
    let versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit.templates WHERE template_id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(versions, 2, "no version added");
    let third = chain
        .publish_template(publish(&id, 80.0))
        .await?
        .into_inner();
    assert_eq!(third.version, 3);
    // A new template of Vienna's own is still Vienna's to publish.
    vienna.publish_template(publish("", 60.0)).await?;
    service.shutdown().await
}
