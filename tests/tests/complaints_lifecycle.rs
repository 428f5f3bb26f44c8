//! The complaint lifecycle through gRPC, as staff and guest apps use it: filing, the stages,
//! remedies within and above authority, rating, reopening, closing, and who may see what.

use guestloop_kit::auth::Role;
use guestloop_proto::common::v1::Money;
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_testkit::{spawn_service, violated_fields, TestService, TokenBuilder};
use prost_types::FieldMask;
use tonic::Code;

type Client = ComplaintsServiceClient<guestloop_kit::client::AuthedChannel>;

async fn client(service: &TestService, token: String) -> anyhow::Result<Client> {
    Ok(ComplaintsServiceClient::new(
        service.channel_with_token(&token).await?,
    ))
}

async fn staff(service: &TestService, role: Role, properties: &[&str]) -> anyhow::Result<Client> {
    client(
        service,
        TokenBuilder::new(role)
            .subject(&format!("{}-1", role.as_str()))
            .properties(properties)
            .mint()?,
    )
    .await
}

fn noisy_room(property: &str) -> pb::Complaint {
    pb::Complaint {
        property_id: property.into(),
        guest: Some(pb::GuestRef {
            guest_id: "guest-1".into(),
            ..Default::default()
        }),
        stay: Some(pb::StayContext {
            room: "1204".into(),
            reservation_ref: "R-77".into(),
            phase: pb::StayPhase::InHouse as i32,
        }),
        channel: pb::Channel::Phone as i32,
        category: "noise".into(),
        urgency: pb::Urgency::High as i32,
        description: "Construction noise next door since 7am".into(),
        department: "front_office".into(),
        ..Default::default()
    }
}

async fn file(client: &mut Client, complaint: pb::Complaint) -> anyhow::Result<pb::Complaint> {
    Ok(client
        .create_complaint(pb::CreateComplaintRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            complaint: Some(complaint),
        })
        .await?
        .into_inner())
}

async fn act(
    client: &mut Client,
    id: &str,
    action: pb::Action,
    reason: &str,
) -> Result<pb::Complaint, tonic::Status> {
    client
        .transition_complaint(pb::TransitionComplaintRequest {
            complaint_id: id.into(),
            action: action as i32,
            reason: reason.into(),
            etag: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

fn clock(complaint: &pb::Complaint, stage: pb::Stage) -> pb::SlaClock {
    complaint
        .clocks
        .iter()
        .find(|c| c.stage == stage as i32)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_complaint_goes_from_filing_to_closing() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;

    let filed = file(&mut agent, noisy_room("paris")).await?;
    assert_eq!(filed.status, pb::Status::Received as i32);
    assert_eq!(filed.clocks.len(), 5, "five stage clocks start at filing");
    let ack = clock(&filed, pb::Stage::Acknowledge);
    assert_eq!(ack.outcome, pb::ClockOutcome::Running as i32);
    let due = ack.due_time.expect("due").seconds - ack.start_time.expect("start").seconds;
    assert_eq!(due, 30 * 60, "acknowledge within 30 minutes on a 24/7 desk");
    let resolution = clock(&filed, pb::Stage::Resolution);
    let due =
        resolution.due_time.expect("due").seconds - resolution.start_time.expect("start").seconds;
    assert_eq!(due, 2 * 3600, "high urgency resolves within 2 hours");

    let id = filed.complaint_id.clone();
    let acknowledged = act(&mut agent, &id, pb::Action::Acknowledge, "").await?;
    assert!(acknowledged.first_response_time.is_some());
    assert_eq!(
        clock(&acknowledged, pb::Stage::Acknowledge).outcome,
        pb::ClockOutcome::Met as i32
    );
    act(&mut agent, &id, pb::Action::StartInvestigation, "").await?;
    act(&mut agent, &id, pb::Action::PlanRemedy, "").await?;

    // Waiting on the guest pauses the clocks, and the complaint returns where it was.
    let waiting = act(&mut agent, &id, pb::Action::WaitForGuest, "").await?;
    assert!(clock(&waiting, pb::Stage::Resolution).paused);
    let back = act(&mut agent, &id, pb::Action::GuestResponded, "").await?;
    assert_eq!(back.status, pb::Status::RemedyPlanned as i32);

    let remedy = agent
        .propose_remedy(pb::ProposeRemedyRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            complaint_id: id.clone(),
            remedy: Some(pb::Remedy {
                kind: pb::RemedyKind::ComplimentaryItem as i32,
                amount: Some(Money {
                    currency_code: "EUR".into(),
                    minor_units: 2_500,
                }),
                description: "dinner for two".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(
        remedy.status,
        pb::RemedyStatus::Approved as i32,
        "within the agent's 30.00 limit"
    );

    act(&mut agent, &id, pb::Action::StartRemedy, "").await?;
    let resolved = act(&mut agent, &id, pb::Action::Resolve, "").await?;
    assert!(resolved.resolve_time.is_some() && resolved.follow_up_due_time.is_some());
    assert_eq!(
        resolved.compensation,
        vec![Money {
            currency_code: "EUR".into(),
            minor_units: 2_500
        }]
    );

    // Closing needs a cause and a root-cause summary.
    let refused = act(&mut agent, &id, pb::Action::Close, "")
        .await
        .expect_err("no cause yet");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    agent
        .update_complaint(pb::UpdateComplaintRequest {
            complaint: Some(pb::Complaint {
                complaint_id: id.clone(),
                cause: pb::Cause::External as i32,
                root_cause_summary:
                    "Works on the neighbouring site; guests on that side now warned at check-in"
                        .into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["cause".into(), "root_cause_summary".into()],
            }),
            etag: String::new(),
        })
        .await?;
    let closed = act(&mut agent, &id, pb::Action::Close, "").await?;
    assert_eq!(closed.status, pb::Status::Closed as i32);

    let timeline = agent
        .list_timeline(pb::ListTimelineRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    let kinds: Vec<&str> = timeline.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"filed"));
    assert!(kinds.contains(&"remedy_proposed") && kinds.contains(&"updated"));
    assert_eq!(
        timeline.entries.last().map(|e| e.to_status),
        Some(pb::Status::Closed as i32)
    );

    // An illegal move changes nothing.
    let before = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    let refused = act(&mut agent, &id, pb::Action::StartRemedy, "")
        .await
        .expect_err("closed");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let after = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(before.etag, after.etag);
    service.shutdown().await
}

#[tokio::test]
async fn a_low_rating_reopens_and_both_resolution_times_are_kept() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let guest_token = TokenBuilder::new(Role::Guest)
        .guest("guest-1")
        .subject("guest-1")
        .mint()?;
    let mut guest = client(&service, guest_token).await?;

    let filed = file(&mut agent, noisy_room("paris")).await?;
    let id = filed.complaint_id.clone();
    let first = act(&mut agent, &id, pb::Action::Resolve, "").await?;
    let first_resolve = first.first_resolve_time;

    let rated = guest
        .rate_complaint(pb::RateComplaintRequest {
            complaint_id: id.clone(),
            csat: 1,
            nps: Some(3),
            comment: "still noisy".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        rated.status,
        pb::Status::Reopened as i32,
        "CSAT 1 reopens: recovery goes on"
    );
    assert_eq!(rated.reopen_count, 1);
    assert!(rated.resolve_time.is_none());
    // The guest's login is recorded nowhere: a guest acts as `guest` (the complaint is theirs
    // by its guest id, which erasure removes).
    let pool = service.database.admin_pool().await?;
    let (rated_by, actors): (String, Vec<String>) = sqlx::query_as(
        "SELECT c.rated_by, array(SELECT DISTINCT actor FROM complaints.complaint_timeline t \
                WHERE t.complaint_id = c.complaint_id AND kind = 'rated') \
         FROM complaints.complaints c WHERE c.complaint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (rated_by.as_str(), actors),
        ("guest", vec!["guest".to_string()])
    );

    let second = act(&mut agent, &id, pb::Action::Resolve, "").await?;
    assert_eq!(
        second.first_resolve_time, first_resolve,
        "first resolution time is kept"
    );
    assert!(second.resolve_time.is_some());

    // A reopen by staff needs a reason; a second reopen escalates.
    let refused = act(&mut agent, &id, pb::Action::Reopen, "")
        .await
        .expect_err("no reason");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let reopened = act(&mut agent, &id, pb::Action::Reopen, "guest called again").await?;
    assert_eq!(reopened.reopen_count, 2);
    assert_eq!(reopened.escalation_count, 1);
    assert_eq!(reopened.escalation_level, "supervisor");

    // Waiting on the guest and their answer bring it back to `reopened`: no third reopen, no
    // reason needed, no escalation, and the clocks of this cycle keep their start.
    let waiting = act(&mut agent, &id, pb::Action::WaitForGuest, "").await?;
    assert_eq!(waiting.status, pb::Status::WaitingOnGuest as i32);
    let answered = act(&mut agent, &id, pb::Action::GuestResponded, "").await?;
    assert_eq!(answered.status, pb::Status::Reopened as i32);
    assert_eq!(
        (
            answered.reopen_count,
            answered.escalation_count,
            answered.escalation_level.as_str()
        ),
        (2, 1, "supervisor")
    );
    let starts = |c: &pb::Complaint| {
        c.clocks
            .iter()
            .map(|k| (k.stage, k.start_time))
            .collect::<Vec<_>>()
    };
    assert_eq!(starts(&answered), starts(&reopened));
    let pool = service.database.admin_pool().await?;
    let reopen_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events \
         WHERE event_type = 'complaints.complaint.reopened' AND subject = $1",
    )
    .bind(format!("complaints/{id}"))
    .fetch_one(&pool)
    .await?;
    assert_eq!(reopen_events, 2, "two reopens, not three");
    service.shutdown().await
}

#[tokio::test]
async fn compensation_above_the_limit_waits_for_approval() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let mut supervisor = staff(&service, Role::Supervisor, &["paris"]).await?;
    let mut duty_manager = staff(&service, Role::DutyManager, &["paris"]).await?;
    let filed = file(&mut agent, noisy_room("paris")).await?;

    let refund = |minor: i64| pb::ProposeRemedyRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        complaint_id: filed.complaint_id.clone(),
        remedy: Some(pb::Remedy {
            kind: pb::RemedyKind::Refund as i32,
            amount: Some(Money {
                currency_code: "EUR".into(),
                minor_units: minor,
            }),
            ..Default::default()
        }),
    };
    let pending = agent.propose_remedy(refund(20_000)).await?.into_inner();
    assert_eq!(pending.status, pb::RemedyStatus::PendingApproval as i32);
    assert_eq!(pending.required_role, "duty_manager");

    let decide = |approve: bool| pb::DecideRemedyRequest {
        complaint_id: filed.complaint_id.clone(),
        remedy_id: pending.remedy_id.clone(),
        approve,
        note: "ok".into(),
    };
    let refused = supervisor
        .decide_remedy(decide(true))
        .await
        .expect_err("above a supervisor's 150.00");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let approved = duty_manager.decide_remedy(decide(true)).await?.into_inner();
    assert_eq!(approved.status, pb::RemedyStatus::Approved as i32);
    let again = duty_manager
        .decide_remedy(decide(false))
        .await
        .expect_err("already decided");
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Negative compensation is refused and nothing is written.
    let negative = agent
        .propose_remedy(refund(-1))
        .await
        .expect_err("negative");
    assert_eq!(negative.code(), Code::InvalidArgument);
    let complaint = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(complaint.remedies.len(), 1);
    assert_eq!(
        complaint.compensation,
        vec![Money {
            currency_code: "EUR".into(),
            minor_units: 20_000
        }]
    );
    service.shutdown().await
}

#[tokio::test]
async fn guests_see_only_their_own_complaints_and_staff_only_their_properties() -> anyhow::Result<()>
{
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut alice = client(
        &service,
        TokenBuilder::new(Role::Guest)
            .guest("alice")
            .subject("alice")
            .mint()?,
    )
    .await?;
    let mut bob = client(
        &service,
        TokenBuilder::new(Role::Guest)
            .guest("bob")
            .subject("bob")
            .mint()?,
    )
    .await?;
    let mut paris_agent = staff(&service, Role::Agent, &["paris"]).await?;
    let mut rome_agent = staff(&service, Role::Agent, &["rome"]).await?;

    let mut own = noisy_room("paris");
    own.guest = None;
    own.channel = pb::Channel::App as i32;
    let filed = file(&mut alice, own).await?;
    assert_eq!(
        filed.guest.as_ref().map(|g| g.guest_id.as_str()),
        Some("alice"),
        "the token decides who files"
    );

    let id = filed.complaint_id.clone();
    // What staff record about their own work is not the guest's to read: who was involved or
    // assigned, the cause, and the notes of staff's moves.
    update(
        &mut paris_agent,
        pb::Complaint {
            complaint_id: id.clone(),
            assignee: "agent-marco".into(),
            staff_involved: vec!["night-porter-7".into()],
            cause: pb::Cause::StaffBehaviour as i32,
            ..Default::default()
        },
        &["assignee", "staff_involved", "cause"],
    )
    .await?;
    act(
        &mut paris_agent,
        &id,
        pb::Action::Acknowledge,
        "porter was rude, see CCTV",
    )
    .await?;
    let seen = alice
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(seen.status, pb::Status::Acknowledged as i32);
    assert!(
        seen.assignee.is_empty() && seen.staff_involved.is_empty() && seen.cause == 0,
        "{seen:?}"
    );
    let staff_view = paris_agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        staff_view.staff_involved,
        vec!["night-porter-7".to_string()]
    );
    let timeline = alice
        .list_timeline(pb::ListTimelineRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert!(!timeline.entries.is_empty());
    assert!(
        timeline
            .entries
            .iter()
            .all(|e| !e.note.contains("CCTV") && !e.actor.contains("test-")),
        "{timeline:?}"
    );
    let hidden = bob
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await
        .expect_err("not bob's");
    assert_eq!(hidden.code(), Code::NotFound);
    let bobs = bob
        .list_complaints(pb::ListComplaintsRequest::default())
        .await?
        .into_inner();
    assert!(bobs.complaints.is_empty());
    let alices = alice
        .list_complaints(pb::ListComplaintsRequest::default())
        .await?
        .into_inner();
    assert_eq!(alices.complaints.len(), 1);

    assert!(paris_agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone()
        })
        .await
        .is_ok());
    // Filters compare as names are stored: trimmed, and case aside.
    let filtered = paris_agent
        .list_complaints(pb::ListComplaintsRequest {
            category: " Noise ".into(),
            department: "Front_Office ".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(filtered.complaints.len(), 1);
    let other = rome_agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await
        .expect_err("other property");
    assert_eq!(other.code(), Code::NotFound);
    let denied = file(&mut rome_agent, noisy_room("paris"))
        .await
        .expect_err("out of scope");
    let status = denied.downcast_ref::<tonic::Status>().map(|s| s.code());
    assert_eq!(status, Some(Code::PermissionDenied));
    let listed = rome_agent
        .list_complaints(pb::ListComplaintsRequest {
            property_ids: vec!["paris".into()],
            ..Default::default()
        })
        .await
        .expect_err("asking for another property");
    assert_eq!(listed.code(), Code::PermissionDenied);
    // Guests cannot move complaints along.
    let refused = act(&mut alice, &id, pb::Action::Resolve, "")
        .await
        .expect_err("guest");
    assert_eq!(refused.code(), Code::PermissionDenied);
    service.shutdown().await
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named_and_nothing_written() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let cases: Vec<(pb::Complaint, &str)> = vec![
        (
            pb::Complaint {
                channel: 99,
                ..noisy_room("paris")
            },
            "complaint.channel",
        ),
        (
            pb::Complaint {
                description: "   ".into(),
                ..noisy_room("paris")
            },
            "complaint.description",
        ),
        (
            pb::Complaint {
                urgency: 42,
                ..noisy_room("paris")
            },
            "complaint.urgency",
        ),
        (
            pb::Complaint {
                property_id: String::new(),
                ..noisy_room("paris")
            },
            "complaint.property_id",
        ),
        (
            pb::Complaint {
                property_id: "chain:other-chain".into(),
                ..noisy_room("paris")
            },
            "complaint.property_id",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    email: "not-an-email".into(),
                    name: "X".into(),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.email",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    phone: "ask reception".into(),
                    name: "X".into(),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.phone",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    guest_id: "4111 1111 1111 1111".into(),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.guest_id",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    guest_id: "G".repeat(5_000),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.guest_id",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    guest_id: "guest 1".into(),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.guest_id",
        ),
        (
            pb::Complaint {
                description: "charged twice on 4111-1111-1111-1111 exp 12/29".into(),
                ..noisy_room("paris")
            },
            "complaint.description",
        ),
        (
            pb::Complaint {
                guest: Some(pb::GuestRef {
                    phone: "4111 1111 1111 1111".into(),
                    name: "X".into(),
                    ..Default::default()
                }),
                ..noisy_room("paris")
            },
            "complaint.guest.phone",
        ),
        (
            pb::Complaint {
                description: "x".repeat(10_001),
                ..noisy_room("paris")
            },
            "complaint.description",
        ),
    ];
    for (complaint, field) in cases {
        let error = file(&mut agent, complaint).await.expect_err("invalid");
        let status = error
            .downcast_ref::<tonic::Status>()
            .expect("a gRPC status");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            violated_fields(status).iter().any(|f| f == field),
            "{field} named in {:?}",
            violated_fields(status)
        );
    }
    // Rating 11 (and NPS out of range) on a real complaint, and a card number in the comment.
    let filed = file(&mut agent, noisy_room("paris")).await?;
    act(&mut agent, &filed.complaint_id, pb::Action::Resolve, "").await?;
    let error = agent
        .rate_complaint(pb::RateComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
            csat: 2,
            nps: None,
            comment: "refund to card 5555 5555 5555 4444 please".into(),
        })
        .await
        .expect_err("a card number in the comment");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&error), ["comment"]);
    let error = agent
        .rate_complaint(pb::RateComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
            csat: 11,
            nps: Some(11),
            comment: String::new(),
        })
        .await
        .expect_err("rating 11");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        violated_fields(&error).contains(&"csat".to_string())
            && violated_fields(&error).contains(&"nps".to_string())
    );

    let pool = service.database.admin_pool().await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.complaints")
        .fetch_one(&pool)
        .await?;
    assert_eq!(count, 1, "only the valid complaint was written");
    let rated: Option<i16> = sqlx::query_scalar("SELECT csat FROM complaints.complaints")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rated, None);
    service.shutdown().await
}

#[tokio::test]
async fn creating_twice_with_one_request_id_files_once() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let request = pb::CreateComplaintRequest {
        request_id: "req-42".into(),
        complaint: Some(noisy_room("paris")),
    };
    let first = agent.create_complaint(request.clone()).await?.into_inner();
    let second = agent.create_complaint(request.clone()).await?.into_inner();
    assert_eq!(first.complaint_id, second.complaint_id);
    let mut different = request.clone();
    if let Some(c) = different.complaint.as_mut() {
        c.description = "something else".into();
    }
    let refused = agent
        .create_complaint(different)
        .await
        .expect_err("reused id");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // The stored answer is the first caller's alone: the same agent now at Lyon only, or another
    // agent at Paris, replaying the same request is refused and shown nothing.
    for (mut other, code) in [
        (
            staff(&service, Role::Agent, &["lyon"]).await?,
            Code::PermissionDenied,
        ),
        (
            client(
                &service,
                TokenBuilder::new(Role::Agent)
                    .subject("agent-2")
                    .properties(&["paris"])
                    .mint()?,
            )
            .await?,
            Code::FailedPrecondition,
        ),
    ] {
        let replayed = other
            .create_complaint(request.clone())
            .await
            .expect_err("another caller's request id");
        assert_eq!(replayed.code(), code, "{replayed:?}");
        assert!(
            !replayed.message().contains(&first.complaint_id),
            "{}",
            replayed.message()
        );
    }
    // Nor does a guest get another guest's complaint by replaying their request: the guest id
    // each guest files under comes from their token.
    let guest = |id: &str| TokenBuilder::new(Role::Guest).guest(id).subject(id).mint();
    let mut first_guest = client(&service, guest("guest-7")?).await?;
    let mut second_guest = client(&service, guest("guest-8")?).await?;
    let by_guest = pb::CreateComplaintRequest {
        request_id: "app-7".into(),
        complaint: Some(pb::Complaint {
            guest: None,
            channel: pb::Channel::App as i32,
            ..noisy_room("paris")
        }),
    };
    let own = first_guest
        .create_complaint(by_guest.clone())
        .await?
        .into_inner();
    let replayed = second_guest
        .create_complaint(by_guest.clone())
        .await
        .expect_err("another guest's request id");
    assert_eq!(replayed.code(), Code::FailedPrecondition, "{replayed:?}");
    let again = first_guest.create_complaint(by_guest).await?.into_inner();
    assert_eq!(
        again.complaint_id, own.complaint_id,
        "the guest's own retry"
    );

    // A repeat: same guest, same category within 30 days.
    let repeat = file(&mut agent, noisy_room("paris")).await?;
    assert!(repeat.repeat_issue);
    assert_eq!(repeat.repeat_of_complaint_id, first.complaint_id);
    // Another chain's guest-1 is another guest: no repeat, and nothing of this chain named.
    let mut other_chain = client(
        &service,
        TokenBuilder::new(Role::Agent)
            .chain("other-chain")
            .properties(&["oslo"])
            .mint()?,
    )
    .await?;
    let theirs = file(&mut other_chain, noisy_room("oslo")).await?;
    assert!(!theirs.repeat_issue);
    assert_eq!(theirs.repeat_of_complaint_id, "");

    // Request ids are per chain: the other chain's own "req-42" files its own complaint, and
    // its retry gets that one back.
    let theirs_42 = pb::CreateComplaintRequest {
        request_id: "req-42".into(),
        complaint: Some(noisy_room("oslo")),
    };
    let filed = other_chain
        .create_complaint(theirs_42.clone())
        .await?
        .into_inner();
    assert_ne!(filed.complaint_id, first.complaint_id);
    assert_eq!(filed.property_id, "oslo");
    let retried = other_chain.create_complaint(theirs_42).await?.into_inner();
    assert_eq!(retried.complaint_id, filed.complaint_id);
    assert_eq!(
        agent
            .create_complaint(request)
            .await?
            .into_inner()
            .complaint_id,
        first.complaint_id,
        "this chain's req-42 still answers with its own complaint"
    );

    // A key claimed before keys were per chain (chain '') still holds its id everywhere: its
    // retry gets the stored answer, and another chain is refused rather than filing twice.
    let legacy = pb::CreateComplaintRequest {
        request_id: "legacy-1".into(),
        complaint: Some(noisy_room("paris")),
    };
    let legacy_filed = agent.create_complaint(legacy.clone()).await?.into_inner();
    let pool = service.database.admin_pool().await?;
    let moved = sqlx::query(
        "UPDATE complaints.idempotency_keys SET chain_id = '' \
         WHERE method = 'CreateComplaint' AND request_id = 'legacy-1'",
    )
    .execute(&pool)
    .await?
    .rows_affected();
    assert_eq!(moved, 1);
    let again = agent.create_complaint(legacy).await?.into_inner();
    assert_eq!(again.complaint_id, legacy_filed.complaint_id);
    let refused = other_chain
        .create_complaint(pb::CreateComplaintRequest {
            request_id: "legacy-1".into(),
            complaint: Some(noisy_room("oslo")),
        })
        .await
        .expect_err("a legacy key is global");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.idempotency_keys WHERE request_id = 'legacy-1'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(keys, 1, "no second key was claimed beside the legacy one");
    service.shutdown().await
}

#[tokio::test]
async fn categories_are_defined_per_chain_and_overridden_per_property() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut quality = staff(&service, Role::ChainQualityManager, &["paris", "rome"]).await?;
    let chain_key = format!("chain:{}", guestloop_testkit::TEST_CHAIN);
    let mut chain = quality
        .get_property_settings(pb::GetPropertySettingsRequest {
            property_id: chain_key.clone(),
        })
        .await?
        .into_inner();
    chain.categories = vec!["noise".into(), "wifi".into()];
    quality
        .update_property_settings(pb::UpdatePropertySettingsRequest {
            settings: Some(chain),
            etag: String::new(),
        })
        .await?;
    let mut rome = quality
        .get_property_settings(pb::GetPropertySettingsRequest {
            property_id: "rome".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        rome.categories,
        vec!["noise".to_string(), "wifi".to_string()],
        "rome inherits the chain's list"
    );
    rome.categories = vec!["spa".into()];
    quality
        .update_property_settings(pb::UpdatePropertySettingsRequest {
            settings: Some(rome),
            etag: String::new(),
        })
        .await?;

    let mut agent = staff(&service, Role::Agent, &["paris", "rome"]).await?;
    let refused = file(
        &mut agent,
        pb::Complaint {
            category: "spa".into(),
            ..noisy_room("paris")
        },
    )
    .await
    .expect_err("not a chain category");
    assert_eq!(
        refused.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    file(
        &mut agent,
        pb::Complaint {
            category: "wifi".into(),
            ..noisy_room("paris")
        },
    )
    .await?;
    file(
        &mut agent,
        pb::Complaint {
            category: "spa".into(),
            ..noisy_room("rome")
        },
    )
    .await?;
    let refused = file(
        &mut agent,
        pb::Complaint {
            category: "noise".into(),
            ..noisy_room("rome")
        },
    )
    .await
    .expect_err("rome overrides");
    assert_eq!(
        refused.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );

    // Only chain-level roles of that chain change its defaults.
    let mut gm = staff(&service, Role::GeneralManager, &["paris"]).await?;
    let chain = gm
        .get_property_settings(pb::GetPropertySettingsRequest {
            property_id: chain_key.clone(),
        })
        .await?
        .into_inner();
    let denied = gm
        .update_property_settings(pb::UpdatePropertySettingsRequest {
            settings: Some(chain),
            etag: String::new(),
        })
        .await
        .expect_err("not chain level");
    assert_eq!(denied.code(), Code::PermissionDenied);
    service.shutdown().await
}

/// Points go to a loyalty member: on a complaint that names no guest id (a failure staff found,
/// a walk-in known by name only) a points remedy is refused and nothing is stored; other
/// remedies are offered as before.
#[tokio::test]
async fn points_are_offered_only_to_a_named_guest() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let walk_in = file(
        &mut agent,
        pb::Complaint {
            guest: Some(pb::GuestRef {
                name: "Walk-in guest".into(),
                ..Default::default()
            }),
            ..noisy_room("paris")
        },
    )
    .await?;
    let refused = agent
        .propose_remedy(remedy_request(
            &walk_in.complaint_id,
            pb::RemedyKind::Points,
            0,
            500,
        ))
        .await
        .expect_err("no member to credit");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let offered = agent
        .propose_remedy(remedy_request(
            &walk_in.complaint_id,
            pb::RemedyKind::Voucher,
            2_000,
            0,
        ))
        .await?
        .into_inner();
    assert_eq!(offered.status, pb::RemedyStatus::Approved as i32);
    let complaint = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: walk_in.complaint_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(complaint.compensation_points, 0);
    let member = file(&mut agent, noisy_room("paris")).await?;
    let granted = agent
        .propose_remedy(remedy_request(
            &member.complaint_id,
            pb::RemedyKind::Points,
            0,
            500,
        ))
        .await?
        .into_inner();
    assert_eq!(granted.status, pb::RemedyStatus::Approved as i32);
    service.shutdown().await
}

fn remedy_request(
    complaint_id: &str,
    kind: pb::RemedyKind,
    minor: i64,
    points: i64,
) -> pb::ProposeRemedyRequest {
    pb::ProposeRemedyRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        complaint_id: complaint_id.into(),
        remedy: Some(pb::Remedy {
            kind: kind as i32,
            amount: (minor != 0).then(|| Money {
                currency_code: "EUR".into(),
                minor_units: minor,
            }),
            points,
            ..Default::default()
        }),
    }
}

async fn set_settings(
    client: &mut Client,
    property_id: &str,
    change: impl FnOnce(&mut pb::PropertySettings),
) -> anyhow::Result<pb::PropertySettings> {
    let mut settings = client
        .get_property_settings(pb::GetPropertySettingsRequest {
            property_id: property_id.into(),
        })
        .await?
        .into_inner();
    change(&mut settings);
    Ok(client
        .update_property_settings(pb::UpdatePropertySettingsRequest {
            settings: Some(settings),
            etag: String::new(),
        })
        .await?
        .into_inner())
}

async fn update(
    client: &mut Client,
    patch: pb::Complaint,
    paths: &[&str],
) -> Result<pb::Complaint, tonic::Status> {
    client
        .update_complaint(pb::UpdateComplaintRequest {
            complaint: Some(patch),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            etag: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn oversized_compensation_is_refused_and_cannot_wrap_into_an_approval() -> anyhow::Result<()>
{
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let filed = file(&mut agent, noisy_room("paris")).await?;
    let id = filed.complaint_id.clone();

    // Something within the agent's limit is already committed.
    let small = agent
        .propose_remedy(remedy_request(&id, pb::RemedyKind::Refund, 1_000, 0))
        .await?
        .into_inner();
    assert_eq!(small.status, pb::RemedyStatus::Approved as i32);

    let cases = [
        // 1_000 + i64::MAX wraps to a negative total, which every limit would cover.
        (
            pb::RemedyKind::Refund,
            i64::MAX,
            0,
            "remedy.amount.minor_units",
        ),
        (
            pb::RemedyKind::Voucher,
            100_000_001,
            0,
            "remedy.amount.minor_units",
        ),
        (pb::RemedyKind::Points, 0, i64::MAX, "remedy.points"),
        (pb::RemedyKind::Points, 0, 10_000_001, "remedy.points"),
    ];
    for (kind, minor, points, field) in cases {
        let refused = agent
            .propose_remedy(remedy_request(&id, kind, minor, points))
            .await
            .expect_err("above the bound");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(
            violated_fields(&refused).iter().any(|f| f == field),
            "{field} named in {:?}",
            violated_fields(&refused)
        );
    }
    let complaint = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(complaint.remedies.len(), 1, "nothing written");
    assert_eq!(complaint.compensation_points, 0);

    // At the bound it is accepted, and only a role without a limit may approve it.
    let largest = agent
        .propose_remedy(remedy_request(&id, pb::RemedyKind::Refund, 100_000_000, 0))
        .await?
        .into_inner();
    assert_eq!(largest.status, pb::RemedyStatus::PendingApproval as i32);
    assert_eq!(largest.required_role, "general_manager");
    let pool = service.database.admin_pool().await?;
    let approvals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events WHERE event_type = 'complaints.remedy.approved'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(approvals, 1, "only the small remedy was approved");
    service.shutdown().await
}

#[tokio::test]
async fn category_and_department_names_are_matched_whatever_their_case() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut gm = staff(&service, Role::GeneralManager, &["paris"]).await?;
    let all_day = |weekday: &str| guestloop_proto::common::v1::WorkingDay {
        weekday: weekday.into(),
        intervals: vec![guestloop_proto::common::v1::WorkingInterval {
            start: "00:00".into(),
            end: "01:00".into(),
        }],
    };
    let stored = set_settings(&mut gm, "paris", |s| {
        s.categories = vec!["Noise".into(), " Wi-Fi ".into(), "noise".into()];
        // Engineering works one hour a day.
        s.calendars = vec![pb::WorkingCalendar {
            department: "Engineering".into(),
            days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .into_iter()
                .map(all_day)
                .collect(),
            ..Default::default()
        }];
    })
    .await?;
    assert_eq!(stored.categories, ["noise", "wi-fi"]);
    assert_eq!(stored.calendars[0].department, "engineering");

    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let filed = file(
        &mut agent,
        pb::Complaint {
            category: "Wi-Fi".into(),
            department: "Engineering".into(),
            ..noisy_room("paris")
        },
    )
    .await?;
    assert_eq!(filed.category, "wi-fi");
    let investigation = clock(&filed, pb::Stage::FirstInvestigation);
    let due = investigation.due_time.expect("due").seconds
        - investigation.start_time.expect("start").seconds;
    assert!(
        due > 20 * 3600,
        "two working hours of a one-hour-a-day department take days, not {due}s"
    );

    // Reclassifying keeps to the list too.
    let id = filed.complaint_id.clone();
    let refused = update(
        &mut agent,
        pb::Complaint {
            complaint_id: id.clone(),
            category: "spa".into(),
            ..Default::default()
        },
        &["category"],
    )
    .await
    .expect_err("not a category of paris");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["complaint.category"]);
    let unchanged = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(unchanged.category, "wi-fi");
    let changed = update(
        &mut agent,
        pb::Complaint {
            complaint_id: id.clone(),
            category: "NOISE".into(),
            ..Default::default()
        },
        &["category"],
    )
    .await?;
    assert_eq!(changed.category, "noise");
    service.shutdown().await
}

#[tokio::test]
async fn remedies_are_not_approved_or_delivered_on_finished_complaints() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let mut gm = staff(&service, Role::GeneralManager, &["paris"]).await?;
    let decide =
        |complaint: &pb::Complaint, remedy: &pb::Remedy, approve: bool| pb::DecideRemedyRequest {
            complaint_id: complaint.complaint_id.clone(),
            remedy_id: remedy.remedy_id.clone(),
            approve,
            note: String::new(),
        };
    let deliver = |complaint: &pb::Complaint, remedy: &pb::Remedy| pb::MarkRemedyDeliveredRequest {
        complaint_id: complaint.complaint_id.clone(),
        remedy_id: remedy.remedy_id.clone(),
    };

    // Cancelled: neither approval nor delivery; what waited for approval is withdrawn.
    let cancelled = file(&mut agent, noisy_room("paris")).await?;
    let pending = agent
        .propose_remedy(remedy_request(
            &cancelled.complaint_id,
            pb::RemedyKind::Refund,
            20_000,
            0,
        ))
        .await?
        .into_inner();
    let second = agent
        .propose_remedy(remedy_request(
            &cancelled.complaint_id,
            pb::RemedyKind::Refund,
            20_000,
            0,
        ))
        .await?
        .into_inner();
    let approved = agent
        .propose_remedy(remedy_request(
            &cancelled.complaint_id,
            pb::RemedyKind::Points,
            0,
            500,
        ))
        .await?
        .into_inner();
    assert_eq!(pending.status, pb::RemedyStatus::PendingApproval as i32);
    assert_eq!(
        approved.status,
        pb::RemedyStatus::PendingApproval as i32,
        "the total is above the agent's limit"
    );
    let approved = gm
        .decide_remedy(decide(&cancelled, &approved, true))
        .await?
        .into_inner();
    assert_eq!(approved.status, pb::RemedyStatus::Approved as i32);
    act(
        &mut agent,
        &cancelled.complaint_id,
        pb::Action::Cancel,
        "guest withdrew",
    )
    .await?;

    let refused = gm
        .decide_remedy(decide(&cancelled, &pending, true))
        .await
        .expect_err("cancelled complaint");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let refused = agent
        .mark_remedy_delivered(deliver(&cancelled, &approved))
        .await
        .expect_err("cancelled complaint");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let decided = gm
        .decide_remedy(decide(&cancelled, &second, false))
        .await
        .expect_err("withdrawn with the cancellation");
    assert_eq!(decided.code(), Code::FailedPrecondition);
    let after = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: cancelled.complaint_id.clone(),
        })
        .await?
        .into_inner();
    let statuses: Vec<i32> = after.remedies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            pb::RemedyStatus::Rejected as i32,
            pb::RemedyStatus::Rejected as i32,
            pb::RemedyStatus::Approved as i32,
        ]
    );
    assert!(after
        .remedies
        .iter()
        .filter(|r| r.status == pb::RemedyStatus::Rejected as i32)
        .all(|r| r.decided_by == "system"));

    // Closed: a pending remedy is not approved any more; an approved one may still be handed over.
    let closed = file(&mut agent, noisy_room("paris")).await?;
    let apology = agent
        .propose_remedy(remedy_request(
            &closed.complaint_id,
            pb::RemedyKind::Apology,
            0,
            0,
        ))
        .await?
        .into_inner();
    let pending = agent
        .propose_remedy(remedy_request(
            &closed.complaint_id,
            pb::RemedyKind::Refund,
            20_000,
            0,
        ))
        .await?
        .into_inner();
    assert_eq!(apology.status, pb::RemedyStatus::Approved as i32);
    assert_eq!(pending.status, pb::RemedyStatus::PendingApproval as i32);
    act(&mut agent, &closed.complaint_id, pb::Action::Resolve, "").await?;
    update(
        &mut agent,
        pb::Complaint {
            complaint_id: closed.complaint_id.clone(),
            cause: pb::Cause::External as i32,
            root_cause_summary: "Works next door".into(),
            ..Default::default()
        },
        &["cause", "root_cause_summary"],
    )
    .await?;
    act(&mut agent, &closed.complaint_id, pb::Action::Close, "").await?;
    let refused = gm
        .decide_remedy(decide(&closed, &pending, true))
        .await
        .expect_err("closed complaint");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let delivered = agent
        .mark_remedy_delivered(deliver(&closed, &apology))
        .await?
        .into_inner();
    assert_eq!(delivered.status, pb::RemedyStatus::Delivered as i32);
    // A rejection is the approver's, or the proposer's own withdrawal: another agent, who
    // could not approve a refund this size, cannot reject it either.
    let mut colleague = client(
        &service,
        TokenBuilder::new(Role::Agent)
            .subject("agent-2")
            .properties(&["paris"])
            .mint()?,
    )
    .await?;
    let refused = colleague
        .decide_remedy(decide(&closed, &pending, false))
        .await
        .expect_err("not the agent's to reject");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let rejected = agent
        .decide_remedy(decide(&closed, &pending, false))
        .await?
        .into_inner();
    assert_eq!(rejected.status, pb::RemedyStatus::Rejected as i32);

    let pool = service.database.admin_pool().await?;
    let approvals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events WHERE event_type = 'complaints.remedy.approved'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        approvals, 2,
        "the points remedy and the apology, both before finishing"
    );

    // Points proposed while the complaint named its guest are not approved once the guest is
    // gone from it (erased meanwhile): nobody would receive them.
    let open = file(&mut agent, noisy_room("paris")).await?;
    let points = agent
        .propose_remedy(remedy_request(
            &open.complaint_id,
            pb::RemedyKind::Points,
            0,
            50_000,
        ))
        .await?
        .into_inner();
    assert_eq!(points.status, pb::RemedyStatus::PendingApproval as i32);
    sqlx::query("UPDATE complaints.complaints SET guest_id = '' WHERE complaint_id = $1::uuid")
        .bind(&open.complaint_id)
        .execute(&pool)
        .await?;
    let refused = gm
        .decide_remedy(decide(&open, &points, true))
        .await
        .expect_err("no guest to credit");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    service.shutdown().await
}

#[tokio::test]
async fn a_guest_token_without_a_guest_id_sees_and_files_nothing() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    // Found by staff before anyone knew which guest it touched: no guest id.
    let mut observed = noisy_room("paris");
    observed.guest = Some(pb::GuestRef {
        name: "Ann Smith".into(),
        email: "ann@example.com".into(),
        phone: "+33 1 23 45 67 89".into(),
        ..Default::default()
    });
    observed.channel = pb::Channel::StaffObserved as i32;
    let filed = file(&mut agent, observed).await?;
    assert_eq!(filed.guest.as_ref().map(|g| g.guest_id.as_str()), Some(""));

    let tokens = [
        TokenBuilder::new(Role::Guest).subject("nobody").mint()?,
        TokenBuilder::new(Role::Guest)
            .guest("")
            .subject("nobody")
            .mint()?,
    ];
    for token in tokens {
        let mut guest = client(&service, token).await?;
        let listed = guest
            .list_complaints(pb::ListComplaintsRequest::default())
            .await
            .expect_err("no guest id");
        assert_eq!(listed.code(), Code::PermissionDenied);
        assert!(listed.message().contains("guest id"), "{listed:?}");
        if let Ok(queue) = guest
            .list_work_queue(pb::ListWorkQueueRequest::default())
            .await
        {
            assert!(
                queue.into_inner().complaints.is_empty(),
                "the work queue leaks nothing either"
            );
        }
        let hidden = guest
            .get_complaint(pb::GetComplaintRequest {
                complaint_id: filed.complaint_id.clone(),
            })
            .await
            .expect_err("not theirs");
        assert_eq!(hidden.code(), Code::NotFound);

        let mut own = noisy_room("paris");
        own.guest = None;
        own.channel = pb::Channel::App as i32;
        let refused = file(&mut guest, own).await.expect_err("no guest id");
        let status = refused
            .downcast_ref::<tonic::Status>()
            .expect("a gRPC status");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("guest id"), "{status:?}");
    }
    let pool = service.database.admin_pool().await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.complaints")
        .fetch_one(&pool)
        .await?;
    assert_eq!(count, 1, "nothing filed for the token without a guest id");
    service.shutdown().await
}

#[tokio::test]
async fn raising_urgency_after_intake_retargets_resolution_and_escalates() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let resolution_due = |complaint: &pb::Complaint| {
        let c = clock(complaint, pb::Stage::Resolution);
        c.due_time.map(|d| d.seconds).unwrap_or_default()
            - c.start_time.map(|s| s.seconds).unwrap_or_default()
    };
    let filed = file(
        &mut agent,
        pb::Complaint {
            urgency: pb::Urgency::Medium as i32,
            ..noisy_room("paris")
        },
    )
    .await?;
    assert_eq!(resolution_due(&filed), 24 * 3600);
    assert_eq!(filed.escalation_level, "agent");

    let critical = update(
        &mut agent,
        pb::Complaint {
            complaint_id: filed.complaint_id.clone(),
            urgency: pb::Urgency::Critical as i32,
            ..Default::default()
        },
        &["urgency"],
    )
    .await?;
    assert_eq!(
        resolution_due(&critical),
        30 * 60,
        "critical resolves within 30 minutes"
    );
    assert_eq!(
        critical.escalation_level, "supervisor",
        "as intake would have"
    );
    // Once per trigger, as at intake.
    let harmed = update(
        &mut agent,
        pb::Complaint {
            complaint_id: filed.complaint_id.clone(),
            impact: pb::Impact::EmotionalHarm as i32,
            ..Default::default()
        },
        &["impact"],
    )
    .await?;
    assert_eq!(harmed.escalation_level, "supervisor");
    let lowered = update(
        &mut agent,
        pb::Complaint {
            complaint_id: filed.complaint_id.clone(),
            urgency: pb::Urgency::Low as i32,
            ..Default::default()
        },
        &["urgency"],
    )
    .await?;
    assert!(resolution_due(&lowered) >= 24 * 3600, "three working days");

    // Emotional harm found later escalates too.
    let other = file(&mut agent, noisy_room("paris")).await?;
    let harmed = update(
        &mut agent,
        pb::Complaint {
            complaint_id: other.complaint_id.clone(),
            impact: pb::Impact::EmotionalHarm as i32,
            ..Default::default()
        },
        &["impact"],
    )
    .await?;
    assert_eq!(harmed.escalation_level, "supervisor");
    assert_eq!(resolution_due(&harmed), 2 * 3600, "urgency unchanged");
    service.shutdown().await
}

/// The breached filter lists complaints whose clocks run late, not those waiting on the guest
/// (their clocks are paused; the stored due time is where it stood when the pause began).
#[tokio::test]
async fn waiting_on_the_guest_is_not_running_late() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["lisbon"]).await?;
    let late = file(&mut agent, noisy_room("lisbon")).await?;
    let waiting = file(&mut agent, noisy_room("lisbon")).await?;
    for id in [&late.complaint_id, &waiting.complaint_id] {
        act(&mut agent, id, pb::Action::Acknowledge, "").await?;
    }
    act(
        &mut agent,
        &waiting.complaint_id,
        pb::Action::WaitForGuest,
        "asked which nights suit a room move",
    )
    .await?;
    // Both have a running clock whose stored due time has passed.
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE complaints.complaint_clocks SET started_at = now() - interval '3 days', due_at = now() - interval '1 hour' \
         WHERE stopped_at IS NULL",
    )
    .execute(&pool)
    .await?;
    let listed = |filter: pb::ClockFilter| {
        let mut agent = agent.clone();
        async move {
            let mut ids: Vec<String> = agent
                .list_complaints(pb::ListComplaintsRequest {
                    clock_filter: filter as i32,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .complaints
                .into_iter()
                .map(|c| c.complaint_id)
                .collect();
            ids.sort();
            anyhow::Ok(ids)
        }
    };
    assert_eq!(
        listed(pb::ClockFilter::Breached).await?,
        vec![late.complaint_id.clone()],
        "the paused one is not late"
    );
    sqlx::query(
        "UPDATE complaints.complaint_clocks SET due_at = now() + interval '1 hour', at_risk_at = now() - interval '1 minute' \
         WHERE stopped_at IS NULL",
    )
    .execute(&pool)
    .await?;
    assert_eq!(
        listed(pb::ClockFilter::AtRisk).await?,
        vec![late.complaint_id.clone()],
        "nor at risk"
    );
    service.shutdown().await
}

/// A hotspot is a room that keeps failing: with a threshold of one, a complaint about a room is
/// a hotspot at once, one without a room never is.
#[tokio::test]
async fn only_rooms_are_hotspots() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut manager = staff(&service, Role::GeneralManager, &["porto"]).await?;
    set_settings(&mut manager, "porto", |s| s.hotspot_threshold = 1).await?;
    let in_room = file(&mut manager, noisy_room("porto")).await?;
    let lobby = file(
        &mut manager,
        pb::Complaint {
            stay: None,
            ..noisy_room("porto")
        },
    )
    .await?;
    assert_eq!((in_room.hotspot, lobby.hotspot), (true, false));
    service.shutdown().await
}

/// A complaint classified or placed after intake is checked for repeats and hotspots then, as
/// intake would have checked it.
#[tokio::test]
async fn reclassifying_finds_repeats_and_hotspots() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut manager = staff(&service, Role::GeneralManager, &["porto"]).await?;
    set_settings(&mut manager, "porto", |s| s.hotspot_threshold = 2).await?;
    let first = file(&mut manager, noisy_room("porto")).await?;
    let later = file(
        &mut manager,
        pb::Complaint {
            category: "wifi".into(),
            stay: None,
            ..noisy_room("porto")
        },
    )
    .await?;
    assert!(!later.repeat_issue && !later.hotspot);
    let reclassified = update(
        &mut manager,
        pb::Complaint {
            complaint_id: later.complaint_id.clone(),
            category: "noise".into(),
            stay: noisy_room("porto").stay,
            ..Default::default()
        },
        &["category", "stay"],
    )
    .await?;
    assert!(reclassified.repeat_issue, "the same guest's noise again");
    assert_eq!(reclassified.repeat_of_complaint_id, first.complaint_id);
    assert!(reclassified.hotspot, "room 1204's second noise complaint");
    // The earlier complaint never repeats the later one.
    let again = update(
        &mut manager,
        pb::Complaint {
            complaint_id: first.complaint_id.clone(),
            category: "noise".into(),
            ..Default::default()
        },
        &["category"],
    )
    .await?;
    assert!(!again.repeat_issue, "{again:?}");
    service.shutdown().await
}

/// A resolution time missed before a reopen stays missed in the KPIs, however quickly the
/// reopened complaint is then resolved.
#[tokio::test]
async fn a_missed_resolution_stays_missed_after_a_reopen() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let filed = file(&mut agent, noisy_room("paris")).await?;
    let id = filed.complaint_id.clone();
    // Filed long enough ago that the first resolution comes after its due time.
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE complaints.complaint_clocks SET started_at = started_at - interval '3 days', \
         due_at = due_at - interval '3 days' WHERE complaint_id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await?;
    act(&mut agent, &id, pb::Action::Resolve, "").await?;
    act(&mut agent, &id, pb::Action::Reopen, "guest called again").await?;
    act(&mut agent, &id, pb::Action::Resolve, "").await?;
    let (met, missed): (i64, i64) = sqlx::query_as(
        "SELECT met_resolution, missed_resolution FROM complaints.complaint_kpi_facts WHERE complaint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (met, missed),
        (1, 1),
        "the first cycle missed, the second met: both count"
    );
    service.shutdown().await
}

/// A whole-chain token reaches every property of its own chain, never another chain's: a
/// property is known under the chain whose complaints or settings it holds.
#[tokio::test]
async fn a_chain_wide_token_stays_in_its_chain() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let chain_admin = |chain: &str| {
        let token = TokenBuilder::new(Role::ChainAdmin)
            .chain(chain)
            .subject(&format!("admin-{chain}"))
            .mint();
        let service = &service;
        async move { client(service, token?).await }
    };
    let mut nordic = chain_admin("nordic").await?;
    let mut other = chain_admin("other").await?;
    file(&mut nordic, noisy_room("oslo")).await?;
    let foreign = |status: &tonic::Status| {
        status.code() == Code::PermissionDenied && status.message().contains("another chain")
    };
    let filing = file(&mut other, noisy_room("oslo"))
        .await
        .expect_err("filing at another chain's property");
    assert!(
        filing.downcast_ref::<tonic::Status>().is_some_and(&foreign),
        "{filing}"
    );
    let kpis = other
        .get_complaint_kpis(pb::GetComplaintKpisRequest {
            property_ids: vec!["oslo".into()],
            period: Some(guestloop_proto::common::v1::TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() - 86_400,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 60,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await
        .expect_err("another chain's KPIs");
    assert!(foreign(&kpis), "{kpis:?}");
    let settings = other
        .get_property_settings(pb::GetPropertySettingsRequest {
            property_id: "oslo".into(),
        })
        .await
        .expect_err("another chain's settings");
    assert!(foreign(&settings), "{settings:?}");
    let changed = set_settings(&mut other, "bergen", |s| s.hotspot_threshold = 2).await;
    assert!(changed.is_ok(), "a property no chain used yet is open");
    let taken = set_settings(&mut nordic, "bergen", |s| s.hotspot_threshold = 3)
        .await
        .expect_err("bergen's settings now belong to the other chain");
    assert!(
        taken.downcast_ref::<tonic::Status>().is_some_and(&foreign),
        "{taken}"
    );
    // The owning chain is unaffected.
    file(&mut nordic, noisy_room("oslo")).await?;
    service.shutdown().await
}

/// "At risk" means the property's at-risk share of the target has passed, in working time: the
/// list filter agrees with the at-risk flag the clocks show.
#[tokio::test]
async fn at_risk_follows_the_propertys_ratio() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut manager = staff(&service, Role::GeneralManager, &["porto"]).await?;
    set_settings(&mut manager, "porto", |s| s.at_risk_ratio = 0.5).await?;
    let filed = file(&mut manager, noisy_room("porto")).await?;
    let pool = service.database.admin_pool().await?;
    let (at_risk_after, due_after): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM at_risk_at - started_at)::float8, extract(epoch FROM due_at - started_at)::float8 \
         FROM complaints.complaint_clocks WHERE complaint_id = $1::uuid AND stage = 1",
    )
    .bind(&filed.complaint_id)
    .fetch_one(&pool)
    .await?;
    assert!(
        (at_risk_after / due_after - 0.5).abs() < 0.01,
        "{at_risk_after} s of {due_after} s"
    );
    let at_risk = |manager: &Client| {
        let mut manager = manager.clone();
        async move {
            anyhow::Ok(
                manager
                    .list_complaints(pb::ListComplaintsRequest {
                        clock_filter: pb::ClockFilter::AtRisk as i32,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .complaints
                    .len(),
            )
        }
    };
    assert_eq!(at_risk(&manager).await?, 0, "just filed");
    // 90 % of the wall-clock span has passed, but not the working-time share: not at risk.
    sqlx::query(
        "UPDATE complaints.complaint_clocks SET started_at = now() - interval '9 hours', \
         due_at = now() + interval '1 hour', at_risk_at = now() + interval '30 minutes' WHERE complaint_id = $1::uuid",
    )
    .bind(&filed.complaint_id)
    .execute(&pool)
    .await?;
    assert_eq!(at_risk(&manager).await?, 0);
    sqlx::query(
        "UPDATE complaints.complaint_clocks SET at_risk_at = now() - interval '1 minute' WHERE complaint_id = $1::uuid",
    )
    .bind(&filed.complaint_id)
    .execute(&pool)
    .await?;
    assert_eq!(at_risk(&manager).await?, 1);
    service.shutdown().await
}

/// The work queue pages: following the tokens gives the whole queue, in the order one large page
/// gives it, each complaint once.
#[tokio::test]
async fn the_work_queue_pages_in_its_order() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    for urgency in [
        pb::Urgency::Low,
        pb::Urgency::Critical,
        pb::Urgency::Medium,
        pb::Urgency::High,
        pb::Urgency::Low,
    ] {
        file(
            &mut agent,
            pb::Complaint {
                urgency: urgency as i32,
                ..noisy_room("paris")
            },
        )
        .await?;
    }
    let ids = |list: &pb::ListComplaintsResponse| {
        list.complaints
            .iter()
            .map(|c| c.complaint_id.clone())
            .collect::<Vec<_>>()
    };
    let whole = agent
        .list_work_queue(pb::ListWorkQueueRequest {
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(whole.complaints.len(), 5);
    assert!(whole.next_page_token.is_empty());
    let mut paged = Vec::new();
    let mut page_token = String::new();
    for _ in 0..5 {
        let page = agent
            .list_work_queue(pb::ListWorkQueueRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        paged.extend(ids(&page));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ids(&whole));
    let refused = agent
        .list_work_queue(pb::ListWorkQueueRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a token the service did not issue");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["page_token"]);
    service.shutdown().await
}

/// A complaint reclassified while resolved (no clock runs then) gets the new urgency when it
/// reopens: its new resolution cycle runs on the critical 30 minutes, and it escalates as a
/// critical complaint does at intake.
#[tokio::test]
async fn a_reopened_complaint_runs_on_the_urgency_it_has_now() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let filed = file(
        &mut agent,
        pb::Complaint {
            urgency: pb::Urgency::Low as i32,
            ..noisy_room("paris")
        },
    )
    .await?;
    let id = filed.complaint_id.clone();
    act(&mut agent, &id, pb::Action::Resolve, "").await?;
    let critical = update(
        &mut agent,
        pb::Complaint {
            complaint_id: id.clone(),
            urgency: pb::Urgency::Critical as i32,
            ..Default::default()
        },
        &["urgency"],
    )
    .await?;
    assert_eq!(critical.escalation_count, 0, "nothing runs while resolved");
    let reopened = act(&mut agent, &id, pb::Action::Reopen, "still noisy").await?;
    let resolution = reopened
        .clocks
        .iter()
        .find(|c| c.stage == pb::Stage::Resolution as i32)
        .ok_or_else(|| anyhow::anyhow!("no resolution clock"))?;
    let (start, due) = (
        resolution.start_time.map_or(0, |t| t.seconds),
        resolution.due_time.map_or(0, |t| t.seconds),
    );
    assert_eq!(
        due - start,
        30 * 60,
        "the critical target, not low's 3 days"
    );
    assert_eq!(reopened.escalation_count, 1, "high impact, as at intake");
    service.shutdown().await
}

/// What staff know at intake (the standards broken, who was involved, a first root cause) is
/// kept as on update, not dropped; a guest filing does not name staff.
#[tokio::test]
async fn staff_findings_given_at_intake_are_kept() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut agent = staff(&service, Role::Agent, &["paris"]).await?;
    let filed = file(
        &mut agent,
        pb::Complaint {
            standard_codes: vec!["greet_within_3m".into()],
            staff_involved: vec!["night-porter-7".into()],
            root_cause_summary: "No porter on the night shift".into(),
            ..noisy_room("paris")
        },
    )
    .await?;
    let read = agent
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            read.standard_codes.clone(),
            read.staff_involved.clone(),
            read.root_cause_summary.as_str()
        ),
        (
            vec!["greet_within_3m".to_string()],
            vec!["night-porter-7".to_string()],
            "No porter on the night shift"
        )
    );
    let mut guest = client(
        &service,
        TokenBuilder::new(Role::Guest)
            .guest("guest-9")
            .subject("guest-9")
            .mint()?,
    )
    .await?;
    let refused = guest
        .create_complaint(pb::CreateComplaintRequest {
            request_id: String::new(),
            complaint: Some(pb::Complaint {
                guest: None,
                channel: pb::Channel::App as i32,
                staff_involved: vec!["night-porter-7".into()],
                ..noisy_room("paris")
            }),
        })
        .await
        .expect_err("a guest naming staff");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["complaint.staff_involved"]);
    service.shutdown().await
}
