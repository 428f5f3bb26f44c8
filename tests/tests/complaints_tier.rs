//! VIP priority on intake: while CRM is down complaints are accepted without a tier, and the
//! guest's tier (with the priority escalation) arrives once CRM answers; then intake asks CRM
//! again and escalates a strategic guest at once.

use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_testkit::{spawn_service_on, spawn_service_with, test_settings, TokenBuilder};

type Client = ComplaintsServiceClient<guestloop_kit::client::AuthedChannel>;

async fn file(client: &mut Client, guest_id: &str) -> anyhow::Result<pb::Complaint> {
    Ok(client
        .create_complaint(pb::CreateComplaintRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            complaint: Some(pb::Complaint {
                property_id: "p-1".into(),
                guest: Some(pb::GuestRef {
                    guest_id: guest_id.into(),
                    ..Default::default()
                }),
                channel: pb::Channel::FrontDesk as i32,
                category: "noise".into(),
                description: "Music from the bar until 2am".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner())
}

async fn get(client: &mut Client, id: &str) -> anyhow::Result<pb::Complaint> {
    Ok(client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.into(),
        })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_filed_while_crm_is_down_are_accepted_and_escalated_once_crm_answers(
) -> anyhow::Result<()> {
    let crm_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut settings = test_settings();
    settings
        .endpoints
        .insert("crm".into(), format!("http://127.0.0.1:{crm_port}"));
    let complaints =
        spawn_service_with(&guestloop_complaints::DEFINITION, settings.clone(), None).await?;
    let token = TokenBuilder::new(Role::Agent).properties(&["p-1"]).mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);

    // CRM is down: the first lookup fails, the next intakes do not even ask.
    let first = file(&mut agent, "g-strategic").await?;
    let second = file(&mut agent, "g-strategic").await?;
    for filed in [&first, &second] {
        assert_eq!(filed.guest_tier, "");
        assert_eq!(filed.escalation_count, 0);
        assert_eq!(filed.escalation_level, "agent");
    }

    // CRM comes up, and knows the guest as strategic.
    let crm_service =
        spawn_service_on(&guestloop_crm::DEFINITION, settings, None, crm_port).await?;
    let admin_token = TokenBuilder::new(Role::ChainAdmin).mint()?;
    let mut crm_client = CrmServiceClient::new(crm_service.channel_with_token(&admin_token).await?);
    crm_client
        .create_guest(crm::CreateGuestRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            guest: Some(crm::Guest {
                guest_id: "g-strategic".into(),
                given_name: "Stella".into(),
                family_name: "Strategic".into(),
                ..Default::default()
            }),
        })
        .await?;
    crm_client
        .set_strategic_tier(crm::SetStrategicTierRequest {
            guest_id: "g-strategic".into(),
            strategic: true,
            reason: "corporate account".into(),
        })
        .await?;

    // The tier worker enriches both complaints and escalates them for the priority guest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (
            get(&mut agent, &first.complaint_id).await?,
            get(&mut agent, &second.complaint_id).await?,
        );
        if [&a, &b]
            .iter()
            .all(|c| c.guest_tier == "strategic" && c.escalation_count == 1)
        {
            assert_ne!(a.escalation_level, "agent");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "complaints were not enriched: {:?} {:?}",
            (&a.guest_tier, a.escalation_count),
            (&b.guest_tier, b.escalation_count)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Lookups resume after their pause: intake now gets the tier from CRM and escalates at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let filed = file(&mut agent, "g-strategic").await?;
        if filed.guest_tier == "strategic" {
            assert_eq!(filed.escalation_count, 1);
            assert_ne!(filed.escalation_level, "agent");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "intake never asked CRM again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Another chain's complaint naming the same guest id learns nothing of this chain's guest:
    // no tier, no priority escalation.
    let elsewhere = TokenBuilder::new(Role::Agent)
        .chain("chain-elsewhere")
        .properties(&["q-1"])
        .mint()?;
    let mut stranger =
        ComplaintsServiceClient::new(complaints.channel_with_token(&elsewhere).await?);
    let filed = stranger
        .create_complaint(pb::CreateComplaintRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            complaint: Some(pb::Complaint {
                property_id: "q-1".into(),
                guest: Some(pb::GuestRef {
                    guest_id: "g-strategic".into(),
                    ..Default::default()
                }),
                channel: pb::Channel::FrontDesk as i32,
                category: "noise".into(),
                description: "Music from the bar until 2am".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(filed.guest_tier, "", "{filed:?}");
    assert_eq!(filed.escalation_count, 0);
    // And the tier worker, which asks for the complaints filed without a tier, leaves it so.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = stranger
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(later.guest_tier, "");
    Ok(())
}
