//! Facilities end to end: a complaint about a broken air conditioner opens one work order on the
//! room's unit, completing it resolves the complaint — each step once even when feeds are
//! replayed; the out-of-order guard; repeat-fix rules; meter plans; failed inspection items.

use std::time::Duration;

use guestloop_kit::auth::{PropertyScope, Role};
use guestloop_kit::events::{Consumer, EventHandler};
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::complaints::v1 as cpb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::facilities::v1 as pb;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_testkit::{
    spawn_peers, spawn_service, spawn_service_on, test_settings, violated_fields, TestService,
    TokenBuilder,
};
use prost::Message;
use tonic::Code;

type Facilities = FacilitiesServiceClient<guestloop_kit::client::AuthedChannel>;

async fn client(service: &TestService) -> anyhow::Result<Facilities> {
    let token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["madrid"])
        .mint()?;
    Ok(FacilitiesServiceClient::new(
        service.channel_with_token(&token).await?,
    ))
}

async fn asset(
    client: &mut Facilities,
    room: &str,
    category: pb::AssetCategory,
) -> anyhow::Result<pb::Asset> {
    Ok(client
        .create_asset(pb::CreateAssetRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            asset: Some(pb::Asset {
                property_id: "madrid".into(),
                name: format!("{category:?} {room}"),
                category: category as i32,
                location: Some(pb::Location {
                    building: "main".into(),
                    floor: "5".into(),
                    room: room.into(),
                }),
                install_date: "2019-06-01".into(),
                expected_life_years: 10,
                ..Default::default()
            }),
        })
        .await?
        .into_inner())
}

/// A walk-in guest's complaint, by phone, about the air conditioning of a room at Madrid: a
/// facility cause, so it opens a work order.
fn warm_room(room: &str, urgency: cpb::Urgency, description: &str) -> cpb::Complaint {
    cpb::Complaint {
        property_id: "madrid".into(),
        guest: Some(cpb::GuestRef {
            name: "Walk-in guest".into(),
            ..Default::default()
        }),
        stay: Some(cpb::StayContext {
            room: room.into(),
            phase: cpb::StayPhase::InHouse as i32,
            ..Default::default()
        }),
        channel: cpb::Channel::Phone as i32,
        category: "heating_ac".into(),
        cause: cpb::Cause::Facility as i32,
        urgency: urgency as i32,
        description: description.into(),
        ..Default::default()
    }
}

async fn act(
    client: &mut Facilities,
    id: &str,
    action: pb::WorkOrderAction,
    reason: &str,
) -> Result<pb::WorkOrder, tonic::Status> {
    client
        .transition_work_order(pb::TransitionWorkOrderRequest {
            work_order_id: id.into(),
            action: action as i32,
            assignee: "team:engineering".into(),
            reason: reason.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn eventually<F, Fut, T>(mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    for _ in 0..150 {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("condition not reached in 15 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_air_conditioner_goes_from_complaint_to_work_order_and_back_once(
) -> anyhow::Result<()> {
    let [facilities, complaints]: [TestService; 2] = spawn_peers(
        test_settings(),
        &[
            &guestloop_facilities::DEFINITION,
            &guestloop_complaints::DEFINITION,
        ],
    )
    .await?
    .try_into()
    .map_err(|_| anyhow::anyhow!("two services"))?;

    let mut fac = client(&facilities).await?;
    let unit = asset(&mut fac, "512", pb::AssetCategory::Hvac).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["madrid"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let filed = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "ac-1".into(),
            complaint: Some(warm_room(
                "512",
                cpb::Urgency::High,
                "The air conditioning blows warm air",
            )),
        })
        .await?
        .into_inner();

    let order = eventually(|| {
        let mut fac = fac.clone();
        async move {
            let list = fac
                .list_work_orders(pb::ListWorkOrdersRequest {
                    property_id: "madrid".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(list.work_orders.into_iter().next())
        }
    })
    .await?;
    assert_eq!(
        order.asset_id, unit.asset_id,
        "on the room's air conditioner"
    );
    assert_eq!(order.source_id, filed.complaint_id);
    assert_eq!(order.priority, pb::Priority::GuestImpacting as i32);
    let linked = eventually(|| {
        let mut agent = agent.clone();
        let id = filed.complaint_id.clone();
        async move {
            let c = agent
                .get_complaint(cpb::GetComplaintRequest { complaint_id: id })
                .await?
                .into_inner();
            Ok((!c.work_order_ids.is_empty()).then_some(c))
        }
    })
    .await?;
    assert_eq!(linked.work_order_ids, vec![order.work_order_id.clone()]);

    // An order from a complaint names it ...
    let barcelona_token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["barcelona"])
        .mint()?;
    let mut barcelona =
        FacilitiesServiceClient::new(facilities.channel_with_token(&barcelona_token).await?);
    let from_complaint = |source_id: &str| pb::CreateWorkOrderRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        work_order: Some(pb::WorkOrder {
            property_id: "barcelona".into(),
            title: "Air conditioning".into(),
            priority: pb::Priority::Normal as i32,
            source: pb::WorkOrderSource::Complaint as i32,
            source_id: source_id.into(),
            ..Default::default()
        }),
    };
    let unnamed = barcelona
        .create_work_order(from_complaint(""))
        .await
        .expect_err("no complaint named");
    assert_eq!(unnamed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unnamed), vec!["work_order.source_id"]);
    let misnamed = barcelona
        .create_work_order(from_complaint("complaint-7"))
        .await
        .expect_err("not a complaint id");
    assert_eq!(violated_fields(&misnamed), vec!["work_order.source_id"]);
    // ... and one at another property naming Madrid's complaint neither links to it nor
    // resolves it when done (the feed is in order, so by the time Madrid's own order resolves the
    // complaint below, this one has been read).
    let foreign = barcelona
        .create_work_order(from_complaint(&filed.complaint_id))
        .await?
        .into_inner();
    for step in [pb::WorkOrderAction::Start, pb::WorkOrderAction::Complete] {
        act(&mut barcelona, &foreign.work_order_id, step, "").await?;
    }

    // On hold (waiting for parts) pauses the fix clock: the deadline moves out.
    act(
        &mut fac,
        &order.work_order_id,
        pb::WorkOrderAction::Start,
        "",
    )
    .await?;
    act(
        &mut fac,
        &order.work_order_id,
        pb::WorkOrderAction::Hold,
        "waiting for a compressor part",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resumed = act(
        &mut fac,
        &order.work_order_id,
        pb::WorkOrderAction::Resume,
        "",
    )
    .await?;
    let before = order
        .fix_due_time
        .as_ref()
        .map(|t| t.seconds)
        .unwrap_or_default();
    let after = resumed
        .fix_due_time
        .as_ref()
        .map(|t| t.seconds)
        .unwrap_or_default();
    assert!(
        after > before,
        "pausing moved the fix deadline from {before} to {after}"
    );
    act(
        &mut fac,
        &order.work_order_id,
        pb::WorkOrderAction::Complete,
        "",
    )
    .await?;

    let resolved = eventually(|| {
        let mut agent = agent.clone();
        let id = filed.complaint_id.clone();
        async move {
            let c = agent
                .get_complaint(cpb::GetComplaintRequest { complaint_id: id })
                .await?
                .into_inner();
            Ok((c.status == cpb::Status::Resolved as i32).then_some(c))
        }
    })
    .await?;
    assert!(resolved.resolve_time.is_some());
    assert_eq!(
        resolved.work_order_ids,
        vec![order.work_order_id.clone()],
        "Barcelona's order is not linked"
    );

    // A second facility complaint, then cancelled (a duplicate): its work order is cancelled
    // with it, so it neither waits for a repair nor counts.
    let duplicate = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "ac-2".into(),
            complaint: Some(warm_room(
                "513",
                cpb::Urgency::Medium,
                "Same air conditioning, reported again",
            )),
        })
        .await?
        .into_inner();
    let duplicate_order = eventually(|| {
        let mut fac = fac.clone();
        let id = duplicate.complaint_id.clone();
        async move {
            let list = fac
                .list_work_orders(pb::ListWorkOrdersRequest {
                    property_id: "madrid".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(list.work_orders.into_iter().find(|o| o.source_id == id))
        }
    })
    .await?;
    agent
        .transition_complaint(cpb::TransitionComplaintRequest {
            complaint_id: duplicate.complaint_id.clone(),
            action: cpb::Action::Cancel as i32,
            reason: "reported twice".into(),
            etag: String::new(),
        })
        .await?;
    eventually(|| {
        let mut fac = fac.clone();
        let id = duplicate_order.work_order_id.clone();
        async move {
            let order = fac
                .get_work_order(pb::GetWorkOrderRequest { work_order_id: id })
                .await?
                .into_inner();
            Ok((order.status == "cancelled").then_some(order))
        }
    })
    .await?;

    // Replaying both feeds from the start changes nothing.
    let service_token = TokenBuilder::new(Role::Service).mint()?;
    let s = test_settings();
    let facilities_pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&facilities.database.url, "facilities", &s.database)?,
        &s.database,
    );
    let complaints_pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&complaints.database.url, "complaints", &s.database)?,
        &s.database,
    );
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let replay_into_facilities = tokio::spawn(
        Consumer::new(
            "replay",
            facilities_pool.clone(),
            vec![],
            guestloop_facilities::consumer::ComplaintEvents,
        )
        .run(
            EventFeedClient::new(complaints.channel_with_token(&service_token).await?),
            stop_rx.clone(),
        ),
    );
    let replay_into_complaints = tokio::spawn(
        Consumer::new(
            "replay",
            complaints_pool.clone(),
            vec![],
            guestloop_complaints::consumer::WorkOrderEvents,
        )
        .run(
            EventFeedClient::new(facilities.channel_with_token(&service_token).await?),
            stop_rx.clone(),
        ),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    replay_into_facilities.abort();
    replay_into_complaints.abort();
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM work_orders")
        .fetch_one(&facilities_pool)
        .await?;
    assert_eq!(orders, 3, "one work order per complaint, and Barcelona's");
    let cancelled: String =
        sqlx::query_scalar("SELECT status FROM work_orders WHERE source_id = $1")
            .bind(&duplicate.complaint_id)
            .fetch_one(&facilities_pool)
            .await?;
    assert_eq!(cancelled, "cancelled", "the replay reopens nothing");
    let resolutions: Vec<String> =
        sqlx::query_scalar("SELECT note FROM complaint_timeline WHERE to_status = 'resolved'")
            .fetch_all(&complaints_pool)
            .await?;
    assert_eq!(
        resolutions,
        vec![format!("work order {} completed", order.work_order_id)],
        "resolved once, by Madrid's order"
    );
    let links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaint_timeline WHERE kind = 'work_order_linked'",
    )
    .fetch_one(&complaints_pool)
    .await?;
    assert_eq!(links, 2, "each complaint's order linked once");
    facilities.shutdown().await?;
    complaints.shutdown().await
}

#[tokio::test]
async fn rooms_stay_out_while_guest_impacting_work_is_open_and_repeat_fixes_escalate(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut fac = client(&service).await?;
    let shower = asset(&mut fac, "301", pb::AssetCategory::Plumbing).await?;
    fac.set_room_status(pb::SetRoomStatusRequest {
        property_id: "madrid".into(),
        room: "301".into(),
        status: "out_of_order".into(),
        reason: "leak".into(),
        expected_return: None,
    })
    .await?;
    let order = |title: &str| pb::CreateWorkOrderRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        work_order: Some(pb::WorkOrder {
            property_id: "madrid".into(),
            asset_id: shower.asset_id.clone(),
            room: "301".into(),
            title: title.into(),
            priority: pb::Priority::GuestImpacting as i32,
            ..Default::default()
        }),
    };
    let first = fac
        .create_work_order(order("shower leaks"))
        .await?
        .into_inner();
    let refused = fac
        .set_room_status(pb::SetRoomStatusRequest {
            property_id: "madrid".into(),
            room: "301".into(),
            status: "in_service".into(),
            reason: String::new(),
            expected_return: None,
        })
        .await
        .expect_err("open guest-impacting order");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    act(
        &mut fac,
        &first.work_order_id,
        pb::WorkOrderAction::Start,
        "",
    )
    .await?;
    let done = act(
        &mut fac,
        &first.work_order_id,
        pb::WorkOrderAction::Complete,
        "",
    )
    .await?;
    assert!(!done.repeat_escalated);
    let back = fac
        .set_room_status(pb::SetRoomStatusRequest {
            property_id: "madrid".into(),
            room: "301".into(),
            status: "in_service".into(),
            reason: String::new(),
            expected_return: None,
        })
        .await?
        .into_inner();
    assert_eq!(back.status, "in_service");

    let second = fac
        .create_work_order(order("shower leaks again"))
        .await?
        .into_inner();
    act(
        &mut fac,
        &second.work_order_id,
        pb::WorkOrderAction::Start,
        "",
    )
    .await?;
    let again = act(
        &mut fac,
        &second.work_order_id,
        pb::WorkOrderAction::Complete,
        "",
    )
    .await?;
    assert!(again.repeat_escalated, "fixed twice within 30 days");
    let flagged = fac
        .get_asset(pb::GetAssetRequest {
            asset_id: shower.asset_id.clone(),
        })
        .await?
        .into_inner();
    assert!(
        flagged.replacement_flagged,
        "recurring within 90 days: replacement project"
    );
    let announced: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM facilities.outbox_events \
         WHERE event_type = 'facilities.asset.replacement_flagged' AND subject = $1",
    )
    .bind(format!("assets/{}", shower.asset_id))
    .fetch_all(&service.database.admin_pool().await?)
    .await?;
    assert_eq!(announced.len(), 1, "the flag is announced once");
    let event = pb::AssetReplacementFlagged::decode(announced[0].as_slice())?;
    assert_eq!(event.work_order_id, second.work_order_id);
    assert_eq!(
        event.asset.map(|a| (a.asset_id, a.replacement_flagged)),
        Some((shower.asset_id.clone(), true))
    );
    let illegal = act(
        &mut fac,
        &second.work_order_id,
        pb::WorkOrderAction::Start,
        "",
    )
    .await
    .expect_err("done");
    assert_eq!(illegal.code(), Code::FailedPrecondition);

    // Paging: one order per page gives every order once, in the order of a single page.
    let all = fac
        .list_work_orders(pb::ListWorkOrdersRequest {
            property_id: "madrid".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(all.next_page_token.is_empty());
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = fac
            .list_work_orders(pb::ListWorkOrdersRequest {
                property_id: "madrid".into(),
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.work_orders.len() <= 1);
        paged.extend(page.work_orders.into_iter().map(|o| o.work_order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        paged,
        all.work_orders
            .iter()
            .map(|o| o.work_order_id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(paged.len(), 2);
    let forged = fac
        .list_work_orders(pb::ListWorkOrdersRequest {
            property_id: "madrid".into(),
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a token this service did not issue");
    assert_eq!(forged.code(), Code::InvalidArgument);

    // The work orders' events carry their chain: a whole-chain reader of that chain sees them
    // (outbox positions come from the relay, so wait for it), one of another chain does not.
    let created_events = |token: String| {
        let service = &service;
        async move {
            let mut feed = EventFeedClient::new(service.channel_with_token(&token).await?);
            let page = feed
                .list_events(guestloop_proto::common::v1::ListEventsRequest {
                    after_position: 0,
                    event_types: vec!["facilities.work_order.created".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(
                page.events
                    .into_iter()
                    .map(|e| (e.chain_id, e.property_id))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let chain_reader = TokenBuilder::new(Role::ChainQualityManager).mint()?;
    let seen = eventually(|| {
        let token = chain_reader.clone();
        let created_events = &created_events;
        async move {
            let events = created_events(token).await?;
            anyhow::Ok((events.len() == 2).then_some(events))
        }
    })
    .await?;
    assert!(
        seen.iter()
            .all(|(chain, property)| chain == guestloop_testkit::TEST_CHAIN && property == "madrid"),
        "{seen:?}"
    );
    let other_chain = TokenBuilder::new(Role::ChainQualityManager)
        .chain("another-chain")
        .mint()?;
    assert!(created_events(other_chain).await?.is_empty());
    service.shutdown().await
}

#[tokio::test]
async fn meter_plans_fall_due_by_usage_and_failed_items_open_work_orders() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut fac = client(&service).await?;
    let lift = asset(&mut fac, "lobby", pb::AssetCategory::Elevator).await?;
    let checklist = fac
        .publish_checklist(pb::PublishChecklistRequest {
            request_id: String::new(),
            checklist_id: String::new(),
            name: "Lift service".into(),
            items: vec![
                pb::ChecklistItem {
                    code: "doors".into(),
                    text: "Doors close fully".into(),
                    kind: pb::ItemKind::PassFail as i32,
                    tag: "safety".into(),
                    critical: true,
                    ..Default::default()
                },
                pb::ChecklistItem {
                    code: "noise".into(),
                    text: "Motor noise dB".into(),
                    kind: pb::ItemKind::Numeric as i32,
                    min: 0.0,
                    max: 70.0,
                    unit: "dB".into(),
                    tag: "operation".into(),
                    ..Default::default()
                },
            ],
        })
        .await?
        .into_inner();
    let v2 = fac
        .publish_checklist(pb::PublishChecklistRequest {
            request_id: String::new(),
            checklist_id: checklist.checklist_id.clone(),
            name: "Lift service".into(),
            items: checklist.items.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (checklist.version, v2.version),
        (1, 2),
        "editing publishes a new version"
    );
    let create_plan = pb::CreatePlanRequest {
        request_id: "madrid-lift-500h".into(),
        plan: Some(pb::Plan {
            plan_id: String::new(),
            property_id: "madrid".into(),
            checklist_id: checklist.checklist_id.clone(),
            asset_id: lift.asset_id.clone(),
            frequency: pb::Frequency::MeterHours as i32,
            interval: 500,
            start_date: chrono::Utc::now().date_naive().to_string(),
            due_time: "08:00".into(),
            time_zone: "Europe/Madrid".into(),
            responsible_role: "department_head".into(),
        }),
    };
    let plan = fac.create_plan(create_plan.clone()).await?.into_inner();
    // A retry gets the same plan (a second one would schedule every inspection twice); the same
    // id for another plan is refused.
    let retried = fac.create_plan(create_plan.clone()).await?.into_inner();
    assert_eq!(retried.plan_id, plan.plan_id);
    let mut other = create_plan.clone();
    if let Some(p) = other.plan.as_mut() {
        p.interval = 250;
    }
    let reused = fac
        .create_plan(other)
        .await
        .expect_err("request id reused for another plan");
    assert_eq!(reused.code(), tonic::Code::FailedPrecondition);
    let schedule = |fac: &mut Facilities| {
        let mut fac = fac.clone();
        async move {
            let until = Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 3600,
                nanos: 0,
            });
            anyhow::Ok(
                fac.schedule_inspections(pb::ScheduleInspectionsRequest {
                    property_id: "madrid".into(),
                    until,
                })
                .await?
                .into_inner(),
            )
        }
    };
    let too_far = fac
        .schedule_inspections(pb::ScheduleInspectionsRequest {
            property_id: "madrid".into(),
            until: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 5 * 366 * 86_400,
                nanos: 0,
            }),
        })
        .await
        .expect_err("five years ahead");
    assert_eq!(too_far.code(), Code::InvalidArgument);
    let reading = |fac: &mut Facilities, value: i64| {
        let mut fac = fac.clone();
        let id = lift.asset_id.clone();
        async move {
            anyhow::Ok(
                fac.record_meter_reading(pb::RecordMeterReadingRequest {
                    asset_id: id,
                    meter: "hours".into(),
                    value,
                })
                .await?,
            )
        }
    };
    reading(&mut fac, 499).await?;
    assert_eq!(schedule(&mut fac).await?.created, 0);
    reading(&mut fac, 500).await?;
    assert_eq!(schedule(&mut fac).await?.created, 1);
    let rerun = schedule(&mut fac).await?;
    assert_eq!(
        (rerun.created, rerun.already_scheduled),
        (0, 1),
        "scheduling is idempotent"
    );
    let backwards = reading(&mut fac, 10).await.expect_err("meters only grow");
    assert_eq!(
        backwards.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );

    let due = fac
        .list_inspections(pb::ListInspectionsRequest {
            property_id: "madrid".into(),
            overdue_only: false,
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(due.next_page_token.is_empty(), "one page holds them all");
    let inspection = due
        .inspections
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no inspection"))?;
    assert_eq!(
        inspection.checklist_version, 2,
        "the current version at scheduling time"
    );
    let recorded = fac
        .record_inspection(pb::RecordInspectionRequest {
            inspection_id: inspection.inspection_id.clone(),
            results: vec![
                pb::ItemResult {
                    code: "doors".into(),
                    passed: false,
                    ..Default::default()
                },
                pb::ItemResult {
                    code: "noise".into(),
                    value: 64.0,
                    ..Default::default()
                },
            ],
        })
        .await?
        .into_inner();
    assert_eq!(recorded.failed_items, vec!["doors".to_string()]);
    assert_eq!(recorded.work_order_ids.len(), 1);
    let order = fac
        .get_work_order(pb::GetWorkOrderRequest {
            work_order_id: recorded.work_order_ids[0].clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        order.priority,
        pb::Priority::LifeSafety as i32,
        "a failed critical safety item"
    );
    let twice = fac
        .record_inspection(pb::RecordInspectionRequest {
            inspection_id: inspection.inspection_id.clone(),
            results: vec![],
        })
        .await
        .expect_err("already recorded");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    // The list shows the work order the failed item opened, as recording answered.
    let listed = fac
        .list_inspections(pb::ListInspectionsRequest {
            property_id: inspection.property_id.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .inspections
        .into_iter()
        .find(|i| i.inspection_id == inspection.inspection_id)
        .ok_or_else(|| anyhow::anyhow!("the recorded inspection is listed"))?;
    assert_eq!(listed.work_order_ids, recorded.work_order_ids);

    // Completion resets the meter count: 900 h is not due, 1000 h is.
    reading(&mut fac, 900).await?;
    assert_eq!(schedule(&mut fac).await?.created, 0);
    reading(&mut fac, 1000).await?;
    assert_eq!(schedule(&mut fac).await?.created, 1);
    service.shutdown().await
}

#[tokio::test]
async fn work_orders_and_plans_name_only_assets_of_their_own_property() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut fac = client(&service).await?;
    let lisbon_token = TokenBuilder::new(Role::GeneralManager)
        .properties(&["lisbon"])
        .mint()?;
    let mut lisbon = FacilitiesServiceClient::new(service.channel_with_token(&lisbon_token).await?);
    let foreign = lisbon
        .create_asset(pb::CreateAssetRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            asset: Some(pb::Asset {
                property_id: "lisbon".into(),
                name: "Boiler".into(),
                category: pb::AssetCategory::Plumbing as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let unknown = uuid::Uuid::new_v4().to_string();
    let checklist = fac
        .publish_checklist(pb::PublishChecklistRequest {
            request_id: String::new(),
            checklist_id: String::new(),
            name: "Boiler check".into(),
            items: vec![pb::ChecklistItem {
                code: "pressure".into(),
                text: "Pressure in range".into(),
                kind: pb::ItemKind::PassFail as i32,
                tag: "safety".into(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner();

    // Madrid's manager can neither open a work order nor plan inspections on Lisbon's boiler,
    // nor on an asset that does not exist; each refusal names the field.
    for asset_id in [&foreign.asset_id, &unknown] {
        let order = fac
            .create_work_order(pb::CreateWorkOrderRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                work_order: Some(pb::WorkOrder {
                    property_id: "madrid".into(),
                    asset_id: asset_id.clone(),
                    title: "Boiler leaks".into(),
                    priority: pb::Priority::Normal as i32,
                    ..Default::default()
                }),
            })
            .await
            .expect_err("not an asset of madrid");
        assert_eq!(order.code(), Code::InvalidArgument, "{}", order.message());
        assert!(
            order.message().contains("work_order.asset_id"),
            "{}",
            order.message()
        );
        let plan = fac
            .create_plan(pb::CreatePlanRequest {
                request_id: String::new(),
                plan: Some(pb::Plan {
                    plan_id: String::new(),
                    property_id: "madrid".into(),
                    checklist_id: checklist.checklist_id.clone(),
                    asset_id: asset_id.clone(),
                    frequency: pb::Frequency::Weekly as i32,
                    interval: 0,
                    start_date: chrono::Utc::now().date_naive().to_string(),
                    due_time: "08:00".into(),
                    time_zone: "Europe/Madrid".into(),
                    responsible_role: "department_head".into(),
                }),
            })
            .await
            .expect_err("not an asset of madrid");
        assert_eq!(plan.code(), Code::InvalidArgument, "{}", plan.message());
        assert!(
            plan.message().contains("plan.asset_id"),
            "{}",
            plan.message()
        );
    }
    let pool = service.database.admin_pool().await?;
    let (orders, plans): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM facilities.work_orders), (SELECT count(*) FROM facilities.plans)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((orders, plans), (0, 0), "nothing written");

    // The schema holds the same line for any other writer.
    let direct = sqlx::query(
        "INSERT INTO facilities.work_orders (work_order_id, property_id, asset_id, title, priority, source, status, \
         created_at, respond_due_at, fix_due_at, etag) \
         VALUES (gen_random_uuid(), 'madrid', $1::uuid, 'x', 3, 1, 'open', now(), now(), now(), gen_random_uuid())",
    )
    .bind(&foreign.asset_id)
    .execute(&pool)
    .await;
    assert!(direct.is_err(), "a madrid work order on a lisbon asset");

    // Madrid's own asset is still fine.
    let own = asset(&mut fac, "401", pb::AssetCategory::Plumbing).await?;
    let order = fac
        .create_work_order(pb::CreateWorkOrderRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            work_order: Some(pb::WorkOrder {
                property_id: "madrid".into(),
                asset_id: own.asset_id.clone(),
                title: "Tap drips".into(),
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(order.asset_id, own.asset_id);
    service.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_reading_racing_a_higher_one_is_refused() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut fac = client(&service).await?;
    let lift = asset(&mut fac, "lobby", pb::AssetCategory::Elevator).await?;
    let reading = |value: i64| pb::RecordMeterReadingRequest {
        asset_id: lift.asset_id.clone(),
        meter: "hours".into(),
        value,
    };
    fac.record_meter_reading(reading(100)).await?;

    // Another reading of 1000 is being stored (its row lock held) when a reading of 500 arrives.
    let pool = service.database.admin_pool().await?;
    let mut other = pool.begin().await?;
    sqlx::query("SELECT 1 FROM facilities.assets WHERE asset_id = $1::uuid FOR UPDATE")
        .bind(&lift.asset_id)
        .execute(&mut *other)
        .await?;
    let racing = tokio::spawn({
        let mut fac = fac.clone();
        let request = reading(500);
        async move { fac.record_meter_reading(request).await }
    });
    let mut waiting = 0i64;
    for _ in 0..100 {
        waiting = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND query LIKE '%assets%'",
        )
        .fetch_one(&pool)
        .await?;
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, 1, "the reading of 500 waits for the row");
    sqlx::query("UPDATE facilities.assets SET meter_hours = 1000 WHERE asset_id = $1::uuid")
        .bind(&lift.asset_id)
        .execute(&mut *other)
        .await?;
    other.commit().await?;

    let refused = racing.await?.expect_err("500 after 1000 goes backwards");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("value") && refused.message().contains("1000"),
        "{}",
        refused.message()
    );
    let stored = fac
        .get_asset(pb::GetAssetRequest {
            asset_id: lift.asset_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(stored.meter_hours, 1000);
    // One after the other, the same reading is refused as well.
    let backwards = fac
        .record_meter_reading(reading(500))
        .await
        .expect_err("meters only grow");
    assert_eq!(backwards.code(), Code::InvalidArgument);
    service.shutdown().await
}

/// Room-nights lost count the nights a room was out of order, also when it then went out of
/// service before returning; out-of-service nights do not count.
#[tokio::test]
async fn out_of_order_nights_survive_a_switch_to_out_of_service() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut fac = client(&service).await?;
    let set = |status: &str, reason: &str| pb::SetRoomStatusRequest {
        property_id: "madrid".into(),
        room: "412".into(),
        status: status.into(),
        reason: reason.into(),
        expected_return: None,
    };
    fac.set_room_status(set("out_of_order", "ceiling collapsed"))
        .await?;
    // Out of order since three days ago, at noon UTC (three midnights crossed by now).
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE facilities.room_status SET since = date_trunc('day', now()) - interval '3 days' + interval '12 hours' \
         WHERE property_id = 'madrid' AND room = '412'",
    )
    .execute(&pool)
    .await?;
    fac.set_room_status(set("out_of_service", "waiting for paint"))
        .await?;
    sqlx::query(
        "UPDATE facilities.room_status SET since = since - interval '2 days' WHERE property_id = 'madrid' AND room = '412'",
    )
    .execute(&pool)
    .await?;
    fac.set_room_status(set("in_service", "")).await?;
    let stretches: Vec<(String,)> = sqlx::query_as(
        "SELECT status FROM facilities.room_outages WHERE property_id = 'madrid' AND room = '412' ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        stretches,
        vec![
            ("out_of_order".to_string(),),
            ("out_of_service".to_string(),)
        ]
    );
    let now = chrono::Utc::now().timestamp();
    let kpis = fac
        .get_facilities_kpis(pb::GetFacilitiesKpisRequest {
            property_ids: vec!["madrid".into()],
            period: Some(guestloop_proto::common::v1::TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: now - 10 * 86_400,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: now + 60,
                    nanos: 0,
                }),
            }),
            skip_occupancy: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        kpis.room_nights_lost, 3,
        "the three nights out of order, none of the out-of-service ones"
    );
    service.shutdown().await
}

/// Everything a refused call must leave as it was: the rows of every table a facilities call
/// writes, with their versions, the events and the registered properties.
const FACILITIES_STATE: &str = "SELECT concat_ws(' | ', \
     (SELECT string_agg(asset_id || ':' || meter_hours || ':' || meter_cycles || ':' || replacement_flagged, ',' ORDER BY asset_id) FROM facilities.assets), \
     (SELECT string_agg(checklist_id || ':' || version || ':' || name || ':' || chain_id, ',' ORDER BY checklist_id, version) FROM facilities.checklists), \
     (SELECT string_agg(work_order_id || ':' || status || ':' || etag, ',' ORDER BY work_order_id) FROM facilities.work_orders), \
     (SELECT count(*) FROM facilities.work_order_history), \
     (SELECT string_agg(plan_id::text, ',' ORDER BY plan_id) FROM facilities.plans), \
     (SELECT string_agg(inspection_id || ':' || status, ',' ORDER BY inspection_id) FROM facilities.inspections), \
     (SELECT string_agg(property_id || ':' || room || ':' || status, ',' ORDER BY property_id, room) FROM facilities.room_status), \
     (SELECT count(*) FROM facilities.room_outages), \
     (SELECT string_agg(property_id || ':' || etag, ',' ORDER BY property_id) FROM facilities.engineering_settings), \
     (SELECT count(*) FROM facilities.outbox_events), \
     (SELECT string_agg(property_id || '=' || chain_id, ',' ORDER BY property_id) FROM facilities.property_chains))";

/// The status of a call that was meant to be refused.
fn refusal<T>(
    answer: Result<tonic::Response<T>, tonic::Status>,
    call: &str,
) -> anyhow::Result<tonic::Status> {
    match answer {
        Ok(_) => anyhow::bail!("{call} was answered"),
        Err(status) => Ok(status),
    }
}

/// A whole-chain token reaches every property of its own chain, never another chain's: the
/// first write at a property registers it under the writer's chain, and from then on callers of
/// another chain can neither write there nor see what is there (by id, in lists, in the KPIs),
/// and a complaint of another chain at that property opens no work order. Each refusal changes
/// nothing, and the owning chain still sees everything.
#[tokio::test]
async fn a_chain_wide_token_stays_in_its_chain() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let admin = |chain: &str| {
        let token = TokenBuilder::new(Role::ChainAdmin)
            .chain(chain)
            .scope(PropertyScope::all())
            .subject(&format!("admin-{chain}"))
            .mint();
        let service = &service;
        async move {
            anyhow::Ok(FacilitiesServiceClient::new(
                service.channel_with_token(&token?).await?,
            ))
        }
    };
    let mut nordic = admin("nordic").await?;
    let mut other = admin("other").await?;
    let foreign = |status: &tonic::Status| {
        status.code() == Code::PermissionDenied && status.message().contains("another chain")
    };
    let new_asset = |property: &str| pb::CreateAssetRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        asset: Some(pb::Asset {
            property_id: property.into(),
            name: "Fan coil unit 101".into(),
            category: pb::AssetCategory::Hvac as i32,
            location: Some(pb::Location {
                room: "101".into(),
                ..Default::default()
            }),
            install_date: "2019-06-01".into(),
            expected_life_years: 10,
            ..Default::default()
        }),
    };
    let new_order = |property: &str, asset_id: &str| pb::CreateWorkOrderRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        work_order: Some(pb::WorkOrder {
            property_id: property.into(),
            asset_id: asset_id.into(),
            room: "101".into(),
            title: "Fan coil rattles".into(),
            priority: pb::Priority::GuestImpacting as i32,
            ..Default::default()
        }),
    };
    let checklist = |fac: &mut Facilities| {
        let mut fac = fac.clone();
        async move {
            anyhow::Ok(
                fac.publish_checklist(pb::PublishChecklistRequest {
                    request_id: String::new(),
                    checklist_id: String::new(),
                    name: "Room check".into(),
                    items: vec![pb::ChecklistItem {
                        code: "ac".into(),
                        text: "Air conditioning cools".into(),
                        kind: pb::ItemKind::PassFail as i32,
                        tag: "operation".into(),
                        ..Default::default()
                    }],
                })
                .await?
                .into_inner()
                .checklist_id,
            )
        }
    };
    let new_plan = |property: &str, checklist_id: &str| pb::CreatePlanRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        plan: Some(pb::Plan {
            property_id: property.into(),
            checklist_id: checklist_id.into(),
            frequency: pb::Frequency::Daily as i32,
            start_date: chrono::Utc::now().date_naive().to_string(),
            due_time: "00:00".into(),
            time_zone: "UTC".into(),
            ..Default::default()
        }),
    };
    let schedule = |property: &str| pb::ScheduleInspectionsRequest {
        property_id: property.into(),
        until: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
    };
    let room_status = |property: &str, status: &str| pb::SetRoomStatusRequest {
        property_id: property.into(),
        room: "101".into(),
        status: status.into(),
        reason: "fan coil rattles".into(),
        expected_return: None,
    };
    let settings = |property: &str| pb::UpdateEngineeringSettingsRequest {
        settings: Some(pb::EngineeringSettings {
            property_id: property.into(),
            time_zone: "Europe/Oslo".into(),
            always_open: true,
            ..Default::default()
        }),
        etag: String::new(),
    };
    let kpis = |properties: &[&str]| pb::GetFacilitiesKpisRequest {
        property_ids: properties.iter().map(|p| p.to_string()).collect(),
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
        skip_occupancy: true,
        ..Default::default()
    };

    // Chain "nordic" works at oslo first: oslo is nordic's.
    let unit = nordic.create_asset(new_asset("oslo")).await?.into_inner();
    let order = nordic
        .create_work_order(new_order("oslo", &unit.asset_id))
        .await?
        .into_inner();
    let nordic_checklist = checklist(&mut nordic).await?;
    nordic
        .create_plan(new_plan("oslo", &nordic_checklist))
        .await?;
    let scheduled = nordic
        .schedule_inspections(schedule("oslo"))
        .await?
        .into_inner();
    assert!(scheduled.created >= 1, "{scheduled:?}");
    nordic
        .set_room_status(room_status("oslo", "out_of_order"))
        .await?;
    nordic.update_engineering_settings(settings("oslo")).await?;
    let inspection = nordic
        .list_inspections(pb::ListInspectionsRequest {
            property_id: "oslo".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .inspections
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no inspection scheduled at oslo"))?;
    let other_checklist = checklist(&mut other).await?;

    let pool = service.database.admin_pool().await?;
    let state = || {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, String>(FACILITIES_STATE)
                    .fetch_one(&pool)
                    .await?,
            )
        }
    };
    let before = state().await?;
    assert!(before.contains("oslo=nordic"), "{before}");
    let unchanged = |after: String| {
        let state = &state;
        let before = &before;
        async move {
            let now = state().await?;
            anyhow::ensure!(now == *before, "{after} changed {before} into {now}");
            anyhow::Ok(())
        }
    };

    // (a) Chain "other", whole-chain too, writes nothing at oslo.
    let writes = [
        (
            "CreateAsset",
            refusal(other.create_asset(new_asset("oslo")).await, "CreateAsset")?,
        ),
        (
            "CreateWorkOrder",
            refusal(
                other.create_work_order(new_order("oslo", "")).await,
                "CreateWorkOrder",
            )?,
        ),
        (
            "CreatePlan",
            refusal(
                other.create_plan(new_plan("oslo", &other_checklist)).await,
                "CreatePlan",
            )?,
        ),
        (
            "ScheduleInspections",
            refusal(
                other.schedule_inspections(schedule("oslo")).await,
                "ScheduleInspections",
            )?,
        ),
        (
            "SetRoomStatus",
            refusal(
                other
                    .set_room_status(room_status("oslo", "in_service"))
                    .await,
                "SetRoomStatus",
            )?,
        ),
        (
            "UpdateEngineeringSettings",
            refusal(
                other.update_engineering_settings(settings("oslo")).await,
                "UpdateEngineeringSettings",
            )?,
        ),
    ];
    for (call, status) in writes {
        assert!(foreign(&status), "{call}: {status:?}");
        unchanged(format!("refused {call}")).await?;
    }

    // (b) Records of oslo loaded by id are not found, to read or to change.
    let by_id = [
        (
            "GetWorkOrder",
            refusal(
                other
                    .get_work_order(pb::GetWorkOrderRequest {
                        work_order_id: order.work_order_id.clone(),
                    })
                    .await,
                "GetWorkOrder",
            )?,
        ),
        (
            "TransitionWorkOrder",
            refusal(
                other
                    .transition_work_order(pb::TransitionWorkOrderRequest {
                        work_order_id: order.work_order_id.clone(),
                        action: pb::WorkOrderAction::Cancel as i32,
                        reason: "not ours".into(),
                        ..Default::default()
                    })
                    .await,
                "TransitionWorkOrder",
            )?,
        ),
        (
            "GetAsset",
            refusal(
                other
                    .get_asset(pb::GetAssetRequest {
                        asset_id: unit.asset_id.clone(),
                    })
                    .await,
                "GetAsset",
            )?,
        ),
        (
            "RecordMeterReading",
            refusal(
                other
                    .record_meter_reading(pb::RecordMeterReadingRequest {
                        asset_id: unit.asset_id.clone(),
                        meter: "hours".into(),
                        value: 100,
                    })
                    .await,
                "RecordMeterReading",
            )?,
        ),
        (
            "RecordInspection",
            refusal(
                other
                    .record_inspection(pb::RecordInspectionRequest {
                        inspection_id: inspection.inspection_id.clone(),
                        results: vec![pb::ItemResult {
                            code: "ac".into(),
                            passed: false,
                            ..Default::default()
                        }],
                    })
                    .await,
                "RecordInspection",
            )?,
        ),
    ];
    for (call, status) in by_id {
        assert_eq!(status.code(), Code::NotFound, "{call}: {status:?}");
        unchanged(format!("refused {call}")).await?;
    }

    // (c) Lists: without a property nothing of oslo shows; naming oslo is refused.
    let work_orders = other
        .list_work_orders(pb::ListWorkOrdersRequest::default())
        .await?
        .into_inner()
        .work_orders;
    assert!(work_orders.is_empty(), "{work_orders:?}");
    let assets = other
        .list_assets(pb::ListAssetsRequest::default())
        .await?
        .into_inner()
        .assets;
    assert!(assets.is_empty(), "{assets:?}");
    let inspections = other
        .list_inspections(pb::ListInspectionsRequest::default())
        .await?
        .into_inner()
        .inspections;
    assert!(inspections.is_empty(), "{inspections:?}");
    let lists = [
        (
            "ListWorkOrders",
            refusal(
                other
                    .list_work_orders(pb::ListWorkOrdersRequest {
                        property_id: "oslo".into(),
                        ..Default::default()
                    })
                    .await,
                "ListWorkOrders",
            )?,
        ),
        (
            "ListAssets",
            refusal(
                other
                    .list_assets(pb::ListAssetsRequest {
                        property_id: "oslo".into(),
                        ..Default::default()
                    })
                    .await,
                "ListAssets",
            )?,
        ),
        (
            "ListInspections",
            refusal(
                other
                    .list_inspections(pb::ListInspectionsRequest {
                        property_id: "oslo".into(),
                        ..Default::default()
                    })
                    .await,
                "ListInspections",
            )?,
        ),
        (
            "ListRoomStatuses",
            refusal(
                other
                    .list_room_statuses(pb::ListRoomStatusesRequest {
                        property_id: "oslo".into(),
                        ..Default::default()
                    })
                    .await,
                "ListRoomStatuses",
            )?,
        ),
        (
            "GetEngineeringSettings",
            refusal(
                other
                    .get_engineering_settings(pb::GetEngineeringSettingsRequest {
                        property_id: "oslo".into(),
                    })
                    .await,
                "GetEngineeringSettings",
            )?,
        ),
    ];
    for (call, status) in lists {
        assert!(foreign(&status), "{call}: {status:?}");
        unchanged(format!("refused {call}")).await?;
    }

    // (d) KPIs and the forecast for oslo are refused, alone or beside the chain's own property.
    let bergen = other.create_asset(new_asset("bergen")).await?.into_inner();
    other
        .create_work_order(new_order("bergen", &bergen.asset_id))
        .await?;
    let own = other
        .get_facilities_kpis(kpis(&["bergen"]))
        .await?
        .into_inner();
    assert_eq!(own.work_orders, 1, "{own:?}");
    let before = state().await?;
    assert!(before.contains("bergen=other"), "{before}");
    let unchanged = |after: String| {
        let state = &state;
        let before = &before;
        async move {
            let now = state().await?;
            anyhow::ensure!(now == *before, "{after} changed {before} into {now}");
            anyhow::Ok(())
        }
    };
    let aggregates = [
        (
            "GetFacilitiesKpis",
            refusal(
                other.get_facilities_kpis(kpis(&["oslo"])).await,
                "GetFacilitiesKpis",
            )?,
        ),
        (
            "GetFacilitiesKpis with the chain's own property",
            refusal(
                other.get_facilities_kpis(kpis(&["bergen", "oslo"])).await,
                "GetFacilitiesKpis",
            )?,
        ),
        (
            "GetReplacementForecast",
            refusal(
                other
                    .get_replacement_forecast(pb::GetReplacementForecastRequest {
                        property_ids: vec!["oslo".into()],
                        ..Default::default()
                    })
                    .await,
                "GetReplacementForecast",
            )?,
        ),
    ];
    for (call, status) in aggregates {
        assert!(foreign(&status), "{call}: {status:?}");
        unchanged(format!("refused {call}")).await?;
    }
    // The same holds the other way round: bergen is the other chain's now.
    let status = refusal(
        nordic.create_asset(new_asset("bergen")).await,
        "CreateAsset",
    )?;
    assert!(foreign(&status), "{status:?}");
    unchanged("refused CreateAsset at bergen".into()).await?;

    // A complaint event of another chain at oslo opens nothing (and is not refused, so the
    // feed goes on); one of nordic's opens its work order; one at a property no chain holds
    // registers it under the event's chain.
    let s = test_settings();
    let facilities_pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&service.database.url, "facilities", &s.database)?,
        &s.database,
    );
    let complaint_event = |chain: &str, property: &str| {
        let complaint = cpb::Complaint {
            complaint_id: uuid::Uuid::new_v4().to_string(),
            property_id: property.into(),
            stay: Some(cpb::StayContext {
                room: "101".into(),
                ..Default::default()
            }),
            category: "heating_ac".into(),
            cause: cpb::Cause::Facility as i32,
            urgency: cpb::Urgency::High as i32,
            ..Default::default()
        };
        let event = guestloop_proto::common::v1::Event {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "complaints.complaint.filed".into(),
            subject: format!("complaints/{}", complaint.complaint_id),
            chain_id: chain.into(),
            property_id: property.into(),
            payload: Some(prost_types::Any {
                type_url: "type.googleapis.com/guestloop.complaints.v1.ComplaintChanged".into(),
                value: cpb::ComplaintChanged {
                    complaint: Some(complaint.clone()),
                    ..Default::default()
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        };
        (complaint.complaint_id, event)
    };
    let handle = |event: guestloop_proto::common::v1::Event| {
        let pool = facilities_pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            guestloop_facilities::consumer::ComplaintEvents
                .handle(&mut tx, &event)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    };
    let opened = |complaint_id: String| {
        let pool = facilities_pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, Option<String>>(
                    "SELECT max(chain_id) FROM work_orders WHERE source = 2 AND source_id = $1",
                )
                .bind(complaint_id)
                .fetch_one(&pool)
                .await?,
            )
        }
    };
    let (complaint, event) = complaint_event("other", "oslo");
    handle(event).await?;
    assert_eq!(
        opened(complaint).await?,
        None,
        "another chain's complaint at oslo"
    );
    unchanged("a complaint event of another chain at oslo".into()).await?;
    let (complaint, event) = complaint_event("nordic", "oslo");
    handle(event).await?;
    assert_eq!(opened(complaint).await?.as_deref(), Some("nordic"));
    let (complaint, event) = complaint_event("other", "tromso");
    handle(event).await?;
    assert_eq!(opened(complaint).await?.as_deref(), Some("other"));
    assert!(state().await?.contains("tromso=other"));

    // Nordic still sees and changes everything at oslo.
    let seen = nordic
        .get_work_order(pb::GetWorkOrderRequest {
            work_order_id: order.work_order_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(seen.etag, order.etag, "no refused call changed it");
    let listed = nordic
        .list_work_orders(pb::ListWorkOrdersRequest {
            property_id: "oslo".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .work_orders;
    assert_eq!(listed.len(), 2, "its own and the one its complaint opened");
    assert!(listed
        .iter()
        .any(|o| o.work_order_id == order.work_order_id));
    let assets = nordic
        .list_assets(pb::ListAssetsRequest {
            property_id: "oslo".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .assets;
    assert_eq!(
        assets
            .iter()
            .map(|a| a.asset_id.as_str())
            .collect::<Vec<_>>(),
        vec![unit.asset_id.as_str()]
    );
    let rooms = nordic
        .list_room_statuses(pb::ListRoomStatusesRequest {
            property_id: "oslo".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .rooms;
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        rooms[0].status, "out_of_order",
        "the refused change left it out"
    );
    let engineering = nordic
        .get_engineering_settings(pb::GetEngineeringSettingsRequest {
            property_id: "oslo".into(),
        })
        .await?
        .into_inner();
    assert_eq!(engineering.time_zone, "Europe/Oslo");
    let figures = nordic
        .get_facilities_kpis(kpis(&["oslo"]))
        .await?
        .into_inner();
    assert_eq!(figures.work_orders, 2, "{figures:?}");
    nordic
        .get_replacement_forecast(pb::GetReplacementForecastRequest {
            property_ids: vec!["oslo".into()],
            ..Default::default()
        })
        .await?;
    nordic
        .record_inspection(pb::RecordInspectionRequest {
            inspection_id: inspection.inspection_id.clone(),
            results: vec![pb::ItemResult {
                code: "ac".into(),
                passed: true,
                ..Default::default()
            }],
        })
        .await?;
    act(
        &mut nordic,
        &order.work_order_id,
        pb::WorkOrderAction::Start,
        "",
    )
    .await?;
    service.shutdown().await
}

/// A client with a whole-chain admin token of `chain`.
async fn chain_admin(service: &TestService, chain: &str) -> anyhow::Result<Facilities> {
    let token = TokenBuilder::new(Role::ChainAdmin)
        .chain(chain)
        .scope(PropertyScope::all())
        .subject(&format!("admin-{chain}"))
        .mint()?;
    Ok(FacilitiesServiceClient::new(
        service.channel_with_token(&token).await?,
    ))
}

/// The one item of the room checks below.
fn air_conditioning() -> pb::ChecklistItem {
    pb::ChecklistItem {
        code: "ac".into(),
        text: "Air conditioning cools".into(),
        kind: pb::ItemKind::PassFail as i32,
        tag: "operation".into(),
        ..Default::default()
    }
}

/// Publishes a room check: a new one (`checklist_id` empty) or the next version of one.
fn room_check(checklist_id: &str, name: &str) -> pb::PublishChecklistRequest {
    pb::PublishChecklistRequest {
        request_id: String::new(),
        checklist_id: checklist_id.into(),
        name: name.into(),
        items: vec![air_conditioning()],
    }
}

/// A daily plan from today, due at midnight UTC.
fn daily_plan(property: &str, checklist_id: &str) -> pb::CreatePlanRequest {
    pb::CreatePlanRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        plan: Some(pb::Plan {
            property_id: property.into(),
            checklist_id: checklist_id.into(),
            frequency: pb::Frequency::Daily as i32,
            start_date: chrono::Utc::now().date_naive().to_string(),
            due_time: "00:00".into(),
            time_zone: "UTC".into(),
            ..Default::default()
        }),
    }
}

/// Schedules `property`'s inspections due within `days` days from now.
async fn schedule_days(
    fac: &mut Facilities,
    property: &str,
    days: i64,
) -> anyhow::Result<pb::ScheduleInspectionsResponse> {
    Ok(fac
        .schedule_inspections(pb::ScheduleInspectionsRequest {
            property_id: property.into(),
            until: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + days * 86_400 + 3600,
                nanos: 0,
            }),
        })
        .await?
        .into_inner())
}

/// The inspections of `plan_id` at `property`, in due order.
async fn inspections_of(
    fac: &mut Facilities,
    property: &str,
    plan_id: &str,
) -> anyhow::Result<Vec<pb::Inspection>> {
    Ok(fac
        .list_inspections(pb::ListInspectionsRequest {
            property_id: property.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .inspections
        .into_iter()
        .filter(|i| i.plan_id == plan_id)
        .collect())
}

/// Records the first of `inspections` that is still due, its one item passed.
async fn record_first_due(
    fac: &mut Facilities,
    inspections: &[pb::Inspection],
) -> anyhow::Result<pb::Inspection> {
    let due = inspections
        .iter()
        .find(|i| i.status == "due")
        .ok_or_else(|| anyhow::anyhow!("nothing due in {inspections:?}"))?;
    Ok(fac
        .record_inspection(pb::RecordInspectionRequest {
            inspection_id: due.inspection_id.clone(),
            results: vec![pb::ItemResult {
                code: "ac".into(),
                passed: true,
                ..Default::default()
            }],
        })
        .await?
        .into_inner())
}

/// Each version of checklist `id`, with its name and chain, in order.
async fn checklist_versions(
    pool: &sqlx::PgPool,
    id: &str,
) -> anyhow::Result<Vec<(i32, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT version, name, chain_id FROM facilities.checklists WHERE checklist_id = $1::uuid ORDER BY version",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// A write that names no property is INVALID_ARGUMENT on its field, whatever the token's scope,
/// and registers nothing.
#[tokio::test]
async fn a_write_without_a_property_names_the_field() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    for mut fac in [
        chain_admin(&service, guestloop_testkit::TEST_CHAIN).await?,
        client(&service).await?,
    ] {
        let room = fac
            .set_room_status(pb::SetRoomStatusRequest {
                property_id: String::new(),
                room: "301".into(),
                status: "out_of_order".into(),
                reason: "leak".into(),
                expected_return: None,
            })
            .await
            .expect_err("no property");
        assert_eq!(room.code(), Code::InvalidArgument, "{room:?}");
        assert_eq!(violated_fields(&room), vec!["property_id"]);
        let checklist = fac
            .publish_checklist(room_check("", "Room check"))
            .await?
            .into_inner();
        let plan = fac
            .create_plan(daily_plan("", &checklist.checklist_id))
            .await
            .expect_err("no property");
        assert_eq!(plan.code(), Code::InvalidArgument, "{plan:?}");
        assert_eq!(violated_fields(&plan), vec!["plan.property_id"]);
        let schedule = fac
            .schedule_inspections(pb::ScheduleInspectionsRequest {
                property_id: String::new(),
                until: None,
            })
            .await
            .expect_err("no property");
        assert_eq!(schedule.code(), Code::InvalidArgument, "{schedule:?}");
        assert_eq!(violated_fields(&schedule), vec!["property_id"]);
    }
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM facilities.property_chains WHERE property_id = '') \
              + (SELECT count(*) FROM facilities.room_status) + (SELECT count(*) FROM facilities.plans)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(written, 0);
    Ok(())
}

/// A checklist is revised only by a token covering every property that plans on it. Madrid's
/// manager publishes a checklist, plans on it and revises it; once the chain's admin plans on it at
/// Vienna, the manager's revision is PERMISSION_DENIED naming Vienna and adds no version, so
/// Vienna's inspections keep their items. The chain's admin still revises it.
#[tokio::test]
async fn a_token_for_some_properties_revises_no_checklist_planned_beyond_them() -> anyhow::Result<()>
{
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut madrid = client(&service).await?;
    let mut admin = chain_admin(&service, guestloop_testkit::TEST_CHAIN).await?;
    let pool = service.database.admin_pool().await?;

    let id = madrid
        .publish_checklist(room_check("", "Room check"))
        .await?
        .into_inner()
        .checklist_id;
    madrid.create_plan(daily_plan("madrid", &id)).await?;
    let revised = madrid
        .publish_checklist(room_check(&id, "Room check (madrid)"))
        .await?
        .into_inner();
    assert_eq!(revised.version, 2, "its own property's checklist");

    admin.create_plan(daily_plan("vienna", &id)).await?;
    let refused = madrid
        .publish_checklist(pb::PublishChecklistRequest {
            request_id: String::new(),
            checklist_id: id.clone(),
            name: "Room check (no safety)".into(),
            items: vec![pb::ChecklistItem {
                code: "tv".into(),
                text: "Television works".into(),
                kind: pb::ItemKind::PassFail as i32,
                tag: "operation".into(),
                ..Default::default()
            }],
        })
        .await
        .expect_err("vienna plans on it");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("property vienna"),
        "{}",
        refused.message()
    );
    let versions = checklist_versions(&pool, &id).await?;
    assert_eq!(
        versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![1, 2],
        "the refusal adds no version"
    );

    // Vienna inspects with version 2, the last one allowed.
    assert!(schedule_days(&mut admin, "vienna", 0).await?.created >= 1);
    let due: i32 = sqlx::query_scalar(
        "SELECT max(i.checklist_version) FROM facilities.inspections i \
         JOIN facilities.plans p ON p.plan_id = i.plan_id WHERE p.property_id = 'vienna'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(due, 2);

    let by_admin = admin
        .publish_checklist(room_check(&id, "Room check (chain)"))
        .await?
        .into_inner();
    assert_eq!(by_admin.version, 3, "a whole-chain token revises it");
    Ok(())
}

/// A checklist belongs to the chain that published it: to another chain, even one with a
/// whole-chain admin token, it is NOT_FOUND as an unknown checklist is, to revise or to plan on,
/// and each refusal changes nothing. Each chain's own checklists, plans and inspections work as
/// before. Services reach every checklist and leave its chain as it is.
#[tokio::test]
async fn a_checklist_stays_in_its_chain() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let mut nordic = chain_admin(&service, "nordic").await?;
    let mut other = chain_admin(&service, "other").await?;
    let pool = service.database.admin_pool().await?;

    // Nordic publishes a checklist, plans on it at oslo and schedules; other publishes its own.
    let mine = nordic
        .publish_checklist(room_check("", "Room check"))
        .await?
        .into_inner();
    let id = mine.checklist_id.clone();
    let first_plan = nordic
        .create_plan(daily_plan("oslo", &id))
        .await?
        .into_inner();
    assert!(schedule_days(&mut nordic, "oslo", 0).await?.created >= 1);
    let theirs = other
        .publish_checklist(room_check("", "Their room check"))
        .await?
        .into_inner();
    assert_eq!(
        checklist_versions(&pool, &id).await?,
        vec![(1, "Room check".to_string(), "nordic".to_string())]
    );
    assert_eq!(
        checklist_versions(&pool, &theirs.checklist_id).await?,
        vec![(1, "Their room check".to_string(), "other".to_string())]
    );

    let state = || {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, String>(FACILITIES_STATE)
                    .fetch_one(&pool)
                    .await?,
            )
        }
    };
    let before = state().await?;
    let unchanged = |after: &str| {
        let state = &state;
        let before = &before;
        let after = after.to_string();
        async move {
            let now = state().await?;
            anyhow::ensure!(now == *before, "{after} changed {before} into {now}");
            anyhow::Ok(())
        }
    };

    // Another chain's checklist answers as one that does not exist.
    let unknown = uuid::Uuid::new_v4().to_string();
    let not_there = refusal(
        other
            .publish_checklist(room_check(&unknown, "Room check"))
            .await,
        "PublishChecklist of an unknown checklist",
    )?;
    assert_eq!(not_there.code(), Code::NotFound, "{not_there:?}");
    unchanged("publishing an unknown checklist").await?;
    let revise = refusal(
        other
            .publish_checklist(room_check(&id, "Room check (other)"))
            .await,
        "PublishChecklist of nordic's checklist",
    )?;
    assert_eq!(revise.code(), Code::NotFound, "{revise:?}");
    assert_eq!(
        revise.message().replace(&id, "<id>"),
        not_there.message().replace(&unknown, "<id>"),
        "the same answer as for an unknown checklist"
    );
    unchanged("other revising nordic's checklist").await?;
    let plan = refusal(
        other.create_plan(daily_plan("bergen", &id)).await,
        "CreatePlan on nordic's checklist",
    )?;
    assert_eq!(plan.code(), Code::NotFound, "{plan:?}");
    unchanged("other planning on nordic's checklist").await?;
    // And the other way round.
    let revise = refusal(
        nordic
            .publish_checklist(room_check(&theirs.checklist_id, "Room check (nordic)"))
            .await,
        "PublishChecklist of other's checklist",
    )?;
    assert_eq!(revise.code(), Code::NotFound, "{revise:?}");
    let plan = refusal(
        nordic
            .create_plan(daily_plan("oslo", &theirs.checklist_id))
            .await,
        "CreatePlan on other's checklist",
    )?;
    assert_eq!(plan.code(), Code::NotFound, "{plan:?}");
    unchanged("nordic reaching other's checklist").await?;
    assert_eq!(
        checklist_versions(&pool, &id).await?,
        vec![(1, "Room check".to_string(), "nordic".to_string())],
        "nordic's latest version is still its own"
    );

    // Other's own checklist works for other: revise, plan, schedule, record.
    let revised = other
        .publish_checklist(room_check(&theirs.checklist_id, "Their room check"))
        .await?
        .into_inner();
    assert_eq!(revised.version, 2);
    let their_plan = other
        .create_plan(daily_plan("bergen", &theirs.checklist_id))
        .await?
        .into_inner();
    assert!(schedule_days(&mut other, "bergen", 0).await?.created >= 1);
    let their_inspections = inspections_of(&mut other, "bergen", &their_plan.plan_id).await?;
    assert!(
        their_inspections.iter().all(|i| i.checklist_version == 2),
        "{their_inspections:?}"
    );
    record_first_due(&mut other, &their_inspections).await?;

    // Nordic's plans and inspections work as before; its next version is 2, and a plan made now
    // inspects with it.
    let v2 = nordic
        .publish_checklist(room_check(&id, "Room check"))
        .await?
        .into_inner();
    assert_eq!(v2.version, 2);
    let second_plan = nordic
        .create_plan(daily_plan("oslo", &id))
        .await?
        .into_inner();
    assert!(schedule_days(&mut nordic, "oslo", 0).await?.created >= 1);
    let first = inspections_of(&mut nordic, "oslo", &first_plan.plan_id).await?;
    assert_eq!(first.first().map(|i| i.checklist_version), Some(1));
    let done = record_first_due(&mut nordic, &first).await?;
    assert_eq!(done.status, "done");
    let second = inspections_of(&mut nordic, "oslo", &second_plan.plan_id).await?;
    assert!(
        !second.is_empty() && second.iter().all(|i| i.checklist_version == 2),
        "{second:?}"
    );
    record_first_due(&mut nordic, &second).await?;

    // A service may revise any checklist; the checklist stays its chain's.
    let token = TokenBuilder::new(Role::Service)
        .chain("*")
        .scope(PropertyScope::all())
        .subject("service:gateway")
        .mint()?;
    let mut service_client =
        FacilitiesServiceClient::new(service.channel_with_token(&token).await?);
    let v3 = service_client
        .publish_checklist(room_check(&id, "Room check"))
        .await?
        .into_inner();
    assert_eq!(v3.version, 3);
    let chains: Vec<String> = checklist_versions(&pool, &id)
        .await?
        .into_iter()
        .map(|(_, _, chain)| chain)
        .collect();
    assert_eq!(chains, vec!["nordic"; 3]);
    let revise = refusal(
        other.publish_checklist(room_check(&id, "Room check")).await,
        "PublishChecklist of nordic's checklist after a service's version",
    )?;
    assert_eq!(revise.code(), Code::NotFound, "{revise:?}");
    service.shutdown().await
}

/// The items column of a checklist row: each item, protobuf-encoded, in hex.
fn stored_items(items: &[pb::ChecklistItem]) -> serde_json::Value {
    serde_json::Value::Array(
        items
            .iter()
            .map(|item| {
                serde_json::Value::String(
                    item.encode_to_vec()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// Checklists published before they carried a chain: on upgrade, one that plans of a single
/// registered chain use becomes that chain's; one that several chains plan on, or none, stays
/// shared. A shared checklist is usable by every chain until one revises it: that chain owns it
/// from then on (other chains can no longer revise it or plan on it), and the other chains'
/// plans keep inspecting with its last shared version.
#[tokio::test]
async fn checklists_from_before_chains_go_to_the_chain_that_uses_them() -> anyhow::Result<()> {
    let settings = test_settings();
    let database = guestloop_testkit::fresh_database().await?;
    // The schema as it was before checklists carried a chain.
    let pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&database.url, "facilities", &settings.database)?,
        &settings.database,
    );
    guestloop_kit::db::ensure_schema(&pool, "facilities").await?;
    let before_chains = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            guestloop_facilities::DEFINITION
                .migrator
                .iter()
                .filter(|m| m.version < 107)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    guestloop_kit::db::migrate(&pool, &before_chains).await?;
    sqlx::query(
        "INSERT INTO property_chains (property_id, chain_id) VALUES ('oslo', 'nordic'), ('bergen', 'other')",
    )
    .execute(&pool)
    .await?;
    let single = uuid::Uuid::new_v4();
    let several = uuid::Uuid::new_v4();
    let unused = uuid::Uuid::new_v4();
    let unregistered = uuid::Uuid::new_v4();
    for (id, version) in [
        (single, 1),
        (single, 2),
        (several, 1),
        (unused, 1),
        (unregistered, 1),
    ] {
        sqlx::query("INSERT INTO checklists (checklist_id, version, name, items) VALUES ($1, $2, 'Room check', $3)")
            .bind(id)
            .bind(version)
            .bind(stored_items(&[air_conditioning()]))
            .execute(&pool)
            .await?;
    }
    let mut plans = std::collections::HashMap::new();
    for (property, checklist) in [
        ("oslo", single),
        ("oslo", several),
        ("bergen", several),
        ("oslo", unregistered),
        ("tromso", unregistered),
    ] {
        let plan = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO plans (plan_id, property_id, checklist_id, frequency, start_date, due_time, time_zone) \
             VALUES ($1, $2, $3, 1, current_date, '00:00', 'UTC')",
        )
        .bind(plan)
        .bind(property)
        .bind(checklist)
        .execute(&pool)
        .await?;
        plans.insert((property, checklist), plan.to_string());
    }
    pool.close().await;

    // The upgrade.
    let service = spawn_service_on(
        &guestloop_facilities::DEFINITION,
        settings,
        Some(database),
        0,
    )
    .await?;
    let pool = service.database.admin_pool().await?;
    let chains = |id: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                checklist_versions(&pool, &id.to_string())
                    .await?
                    .into_iter()
                    .map(|(version, _, chain)| (version, chain))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let owned = |chain: &str, versions: &[i32]| {
        versions
            .iter()
            .map(|v| (*v, chain.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(chains(single).await?, owned("nordic", &[1, 2]));
    assert_eq!(
        chains(several).await?,
        owned("", &[1]),
        "planned on by two chains"
    );
    assert_eq!(chains(unused).await?, owned("", &[1]), "planned on by none");
    assert_eq!(
        chains(unregistered).await?,
        owned("nordic", &[1]),
        "a plan at a property no chain holds does not count"
    );

    let mut nordic = chain_admin(&service, "nordic").await?;
    let mut other = chain_admin(&service, "other").await?;

    // The checklist only nordic used is nordic's.
    let status = refusal(
        other
            .publish_checklist(room_check(&single.to_string(), "Room check"))
            .await,
        "PublishChecklist of nordic's checklist",
    )?;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = refusal(
        other
            .create_plan(daily_plan("bergen", &single.to_string()))
            .await,
        "CreatePlan on nordic's checklist",
    )?;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(chains(single).await?, owned("nordic", &[1, 2]));

    // Shared checklists are usable by both.
    nordic
        .create_plan(daily_plan("oslo", &unused.to_string()))
        .await?;
    other
        .create_plan(daily_plan("bergen", &unused.to_string()))
        .await?;
    assert!(schedule_days(&mut nordic, "oslo", 0).await?.created >= 1);
    assert!(schedule_days(&mut other, "bergen", 0).await?.created >= 1);
    let theirs = plans[&("bergen", several)].clone();
    let ours = plans[&("oslo", several)].clone();
    let their_first = inspections_of(&mut other, "bergen", &theirs).await?;
    assert_eq!(their_first.first().map(|i| i.checklist_version), Some(1));

    // Other revises the shared checklist first and takes it over: nordic can no longer revise
    // it or plan on it.
    let revised = other
        .publish_checklist(room_check(&several.to_string(), "Room check (other)"))
        .await?
        .into_inner();
    assert_eq!(revised.version, 2);
    assert_eq!(
        chains(several).await?,
        vec![(1, String::new()), (2, "other".to_string())],
        "the earlier version stays shared"
    );
    let status = refusal(
        nordic
            .publish_checklist(room_check(&several.to_string(), "Room check (nordic)"))
            .await,
        "PublishChecklist of a checklist other took over",
    )?;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = refusal(
        nordic
            .create_plan(daily_plan("oslo", &several.to_string()))
            .await,
        "CreatePlan on a checklist other took over",
    )?;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(chains(several).await?.len(), 2, "nordic added no version");

    // Nordic's plan on it keeps the last shared version; other's inspects with its new one.
    schedule_days(&mut nordic, "oslo", 3).await?;
    schedule_days(&mut other, "bergen", 3).await?;
    let ours_now = inspections_of(&mut nordic, "oslo", &ours).await?;
    assert!(
        ours_now.len() >= 4 && ours_now.iter().all(|i| i.checklist_version == 1),
        "{ours_now:?}"
    );
    let done = record_first_due(&mut nordic, &ours_now).await?;
    assert_eq!(done.checklist_version, 1);
    let theirs_now = inspections_of(&mut other, "bergen", &theirs).await?;
    assert_eq!(
        theirs_now.last().map(|i| i.checklist_version),
        Some(2),
        "{theirs_now:?}"
    );
    let later: Vec<pb::Inspection> = theirs_now
        .into_iter()
        .filter(|i| i.checklist_version == 2)
        .collect();
    record_first_due(&mut other, &later).await?;

    // Nordic's own checklist from before keeps working for nordic.
    let next = nordic
        .publish_checklist(room_check(&single.to_string(), "Room check"))
        .await?
        .into_inner();
    assert_eq!(next.version, 3);
    assert_eq!(chains(single).await?, owned("nordic", &[1, 2, 3]));
    let single_plan = inspections_of(&mut nordic, "oslo", &plans[&("oslo", single)]).await?;
    record_first_due(&mut nordic, &single_plan).await?;
    service.shutdown().await
}

/// Asserts that `answer` is an INVALID_ARGUMENT naming `field`, in its details and its message.
fn assert_refused<T: std::fmt::Debug>(
    answer: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
    case: &str,
) -> anyhow::Result<()> {
    let status = refusal(answer, case)?;
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    assert_eq!(violated_fields(&status), vec![field.to_string()], "{case}");
    assert!(status.message().contains(field), "{case}: {status:?}");
    Ok(())
}

/// Free text from clients never holds a payment card number and has a length limit: a work
/// order's title and description, a room's out-of-order reason and an inspection's text answer
/// and note with a card number in them, or too long, are refused as INVALID_ARGUMENT naming the
/// field, and nothing is written; the same requests with acceptable text go through, trimmed.
#[tokio::test]
async fn card_numbers_and_overlong_free_text_are_refused_and_nothing_is_written(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut fac = client(&service).await?;
    let card = "guest paid with 4111 1111 1111 1111, exp 12/29";

    // Work orders.
    let order = |title: &str, description: &str| pb::CreateWorkOrderRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        work_order: Some(pb::WorkOrder {
            property_id: "madrid".into(),
            room: "301".into(),
            title: title.into(),
            description: description.into(),
            priority: pb::Priority::Normal as i32,
            ..Default::default()
        }),
    };
    for (request, field, case) in [
        (order(card, ""), "work_order.title", "card in title"),
        (
            order("Shower leaks", card),
            "work_order.description",
            "card in description",
        ),
        (
            order(&"t".repeat(201), ""),
            "work_order.title",
            "title too long",
        ),
        (
            order("Shower leaks", &"d".repeat(4001)),
            "work_order.description",
            "description too long",
        ),
        (order("   ", ""), "work_order.title", "blank title"),
    ] {
        assert_refused(fac.create_work_order(request).await, field, case)?;
    }
    let listed = fac
        .list_work_orders(pb::ListWorkOrdersRequest {
            property_id: "madrid".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed.work_orders.is_empty(), "{listed:?}");

    // Room statuses.
    let out = |reason: &str| pb::SetRoomStatusRequest {
        property_id: "madrid".into(),
        room: "301".into(),
        status: "out_of_order".into(),
        reason: reason.into(),
        expected_return: None,
    };
    assert_refused(
        fac.set_room_status(out(card)).await,
        "reason",
        "card in reason",
    )?;
    assert_refused(
        fac.set_room_status(out(&"r".repeat(2001))).await,
        "reason",
        "reason too long",
    )?;
    let rooms = fac
        .list_room_statuses(pb::ListRoomStatusesRequest {
            property_id: "madrid".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(rooms.rooms.is_empty(), "{rooms:?}");

    // Inspection answers.
    let checklist = fac
        .publish_checklist(pb::PublishChecklistRequest {
            request_id: String::new(),
            checklist_id: String::new(),
            name: "Room walk".into(),
            items: vec![pb::ChecklistItem {
                code: "remarks".into(),
                text: "Anything to report".into(),
                kind: pb::ItemKind::Text as i32,
                tag: "operation".into(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner();
    let plan = fac
        .create_plan(daily_plan("madrid", &checklist.checklist_id))
        .await?
        .into_inner();
    schedule_days(&mut fac, "madrid", 0).await?;
    let inspection = inspections_of(&mut fac, "madrid", &plan.plan_id)
        .await?
        .into_iter()
        .find(|i| i.status == "due")
        .ok_or_else(|| anyhow::anyhow!("no inspection due"))?;
    let answer = |text: &str, note: &str| pb::RecordInspectionRequest {
        inspection_id: inspection.inspection_id.clone(),
        results: vec![pb::ItemResult {
            code: "remarks".into(),
            text: text.into(),
            note: note.into(),
            ..Default::default()
        }],
    };
    assert_refused(
        fac.record_inspection(answer(card, "")).await,
        "results[0].text",
        "card in answer",
    )?;
    assert_refused(
        fac.record_inspection(answer("all fine", card)).await,
        "results[0].note",
        "card in note",
    )?;
    assert_refused(
        fac.record_inspection(answer("all fine", &"n".repeat(2001)))
            .await,
        "results[0].note",
        "note too long",
    )?;
    let still = inspections_of(&mut fac, "madrid", &plan.plan_id).await?;
    assert!(
        still
            .iter()
            .any(|i| i.inspection_id == inspection.inspection_id && i.status == "due"),
        "{still:?}"
    );

    // Nothing of the refused requests reached the database.
    let (orders, statuses, done, events): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM facilities.work_orders), \
         (SELECT count(*) FROM facilities.room_status), \
         (SELECT count(*) FROM facilities.inspections WHERE status <> 'due'), \
         (SELECT count(*) FROM facilities.outbox_events)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((orders, statuses, done, events), (0, 0, 0, 0));

    // Acceptable text goes through, trimmed.
    let created = fac
        .create_work_order(order("  Shower leaks  ", "water under the door, room 301"))
        .await?
        .into_inner();
    assert_eq!(created.title, "Shower leaks");
    let room = fac
        .set_room_status(out(" leak in the bathroom "))
        .await?
        .into_inner();
    assert_eq!(room.reason, "leak in the bathroom");
    let recorded = fac
        .record_inspection(answer(" all fine ", "checked 14.30, ref 123456789"))
        .await?
        .into_inner();
    assert_eq!(recorded.status, "done");
    assert_eq!(
        recorded
            .results
            .iter()
            .map(|r| (r.text.as_str(), r.note.as_str()))
            .collect::<Vec<_>>(),
        vec![("all fine", "checked 14.30, ref 123456789")]
    );
    let stored: (String, String) = sqlx::query_as(
        "SELECT title, (SELECT reason FROM facilities.room_status WHERE property_id = 'madrid' AND room = '301') \
         FROM facilities.work_orders WHERE work_order_id = $1::uuid",
    )
    .bind(&created.work_order_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        stored,
        (
            "Shower leaks".to_string(),
            "leak in the bathroom".to_string()
        )
    );
    service.shutdown().await
}

/// Dates PostgreSQL or a hotel cannot mean, amounts without a currency or beyond any repair,
/// limits that are not numbers and two results for one item are each refused naming the field,
/// and nothing is written.
#[tokio::test]
async fn nonsense_dates_amounts_limits_and_doubled_results_are_refused() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut fac = client(&service).await?;
    let new_asset =
        |install: &str, warranty: &str, cost: Option<(&str, i64)>| pb::CreateAssetRequest {
            request_id: String::new(),
            asset: Some(pb::Asset {
                property_id: "madrid".into(),
                name: "Boiler".into(),
                category: pb::AssetCategory::Hvac as i32,
                install_date: install.into(),
                warranty_end: warranty.into(),
                replacement_cost: cost.map(|(code, minor_units)| {
                    guestloop_proto::common::v1::Money {
                        currency_code: code.into(),
                        minor_units,
                    }
                }),
                ..Default::default()
            }),
        };
    for (request, field) in [
        (new_asset("-5000-01-01", "", None), "asset.install_date"),
        (new_asset("+2019-06-01", "", None), "asset.install_date"),
        (new_asset("9999-01-01", "", None), "asset.install_date"),
        (
            new_asset("2019-06-01", "2018-06-01", None),
            "asset.warranty_end",
        ),
        (
            new_asset("2019-06-01", "", Some(("", 500_000))),
            "asset.replacement_cost.currency_code",
        ),
        (
            new_asset("2019-06-01", "", Some(("EUR", i64::MAX))),
            "asset.replacement_cost.minor_units",
        ),
    ] {
        let refused = fac.create_asset(request).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), vec![field]);
    }
    let stored = fac
        .create_asset(new_asset(
            "2019-06-01",
            "2024-06-01",
            Some(("eur", 500_000)),
        ))
        .await?
        .into_inner();
    assert_eq!(
        stored.replacement_cost.map(|m| m.currency_code),
        Some("EUR".to_string())
    );

    let mut plan = daily_plan("madrid", "");
    let checklist = fac
        .publish_checklist(room_check("", "Room check"))
        .await?
        .into_inner();
    for start in ["0001-01-01", "-5000-01-01", "2999-01-01"] {
        if let Some(p) = plan.plan.as_mut() {
            p.checklist_id = checklist.checklist_id.clone();
            p.start_date = start.into();
        }
        let refused = fac.create_plan(plan.clone()).await.expect_err(start);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), vec!["plan.start_date"]);
    }

    // Published twice with one request id, a checklist is published once.
    let once = pb::PublishChecklistRequest {
        request_id: "fridge-check-1".into(),
        ..room_check("", "Minibar check")
    };
    let first = fac.publish_checklist(once.clone()).await?.into_inner();
    let again = fac.publish_checklist(once.clone()).await?.into_inner();
    assert_eq!(
        (again.checklist_id.as_str(), again.version),
        (first.checklist_id.as_str(), 1)
    );
    let checklists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM facilities.checklists WHERE name = 'Minibar check'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(checklists, 1);

    let mut not_a_number = room_check("", "Fridge check");
    not_a_number.items = vec![pb::ChecklistItem {
        code: "fridge".into(),
        text: "Fridge temperature (°C)".into(),
        kind: pb::ItemKind::Numeric as i32,
        tag: "hygiene".into(),
        min: f64::NAN,
        max: 5.0,
        ..Default::default()
    }];
    let refused = fac
        .publish_checklist(not_a_number)
        .await
        .expect_err("NaN limit");
    assert_eq!(violated_fields(&refused), vec!["items[0].min"]);

    // An inspection of the room check, its one item answered twice (passed and failed).
    fac.create_plan(daily_plan("madrid", &checklist.checklist_id))
        .await?;
    schedule_days(&mut fac, "madrid", 0).await?;
    let due = fac
        .list_inspections(pb::ListInspectionsRequest {
            property_id: "madrid".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .inspections;
    let inspection = due.first().ok_or_else(|| anyhow::anyhow!("nothing due"))?;
    let doubled = fac
        .record_inspection(pb::RecordInspectionRequest {
            inspection_id: inspection.inspection_id.clone(),
            results: vec![
                pb::ItemResult {
                    code: "ac".into(),
                    passed: true,
                    ..Default::default()
                },
                pb::ItemResult {
                    code: "ac".into(),
                    passed: false,
                    ..Default::default()
                },
            ],
        })
        .await
        .expect_err("one item twice");
    assert_eq!(doubled.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&doubled), vec!["results[1].code"]);
    let written: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM facilities.assets), (SELECT count(*) FROM facilities.work_orders), \
                (SELECT count(*) FROM facilities.inspections WHERE status = 'done')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        written,
        (1, 0, 0),
        "one valid asset; no work order, nothing recorded"
    );
    service.shutdown().await
}

/// Two first changes of a room at once (out of order, out of service) take turns: whichever
/// comes second closes the other's stretch, so no stretch is lost. An expected return in the
/// past, too far ahead or for a room in service is refused.
#[tokio::test]
async fn first_changes_of_a_room_at_once_lose_no_stretch() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let fac = client(&service).await?;
    let set = |room: String, status: &'static str, expected_return: Option<i64>| {
        let mut fac = fac.clone();
        async move {
            fac.set_room_status(pb::SetRoomStatusRequest {
                property_id: "madrid".into(),
                room,
                status: status.into(),
                reason: if status == "in_service" { "" } else { "leak" }.into(),
                expected_return: expected_return.map(|s| prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + s,
                    nanos: 0,
                }),
            })
            .await
        }
    };
    let rooms: Vec<String> = (0..8).map(|n| format!("7{n:02}")).collect();
    let mut racing = Vec::new();
    for room in &rooms {
        racing.push(tokio::spawn(set(room.clone(), "out_of_order", None)));
        racing.push(tokio::spawn(set(room.clone(), "out_of_service", None)));
    }
    for change in racing {
        change.await??;
    }
    let stretches: i64 =
        sqlx::query_scalar("SELECT count(*) FROM facilities.room_outages WHERE room = ANY($1)")
            .bind(&rooms)
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        stretches, 8,
        "each room's first stretch closed by its second change"
    );

    for (status, seconds) in [
        ("out_of_order", -3600),
        ("out_of_order", 400 * 86_400),
        ("in_service", 3600),
    ] {
        let refused = set("801".into(), status, Some(seconds))
            .await
            .expect_err("expected return");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), vec!["expected_return"]);
    }
    let back = set("801".into(), "out_of_order", Some(2 * 86_400))
        .await?
        .into_inner();
    assert!(back.expected_return.is_some());
    service.shutdown().await
}

/// Inspection compliance counts the inspections whose outcome is known: done, or a day (the
/// grace) past due. One due tomorrow, or due today and not done yet, is neither on time nor late.
#[tokio::test]
async fn inspection_compliance_leaves_out_what_is_not_due_yet() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_facilities::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut fac = client(&service).await?;
    let checklist = fac
        .publish_checklist(room_check("", "Room check"))
        .await?
        .into_inner();
    let today = chrono::Utc::now().date_naive();
    let mut plan = daily_plan("madrid", &checklist.checklist_id);
    if let Some(p) = plan.plan.as_mut() {
        p.start_date = (today - chrono::Days::new(5)).to_string();
    }
    fac.create_plan(plan).await?;
    let scheduled = schedule_days(&mut fac, "madrid", 3).await?;
    assert_eq!(scheduled.created, 9, "five days back to three ahead");
    // Five days ago: done two hours after due. Four days ago: done three days late. The rest
    // are not done.
    sqlx::query(
        "UPDATE facilities.inspections SET status = 'done', \
         done_at = due_at + CASE WHEN (due_at AT TIME ZONE 'UTC')::date = $1 THEN interval '2 hours' ELSE interval '3 days' END \
         WHERE (due_at AT TIME ZONE 'UTC')::date IN ($1, $2)",
    )
    .bind(today - chrono::Days::new(5))
    .bind(today - chrono::Days::new(4))
    .execute(&pool)
    .await?;
    let at = |date: chrono::NaiveDate| prost_types::Timestamp {
        seconds: date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp(),
        nanos: 0,
    };
    // Two reactive work orders, one cancelled (reported by mistake): it counts in no figure.
    for title in ["Dripping tap", "Tap reported twice"] {
        let order = fac
            .create_work_order(pb::CreateWorkOrderRequest {
                request_id: String::new(),
                work_order: Some(pb::WorkOrder {
                    property_id: "madrid".into(),
                    title: title.into(),
                    priority: pb::Priority::Normal as i32,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        if title.ends_with("twice") {
            act(
                &mut fac,
                &order.work_order_id,
                pb::WorkOrderAction::Cancel,
                "a duplicate",
            )
            .await?;
        }
    }
    let kpis = fac
        .get_facilities_kpis(pb::GetFacilitiesKpisRequest {
            property_ids: vec!["madrid".into(), "madrid".into()],
            period: Some(guestloop_proto::common::v1::TimeRange {
                start_time: Some(at(today - chrono::Days::new(10))),
                end_time: Some(at(today + chrono::Days::new(5))),
            }),
            daily: true,
            time_zone: "UTC".into(),
            skip_occupancy: true,
        })
        .await?
        .into_inner();
    // Known: five, four, three, two days ago and yesterday (its day of grace is over).
    assert_eq!(
        (
            kpis.inspections_due,
            kpis.inspections_on_time,
            kpis.inspections_done
        ),
        (5, 1, 2)
    );
    assert_eq!(kpis.inspection_compliance, Some(0.2));
    assert_eq!((kpis.work_orders, kpis.reactive), (1, 1));
    assert_eq!(
        kpis.by_property
            .iter()
            .map(|p| (p.property_id.as_str(), p.work_orders))
            .collect::<Vec<_>>(),
        vec![("madrid", 1)],
        "a property named twice is counted once"
    );
    assert_eq!(kpis.days.iter().map(|d| d.inspections_due).sum::<i64>(), 5);
    service.shutdown().await
}
