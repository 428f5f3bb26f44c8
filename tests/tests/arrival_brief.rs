//! The arrival brief over gRPC with every backend running: a guest's profile, open complaint, the
//! room's work order and out-of-order status, and care tasks arrive joined in one answer; with
//! facilities stopped the brief still answers and names the missing part; with CRM stopped there
//! is no guest list, and the gateway says so instead of returning an empty brief.

use guestloop_kit::auth::Role;
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_proto::gateway::v1 as pb;
use guestloop_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use guestloop_testkit::{spawn_service_on, test_settings, TokenBuilder};
use tonic::Code;

const DATE: &str = "2031-06-10";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_brief_joins_every_backend_and_names_what_is_missing() -> anyhow::Result<()> {
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
    let complaints_service = spawn_service_on(
        &guestloop_complaints::DEFINITION,
        settings.clone(),
        None,
        ports[0],
    )
    .await?;
    let crm_service =
        spawn_service_on(&guestloop_crm::DEFINITION, settings.clone(), None, ports[1]).await?;
    let facilities_service = spawn_service_on(
        &guestloop_facilities::DEFINITION,
        settings.clone(),
        None,
        ports[2],
    )
    .await?;
    let gateway = spawn_service_on(
        &guestloop_gateway::DEFINITION,
        settings.clone(),
        None,
        ports[3],
    )
    .await?;

    let admin = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut crm_client = CrmServiceClient::new(crm_service.channel_with_token(&admin).await?);
    let mut facilities_client =
        FacilitiesServiceClient::new(facilities_service.channel_with_token(&admin).await?);
    let mut complaints_client =
        ComplaintsServiceClient::new(complaints_service.channel_with_token(&admin).await?);

    // Two guests: a VIP arriving into a room with a broken air conditioner, and a guest in house
    // with an open noise complaint and a birthday during the stay.
    let mut ids = Vec::new();
    for (given, birthday) in [("Vera", ""), ("Ben", "1990-06-11")] {
        let g = crm_client
            .create_guest(crm::CreateGuestRequest {
                request_id: format!("brief-{given}"),
                guest: Some(crm::Guest {
                    given_name: given.into(),
                    family_name: "Brief".into(),
                    birthday: birthday.into(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        ids.push(g.guest_id);
    }
    crm_client
        .set_strategic_tier(crm::SetStrategicTierRequest {
            guest_id: ids[0].clone(),
            strategic: true,
            reason: "owner's guest".into(),
        })
        .await?;
    crm_client
        .add_preference(crm::AddPreferenceRequest {
            guest_id: ids[0].clone(),
            preference: Some(crm::Preference {
                group: "room".into(),
                value: "feather pillows".into(),
                polarity: crm::Polarity::Dislike as i32,
                ..Default::default()
            }),
        })
        .await?;
    let stay = |reservation: &str, guest: &str, room: &str, arrival: &str, status| crm::Stay {
        property_id: "brief-p".into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest.into(),
        arrival_date: arrival.into(),
        departure_date: "2031-06-14".into(),
        room: room.into(),
        status,
        ..Default::default()
    };
    crm_client
        .upsert_stays(crm::UpsertStaysRequest {
            stays: vec![
                stay("R-V", &ids[0], "808", DATE, crm::StayStatus::Booked as i32),
                stay(
                    "R-B",
                    &ids[1],
                    "312",
                    "2031-06-08",
                    crm::StayStatus::InHouse as i32,
                ),
            ],
        })
        .await?;
    let generated = crm_client
        .generate_care_tasks(crm::GenerateCareTasksRequest {
            property_id: "brief-p".into(),
            date: DATE.into(),
        })
        .await?
        .into_inner();
    assert_eq!(generated.created, 2, "a strategic arrival and a birthday");
    let complaint = complaints_client
        .create_complaint(complaints::CreateComplaintRequest {
            request_id: "brief-noise".into(),
            complaint: Some(complaints::Complaint {
                property_id: "brief-p".into(),
                guest: Some(complaints::GuestRef {
                    guest_id: ids[1].clone(),
                    ..Default::default()
                }),
                category: "noise".into(),
                description: "Construction noise from 7 am".into(),
                channel: complaints::Channel::FrontDesk as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let order = facilities_client
        .create_work_order(facilities::CreateWorkOrderRequest {
            request_id: "brief-ac".into(),
            work_order: Some(facilities::WorkOrder {
                property_id: "brief-p".into(),
                room: "808".into(),
                title: "Air conditioner not cooling".into(),
                priority: facilities::Priority::GuestImpacting as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    facilities_client
        .set_room_status(facilities::SetRoomStatusRequest {
            property_id: "brief-p".into(),
            room: "808".into(),
            status: "out_of_order".into(),
            reason: "air conditioner".into(),
            expected_return: None,
        })
        .await?;

    let front_desk = TokenBuilder::new(Role::Agent)
        .properties(&["brief-p"])
        .department("front_office")
        .mint()?;
    let mut client = GatewayServiceClient::new(gateway.channel_with_token(&front_desk).await?);
    let request = || pb::GetArrivalBriefRequest {
        property_id: "brief-p".into(),
        date: DATE.into(),
    };
    let brief = client.get_arrival_brief(request()).await?.into_inner();
    assert!(brief.missing.is_empty(), "{:?}", brief.missing);
    assert_eq!((brief.arriving, brief.in_house), (1, 1));
    let vera = &brief.entries[0];
    assert_eq!(
        vera.arrival
            .as_ref()
            .and_then(|a| a.guest.as_ref())
            .map(|g| g.guest_id.as_str()),
        Some(ids[0].as_str()),
        "arriving guests come first"
    );
    assert_eq!(
        vera.room_work_orders
            .iter()
            .map(|w| w.work_order_id.as_str())
            .collect::<Vec<_>>(),
        vec![order.work_order_id.as_str()]
    );
    assert_eq!(
        vera.room_status.as_ref().map(|s| s.status.as_str()),
        Some("out_of_order")
    );
    assert_eq!(
        vera.alerts,
        vec![
            "ROOM_UNAVAILABLE",
            "ROOM_WORK_ORDER",
            "STRATEGIC",
            "DISLIKE"
        ]
    );
    assert_eq!(vera.care_tasks.len(), 1);
    let ben = &brief.entries[1];
    assert_eq!(
        ben.open_complaints
            .iter()
            .map(|c| c.complaint_id.as_str())
            .collect::<Vec<_>>(),
        vec![complaint.complaint_id.as_str()]
    );
    assert!(ben.room_status.is_none() && ben.room_work_orders.is_empty());
    assert_eq!(ben.alerts, vec!["OPEN_COMPLAINT", "BIRTHDAY"]);

    // Bad input and scope.
    let bad = client
        .get_arrival_brief(pb::GetArrivalBriefRequest {
            property_id: "brief-p".into(),
            date: "10.06.2031".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(bad, Some(Code::InvalidArgument));
    let foreign = client
        .get_arrival_brief(pb::GetArrivalBriefRequest {
            property_id: "other-p".into(),
            date: DATE.into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(foreign, Some(Code::PermissionDenied));

    // Facilities stopped: the brief answers without room facts and says so.
    facilities_service.shutdown().await?;
    let partial = client.get_arrival_brief(request()).await?.into_inner();
    assert_eq!(partial.entries.len(), 2);
    assert!(partial.entries[0].room_status.is_none());
    assert!(
        partial.missing.iter().any(|m| m.starts_with("facilities")),
        "{:?}",
        partial.missing
    );
    assert!(!partial.entries[0]
        .alerts
        .contains(&"ROOM_UNAVAILABLE".to_string()));

    // CRM stopped: no guest list, so no brief — an explicit UNAVAILABLE, not an empty one.
    crm_service.shutdown().await?;
    let refused = client.get_arrival_brief(request()).await.err();
    assert_eq!(refused.as_ref().map(|s| s.code()), Some(Code::Unavailable));
    assert!(refused.is_some_and(|s| s.message().contains("crm")));

    gateway.shutdown().await?;
    complaints_service.shutdown().await
}
