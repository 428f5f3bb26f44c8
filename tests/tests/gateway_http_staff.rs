//! The gateway's HTTP API for staff apps, guests' points history and BI event exports: complaint
//! actions and the work queue, work orders and their actions, inspections, the ledger, and the
//! event log paged by position within the caller's chain. Refusals are problem documents with
//! the status a client can act on.

use guestloop_kit::auth::Role;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_testkit::http::call;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};
use serde_json::Value;

const PROPERTY: &str = "oslo";

fn json(body: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_guests_and_bi_work_through_http() -> anyhow::Result<()> {
    let ports: Vec<u16> = (0..4)
        .map(|_| guestloop_kit::ports::free_port())
        .collect::<Result<_, _>>()?;
    let mut settings = test_settings();
    for (name, port) in [
        ("complaints", ports[0]),
        ("crm", ports[1]),
        ("facilities", ports[2]),
        ("gateway", ports[3]),
    ] {
        settings
            .endpoints
            .insert(name.into(), format!("http://127.0.0.1:{port}"));
    }
    settings
        .endpoints
        .insert("audit".into(), "http://127.0.0.1:9".into());
    let mut running = Vec::new();
    for (definition, port) in [
        &guestloop_complaints::DEFINITION,
        &guestloop_crm::DEFINITION,
        &guestloop_facilities::DEFINITION,
        &guestloop_gateway::DEFINITION,
    ]
    .into_iter()
    .zip(&ports)
    {
        running.push(spawn_service_on(definition, settings.clone(), None, *port).await?);
    }
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let state = guestloop_gateway::http::HttpState::from_settings(&settings)?;
    let (http, _task) =
        guestloop_gateway::http::serve(([127, 0, 0, 1], 0).into(), state, stop_rx).await?;

    let agent = TokenBuilder::new(Role::Agent)
        .properties(&[PROPERTY])
        .subject("agent-ola")
        .mint()?;
    let manager = TokenBuilder::new(Role::GeneralManager)
        .properties(&[PROPERTY])
        .mint()?;
    let quality = TokenBuilder::new(Role::ChainQualityManager).mint()?;

    // A complaint filed over gRPC, then worked from the staff app.
    let mut complaints_client =
        ComplaintsServiceClient::new(running[0].channel_with_token(&agent).await?);
    let filed = complaints_client
        .create_complaint(complaints::CreateComplaintRequest {
            request_id: "http-staff-1".into(),
            complaint: Some(complaints::Complaint {
                property_id: PROPERTY.into(),
                guest: Some(complaints::GuestRef {
                    guest_id: "guest-oslo".into(),
                    ..Default::default()
                }),
                channel: complaints::Channel::FrontDesk as i32,
                category: "noise".into(),
                urgency: complaints::Urgency::High as i32,
                description: "Loud party next door".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let id = filed.complaint_id.clone();
    let (status, _, body) = call(http, "GET", "/v1/work-queue", Some(&agent), None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)?["complaints"][0]["complaint_id"], id.as_str());

    let path = format!("/v1/complaints/{id}/actions");
    let (status, _, body) = call(
        http,
        "POST",
        &path,
        Some(&agent),
        Some(r#"{"action":"acknowledge"}"#),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)?["status"], "acknowledged");
    for (action, expected) in [
        (r#"{"action":"guest_responded"}"#, 422),
        (r#"{"action":"dance"}"#, 400),
        (
            r#"{"action":"resolve","etag":"0191c2d4-0000-7000-8000-000000000000"}"#,
            409,
        ),
        (r#"{"reason":"no action"}"#, 400),
        // A NUL cannot be stored: refused as bad input, not a server error.
        (r#"{"action":"cancel","reason":"a\u0000b"}"#, 400),
    ] {
        let (status, content_type, body) =
            call(http, "POST", &path, Some(&agent), Some(action)).await?;
        assert_eq!(status, expected, "{action}: {body}");
        assert!(content_type.starts_with("application/problem+json"));
    }
    let guest = TokenBuilder::new(Role::Guest).guest("guest-oslo").mint()?;
    let (status, _, _) = call(
        http,
        "POST",
        &path,
        Some(&guest),
        Some(r#"{"action":"resolve"}"#),
    )
    .await?;
    assert_eq!(status, 403, "guests do not act on complaints");
    // The complaint as read carries its etag: an action sent with it applies once, and the same
    // etag sent again is stale (409).
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/complaints/{id}"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let read = json(&body)?;
    assert_eq!(read["status"], "acknowledged");
    let etag = read["etag"].as_str().unwrap_or_default().to_string();
    assert!(!etag.is_empty(), "{body}");
    let resolve = format!(r#"{{"action":"resolve","etag":"{etag}"}}"#);
    let (status, _, body) = call(http, "POST", &path, Some(&agent), Some(&resolve)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)?["status"], "resolved");
    assert_ne!(
        json(&body)?["etag"],
        etag.as_str(),
        "a change makes a new etag"
    );
    let stale = format!(r#"{{"action":"reopen","reason":"still noisy","etag":"{etag}"}}"#);
    let (status, _, body) = call(http, "POST", &path, Some(&agent), Some(&stale)).await?;
    assert_eq!(status, 409, "{body}");
    for (token, missing_id, expected) in [
        (&agent, "0191c2d4-0000-7000-8000-000000000000", 404),
        (&agent, "not-a-uuid", 400),
        (&guest, id.as_str(), 403),
    ] {
        let (status, _, body) = call(
            http,
            "GET",
            &format!("/v1/complaints/{missing_id}"),
            Some(token),
            None,
        )
        .await?;
        assert_eq!(status, expected, "{missing_id}: {body}");
    }

    // Work orders: listed, started, completed with costs; an impossible step refused.
    let mut facilities_client =
        FacilitiesServiceClient::new(running[2].channel_with_token(&manager).await?);
    let order = facilities_client
        .create_work_order(facilities::CreateWorkOrderRequest {
            request_id: "http-wo-1".into(),
            work_order: Some(facilities::WorkOrder {
                property_id: PROPERTY.into(),
                room: "512".into(),
                title: "Shower drains slowly".into(),
                priority: facilities::Priority::Normal as i32,
                source: facilities::WorkOrderSource::StaffReport as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/properties/{PROPERTY}/work-orders?room=512"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let listed = json(&body)?;
    assert_eq!(
        listed["work_orders"][0]["work_order_id"],
        order.work_order_id.as_str()
    );
    assert_eq!(listed["work_orders"][0]["room"], "512");
    assert_eq!(listed["next_page_token"], "", "one page holds them");
    // With a second order and a page of one, the token leads to the next page.
    facilities_client
        .create_work_order(facilities::CreateWorkOrderRequest {
            request_id: "http-wo-2".into(),
            work_order: Some(facilities::WorkOrder {
                property_id: PROPERTY.into(),
                room: "512".into(),
                title: "Reading lamp flickers".into(),
                priority: facilities::Priority::Low as i32,
                source: facilities::WorkOrderSource::StaffReport as i32,
                ..Default::default()
            }),
        })
        .await?;
    // page_size as on every list; `limit`, its former name, still works on the second page.
    let page = |token: String| {
        let agent = agent.clone();
        async move {
            let size = if token.is_empty() {
                "page_size"
            } else {
                "limit"
            };
            let (status, _, body) = call(
                http,
                "GET",
                &format!(
                    "/v1/properties/{PROPERTY}/work-orders?room=512&{size}=1&page_token={token}"
                ),
                Some(&agent),
                None,
            )
            .await?;
            assert_eq!(status, 200, "{body}");
            anyhow::Ok(json(&body)?)
        }
    };
    let first = page(String::new()).await?;
    let token = first["next_page_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty());
    let second = page(token).await?;
    assert_eq!(second["next_page_token"], "", "two orders, two pages");
    assert_ne!(
        first["work_orders"][0]["work_order_id"],
        second["work_orders"][0]["work_order_id"]
    );
    let wo_path = format!("/v1/work-orders/{}/actions", order.work_order_id);
    let (status, _, body) = call(
        http,
        "POST",
        &wo_path,
        Some(&agent),
        Some(r#"{"action":"verify"}"#),
    )
    .await?;
    assert_eq!(status, 422, "an open work order cannot be verified: {body}");
    for step in [
        r#"{"action":"start"}"#,
        r#"{"action":"complete","labour_minor":4500,"parts_minor":1200,"currency":"NOK"}"#,
    ] {
        let (status, _, body) = call(http, "POST", &wo_path, Some(&agent), Some(step)).await?;
        assert_eq!(status, 200, "{step}: {body}");
    }
    let done = facilities_client
        .get_work_order(facilities::GetWorkOrderRequest {
            work_order_id: order.work_order_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(done.status, "done");
    assert_eq!(done.labour_cost.map(|m| m.minor_units), Some(4500));
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/properties/bergen/work-orders",
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/properties/{PROPERTY}/work-orders?state=closed"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/properties/{PROPERTY}/inspections?overdue=true"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)?["inspections"].is_array());
    let (status, _, _) = call(
        http,
        "GET",
        &format!("/v1/properties/{PROPERTY}/inspections?limit=0"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 400);
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/properties/{PROPERTY}/inspections?page_size=501"),
        Some(&agent),
        None,
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("page_size"), "{body}");

    // A guest's points history.
    let admin = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut crm_client = CrmServiceClient::new(running[1].channel_with_token(&admin).await?);
    let profile = crm_client
        .create_guest(crm::CreateGuestRequest {
            request_id: "http-guest".into(),
            guest: Some(crm::Guest {
                given_name: "Kari".into(),
                family_name: "Nordmann".into(),
                email: "kari@example.no".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    for (n, points) in [(1, 500), (2, 250)] {
        crm_client
            .post_points(crm::PostPointsRequest {
                request_id: format!("http-bonus-{n}"),
                guest_id: profile.guest_id.clone(),
                kind: crm::EntryKind::Bonus as i32,
                points,
                debit: false,
                reason: "welcome".into(),
            })
            .await?;
    }
    let kari = TokenBuilder::new(Role::Guest)
        .guest(&profile.guest_id)
        .mint()?;
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/me/loyalty/history?page_size=1",
        Some(&kari),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let page = json(&body)?;
    assert_eq!(page["entries"][0]["kind"], "bonus");
    assert_eq!(page["entries"][0]["balance_after"], 500, "in posting order");
    let token = page["next_page_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty());
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/me/loyalty/history?page_size=1&page_token={token}"),
        Some(&kari),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)?["entries"][0]["balance_after"], 750);
    let (status, _, _) = call(http, "GET", "/v1/me/loyalty/history", Some(&agent), None).await?;
    assert_eq!(status, 403, "staff tokens have no own ledger");

    // BI: the complaints log of the caller's chain, paged by position.
    let other_chain = TokenBuilder::new(Role::Agent)
        .chain("chain-elsewhere")
        .properties(&["reykjavik"])
        .mint()?;
    ComplaintsServiceClient::new(running[0].channel_with_token(&other_chain).await?)
        .create_complaint(complaints::CreateComplaintRequest {
            request_id: "http-other-chain".into(),
            complaint: Some(complaints::Complaint {
                property_id: "reykjavik".into(),
                guest: Some(complaints::GuestRef {
                    guest_id: "guest-rey".into(),
                    ..Default::default()
                }),
                channel: complaints::Channel::Email as i32,
                category: "noise".into(),
                urgency: complaints::Urgency::Low as i32,
                description: "Another chain's complaint".into(),
                ..Default::default()
            }),
        })
        .await?;
    let mut after = 0i64;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (status, _, body) = call(
            http,
            "GET",
            &format!("/v1/events/complaints?after={after}&limit=2"),
            Some(&quality),
            None,
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        let page = json(&body)?;
        for event in page["events"].as_array().into_iter().flatten() {
            seen.push((
                event["event_type"].as_str().unwrap_or_default().to_string(),
                event["chain_id"].as_str().unwrap_or_default().to_string(),
            ));
            assert!(!event["payload_base64"]
                .as_str()
                .unwrap_or_default()
                .is_empty());
        }
        let next = page["next_after"].as_i64().unwrap_or(after);
        if next == after {
            break;
        }
        after = next;
    }
    assert!(
        seen.iter().any(|(t, _)| t == "complaints.complaint.filed"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, chain)| chain == "chain-test"),
        "only the caller's chain: {seen:?}"
    );
    let (status, _, _) = call(http, "GET", "/v1/events/payroll", Some(&quality), None).await?;
    assert_eq!(status, 404);
    let (status, _, _) = call(http, "GET", "/v1/events/complaints", Some(&agent), None).await?;
    assert_eq!(status, 403, "agents do not export logs");
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/events/complaints?limit=5000",
        Some(&quality),
        None,
    )
    .await?;
    assert_eq!(status, 400);

    for service in running.into_iter().rev() {
        service.shutdown().await?;
    }
    Ok(())
}
