//! CRM end to end: a ledger that stays right under 64 concurrent clients, goodwill points from
//! complaint remedies exactly once even when the feed is replayed, role-aware reads, duplicates
//! and merge, export and erasure.

use std::sync::Arc;
use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_kit::events::Consumer;
use guestloop_proto::common::v1::event_feed_client::EventFeedClient;
use guestloop_proto::complaints::v1 as cpb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as pb;
use guestloop_testkit::crm::{self, create_guest as create, crm_as, Crm};
use guestloop_testkit::{
    spawn_service, spawn_service_with, test_settings, wait_for_lock, TestService, TokenBuilder,
};
use rand::Rng;
use tonic::Code;

/// A profile with contact details, a birthday and consent to profiling (customer value).
fn guest(given: &str, family: &str, email: &str, phone: &str) -> pb::Guest {
    pb::Guest {
        birthday: "1984-05-17".into(),
        consent: Some(pb::Consent {
            profiling: true,
            source: "front_desk".into(),
            ..Default::default()
        }),
        ..crm::guest(given, family, email, phone)
    }
}

/// The complaints service, then CRM following its feed.
async fn complaints_and_crm() -> anyhow::Result<(TestService, TestService)> {
    let complaints = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let mut settings = test_settings();
    settings
        .endpoints
        .insert("complaints".into(), complaints.url());
    let crm = spawn_service_with(&guestloop_crm::DEFINITION, settings, None).await?;
    Ok((complaints, crm))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_never_overdraw_and_apply_each_request_once() -> anyhow::Result<()> {
    let service = spawn_service_with(
        &guestloop_crm::DEFINITION,
        {
            let mut s = test_settings();
            s.database.max_connections = 24;
            s
        },
        None,
    )
    .await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut accounts = Vec::new();
    for i in 0..20 {
        let g = create(
            &mut admin,
            guest("Guest", &format!("N{i}"), &format!("n{i}@example.com"), ""),
        )
        .await?;
        admin
            .post_points(pb::PostPointsRequest {
                request_id: format!("seed-{i}"),
                guest_id: g.guest_id.clone(),
                kind: pb::EntryKind::Earn as i32,
                points: 1_000,
                debit: false,
                reason: "seed".into(),
            })
            .await?;
        accounts.push(g.guest_id);
    }
    let accounts = Arc::new(accounts);
    let mut tasks = Vec::new();
    for client_number in 0..64 {
        let accounts = accounts.clone();
        // 64 supervisors: each earns a few thousand points, within a person's daily limit.
        let mut client = crm_as(
            &service,
            TokenBuilder::new(Role::Supervisor).subject(&format!("supervisor-{client_number}")),
        )
        .await?;
        tasks.push(tokio::spawn(async move {
            let mut applied = 0u32;
            for op in 0..25 {
                let (account, redeem, points) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..accounts.len()),
                        rng.random_bool(0.7),
                        rng.random_range(1..400i64),
                    )
                };
                let request = pb::PostPointsRequest {
                    request_id: format!("c{client_number}-{op}"),
                    guest_id: accounts[account].clone(),
                    kind: if redeem {
                        pb::EntryKind::Redeem
                    } else {
                        pb::EntryKind::Earn
                    } as i32,
                    points,
                    debit: false,
                    reason: String::new(),
                };
                // Every request is sent twice, as a client retrying after a lost answer would.
                let first = client.post_points(request.clone()).await;
                let second = client.post_points(request).await;
                match (first, second) {
                    (Ok(a), Ok(b)) => {
                        anyhow::ensure!(
                            a.get_ref().entry_id == b.get_ref().entry_id,
                            "a retry applied twice"
                        );
                        applied += 1;
                    }
                    // Refused for lack of points; the retry may pass if an earn landed in between.
                    (Err(a), Ok(_)) if a.code() == Code::FailedPrecondition => applied += 1,
                    (Err(a), Err(b))
                        if a.code() == Code::FailedPrecondition
                            && b.code() == Code::FailedPrecondition => {}
                    (a, b) => anyhow::bail!("unexpected outcome {:?} / {:?}", a.err(), b.err()),
                }
            }
            anyhow::Ok(applied)
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await??;
    }
    let pool = service.database.admin_pool().await?;
    let broken: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.guest_id, a.balance, coalesce(sum(l.points), 0)::bigint FROM crm.loyalty_accounts a \
         LEFT JOIN crm.ledger l ON l.guest_id = a.guest_id GROUP BY a.guest_id, a.balance \
         HAVING a.balance <> coalesce(sum(l.points), 0) OR a.balance < 0",
    )
    .fetch_all(&pool)
    .await?;
    assert!(broken.is_empty(), "ledger and balance disagree: {broken:?}");
    let requests: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.ledger WHERE source LIKE 'request:chain-test:c%'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        requests,
        i64::from(applied),
        "each accepted request is in the ledger exactly once"
    );
    let negative_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.ledger WHERE balance_after < 0")
            .fetch_one(&pool)
            .await?;
    assert_eq!(negative_after, 0);
    service.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn goodwill_points_arrive_once_even_when_the_feed_is_replayed() -> anyhow::Result<()> {
    let (complaints, crm) = complaints_and_crm().await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let member = create(
        &mut admin,
        guest("Ines", "Duarte", "ines@example.com", "+351 912 345 678"),
    )
    .await?;

    let token = TokenBuilder::new(Role::Agent)
        .properties(&["lisbon"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let filed = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "gw-1".into(),
            complaint: Some(cpb::Complaint {
                property_id: "lisbon".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: member.guest_id.clone(),
                    ..Default::default()
                }),
                channel: cpb::Channel::App as i32,
                category: "wifi".into(),
                description: "no wifi in the room all evening".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    for request_id in ["pts-1", "pts-2"] {
        agent
            .propose_remedy(cpb::ProposeRemedyRequest {
                request_id: request_id.into(),
                complaint_id: filed.complaint_id.clone(),
                remedy: Some(cpb::Remedy {
                    kind: cpb::RemedyKind::Points as i32,
                    points: 1_000,
                    ..Default::default()
                }),
            })
            .await?;
    }
    let pool = crm.database.admin_pool().await?;
    let goodwill = || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE kind = 'goodwill' AND guest_id = $1")
            .bind(&member.guest_id)
            .fetch_one(&pool)
            .await
    };
    for _ in 0..100 {
        if goodwill().await? == 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(goodwill().await?, 2_000, "two remedies, 1000 points each");

    // A guest CRM knows only from the PMS feed (an account, no profile) gets goodwill too.
    let today = chrono::Utc::now().date_naive();
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "lisbon".into(),
                pms_reservation_id: "L-90".into(),
                guest_id: "PMS-90".into(),
                arrival_date: (today - chrono::Days::new(1)).to_string(),
                departure_date: (today + chrono::Days::new(2)).to_string(),
                status: pb::StayStatus::InHouse as i32,
                ..Default::default()
            }],
        })
        .await?;
    let walk_up = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "gw-2".into(),
            complaint: Some(cpb::Complaint {
                property_id: "lisbon".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: "PMS-90".into(),
                    ..Default::default()
                }),
                channel: cpb::Channel::FrontDesk as i32,
                category: "noise".into(),
                description: "building work at 7am".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    agent
        .propose_remedy(cpb::ProposeRemedyRequest {
            request_id: "pts-3".into(),
            complaint_id: walk_up.complaint_id.clone(),
            remedy: Some(cpb::Remedy {
                kind: cpb::RemedyKind::Points as i32,
                points: 300,
                ..Default::default()
            }),
        })
        .await?;
    let non_member_goodwill = || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE kind = 'goodwill' AND guest_id = 'PMS-90'")
            .fetch_one(&pool)
            .await
    };
    for _ in 0..100 {
        if non_member_goodwill().await? == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(non_member_goodwill().await?, 300);

    // Replay the whole complaint feed from position 0 with a fresh cursor.
    let settings = test_settings();
    let crm_pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&crm.database.url, "crm", &settings.database)?,
        &settings.database,
    );
    let replay = Consumer::new(
        "replay-from-zero",
        crm_pool.clone(),
        vec![],
        guestloop_crm::consumer::ComplaintEvents,
    );
    let service_token = TokenBuilder::new(Role::Service).mint()?;
    let feed = EventFeedClient::new(complaints.channel_with_token(&service_token).await?);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let head: i64 = {
        let admin_pool = complaints.database.admin_pool().await?;
        sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM complaints.outbox_events")
            .fetch_one(&admin_pool)
            .await?
    };
    let running = tokio::spawn(replay.run(feed, stop_rx));
    let replay_cursor = || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(max(position), 0) FROM crm.consumer_cursors WHERE consumer = 'replay-from-zero'")
            .fetch_one(&pool)
            .await
    };
    for _ in 0..100 {
        if replay_cursor().await? >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.abort();
    assert!(
        replay_cursor().await? >= head,
        "the replay reached the head of the feed"
    );
    assert_eq!(goodwill().await?, 2_000, "a replay grants nothing twice");
    assert_eq!(non_member_goodwill().await?, 300);

    // The guest's failure memory holds the complaint and its remedies.
    let profile = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: member.guest_id.clone(),
            property_id: "lisbon".into(),
        })
        .await?
        .into_inner();
    assert_eq!(profile.failures.len(), 1);
    assert_eq!(profile.failures[0].category, "wifi");
    assert_eq!(profile.failures[0].remedies.len(), 2);
    assert_eq!(profile.points_balance, 2_000);
    crm.shutdown().await?;
    complaints.shutdown().await
}

#[tokio::test]
async fn reads_depend_on_the_role_and_contact_reads_are_logged() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut front = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .department("front_office")
            .subject("fo-1"),
    )
    .await?;
    let mut housekeeping = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .department("housekeeping")
            .subject("hk-1"),
    )
    .await?;
    let g = create(
        &mut front,
        guest("Kenji", "Sato", "kenji@example.jp", "+81 90 1234 5678"),
    )
    .await?;
    let answered = front
        .add_preference(pb::AddPreferenceRequest {
            guest_id: g.guest_id.clone(),
            preference: Some(pb::Preference {
                group: "pillow".into(),
                value: "buckwheat".into(),
                polarity: pb::Polarity::Like as i32,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert!(
        answered.contact_details_hidden && answered.email.is_empty(),
        "contact details are read with GetGuest, not in the answers of other changes"
    );
    front
        .add_preference(pb::AddPreferenceRequest {
            guest_id: g.guest_id.clone(),
            preference: Some(pb::Preference {
                group: "diet".into(),
                value: "peanuts".into(),
                polarity: pb::Polarity::Allergy as i32,
                ..Default::default()
            }),
        })
        .await?;
    let seen = housekeeping
        .get_guest(pb::GetGuestRequest {
            guest_id: g.guest_id.clone(),
            property_id: "tokyo".into(),
        })
        .await?
        .into_inner();
    assert!(seen.contact_details_hidden && seen.email.is_empty() && seen.phone.is_empty());
    assert_eq!(
        seen.avoid
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>(),
        vec!["peanuts"],
        "never do X, at a glance"
    );
    assert_eq!(seen.preferences.len(), 1);
    let full = front
        .get_guest(pb::GetGuestRequest {
            guest_id: g.guest_id.clone(),
            property_id: "tokyo".into(),
        })
        .await?
        .into_inner();
    assert_eq!(full.email, "kenji@example.jp");
    let pool = service.database.admin_pool().await?;
    let logged: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, property_id FROM crm.contact_access_log WHERE guest_id = $1")
            .bind(&g.guest_id)
            .fetch_all(&pool)
            .await?;
    assert_eq!(
        logged,
        vec![("fo-1".to_string(), "tokyo".to_string())],
        "only the contact read is logged"
    );
    // A read is logged only at a property the reader works at.
    let mut tokyo_desk = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .department("front_office")
            .properties(&["tokyo"])
            .subject("fo-2"),
    )
    .await?;
    let elsewhere = tokyo_desk
        .get_guest(pb::GetGuestRequest {
            guest_id: g.guest_id.clone(),
            property_id: "osaka".into(),
        })
        .await
        .expect_err("logged at a property outside the scope");
    assert_eq!(elsewhere.code(), Code::PermissionDenied);
    // An edit whose answer shows the contact details is a read too.
    let edited = front
        .update_guest(pb::UpdateGuestRequest {
            guest: Some(pb::Guest {
                guest_id: g.guest_id.clone(),
                language: "ja".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["language".into()],
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(edited.email, "kenji@example.jp");
    let reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.contact_access_log WHERE guest_id = $1 AND actor = 'fo-1'",
    )
    .bind(&g.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(reads, 2, "the GetGuest and the edit");

    // Card numbers are never accepted; unknown groups and empty values are refused.
    let refused = create(
        &mut front,
        pb::Guest {
            notes: "pays with 4111 1111 1111 1111".into(),
            ..guest("A", "B", "", "")
        },
    )
    .await
    .expect_err("card");
    assert_eq!(
        refused.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    let bad_group = front
        .add_preference(pb::AddPreferenceRequest {
            guest_id: g.guest_id.clone(),
            preference: Some(pb::Preference {
                group: "spaceship".into(),
                value: "x".into(),
                polarity: pb::Polarity::Like as i32,
                ..Default::default()
            }),
        })
        .await
        .expect_err("unknown group");
    assert_eq!(bad_group.code(), Code::InvalidArgument);
    service.shutdown().await
}

#[tokio::test]
async fn duplicates_merge_export_and_erasure() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let first = create(
        &mut admin,
        guest("Maria", "Rossi", "Maria.Rossi@Example.com", ""),
    )
    .await?;
    let second = create(
        &mut admin,
        guest(
            "Maria",
            "Rossi",
            "maria.rossi@example.com ",
            "+39 333 123 4567",
        ),
    )
    .await?;
    let found = admin
        .find_duplicates(pb::FindDuplicatesRequest {
            guest_id: first.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(found.guest_ids, vec![second.guest_id.clone()]);
    // The survivor's account has a posting of its own, before the duplicate's.
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "m-0".into(),
            guest_id: first.guest_id.clone(),
            kind: pb::EntryKind::Earn as i32,
            points: 50,
            debit: false,
            reason: String::new(),
        })
        .await?;
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "m-1".into(),
            guest_id: second.guest_id.clone(),
            kind: pb::EntryKind::Earn as i32,
            points: 700,
            debit: false,
            reason: String::new(),
        })
        .await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "rome".into(),
                pms_reservation_id: "PMS-1".into(),
                guest_id: second.guest_id.clone(),
                arrival_date: "2026-10-01".into(),
                departure_date: "2026-10-04".into(),
                room: "512".into(),
                status: pb::StayStatus::CheckedOut as i32,
                ..Default::default()
            }],
        })
        .await?;
    // A care task worked for the duplicate (its reason and outcome are personal too).
    let care_pool = service.database.admin_pool().await?;
    sqlx::query(
        "INSERT INTO crm.care_tasks (care_task_id, chain_id, property_id, pms_reservation_id, kind, due_date, guest_id, \
         reason, done, completed_by, completed_at, outcome, created_by, updated_by) \
         SELECT gen_random_uuid(), chain_id, 'rome', 'PMS-1', 1, '2026-10-02', guest_id, 'birthday 1984-05-17 during the stay', \
         true, 'staff-1', now(), 'Maria Rossi loved the cake', 'test', 'test' FROM crm.guests WHERE guest_id = $1",
    )
    .bind(&second.guest_id)
    .execute(&care_pool)
    .await?;
    // What only one profile holds survives the merge: notes of both, the duplicate's company,
    // and its more recent consent.
    sqlx::query(
        "UPDATE crm.guests SET notes = CASE WHEN guest_id = $1 THEN 'travels with a dog' ELSE 'prefers quiet rooms' END, \
         company = CASE WHEN guest_id = $2 THEN 'Acme Travel' ELSE '' END, \
         consent_marketing = (guest_id = $2), consent_at = CASE WHEN guest_id = $2 THEN now() ELSE now() - interval '1 year' END \
         WHERE guest_id IN ($1, $2)",
    )
    .bind(&first.guest_id)
    .bind(&second.guest_id)
    .execute(&care_pool)
    .await?;
    let merged = admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: first.guest_id.clone(),
            duplicate_guest_id: second.guest_id.clone(),
        })
        .await?
        .into_inner();
    // The same merge sent again (its answer lost) answers the survivor and moves nothing.
    let again = admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: first.guest_id.clone(),
            duplicate_guest_id: second.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (again.guest_id.as_str(), again.points_balance),
        (merged.guest_id.as_str(), merged.points_balance)
    );
    // The other way round is no retry: the survivor is active, the duplicate merged.
    let backwards = admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: second.guest_id.clone(),
            duplicate_guest_id: first.guest_id.clone(),
        })
        .await
        .expect_err("the merged guest cannot survive");
    assert_eq!(backwards.code(), Code::FailedPrecondition, "{backwards:?}");
    let care_owner: String = sqlx::query_scalar(
        "SELECT guest_id FROM crm.care_tasks WHERE pms_reservation_id = 'PMS-1'",
    )
    .fetch_one(&care_pool)
    .await?;
    assert_eq!(
        care_owner, first.guest_id,
        "care tasks move to the survivor"
    );
    let kept: (String, String, bool) = sqlx::query_as(
        "SELECT notes, company, consent_marketing FROM crm.guests WHERE guest_id = $1",
    )
    .bind(&first.guest_id)
    .fetch_one(&care_pool)
    .await?;
    assert_eq!(
        kept,
        (
            "travels with a dog\nprefers quiet rooms".to_string(),
            "Acme Travel".to_string(),
            true
        )
    );
    assert!(
        merged.contact_details_hidden,
        "contacts are read with GetGuest"
    );
    let survivor = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: first.guest_id.clone(),
            property_id: "rome".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        survivor.phone, "+39 333 123 4567",
        "the survivor gains what it lacked"
    );
    assert_eq!(
        merged.points_balance,
        50 + 700 + 300,
        "the survivor's 50, and the duplicate's 700 posted + 3 nights × 100 earned, moved over"
    );
    // The merged ledger reads as one account's: each running balance is the one before it plus
    // its points, ending at the balance.
    let running: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT points, balance_after FROM crm.ledger WHERE guest_id = $1 ORDER BY entry_id",
    )
    .bind(&first.guest_id)
    .fetch_all(&care_pool)
    .await?;
    assert!(running.len() >= 2, "both ledgers: {running:?}");
    let mut balance = 0;
    for (points, after) in &running {
        balance += points;
        assert_eq!(*after, balance, "{running:?}");
    }
    assert_eq!(balance, merged.points_balance);
    let redirected = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: second.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        redirected.guest_id, first.guest_id,
        "the merged id redirects"
    );

    let export = admin
        .export_guest_data(pb::ExportGuestDataRequest {
            guest_id: first.guest_id.clone(),
        })
        .await?
        .into_inner();
    let document: serde_json::Value = serde_json::from_str(&export.json)?;
    assert_eq!(document["stays"].as_array().map(Vec::len), Some(1));
    assert_eq!(document["ledger"].as_array().map(Vec::len), Some(3));
    assert_eq!(document["guest"][0]["family_name"], "Rossi");
    assert_eq!(
        document["care_tasks"][0]["outcome"], "Maria Rossi loved the cake",
        "the export holds the guest's care tasks"
    );

    // A tier change puts the guest's id into CRM's own event log.
    admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: first.guest_id.clone(),
            strategic: true,
            reason: "key account".into(),
        })
        .await?;
    // An open care task (tomorrow's welcome): after the erasure nobody is left to look after.
    sqlx::query(
        "INSERT INTO crm.care_tasks (care_task_id, chain_id, property_id, pms_reservation_id, kind, due_date, guest_id, \
         reason, created_by, updated_by) \
         SELECT gen_random_uuid(), chain_id, 'rome', 'PMS-2', 3, current_date + 1, guest_id, 'VIP arrival', 'test', 'test' \
         FROM crm.guests WHERE guest_id = $1",
    )
    .bind(&first.guest_id)
    .execute(&care_pool)
    .await?;
    let erased = admin
        .erase_guest(pb::EraseGuestRequest {
            guest_id: first.guest_id.clone(),
            reason: "data subject request".into(),
        })
        .await?
        .into_inner();
    assert!(erased.guest_id.starts_with("erased-"));
    let tasks: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE done), count(*) FILTER (WHERE NOT done) FROM crm.care_tasks WHERE guest_id = $1",
    )
    .bind(&erased.guest_id)
    .fetch_one(&care_pool)
    .await?;
    assert_eq!(tasks, (1, 0), "the task worked stays, the open one goes");
    let events_pool = service.database.admin_pool().await?;
    let naming: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM crm.outbox_events WHERE subject = $1 OR position(convert_to($2, 'UTF8') IN payload) > 0",
    )
    .bind(format!("guests/{}", first.guest_id))
    .bind(&first.guest_id)
    .fetch_all(&events_pool)
    .await?;
    assert_eq!(
        naming,
        vec!["crm.guest.erased".to_string()],
        "only the erasure event itself names the original id"
    );
    let moved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.outbox_events WHERE subject = $1 AND event_type = 'crm.tier.changed'",
    )
    .bind(format!("guests/{}", erased.guest_id))
    .fetch_one(&events_pool)
    .await?;
    assert_eq!(moved, 1, "the tier change now names the pseudonym");
    // Nothing personal is left anywhere in the schema, text or binary.
    let pool = service.database.admin_pool().await?;
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'crm' AND data_type IN ('text', 'bytea', 'jsonb', 'ARRAY')",
    )
    .fetch_all(&pool)
    .await?;
    // The duplicate's own contact details and company are the erased guest's too.
    for needle in [
        "Maria",
        "Rossi",
        "maria.rossi",
        "Maria.Rossi",
        "Acme Travel",
        "333 123 4567",
        "+393331234567",
        "1984-05-17",
    ] {
        for (table, column, data_type) in &columns {
            // bytea as text is hex: binary columns are searched for the needle's bytes.
            let condition = if data_type == "bytea" {
                format!("position(convert_to($1, 'UTF8') IN \"{column}\") > 0")
            } else {
                format!("position(lower($1) IN lower(\"{column}\"::text)) > 0")
            };
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM crm.\"{table}\" WHERE {condition}"
            ))
            .bind(needle)
            .fetch_one(&pool)
            .await?;
            assert_eq!(hits, 0, "`{needle}` still in crm.{table}.{column}");
        }
    }
    let birthdays: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.guests WHERE birthday IS NOT NULL")
            .fetch_one(&pool)
            .await?;
    assert_eq!(birthdays, 0);
    let ledger_total: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE guest_id = $1",
    )
    .bind(&erased.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        ledger_total, 1_050,
        "the ledger keeps its amounts under the pseudonym"
    );
    let gone = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: first.guest_id.clone(),
            property_id: String::new(),
        })
        .await
        .expect_err("erased");
    assert_eq!(gone.code(), Code::NotFound);
    // The merged id no longer leads anywhere (a redirect to the pseudonym would re-identify).
    let merged_gone = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: second.guest_id.clone(),
            property_id: String::new(),
        })
        .await
        .expect_err("the merged id is erased too");
    assert_eq!(merged_gone.code(), Code::NotFound);
    let erased_ids: Vec<String> = sqlx::query_scalar(
        "SELECT subject FROM crm.outbox_events WHERE event_type = 'crm.guest.erased' ORDER BY subject",
    )
    .fetch_all(&pool)
    .await?;
    let mut expected = vec![
        format!("guests/{}", first.guest_id),
        format!("guests/{}", second.guest_id),
    ];
    expected.sort();
    assert_eq!(
        erased_ids, expected,
        "one erasure event per id the guest was known by"
    );
    service.shutdown().await
}

#[tokio::test]
async fn stays_earn_once_tiers_rise_and_inactive_points_expire_once() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Lena", "Vogel", "lena@example.de", "")).await?;
    let stay = |n: u32| pb::Stay {
        property_id: "berlin".into(),
        pms_reservation_id: format!("R{n}"),
        guest_id: g.guest_id.clone(),
        arrival_date: format!("2026-0{n}-01"),
        departure_date: format!("2026-0{n}-03"),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    let first = admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(1), stay(2), stay(3)],
        })
        .await?
        .into_inner();
    assert_eq!((first.inserted, first.updated, first.unchanged), (3, 0, 0));
    let again = admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(1), stay(2), stay(3)],
        })
        .await?
        .into_inner();
    assert_eq!(
        (again.inserted, again.updated, again.unchanged),
        (0, 0, 3),
        "the PMS feed is idempotent"
    );
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        account.balance,
        3 * 2 * 100,
        "earned once per stay: 2 nights × 100 points"
    );

    let as_of = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let now = chrono::Utc::now().timestamp();
    let tiers = admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of: as_of(now) })
        .await?
        .into_inner();
    assert_eq!(tiers.changed, 1);
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: g.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(tier.tier, "regular", "three stays in 12 months");
    let steady = admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of: as_of(now) })
        .await?
        .into_inner();
    assert_eq!(steady.changed, 0, "evaluation is idempotent");

    let later = now + 25 * 31 * 24 * 3600;
    let refused = admin
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: as_of(later),
        })
        .await
        .expect_err("staff never run an expiry ahead of time");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("as_of"), "{}", refused.message());
    // The scheduler's role may (that is how the years pass here).
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let expired = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: as_of(later),
        })
        .await?
        .into_inner();
    assert_eq!((expired.accounts_expired, expired.points_expired), (1, 600));
    let rerun = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: as_of(later),
        })
        .await?
        .into_inner();
    assert_eq!(rerun.points_expired, 0, "an expiry batch applies once");
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(account.balance, 0);

    // Guests redeem only their own points, and never below zero.
    let mut own = crm_as(&service, TokenBuilder::new(Role::Guest).guest(&g.guest_id)).await?;
    let refused = own
        .post_points(pb::PostPointsRequest {
            request_id: "r-1".into(),
            guest_id: g.guest_id.clone(),
            kind: pb::EntryKind::Redeem as i32,
            points: 1,
            debit: false,
            reason: String::new(),
        })
        .await
        .expect_err("empty balance");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let not_mine = own
        .post_points(pb::PostPointsRequest {
            request_id: "r-2".into(),
            guest_id: "someone-else".into(),
            kind: pb::EntryKind::Redeem as i32,
            points: 1,
            debit: false,
            reason: String::new(),
        })
        .await
        .expect_err("another guest");
    assert_eq!(not_mine.code(), Code::NotFound);
    service.shutdown().await
}

/// PMS feeds at once over the same guests, in rounds: in each round eight feeds send one batch
/// each with stays of four guests who have no account yet and of twelve who have one, so some
/// batches lock existing accounts while others create the new ones. No call fails or deadlocks,
/// every checked-out stay earns exactly once, and each balance equals its ledger, entry by entry.
#[tokio::test]
async fn concurrent_stay_feeds_earn_each_stay_once_without_deadlocks() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let checked_out = |reservation: &str, g: &str| {
        stay_at(
            "berlin",
            reservation,
            g,
            "",
            "2026-02-01",
            "2026-02-03",
            pb::StayStatus::CheckedOut,
        )
    };
    let mut members = Vec::new();
    for n in 0..24 {
        let g = create(
            &mut admin,
            guest(
                "Feed",
                &format!("Member{n}"),
                &format!("member{n}@example.com"),
                "",
            ),
        )
        .await?;
        members.push(g.guest_id);
    }
    let opening = members
        .iter()
        .map(|g| checked_out(&format!("OPEN-{g}"), g))
        .collect();
    admin
        .upsert_stays(pb::UpsertStaysRequest { stays: opening })
        .await?;
    let mut everyone = members.clone();
    let mut sent = 0;
    for round in 0..6 {
        let mut fresh = Vec::new();
        for n in 0..4 {
            let email = format!("new{round}-{n}@example.com");
            let g = create(
                &mut admin,
                guest("Feed", &format!("New{round}{n}"), &email, ""),
            )
            .await?;
            fresh.push(g.guest_id);
        }
        let mut tasks = Vec::new();
        for feed in 0..8usize {
            let mut client = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
            let guests: Vec<&String> = fresh
                .iter()
                .chain(members.iter().cycle().skip(feed * 3).take(12))
                .collect();
            let stays: Vec<pb::Stay> = guests
                .iter()
                .enumerate()
                .map(|(i, g)| checked_out(&format!("FEED-{round}-{feed}-{i}"), g))
                .collect();
            sent += stays.len();
            tasks.push(tokio::spawn(async move {
                client
                    .upsert_stays(pb::UpsertStaysRequest { stays })
                    .await
                    .map(|_| ())
            }));
        }
        for task in tasks {
            task.await??;
        }
        everyone.extend(fresh);
    }
    let pool = service.database.admin_pool().await?;
    let posted: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source, count(*) FROM crm.ledger WHERE source LIKE 'stay:berlin/FEED-%' GROUP BY source",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(posted.len(), sent, "every checked-out stay earned");
    assert!(posted.iter().all(|(_, n)| *n == 1), "a stay earned twice");

    // The PMS corrects the first round while new stays keep coming: every stay is corrected by
    // two feeds at once (one night, or cancelled, some to another member), so give-backs and
    // credits of overlapping accounts run side by side.
    let mut tasks = Vec::new();
    for feed in 0..8usize {
        let mut client = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
        let mut stays: Vec<pb::Stay> = Vec::new();
        for source_feed in [feed, (feed + 1) % 8] {
            for i in 0..6usize {
                let guest = if (i + feed) % 3 == 0 {
                    members[(i + feed) % members.len()].clone()
                } else {
                    members[(source_feed * 3 + i % 4) % members.len()].clone()
                };
                let mut stay = checked_out(&format!("FEED-0-{source_feed}-{i}"), &guest);
                if (i + feed) % 2 == 0 {
                    stay.departure_date = "2026-02-02".into();
                } else {
                    stay.status = pb::StayStatus::Cancelled as i32;
                }
                stays.push(stay);
            }
        }
        stays.extend(
            members
                .iter()
                .skip(feed)
                .take(6)
                .enumerate()
                .map(|(i, g)| checked_out(&format!("LATE-{feed}-{i}"), g)),
        );
        tasks.push(tokio::spawn(async move {
            client
                .upsert_stays(pb::UpsertStaysRequest { stays })
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        task.await??;
    }
    // Each stay holds exactly what it earns now (nobody redeemed, so nothing was clamped), all
    // of it with its own guest, in as many postings as it counts.
    let unsettled: Vec<String> = sqlx::query_scalar(
        "SELECT s.pms_reservation_id FROM crm.stays s \
         LEFT JOIN crm.ledger l ON l.source = 'stay:berlin/' || s.pms_reservation_id \
              OR l.source LIKE 'stay:berlin/' || s.pms_reservation_id || '#%' \
         WHERE s.pms_reservation_id LIKE 'FEED-%' OR s.pms_reservation_id LIKE 'LATE-%' \
         GROUP BY s.pms_reservation_id, s.guest_id, s.earned_nights, s.earn_postings \
         HAVING coalesce(sum(l.points) FILTER (WHERE l.guest_id = s.guest_id), 0) <> s.earned_nights * 100 \
             OR coalesce(sum(l.points) FILTER (WHERE l.guest_id <> s.guest_id), 0) <> 0 \
             OR count(l.entry_id) <> s.earn_postings",
    )
    .fetch_all(&pool)
    .await?;
    assert!(
        unsettled.is_empty(),
        "stays holding the wrong points: {unsettled:?}"
    );
    let corrected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.ledger WHERE source LIKE 'stay:berlin/FEED-0-%#%'",
    )
    .fetch_one(&pool)
    .await?;
    assert!(corrected >= 48, "every corrected stay posted: {corrected}");
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.loyalty_accounts WHERE guest_id = ANY($1)")
            .bind(&everyone)
            .fetch_one(&pool)
            .await?;
    assert_eq!(accounts, 24 + 6 * 4, "one account per guest");
    let broken: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.guest_id, a.balance, coalesce(sum(l.points), 0)::bigint FROM crm.loyalty_accounts a \
         LEFT JOIN crm.ledger l ON l.guest_id = a.guest_id WHERE a.guest_id = ANY($1) \
         GROUP BY a.guest_id, a.balance HAVING a.balance <> coalesce(sum(l.points), 0)",
    )
    .bind(&everyone)
    .fetch_all(&pool)
    .await?;
    assert!(broken.is_empty(), "ledger and balance disagree: {broken:?}");
    // Each entry's balance_after is the one before it plus its points.
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT balance_after, points, \
                lag(balance_after, 1, 0::bigint) OVER (PARTITION BY guest_id ORDER BY entry_id) AS before \
         FROM crm.ledger WHERE guest_id = ANY($1)) e WHERE balance_after <> before + points",
    )
    .bind(&everyone)
    .fetch_one(&pool)
    .await?;
    assert_eq!(gaps, 0, "running balances follow the ledger order");
    service.shutdown().await
}

fn stay_at(
    property: &str,
    reservation: &str,
    guest_id: &str,
    room: &str,
    arrival: &str,
    departure: &str,
    status: pb::StayStatus,
) -> pb::Stay {
    pb::Stay {
        property_id: property.into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: arrival.into(),
        departure_date: departure.into(),
        room: room.into(),
        status: status as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn arrivals_and_care_tasks_are_generated_once_and_worked_to_done() -> anyhow::Result<()> {
    use pb::StayStatus::{Booked, Cancelled, InHouse};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    // Dates far from today, so the service's own daily run does not touch them.
    let birthday = create(
        &mut admin,
        pb::Guest {
            birthday: "1980-03-12".into(),
            ..guest("Ada", "Birthday", "ada@example.com", "")
        },
    )
    .await?;
    let vip = create(&mut admin, guest("Vic", "Strategic", "vic@example.com", "")).await?;
    admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: vip.guest_id.clone(),
            strategic: true,
            reason: "corporate account".into(),
        })
        .await?;
    let unhappy = create(
        &mut admin,
        guest("Una", "Unrecovered", "una@example.com", ""),
    )
    .await?;
    admin
        .add_preference(pb::AddPreferenceRequest {
            guest_id: unhappy.guest_id.clone(),
            preference: Some(pb::Preference {
                group: "diet".into(),
                value: "nuts".into(),
                polarity: pb::Polarity::Allergy as i32,
                ..Default::default()
            }),
        })
        .await?;
    let plain = create(&mut admin, guest("Pat", "Plain", "pat@example.com", "")).await?;
    let gone = create(&mut admin, guest("Cam", "Cancelled", "cam@example.com", "")).await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay_at(
                    "care-p",
                    "B1",
                    &birthday.guest_id,
                    "204",
                    "2031-03-10",
                    "2031-03-14",
                    InHouse,
                ),
                stay_at(
                    "care-p",
                    "V1",
                    &vip.guest_id,
                    "501",
                    "2031-03-11",
                    "2031-03-13",
                    Booked,
                ),
                stay_at(
                    "care-p",
                    "U1",
                    &unhappy.guest_id,
                    "118",
                    "2031-03-11",
                    "2031-03-12",
                    Booked,
                ),
                stay_at(
                    "care-p",
                    "P1",
                    &plain.guest_id,
                    "301",
                    "2031-03-11",
                    "2031-03-12",
                    Booked,
                ),
                stay_at(
                    "care-p",
                    "C1",
                    &gone.guest_id,
                    "302",
                    "2031-03-11",
                    "2031-03-12",
                    Cancelled,
                ),
                stay_at(
                    "other-p",
                    "X1",
                    &vip.guest_id,
                    "1",
                    "2031-03-11",
                    "2031-03-12",
                    Booked,
                ),
            ],
        })
        .await?;
    // A noise complaint three weeks earlier, resolved but rated 2/5: not recovered.
    let settings = test_settings();
    let options =
        guestloop_kit::db::connect_options(&service.database.url, "crm", &settings.database)?;
    let pool = guestloop_kit::db::pool(options, &settings.database);
    sqlx::query(
        "INSERT INTO service_failures (complaint_id, guest_id, property_id, category, occurred_at, csat, recovered) \
         VALUES ('c-care-1', $1, 'care-p', 'noise', '2031-02-18 22:00Z', 2, true)",
    )
    .bind(&unhappy.guest_id)
    .execute(&pool)
    .await?;
    // A guest who left that morning (a feed sends a checked-out stay once the guest has left;
    // these dates are years ahead, so the row is written as the feed writes it on the day).
    sqlx::query(
        "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, room, status) \
         VALUES ('care-p', 'O1', $1, '2031-03-01', '2031-03-11', '303', 'checked_out')",
    )
    .bind(&plain.guest_id)
    .execute(&pool)
    .await?;

    // Arrivals and in-house guests for 11 March, by room, with profiles and dislikes.
    let mut front = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .properties(&["care-p"])
            .department("front_office"),
    )
    .await?;
    let first = front
        .list_arrivals(pb::ListArrivalsRequest {
            property_id: "care-p".into(),
            date: "2031-03-11".into(),
            page_size: 3,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let rest = front
        .list_arrivals(pb::ListArrivalsRequest {
            property_id: "care-p".into(),
            date: "2031-03-11".into(),
            page_size: 3,
            page_token: first.next_page_token.clone(),
        })
        .await?
        .into_inner();
    assert!(rest.next_page_token.is_empty());
    let all: Vec<&pb::Arrival> = first.arrivals.iter().chain(&rest.arrivals).collect();
    let rooms: Vec<(&str, bool)> = all
        .iter()
        .map(|a| (a.stay.as_ref().map_or("", |s| s.room.as_str()), a.arriving))
        .collect();
    assert_eq!(
        rooms,
        vec![("118", true), ("204", false), ("301", true), ("501", true)],
        "cancelled and departed stays are left out; the in-house guest is not arriving"
    );
    let una = all
        .iter()
        .find_map(|a| a.guest.as_ref().filter(|g| g.guest_id == unhappy.guest_id))
        .ok_or_else(|| anyhow::anyhow!("the unhappy guest is listed"))?;
    assert_eq!(una.avoid.len(), 1, "allergies are shown apart");
    assert_eq!(una.failures.len(), 1);
    assert_eq!(una.email, "una@example.com", "front office sees contacts");

    // Generating creates each task once, however often it runs.
    let generate = |date: &str| pb::GenerateCareTasksRequest {
        property_id: "care-p".into(),
        date: date.into(),
    };
    let made = front
        .generate_care_tasks(generate("2031-03-11"))
        .await?
        .into_inner();
    assert_eq!((made.created, made.existing), (3, 0));
    let again = front
        .generate_care_tasks(generate("2031-03-11"))
        .await?
        .into_inner();
    assert_eq!((again.created, again.existing), (0, 3));
    let next_day = front
        .generate_care_tasks(generate("2031-03-12"))
        .await?
        .into_inner();
    assert_eq!(
        next_day.created, 0,
        "one birthday task per stay, not one per night"
    );

    let tasks = front
        .list_care_tasks(pb::ListCareTasksRequest {
            property_id: "care-p".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks;
    let summary: Vec<(i32, &str, &str, &str)> = tasks
        .iter()
        .map(|t| {
            (
                t.kind,
                t.due_date.as_str(),
                t.room.as_str(),
                t.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                pb::CareTaskKind::VipArrival as i32,
                "2031-03-11",
                "501",
                "strategic guest arriving"
            ),
            (
                pb::CareTaskKind::Recovery as i32,
                "2031-03-11",
                "118",
                "noise complaint on 2031-02-18 rated 2/5"
            ),
            (
                pb::CareTaskKind::Birthday as i32,
                "2031-03-12",
                "204",
                "birthday on 2031-03-12"
            ),
        ]
    );

    // Assign, complete, retry the completion, and refuse a second different completion.
    let birthday_task = &tasks[2];
    let assigned = front
        .assign_care_task(pb::AssignCareTaskRequest {
            care_task_id: birthday_task.care_task_id.clone(),
            assignee: "concierge-ines".into(),
        })
        .await?
        .into_inner();
    assert_eq!(assigned.assignee, "concierge-ines");
    let empty = front
        .complete_care_task(pb::CompleteCareTaskRequest {
            care_task_id: birthday_task.care_task_id.clone(),
            outcome: "  ".into(),
        })
        .await
        .err()
        .map(|s| (s.code(), s.message().to_string()));
    assert!(
        matches!(&empty, Some((tonic::Code::InvalidArgument, m)) if m.contains("outcome")),
        "{empty:?}"
    );
    let complete = pb::CompleteCareTaskRequest {
        care_task_id: birthday_task.care_task_id.clone(),
        outcome: "cake and card in the room".into(),
    };
    let done = front
        .complete_care_task(complete.clone())
        .await?
        .into_inner();
    assert_eq!(done.state, pb::CareTaskState::Done as i32);
    let retried = front.complete_care_task(complete).await?.into_inner();
    assert_eq!(
        retried.complete_time, done.complete_time,
        "a retry changes nothing"
    );
    let different = front
        .complete_care_task(pb::CompleteCareTaskRequest {
            care_task_id: birthday_task.care_task_id.clone(),
            outcome: "something else".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(different, Some(Code::FailedPrecondition));
    let open = front
        .list_care_tasks(pb::ListCareTasksRequest {
            property_id: "care-p".into(),
            due_date: "2031-03-11".into(),
            state: pb::CareTaskState::Open as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks;
    assert_eq!(open.len(), 2);

    // Out of scope, bad input, unknown ids.
    let mut elsewhere = crm_as(
        &service,
        TokenBuilder::new(Role::Agent).properties(&["other-p"]),
    )
    .await?;
    let refused = elsewhere
        .list_arrivals(pb::ListArrivalsRequest {
            property_id: "care-p".into(),
            date: "2031-03-11".into(),
            ..Default::default()
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(refused, Some(Code::PermissionDenied));
    // A task at a property outside the caller's scope answers as an unknown id would.
    let refused = elsewhere
        .assign_care_task(pb::AssignCareTaskRequest {
            care_task_id: tasks[0].care_task_id.clone(),
            assignee: "me".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(refused, Some(Code::NotFound));
    for (date, token) in [("11/03/2031", ""), ("2031-03-11", "garbage")] {
        let bad = front
            .list_arrivals(pb::ListArrivalsRequest {
                property_id: "care-p".into(),
                date: date.into(),
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(bad, Some(Code::InvalidArgument), "{date} {token}");
    }
    let missing = front
        .complete_care_task(pb::CompleteCareTaskRequest {
            care_task_id: uuid::Uuid::new_v4().to_string(),
            outcome: "x".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(missing, Some(Code::NotFound));
    let foreign = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("other-chain"),
    )
    .await?
    .list_care_tasks(pb::ListCareTasksRequest {
        property_id: "care-p".into(),
        ..Default::default()
    })
    .await
    .expect_err("another chain's care tasks");
    assert_eq!(foreign.code(), Code::PermissionDenied, "{foreign:?}");
    // Housekeeping sees arrivals without contact details.
    let housekeeping = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .properties(&["care-p"])
            .department("housekeeping"),
    )
    .await?
    .list_arrivals(pb::ListArrivalsRequest {
        property_id: "care-p".into(),
        date: "2031-03-11".into(),
        ..Default::default()
    })
    .await?
    .into_inner();
    assert!(housekeeping.arrivals.iter().all(|a| a
        .guest
        .as_ref()
        .is_some_and(|g| g.email.is_empty() && g.contact_details_hidden)));
    service.shutdown().await
}

#[tokio::test]
async fn customer_value_segments_and_crm_kpis_follow_the_data() -> anyhow::Result<()> {
    use chrono::{Duration, Utc};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let today = Utc::now().date_naive();
    let day = |offset: i64| (today + Duration::days(offset)).to_string();
    let frequent = create(&mut admin, guest("Fay", "Frequent", "fay@example.com", "")).await?;
    let tokyo = create(&mut admin, guest("Taro", "Tokyo", "", "+81 90 1234 5678")).await?;
    let idle = create(&mut admin, guest("Ida", "Idle", "", "")).await?;
    let stay = |reservation: &str,
                guest_id: &str,
                property: &str,
                arrival: i64,
                currency: &str,
                spend: i64| pb::Stay {
        property_id: property.into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: day(arrival),
        departure_date: day(arrival + 2),
        spend: Some(guestloop_proto::common::v1::Money {
            currency_code: currency.into(),
            minor_units: spend,
        }),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay("F1", &frequent.guest_id, "paris", -100, "EUR", 60_000),
                stay("F2", &frequent.guest_id, "paris", -20, "EUR", 90_000),
                stay("T1", &tokyo.guest_id, "tokyo", -200, "JPY", 1_200),
            ],
        })
        .await?;
    // Fay's failure at -60 was recovered (rated 5) and she came back at -20; Taro's was not
    // (rated 1) and he has not returned.
    let settings = test_settings();
    let options =
        guestloop_kit::db::connect_options(&service.database.url, "crm", &settings.database)?;
    let pool = guestloop_kit::db::pool(options, &settings.database);
    for (complaint, guest_id, property, days_ago, csat, recovered) in [
        ("v-1", &frequent.guest_id, "paris", 60, 5i16, true),
        ("v-2", &tokyo.guest_id, "tokyo", 150, 1, true),
    ] {
        sqlx::query(
            "INSERT INTO service_failures (complaint_id, guest_id, property_id, category, occurred_at, csat, recovered) \
             VALUES ($1, $2, $3, 'noise', now() - make_interval(days => $4), $5, $6)",
        )
        .bind(complaint)
        .bind(guest_id)
        .bind(property)
        .bind(days_ago)
        .bind(csat)
        .bind(recovered)
        .execute(&pool)
        .await?;
    }
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "redeem-fay".into(),
            guest_id: frequent.guest_id.clone(),
            kind: pb::EntryKind::Redeem as i32,
            points: 100,
            debit: true,
            reason: "drink voucher".into(),
        })
        .await?;

    // A bad policy is refused field by field and changes nothing.
    let bad = admin
        .update_value_policy(pb::UpdateValuePolicyRequest {
            policy: Some(pb::ValuePolicy {
                window_months: 0,
                spend_weight: 1.0,
                satisfaction_weight: 50.0,
                min_relationship_years: 1.0,
                segments: vec![
                    pb::ValueSegment {
                        name: "low".into(),
                        min_value: 0.0,
                    },
                    pb::ValueSegment {
                        name: "high".into(),
                        min_value: 100.0,
                    },
                ],
                stamps: None,
            }),
        })
        .await
        .err()
        .map(|s| (s.code(), s.message().to_string()));
    assert!(
        matches!(&bad, Some((Code::InvalidArgument, m)) if m.contains("window_months") && m.contains("segments[1].min_value")),
        "{bad:?}"
    );
    assert_eq!(
        admin
            .get_value_policy(pb::GetValuePolicyRequest {})
            .await?
            .into_inner()
            .segments
            .len(),
        4,
        "the defaults still apply"
    );
    let policy = admin
        .update_value_policy(pb::UpdateValuePolicyRequest {
            policy: Some(pb::ValuePolicy {
                window_months: 12,
                spend_weight: 1.0,
                satisfaction_weight: 50.0,
                min_relationship_years: 1.0,
                segments: vec![
                    pb::ValueSegment {
                        name: "gold".into(),
                        min_value: 2_000.0,
                    },
                    pb::ValueSegment {
                        name: "silver".into(),
                        min_value: 1.0,
                    },
                    pb::ValueSegment {
                        name: "none".into(),
                        min_value: 0.0,
                    },
                ],
                stamps: None,
            }),
        })
        .await?
        .into_inner();
    assert_eq!(
        policy.stamps.map(|s| s.updated_by),
        Some("test-chain_admin".to_string())
    );

    let first = admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!((first.evaluated, first.changed), (3, 3));
    let again = admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(again.changed, 0, "a second run changes nothing");

    // Fay: (1,500 EUR × 2 stays + 50 × 5) / 1 year = 3,250 → gold. Taro: (1,200 JPY × 1) / 1 → silver.
    let fay = admin
        .get_customer_value(pb::GetCustomerValueRequest {
            guest_id: frequent.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!((fay.recent_stays, fay.satisfaction_sum), (2, 5));
    assert!((fay.recent_spend - 1_500.0).abs() < 1e-9, "{fay:?}");
    assert!((fay.value - 3_250.0).abs() < 1e-6, "{fay:?}");
    assert_eq!(fay.segment, "gold");
    let taro = admin
        .get_customer_value(pb::GetCustomerValueRequest {
            guest_id: tokyo.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert!((taro.value - (1_200.0 + 50.0)).abs() < 1e-6, "{taro:?}");
    let profile = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: idle.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (profile.customer_value, profile.value_segment.as_str()),
        (0.0, "none")
    );

    let period = guestloop_proto::common::v1::TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() - Duration::days(365)).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() + Duration::days(1)).timestamp(),
            nanos: 0,
        }),
    };
    let kpis = admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: Vec::new(),
            period: Some(period),
            loyalty_only: false,
        })
        .await?
        .into_inner();
    assert_eq!(kpis.members, 3);
    assert_eq!((kpis.repeat_guests, kpis.staying_guests), (1, 2));
    assert_eq!(
        kpis.points_earned, 600,
        "100 points per night, 3 stays of 2 nights"
    );
    assert_eq!(kpis.points_redeemed, 100);
    assert_eq!(kpis.points_outstanding, 500);
    assert_eq!(
        (
            kpis.recovered_guests,
            kpis.recovered_returned,
            kpis.unrecovered_guests,
            kpis.unrecovered_returned
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(kpis.recovered_return_rate, Some(1.0));
    assert_eq!(kpis.unrecovered_return_rate, Some(0.0));
    assert_eq!((kpis.contacts_given, kpis.contacts_valid), (2, 2));
    let segments: Vec<(&str, i64)> = kpis
        .segments
        .iter()
        .map(|s| (s.segment.as_str(), s.guests))
        .collect();
    assert_eq!(segments, vec![("gold", 1), ("none", 1), ("silver", 1)]);
    // The loyalty-only answer (what scorecards ask for) has the same loyalty figures and nothing
    // else.
    let loyalty = admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: Vec::new(),
            period: Some(period),
            loyalty_only: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            loyalty.members,
            loyalty.repeat_guests,
            loyalty.staying_guests,
            loyalty.points_earned,
            loyalty.points_redeemed,
            loyalty.recovered_guests,
            loyalty.unrecovered_returned
        ),
        (
            kpis.members,
            kpis.repeat_guests,
            kpis.staying_guests,
            kpis.points_earned,
            kpis.points_redeemed,
            kpis.recovered_guests,
            kpis.unrecovered_returned
        )
    );
    assert!(loyalty.segments.is_empty() && loyalty.points_outstanding == 0);
    // Scoped to one property: Paris guests only.
    let paris = admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: vec!["paris".into()],
            period: Some(period),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((paris.members, paris.unrecovered_guests), (1, 0));
    // Out of scope and bad periods are refused.
    let refused = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).properties(&["tokyo"]),
    )
    .await?
    .get_crm_kpis(pb::GetCrmKpisRequest {
        property_ids: vec!["paris".into()],
        period: Some(period),
        ..Default::default()
    })
    .await
    .err()
    .map(|s| s.code());
    assert_eq!(refused, Some(Code::PermissionDenied));
    let inverted = admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: Vec::new(),
            period: Some(guestloop_proto::common::v1::TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(inverted, Some(Code::InvalidArgument));
    service.shutdown().await
}

#[tokio::test]
async fn each_chain_runs_its_own_tier_program() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut other_chain = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("chain-other"),
    )
    .await?;

    let defaults = admin
        .get_loyalty_program(pb::GetLoyaltyProgramRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (defaults.new_name.as_str(), defaults.vip_name.as_str()),
        ("New", "VIP")
    );
    assert_eq!(defaults.window, pb::TierWindow::Rolling12Months as i32);
    assert_eq!(defaults.grace_days, Some(90));

    // A bad programme names every fault and changes nothing.
    let refused = admin
        .update_loyalty_program(pb::UpdateLoyaltyProgramRequest {
            program: Some(pb::LoyaltyProgram {
                regular_name: "Gold".into(),
                vip_name: "gold".into(),
                regular: Some(pb::TierThreshold {
                    nights: 10,
                    ..Default::default()
                }),
                vip: Some(pb::TierThreshold {
                    nights: 5,
                    ..Default::default()
                }),
                max_downgrade_steps: 7,
                expiry_months: 200,
                ..Default::default()
            }),
        })
        .await
        .expect_err("invalid programme");
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in [
        "program.vip_name",
        "program.vip.nights",
        "program.max_downgrade_steps",
        "program.expiry_months",
    ] {
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    let mut manager = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).properties(&["berlin"]),
    )
    .await?;
    assert_eq!(
        manager
            .update_loyalty_program(pb::UpdateLoyaltyProgramRequest {
                program: Some(defaults.clone()),
            })
            .await
            .expect_err("managers read, chain roles write")
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        admin
            .get_loyalty_program(pb::GetLoyaltyProgramRequest {})
            .await?
            .into_inner()
            .vip_name,
        "VIP"
    );

    // The test chain: named tiers, silver on 1,000.00 EUR of spend, gold on 10 nights, judged
    // by calendar year; the rest (points expiry) keeps its defaults.
    let stored = admin
        .update_loyalty_program(pb::UpdateLoyaltyProgramRequest {
            program: Some(pb::LoyaltyProgram {
                new_name: "Member".into(),
                regular_name: "Silver".into(),
                vip_name: "Gold".into(),
                strategic_name: "Ambassador".into(),
                regular: Some(pb::TierThreshold {
                    spend_minor_units: 100_000,
                    ..Default::default()
                }),
                vip: Some(pb::TierThreshold {
                    nights: 10,
                    ..Default::default()
                }),
                spend_currency: "EUR".into(),
                window: pb::TierWindow::CalendarYear as i32,
                grace_days: Some(0),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(stored.regular_name, "Silver");
    assert_eq!(stored.max_downgrade_steps, 1, "unset takes the default");
    assert!(stored.stamps.is_some());

    let stay =
        |id: &str, guest: &str, arrival: &str, departure: &str, spend: Option<(&str, i64)>| {
            pb::Stay {
                property_id: "berlin".into(),
                pms_reservation_id: id.into(),
                guest_id: guest.into(),
                arrival_date: arrival.into(),
                departure_date: departure.into(),
                spend: spend.map(|(currency, minor)| guestloop_proto::common::v1::Money {
                    currency_code: currency.into(),
                    minor_units: minor,
                }),
                status: pb::StayStatus::CheckedOut as i32,
                ..Default::default()
            }
        };
    let last_year = create(&mut admin, guest("Ada", "Last", "ada@example.de", "")).await?;
    let spender = create(&mut admin, guest("Ben", "Spend", "ben@example.de", "")).await?;
    let pounds = create(&mut admin, guest("Cy", "Pound", "cy@example.de", "")).await?;
    let elsewhere = create(&mut other_chain, guest("Di", "Else", "di@example.de", "")).await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                // Twelve nights in February 2024: gold for 2024 and, by calendar year, 2025.
                stay("T1", &last_year.guest_id, "2024-02-01", "2024-02-13", None),
                // 1,500.00 EUR in January 2025.
                stay(
                    "T2",
                    &spender.guest_id,
                    "2025-01-10",
                    "2025-01-11",
                    Some(("EUR", 150_000)),
                ),
                // The same in pounds does not count towards a EUR threshold.
                stay(
                    "T3",
                    &pounds.guest_id,
                    "2025-01-10",
                    "2025-01-11",
                    Some(("GBP", 150_000)),
                ),
            ],
        })
        .await?;
    // The other chain's guest stays at one of that chain's own hotels.
    other_chain
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "vienna".into(),
                ..stay("O1", &elsewhere.guest_id, "2024-02-01", "2024-02-13", None)
            }],
        })
        .await?;

    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 3, 1)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .map(|t| prost_types::Timestamp {
            seconds: t.and_utc().timestamp(),
            nanos: 0,
        });
    let evaluated = admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of })
        .await?
        .into_inner();
    assert_eq!(
        evaluated.evaluated, 3,
        "a chain admin evaluates their own chain"
    );
    let tier = |client: &mut Crm, guest_id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_guest_tier(pb::GetGuestTierRequest {
                    guest_id,
                    ..Default::default()
                })
                .await
                .map(|t| t.into_inner())
        }
    };
    let ada = tier(&mut admin, last_year.guest_id.clone()).await?;
    assert_eq!((ada.tier.as_str(), ada.tier_name.as_str()), ("vip", "Gold"));
    let ben = tier(&mut admin, spender.guest_id.clone()).await?;
    assert_eq!(
        (ben.tier.as_str(), ben.tier_name.as_str()),
        ("regular", "Silver")
    );
    let cy = tier(&mut admin, pounds.guest_id.clone()).await?;
    assert_eq!((cy.tier.as_str(), cy.tier_name.as_str()), ("new", "Member"));
    let profile = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: spender.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(profile.tier_name, "Silver");

    // The other chain keeps the defaults: the same twelve nights are more than 12 months old.
    let untouched = tier(&mut other_chain, elsewhere.guest_id.clone()).await?;
    assert_eq!(
        (untouched.tier.as_str(), untouched.tier_name.as_str()),
        ("new", "New")
    );
    other_chain
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of })
        .await?;
    let still = tier(&mut other_chain, elsewhere.guest_id.clone()).await?;
    assert_eq!(
        still.tier, "new",
        "rolling 12 months ignore stays of early 2024"
    );

    // A year later Ada's 2024 nights no longer count: down one step to Silver (no grace).
    let next_year = chrono::NaiveDate::from_ymd_opt(2026, 1, 15)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .map(|t| prost_types::Timestamp {
            seconds: t.and_utc().timestamp(),
            nanos: 0,
        });
    admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of: next_year })
        .await?;
    let ada = tier(&mut admin, last_year.guest_id.clone()).await?;
    assert_eq!(
        (ada.tier.as_str(), ada.tier_name.as_str()),
        ("regular", "Silver")
    );
    service.shutdown().await
}

#[tokio::test]
async fn per_credit_expiry_only_expires_what_is_left_of_old_credits() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let program = admin
        .update_loyalty_program(pb::UpdateLoyaltyProgramRequest {
            program: Some(pb::LoyaltyProgram {
                expiry_mode: pb::ExpiryMode::PerCredit as i32,
                expiry_months: 24,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(program.expiry_mode, pb::ExpiryMode::PerCredit as i32);
    let g = create(&mut admin, guest("Flo", "Fifo", "flo@example.de", "")).await?;
    let post = |request_id: &str, kind: pb::EntryKind, points: i64| pb::PostPointsRequest {
        request_id: request_id.into(),
        guest_id: g.guest_id.clone(),
        kind: kind as i32,
        points,
        debit: false,
        reason: "test".into(),
    };
    admin
        .post_points(post("old-bonus", pb::EntryKind::Bonus, 1_000))
        .await?;
    // The first credit is 30 months old.
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE crm.ledger SET posted_at = now() - interval '30 months' WHERE source LIKE '%old-bonus%'",
    )
    .execute(&pool)
    .await?;
    admin
        .post_points(post("new-bonus", pb::EntryKind::Bonus, 500))
        .await?;
    // Redeeming 800 uses 800 of the old credit first.
    admin
        .post_points(post("redeem", pb::EntryKind::Redeem, 800))
        .await?;
    let expired = admin
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(
        (expired.accounts_expired, expired.points_expired),
        (1, 200),
        "only the 200 left of the old credit expire, not all 1,000"
    );
    let again = admin
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!((again.accounts_expired, again.points_expired), (0, 0));
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        account.balance, 500,
        "what the redemption left of the new credit"
    );
    let sum: i64 =
        sqlx::query_scalar("SELECT sum(points)::bigint FROM crm.ledger WHERE guest_id = $1")
            .bind(&g.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(sum, account.balance, "the ledger adds up to the balance");
    // 25 months on, the new credit's remaining 500 expire too, and the balance reaches 0.
    let later = chrono::Utc::now() + chrono::Duration::days(25 * 31);
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let later = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: Some(prost_types::Timestamp {
                seconds: later.timestamp(),
                nanos: 0,
            }),
        })
        .await?
        .into_inner();
    assert_eq!(later.points_expired, 500);
    service.shutdown().await
}

/// Per-credit expiry with a stay the PMS calls off: its give-back takes back its own credit,
/// not the guest's oldest, so the old stay's points still expire on time.
#[tokio::test]
async fn a_stay_called_off_gives_back_its_own_credit_before_older_ones() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    admin
        .update_loyalty_program(pb::UpdateLoyaltyProgramRequest {
            program: Some(pb::LoyaltyProgram {
                expiry_mode: pb::ExpiryMode::PerCredit as i32,
                expiry_months: 24,
                ..Default::default()
            }),
        })
        .await?;
    let g = create(&mut admin, guest("Lou", "Lots", "lou@example.de", "")).await?;
    let stay = |reservation: &str, departure: &str, status: pb::StayStatus| {
        stay_at(
            "berlin",
            reservation,
            &g.guest_id,
            "",
            "2026-10-01",
            departure,
            status,
        )
    };
    // A: three nights, credited 30 months ago; B: two nights, credited now.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("A", "2026-10-04", pb::StayStatus::CheckedOut)],
        })
        .await?;
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE crm.ledger SET posted_at = now() - interval '30 months' WHERE source = 'stay:berlin/A'",
    )
    .execute(&pool)
    .await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("B", "2026-10-03", pb::StayStatus::CheckedOut)],
        })
        .await?;
    // The PMS cancels B: its 200 go back.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("B", "2026-10-03", pb::StayStatus::Cancelled)],
        })
        .await?;
    let balance = |admin: &mut Crm| {
        let mut admin = admin.clone();
        let guest_id = g.guest_id.clone();
        async move {
            anyhow::Ok(
                admin
                    .get_loyalty_account(pb::GetLoyaltyAccountRequest { guest_id })
                    .await?
                    .into_inner()
                    .balance,
            )
        }
    };
    assert_eq!(balance(&mut admin).await?, 300);
    let expired = admin
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(
        expired.points_expired, 300,
        "A's 300 are 30 months old; B's give-back took back B's own 200"
    );
    assert_eq!(balance(&mut admin).await?, 0);
    service.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pms_batches_upsert_in_bulk_and_earn_once_under_concurrency() -> anyhow::Result<()> {
    let service = spawn_service_with(
        &guestloop_crm::DEFINITION,
        {
            let mut s = test_settings();
            s.database.max_connections = 16;
            s
        },
        None,
    )
    .await?;
    let admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let stay = |n: usize, status: pb::StayStatus| pb::Stay {
        property_id: "berlin".into(),
        pms_reservation_id: format!("B{n:05}"),
        guest_id: format!("bulk-guest-{}", n % 200),
        arrival_date: "2026-03-01".into(),
        departure_date: format!("2026-03-0{}", 2 + n % 3),
        room: format!("{}", 100 + n % 50),
        status: status as i32,
        ..Default::default()
    };
    let all: Vec<pb::Stay> = (0..2_000)
        .map(|n| stay(n, pb::StayStatus::CheckedOut))
        .collect();

    // A reservation twice in one call is refused, naming the entry, and nothing is written.
    let mut twice = admin.clone();
    let refused = twice
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![all[0].clone(), all[1].clone(), all[0].clone()],
        })
        .await
        .expect_err("duplicate reservation");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("stays[2].pms_reservation_id"),
        "{}",
        refused.message()
    );

    // Eight feeds send the same 2,000 stays at once, in different orders and batch sizes.
    let mut tasks = Vec::new();
    for feed in 0..8usize {
        let mut client = admin.clone();
        let mut stays = all.clone();
        stays.rotate_left(feed * 250);
        if feed % 2 == 1 {
            stays.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut inserted = 0;
            for batch in stays.chunks(300 + feed * 100) {
                let answer = client
                    .upsert_stays(pb::UpsertStaysRequest {
                        stays: batch.to_vec(),
                    })
                    .await?
                    .into_inner();
                inserted += answer.inserted;
            }
            anyhow::Ok(inserted)
        }));
    }
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await??;
    }
    assert_eq!(inserted, 2_000, "each stay inserted by exactly one feed");
    let pool = service.database.admin_pool().await?;
    let (stays, earns, points): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays WHERE pms_reservation_id LIKE 'B%'), \
                count(*), coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE kind = 'earn' AND source LIKE 'stay:berlin/B%'",
    )
    .fetch_one(&pool)
    .await?;
    let nights: i64 = (0..2_000).map(|n| 1 + (n % 3) as i64).sum();
    assert_eq!((stays, earns, points), (2_000, 2_000, 100 * nights));
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.loyalty_accounts a WHERE a.guest_id LIKE 'bulk-guest-%' AND a.balance <> \
         (SELECT coalesce(sum(points), 0) FROM crm.ledger l WHERE l.guest_id = a.guest_id)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(mismatched, 0, "every balance equals its ledger");
    let last_after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.loyalty_accounts a WHERE a.guest_id LIKE 'bulk-guest-%' AND a.balance <> \
         (SELECT balance_after FROM crm.ledger l WHERE l.guest_id = a.guest_id ORDER BY entry_id DESC LIMIT 1)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(last_after, 0, "running balances end at the account balance");

    // A correction: 10 stays change room, the rest of the batch is unchanged.
    let mut corrected: Vec<pb::Stay> = all[..100].to_vec();
    for s in corrected.iter_mut().take(10) {
        s.room = "999".into();
    }
    let answer = admin
        .clone()
        .upsert_stays(pb::UpsertStaysRequest { stays: corrected })
        .await?
        .into_inner();
    assert_eq!(
        (answer.inserted, answer.updated, answer.unchanged),
        (0, 10, 90)
    );
    service.shutdown().await
}

/// A pool on the service's own schema, as the service's background tasks have.
fn crm_pool(service: &TestService) -> anyhow::Result<sqlx::PgPool> {
    let settings = test_settings();
    let options =
        guestloop_kit::db::connect_options(&service.database.url, "crm", &settings.database)?;
    Ok(guestloop_kit::db::pool(options, &settings.database))
}

/// Waits until a statement of this test's database that contains `statement` waits for a lock.
/// An earn of `points` as post_entry writes it (balance, then ledger entry), left uncommitted
/// so it holds the account's row lock until the caller commits.
async fn earning_in_flight(
    pool: &sqlx::PgPool,
    guest_id: &str,
    points: i64,
    balance_after: i64,
    source: &str,
) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut earn = pool.begin().await?;
    sqlx::query(
        "UPDATE crm.loyalty_accounts SET balance = balance + $2, lifetime_earned = lifetime_earned + $2, \
         last_activity_at = now() WHERE guest_id = $1",
    )
    .bind(guest_id)
    .bind(points)
    .execute(&mut *earn)
    .await?;
    sqlx::query(
        "INSERT INTO crm.ledger (guest_id, kind, points, balance_after, reason, actor, source) \
         VALUES ($1, 'earn', $2, $3, '', 'test', $4)",
    )
    .bind(guest_id)
    .bind(points)
    .bind(balance_after)
    .bind(source)
    .execute(&mut *earn)
    .await?;
    Ok(earn)
}

fn kpi_period() -> guestloop_proto::common::v1::TimeRange {
    use chrono::{Duration, Utc};
    guestloop_proto::common::v1::TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() - Duration::days(365)).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() + Duration::days(1)).timestamp(),
            nanos: 0,
        }),
    }
}

/// Three checked-out stays in Berlin, 100, 60 and 20 days ago (reservations `<prefix>1..3`):
/// enough for a tier above the first.
async fn three_stays(admin: &mut Crm, guest_id: &str, prefix: &str) -> anyhow::Result<()> {
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: [100, 60, 20]
                .iter()
                .enumerate()
                .map(|(i, days)| {
                    checked_out_days_ago("berlin", &format!("{prefix}{}", i + 1), guest_id, *days)
                })
                .collect(),
        })
        .await?;
    Ok(())
}

fn checked_out_days_ago(
    property: &str,
    reservation: &str,
    guest_id: &str,
    days_ago: i64,
) -> pb::Stay {
    let today = chrono::Utc::now().date_naive();
    stay_at(
        property,
        reservation,
        guest_id,
        "",
        &(today - chrono::Duration::days(days_ago)).to_string(),
        &(today - chrono::Duration::days(days_ago - 2)).to_string(),
        pb::StayStatus::CheckedOut,
    )
}

#[tokio::test]
async fn kpis_without_named_properties_cover_only_the_callers_properties() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let paris = create(&mut admin, guest("Pia", "Paris", "pia@example.fr", "")).await?;
    let tokyo = create(&mut admin, guest("Taro", "Tokyo", "taro@example.jp", "")).await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                checked_out_days_ago("paris", "P1", &paris.guest_id, 40),
                checked_out_days_ago("paris", "P2", &paris.guest_id, 20),
                checked_out_days_ago("tokyo", "T1", &tokyo.guest_id, 30),
            ],
        })
        .await?;
    let ask = |property_ids: Vec<String>| pb::GetCrmKpisRequest {
        property_ids,
        period: Some(kpi_period()),
        loyalty_only: false,
    };
    let chain = admin.get_crm_kpis(ask(Vec::new())).await?.into_inner();
    assert_eq!((chain.members, chain.points_earned), (2, 600));

    let mut manager = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).properties(&["tokyo"]),
    )
    .await?;
    let own = manager.get_crm_kpis(ask(Vec::new())).await?.into_inner();
    let named = manager
        .get_crm_kpis(ask(vec!["tokyo".into()]))
        .await?
        .into_inner();
    assert_eq!(
        (own.members, own.points_earned, own.points_outstanding),
        (1, 200, 200),
        "naming no property means the caller's own, not the chain"
    );
    assert_eq!(
        (own.members, own.points_earned, own.staying_guests),
        (named.members, named.points_earned, named.staying_guests)
    );
    let loyalty = manager
        .get_crm_kpis(pb::GetCrmKpisRequest {
            loyalty_only: true,
            ..ask(Vec::new())
        })
        .await?
        .into_inner();
    assert_eq!((loyalty.members, loyalty.points_earned), (1, 200));

    let nowhere = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).properties(&[]),
    )
    .await?
    .get_crm_kpis(ask(Vec::new()))
    .await?
    .into_inner();
    assert_eq!(
        (
            nowhere.members,
            nowhere.points_earned,
            nowhere.points_outstanding
        ),
        (0, 0, 0),
        "a scope of no property sees no guest"
    );
    service.shutdown().await
}

/// A KPI period from `start` to `end` days from now.
fn days_from_now(start: i64, end: i64) -> guestloop_proto::common::v1::TimeRange {
    use chrono::{Duration, Utc};
    let at = |days: i64| prost_types::Timestamp {
        seconds: (Utc::now() + Duration::days(days)).timestamp(),
        nanos: 0,
    };
    guestloop_proto::common::v1::TimeRange {
        start_time: Some(at(start)),
        end_time: Some(at(end)),
    }
}

/// The chain's KPIs over `period`, every figure.
async fn chain_kpis(
    admin: &mut Crm,
    period: guestloop_proto::common::v1::TimeRange,
) -> anyhow::Result<pb::CrmKpis> {
    Ok(admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: Vec::new(),
            period: Some(period),
            loyalty_only: false,
        })
        .await?
        .into_inner())
}

/// Profiles nobody changed for two years are fresh only through a stay that took place in the
/// 12 months up to the period end: not a cancelled reservation, a no-show or a booking, and
/// not a stay after the period end.
#[tokio::test]
async fn freshness_counts_stays_that_took_place_up_to_the_period_end() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let mut stays = Vec::new();
    for (family, arrival, status) in [
        ("Cancelled", -20, pb::StayStatus::Cancelled),
        ("NoShow", -20, pb::StayStatus::NoShow),
        ("Booked", 30, pb::StayStatus::Booked),
        ("CheckedOut", -20, pb::StayStatus::CheckedOut),
        ("InHouse", -1, pb::StayStatus::InHouse),
    ] {
        let profile = create(&mut admin, crm::guest("Fran", family, "", "")).await?;
        stays.push(stay_at(
            "fresh-p",
            family,
            &profile.guest_id,
            "",
            &day(arrival),
            &day(arrival + 2),
            status,
        ));
    }
    admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;
    sqlx::query("UPDATE guests SET updated_at = now() - interval '2 years'")
        .execute(&crm_pool(&service)?)
        .await?;

    let now = chain_kpis(&mut admin, days_from_now(-30, 1)).await?;
    assert_eq!(
        (now.members, now.profiles_fresh),
        (5, 2),
        "the checked-out and the in-house guest stayed; the others did not"
    );
    // Read at an end before every stay (and after the profiles' last change, two years ago),
    // no profile was fresh: later stays and the booking ahead are not counted.
    let earlier = chain_kpis(&mut admin, days_from_now(-90, -60)).await?;
    assert_eq!((earlier.members, earlier.profiles_fresh), (5, 0));
    service.shutdown().await
}

/// A stay credited in one period and cancelled by the PMS in the next gives its points back:
/// that lowers the balance, but takes nothing from what the next period credited, whose
/// redemption rate stays defined. Over a period holding both, the stay earned nothing; a stay
/// moved to another guest in the period is earned once.
#[tokio::test]
async fn points_earned_counts_credits_not_a_pms_give_back() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let gia = create(&mut admin, crm::guest("Gia", "GiveBack", "", "")).await?;
    let other = create(&mut admin, crm::guest("Otto", "Other", "", "")).await?;
    let stay = |guest_id: &str, reservation: &str, arrival: i64, status| {
        stay_at(
            "gb-p",
            reservation,
            guest_id,
            "",
            &day(arrival),
            &day(arrival + 2),
            status,
        )
    };
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay(&gia.guest_id, "G1", -62, pb::StayStatus::CheckedOut),
                stay(&other.guest_id, "O1", -62, pb::StayStatus::CheckedOut),
            ],
        })
        .await?;
    // The stays earned when they checked out, two months ago.
    let pool = crm_pool(&service)?;
    sqlx::query("UPDATE ledger SET posted_at = now() - interval '60 days'")
        .execute(&pool)
        .await?;
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "redeem-otto".into(),
            guest_id: other.guest_id.clone(),
            kind: pb::EntryKind::Redeem as i32,
            points: 50,
            debit: true,
            reason: "drink voucher".into(),
        })
        .await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay(&gia.guest_id, "G1", -62, pb::StayStatus::Cancelled),
                stay(&other.guest_id, "O2", -10, pb::StayStatus::CheckedOut),
            ],
        })
        .await?;
    let give_back: i64 =
        sqlx::query_scalar("SELECT points FROM ledger WHERE guest_id = $1 AND points < 0")
            .bind(&gia.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(give_back, -200, "the cancelled stay gave its points back");

    let recent = chain_kpis(&mut admin, days_from_now(-30, 1)).await?;
    assert_eq!(
        (
            recent.points_earned,
            recent.points_redeemed,
            recent.points_outstanding
        ),
        (200, 50, 350),
        "Otto's new stay was credited in the last 30 days; Gia's give-back is no credit"
    );
    assert_eq!(recent.redemption_rate, Some(0.25));
    let both = chain_kpis(&mut admin, days_from_now(-90, 1)).await?;
    assert_eq!(
        (both.points_earned, both.points_redeemed),
        (400, 50),
        "two stays earned; G1 was credited and called off within the window"
    );
    // O2 was Gia's after all: Otto gives its 200 back, Gia is credited 200. Earned once.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(&gia.guest_id, "O2", -10, pb::StayStatus::CheckedOut)],
        })
        .await?;
    let moved = chain_kpis(&mut admin, days_from_now(-30, 1)).await?;
    assert_eq!((moved.points_earned, moved.points_outstanding), (200, 350));
    service.shutdown().await
}

/// KPIs for named properties count the guests who stayed there: a stay checked out or in
/// house, not a booking, a cancelled reservation or a no-show. The same holds for the points of
/// guests who are not members yet.
#[tokio::test]
async fn kpis_for_named_properties_count_only_guests_who_stayed_there() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let stay = |reservation: &str, guest_id: &str, arrival: i64, status| {
        stay_at(
            "scope-p",
            reservation,
            guest_id,
            "",
            &day(arrival),
            &day(arrival + 2),
            status,
        )
    };
    let mut stays = Vec::new();
    for (family, arrival, status) in [
        ("Cancelled", -20, pb::StayStatus::Cancelled),
        ("NoShow", -20, pb::StayStatus::NoShow),
        ("Booked", 30, pb::StayStatus::Booked),
        ("CheckedOut", -20, pb::StayStatus::CheckedOut),
        ("InHouse", -1, pb::StayStatus::InHouse),
    ] {
        let profile = create(&mut admin, crm::guest("Sky", family, "", "")).await?;
        stays.push(stay(family, &profile.guest_id, arrival, status));
    }
    // A guest CRM holds no profile of earned at another property, and cancelled here.
    stays.push(stay_at(
        "other-p",
        "W1",
        "walk-in",
        "",
        &day(-40),
        &day(-38),
        pb::StayStatus::CheckedOut,
    ));
    stays.push(stay("W2", "walk-in", -20, pb::StayStatus::Cancelled));
    admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;

    let here = admin
        .get_crm_kpis(pb::GetCrmKpisRequest {
            property_ids: vec!["scope-p".into()],
            period: Some(kpi_period()),
            loyalty_only: false,
        })
        .await?
        .into_inner();
    assert_eq!(
        (here.members, here.points_outstanding),
        (2, 200),
        "the checked-out and the in-house guest stayed here, and only the first has earned"
    );
    let chain = chain_kpis(&mut admin, kpi_period()).await?;
    assert_eq!((chain.members, chain.points_outstanding), (5, 400));
    service.shutdown().await
}

#[tokio::test]
async fn staff_cannot_mint_points_beyond_their_role_limit() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Mia", "Minted", "mia@example.com", "")).await?;
    let post =
        |request_id: &str, kind: pb::EntryKind, points: i64, reason: &str| pb::PostPointsRequest {
            request_id: request_id.into(),
            guest_id: g.guest_id.clone(),
            kind: kind as i32,
            points,
            debit: false,
            reason: reason.into(),
        };
    let mut agent = crm_as(&service, TokenBuilder::new(Role::Agent)).await?;
    let refused = agent
        .post_points(post("a-1", pb::EntryKind::Bonus, 1_000_000, "nice guest"))
        .await
        .expect_err("an agent may not grant a bonus");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = agent
        .post_points(post("a-2", pb::EntryKind::Earn, 1_000_000, ""))
        .await
        .expect_err("an agent may not earn points by hand");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let mut supervisor = crm_as(&service, TokenBuilder::new(Role::Supervisor)).await?;
    let unexplained = supervisor
        .post_points(post("s-1", pb::EntryKind::Bonus, 100, " "))
        .await
        .expect_err("a bonus needs a reason");
    assert_eq!(unexplained.code(), Code::InvalidArgument);
    assert!(unexplained.message().contains("reason"), "{unexplained:?}");
    for (request_id, kind) in [("s-2", pb::EntryKind::Bonus), ("s-3", pb::EntryKind::Earn)] {
        let refused = supervisor
            .post_points(post(request_id, kind, 5_001, "late checkout"))
            .await
            .expect_err("over the supervisor's limit");
        assert_eq!(refused.code(), Code::PermissionDenied, "{kind:?}");
    }
    supervisor
        .post_points(post("s-4", pb::EntryKind::Bonus, 5_000, "late checkout"))
        .await?;
    // Other services (e.g. a partner feed) are not held to staff limits.
    crm_as(&service, TokenBuilder::new(Role::Service))
        .await?
        .post_points(post(
            "svc-1",
            pb::EntryKind::Bonus,
            100_000,
            "partner promotion",
        ))
        .await?;

    let pool = service.database.admin_pool().await?;
    let posted: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source, points FROM crm.ledger WHERE guest_id = $1 ORDER BY entry_id",
    )
    .bind(&g.guest_id)
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        posted,
        vec![
            ("request:chain-test:s-4".to_string(), 5_000),
            ("request:chain-test:svc-1".to_string(), 100_000)
        ],
        "nothing refused was posted"
    );
    // Another chain's "s-4", for its own guest, is its own posting.
    let mut other = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("other-chain"),
    )
    .await?;
    let theirs = create(&mut other, guest("Ola", "Other", "ola@example.com", "")).await?;
    let posted = other
        .post_points(pb::PostPointsRequest {
            guest_id: theirs.guest_id.clone(),
            ..post("s-4", pb::EntryKind::Bonus, 5_000, "welcome")
        })
        .await?
        .into_inner();
    assert_eq!(posted.points, 5_000);
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(account.balance, 105_000);
    service.shutdown().await
}

/// What the tier and expiry background tasks run (every 6 hours and daily) raises tiers and
/// expires points without anyone calling EvaluateTiers or RunPointsExpiry, once per change.
#[tokio::test]
async fn scheduled_loyalty_batches_raise_tiers_and_expire_points() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Sam", "Scheduled", "sam@example.com", "")).await?;
    three_stays(&mut admin, &g.guest_id, "S").await?;
    let pool = crm_pool(&service)?;
    let tiers = guestloop_crm::run_tier_evaluation(&pool, chrono::Utc::now()).await?;
    assert_eq!((tiers.evaluated, tiers.changed), (1, 1));
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: g.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(tier.tier, "regular", "three stays in 12 months");
    let again = guestloop_crm::run_tier_evaluation(&pool, chrono::Utc::now()).await?;
    assert_eq!(again.changed, 0, "a rerun changes nothing");

    // Two years and a month without activity.
    sqlx::query(
        "UPDATE loyalty_accounts SET last_activity_at = now() - interval '25 months' WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&pool)
    .await?;
    let expired = guestloop_crm::run_points_expiry(&pool, chrono::Utc::now()).await?;
    assert_eq!((expired.accounts_expired, expired.points_expired), (1, 600));
    let rerun = guestloop_crm::run_points_expiry(&pool, chrono::Utc::now()).await?;
    assert_eq!(rerun.points_expired, 0, "an expiry batch applies once");
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(account.balance, 0);
    service.shutdown().await
}

/// Points earned after the expiry batch picked an inactive account, but before it locked it,
/// make the account active again: nothing expires, and the new points stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inactivity_expiry_spares_points_earned_while_it_runs() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Ivo", "Idle", "ivo@example.com", "")).await?;
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "old-earn".into(),
            guest_id: g.guest_id.clone(),
            kind: pb::EntryKind::Earn as i32,
            points: 600,
            debit: false,
            reason: "seed".into(),
        })
        .await?;
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE crm.loyalty_accounts SET last_activity_at = now() - interval '25 months' WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&pool)
    .await?;
    // An earn (as post_entry writes it) holds the account while the batch runs.
    let earn = earning_in_flight(&pool, &g.guest_id, 500, 1_100, "request:late-earn").await?;
    let mut batch = admin.clone();
    let run = tokio::spawn(async move {
        batch
            .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
            .await
    });
    wait_for_lock(&pool, "loyalty_accounts", 1).await?;
    earn.commit().await?;
    let expired = run.await??.into_inner();
    assert_eq!(
        (expired.accounts_expired, expired.points_expired),
        (0, 0),
        "the account was active again when the batch locked it"
    );
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: g.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(account.balance, 1_100);
    let expiries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.ledger WHERE guest_id = $1 AND kind = 'expire'",
    )
    .bind(&g.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(expiries, 0);
    service.shutdown().await
}

async fn tier_changes(pool: &sqlx::PgPool, guest_id: &str) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.tier_history WHERE guest_id = $1), \
                (SELECT count(*) FROM crm.outbox_events WHERE event_type = 'crm.tier.changed' \
                 AND subject = 'guests/' || $1)",
    )
    .bind(guest_id)
    .fetch_one(pool)
    .await?)
}

/// A manager makes a guest strategic while a tier evaluation is under way: the evaluation,
/// decided on the tier it read before, leaves the guest strategic and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tier_evaluation_keeps_a_concurrent_strategic_tier() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(
        &mut admin,
        guest("Stella", "Strategic", "stella@example.com", ""),
    )
    .await?;
    three_stays(&mut admin, &g.guest_id, "C").await?;
    let pool = service.database.admin_pool().await?;
    // SetStrategicTier's write, not yet committed when the evaluation reads the guest.
    let mut manager = pool.begin().await?;
    sqlx::query(
        "UPDATE crm.guests SET tier = 'strategic', strategic_manual = true WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&mut *manager)
    .await?;
    let mut batch = admin.clone();
    let run = tokio::spawn(async move {
        batch
            .evaluate_tiers(pb::EvaluateTiersRequest { as_of: None })
            .await
    });
    wait_for_lock(&pool, "guests", 1).await?;
    manager.commit().await?;
    let evaluated = run.await??.into_inner();
    assert_eq!(evaluated.changed, 0, "{evaluated:?}");
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: g.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(tier.tier, "strategic", "the manager's decision stands");
    assert_eq!(tier_changes(&pool, &g.guest_id).await?, (0, 0));
    service.shutdown().await
}

/// Two tier evaluations at once move a guest once: one history row, one tier.changed event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_tier_evaluations_record_one_change() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Otto", "Overlap", "otto@example.com", "")).await?;
    three_stays(&mut admin, &g.guest_id, "O").await?;
    let pool = service.database.admin_pool().await?;
    // Hold the guest so both runs have read it before either writes.
    let mut hold = pool.begin().await?;
    sqlx::query("SELECT 1 FROM crm.guests WHERE guest_id = $1 FOR UPDATE")
        .bind(&g.guest_id)
        .execute(&mut *hold)
        .await?;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut batch = admin.clone();
        runs.push(tokio::spawn(async move {
            batch
                .evaluate_tiers(pb::EvaluateTiersRequest { as_of: None })
                .await
        }));
    }
    wait_for_lock(&pool, "guests", 2).await?;
    hold.commit().await?;
    let mut changed = 0;
    for run in runs {
        changed += run.await??.into_inner().changed;
    }
    assert_eq!(changed, 1, "the guest moved once");
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: g.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(tier.tier, "regular");
    assert_eq!(
        tier_changes(&pool, &g.guest_id).await?,
        (1, 1),
        "one history row and one event"
    );
    service.shutdown().await
}

#[tokio::test]
async fn real_phone_numbers_are_not_taken_for_card_numbers() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    // 8613800138002 passes the Luhn check, as one 13-digit number in ten does.
    let wang = create(&mut admin, guest("Wei", "Wang", "", "+86 138 0013 8002")).await?;
    assert_eq!(wang.phone, "+86 138 0013 8002");
    // A card number is still refused, in the phone field and in free text.
    for (phone, notes, field) in [
        ("4111 1111 1111 1111", "", "guest.phone"),
        ("", "paid with 4111 1111 1111 1111", "guest.notes"),
    ] {
        let refused = admin
            .create_guest(pb::CreateGuestRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                guest: Some(pb::Guest {
                    notes: notes.into(),
                    ..guest("Card", "Holder", "", phone)
                }),
            })
            .await
            .expect_err("a card number");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{refused:?}");
    }
    service.shutdown().await
}

#[tokio::test]
async fn stays_are_bounded_and_name_their_property() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Ewa", "Endless", "ewa@example.com", "")).await?;
    let endless = stay_at(
        "berlin",
        "E1",
        &g.guest_id,
        "",
        "2025-01-01",
        "9999-12-31",
        pb::StayStatus::CheckedOut,
    );
    let nowhere = stay_at(
        "",
        "E2",
        &g.guest_id,
        "",
        "2026-01-01",
        "2026-01-03",
        pb::StayStatus::CheckedOut,
    );
    let manager = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).properties(&["berlin"]),
    )
    .await?;
    let euros = |code: &str, minor_units: i64| {
        Some(guestloop_proto::common::v1::Money {
            currency_code: code.into(),
            minor_units,
        })
    };
    let one_night = pb::Stay {
        departure_date: "2025-01-02".into(),
        ..endless.clone()
    };
    // A general manager feeds no stays: they earn points beyond a manager's limits.
    let refused = manager
        .clone()
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "berlin".into(),
                ..nowhere.clone()
            }],
        })
        .await
        .expect_err("a general manager's feed");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    for (mut client, stay, field) in [
        (admin.clone(), endless.clone(), "stays[0].departure_date"),
        (admin.clone(), nowhere.clone(), "stays[0].property_id"),
        (
            admin.clone(),
            pb::Stay {
                spend: euros("euro", 10_000),
                ..one_night.clone()
            },
            "stays[0].spend.currency_code",
        ),
        (
            admin.clone(),
            pb::Stay {
                rate: euros("", 10_000),
                ..one_night.clone()
            },
            "stays[0].rate.currency_code",
        ),
        (
            admin.clone(),
            pb::Stay {
                room: "r".repeat(65),
                ..one_night.clone()
            },
            "stays[0].room",
        ),
        // A signed year parses in chrono but not in PostgreSQL: refused, not an internal error.
        (
            admin.clone(),
            pb::Stay {
                arrival_date: "-5000-01-01".into(),
                departure_date: "-5000-01-02".into(),
                ..one_night.clone()
            },
            "stays[0].arrival_date",
        ),
        (
            admin.clone(),
            pb::Stay {
                arrival_date: "0202-05-01".into(),
                departure_date: "0202-05-03".into(),
                ..one_night.clone()
            },
            "stays[0].arrival_date",
        ),
    ] {
        let refused = client
            .upsert_stays(pb::UpsertStaysRequest { stays: vec![stay] })
            .await
            .expect_err("an invalid stay");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(field), "{refused:?}");
    }
    // Birthdays are dates of the past, with a four-digit year.
    for birthday in ["-5000-01-01", "2999-01-01", "1984-5-17"] {
        let refused = admin
            .create_guest(pb::CreateGuestRequest {
                request_id: String::new(),
                guest: Some(pb::Guest {
                    birthday: birthday.into(),
                    ..guest("Bea", "Born", "bea@example.com", "")
                }),
            })
            .await
            .expect_err(birthday);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(
            guestloop_testkit::violated_fields(&refused),
            vec!["guest.birthday"]
        );
    }
    // A year is fine: 366 nights.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                departure_date: "2026-01-02".into(),
                spend: euros("eur", 10_000),
                ..endless
            }],
        })
        .await?;
    let pool = service.database.admin_pool().await?;
    let stays: Vec<(String, String)> = sqlx::query_as(
        "SELECT pms_reservation_id, spend_currency FROM crm.stays WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        stays,
        vec![("E1".to_string(), "EUR".to_string())],
        "the currency code is kept in upper case"
    );
    service.shutdown().await
}

/// Erasure reaches the complaints service: the erased guest's complaints keep their facts but
/// lose the guest's id, name, email and phone, and so do the stored answers of the calls that
/// filed them; another guest's complaint is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_scrubs_the_guests_complaints() -> anyhow::Result<()> {
    let crm = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut settings = test_settings();
    settings.endpoints.insert("crm".into(), crm.url());
    let complaints = spawn_service_with(&guestloop_complaints::DEFINITION, settings, None).await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let erased_guest = create(
        &mut admin,
        guest(
            "Lena",
            "Vogel",
            "lena.vogel@example.com",
            "+49 151 2345 6789",
        ),
    )
    .await?;
    let other_guest = create(
        &mut admin,
        guest(
            "Omar",
            "Haddad",
            "omar.haddad@example.com",
            "+971 50 123 4567",
        ),
    )
    .await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["berlin"])
        .mint()?;
    let agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let file = |request_id: &'static str, g: &pb::Guest| {
        let request = cpb::CreateComplaintRequest {
            request_id: request_id.into(),
            complaint: Some(cpb::Complaint {
                property_id: "berlin".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: g.guest_id.clone(),
                    name: format!("{} {}", g.given_name, g.family_name),
                    email: g.email.clone(),
                    phone: g.phone.clone(),
                }),
                channel: cpb::Channel::App as i32,
                category: "noise".into(),
                description: "construction noise from 7 am".into(),
                ..Default::default()
            }),
        };
        let mut agent = agent.clone();
        async move { agent.create_complaint(request).await }
    };
    let first = file("erase-1", &erased_guest).await?.into_inner();
    file("erase-2", &erased_guest).await?;
    let kept = file("erase-3", &other_guest).await?.into_inner();

    let pool = complaints.database.admin_pool().await?;
    let identified = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM complaints.complaints WHERE guest_id = $1 OR guest_email = $2 \
             OR guest_name LIKE '%Vogel%' OR guest_phone <> '' AND guest_phone = $3",
        )
        .bind(&erased_guest.guest_id)
        .bind(&erased_guest.email)
        .bind(&erased_guest.phone)
        .fetch_one(&pool)
        .await
    };
    assert_eq!(
        identified().await?,
        2,
        "both complaints name the guest at first"
    );
    admin
        .erase_guest(pb::EraseGuestRequest {
            guest_id: erased_guest.guest_id.clone(),
            reason: "data subject request".into(),
        })
        .await?;
    for _ in 0..100 {
        if identified().await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        identified().await?,
        0,
        "the erased guest's complaints are scrubbed"
    );
    let scrubbed: (String, String, String, String, String) = sqlx::query_as(
        "SELECT guest_id, guest_name, guest_email, guest_phone, description FROM complaints.complaints \
         WHERE complaint_id = $1::uuid",
    )
    .bind(&first.complaint_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        scrubbed,
        (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "[erased]".to_string()
        ),
        "identity and the guest's words gone"
    );
    let category: String = sqlx::query_scalar(
        "SELECT category FROM complaints.complaints WHERE complaint_id = $1::uuid",
    )
    .bind(&first.complaint_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(category, "noise", "the complaint itself kept");
    let stored_answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.idempotency_keys \
         WHERE position(convert_to($1, 'UTF8') IN coalesce(response, ''::bytea)) > 0",
    )
    .bind(&erased_guest.email)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        stored_answers, 0,
        "no stored answer still carries the email"
    );
    // The filing's retry (its answer lost before the erasure) gets the scrubbed complaint it
    // filed, and files nothing again with the erased guest's details.
    let retried = file("erase-1", &erased_guest).await?.into_inner();
    assert_eq!(retried.complaint_id, first.complaint_id);
    assert_eq!(retried.guest, Some(cpb::GuestRef::default()));
    assert_eq!(identified().await?, 0, "no new complaint names the guest");
    let in_events = |email: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM complaints.outbox_events WHERE position(convert_to($1, 'UTF8') IN payload) > 0",
            )
            .bind(email)
            .fetch_one(&pool)
            .await
        }
    };
    assert_eq!(
        in_events(erased_guest.email.clone()).await?,
        0,
        "the event log no longer names the erased guest"
    );
    assert!(
        in_events(other_guest.email.clone()).await? > 0,
        "another guest's events are untouched"
    );
    let other: (String, String) = sqlx::query_as(
        "SELECT guest_id, guest_email FROM complaints.complaints WHERE complaint_id = $1::uuid",
    )
    .bind(&kept.complaint_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        other,
        (other_guest.guest_id.clone(), other_guest.email.clone())
    );
    complaints.shutdown().await?;
    crm.shutdown().await
}

/// A merge waits for a posting in flight on the duplicate's account and takes its points along:
/// the survivor's balance equals its ledger, and nothing is left under the duplicate's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_keeps_the_points_posted_while_it_runs() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, guest("Mara", "Kent", "mara@example.com", "")).await?;
    let duplicate = create(&mut admin, guest("Mara", "Kent", "m.kent@example.com", "")).await?;
    for (g, points) in [(&survivor, 300), (&duplicate, 200)] {
        admin
            .post_points(pb::PostPointsRequest {
                request_id: format!("seed-{}", g.guest_id),
                guest_id: g.guest_id.clone(),
                kind: pb::EntryKind::Earn as i32,
                points,
                debit: false,
                reason: "seed".into(),
            })
            .await?;
    }
    let pool = service.database.admin_pool().await?;
    // An earn on the duplicate (as post_entry writes it) holds its account while the merge runs.
    let earn = earning_in_flight(&pool, &duplicate.guest_id, 500, 700, "request:in-flight").await?;
    let mut merging = admin.clone();
    let request = pb::MergeGuestsRequest {
        surviving_guest_id: survivor.guest_id.clone(),
        duplicate_guest_id: duplicate.guest_id.clone(),
    };
    let run = tokio::spawn(async move { merging.merge_guests(request).await });
    wait_for_lock(&pool, "loyalty_accounts", 1).await?;
    earn.commit().await?;
    run.await??;
    let account = admin
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: survivor.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        account.balance, 1_000,
        "300 + 200 + the 500 posted meanwhile"
    );
    let (ledger_sum, left_behind): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(points) FILTER (WHERE guest_id = $1), 0)::bigint, \
                count(*) FILTER (WHERE guest_id = $2) FROM crm.ledger",
    )
    .bind(&survivor.guest_id)
    .bind(&duplicate.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!((ledger_sum, left_behind), (1_000, 0));
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.loyalty_accounts WHERE guest_id = $1")
            .bind(&duplicate.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(accounts, 0, "no account left under the merged id");
    service.shutdown().await
}

/// Goodwill and failure memory follow CRM's view of the guest: a merged guest's goodwill goes to
/// the survivor, and an erased guest gets no account back from a later remedy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn goodwill_follows_merges_and_never_revives_an_erased_guest() -> anyhow::Result<()> {
    let (complaints, crm) = complaints_and_crm().await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let duplicate = create(&mut admin, guest("Ana", "Lima", "ana@example.com", "")).await?;
    let survivor = create(&mut admin, guest("Ana", "Lima", "ana.lima@example.com", "")).await?;
    let leaving = create(&mut admin, guest("Rui", "Costa", "rui@example.com", "")).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["lisbon"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let file = |request_id: &'static str, guest_id: String| {
        let mut agent = agent.clone();
        async move {
            let filed = agent
                .create_complaint(cpb::CreateComplaintRequest {
                    request_id: request_id.into(),
                    complaint: Some(cpb::Complaint {
                        property_id: "lisbon".into(),
                        guest: Some(cpb::GuestRef {
                            guest_id,
                            ..Default::default()
                        }),
                        channel: cpb::Channel::App as i32,
                        category: "noise".into(),
                        description: "music from the bar until 2 am".into(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            anyhow::Ok(filed.complaint_id)
        }
    };
    let for_duplicate = file("merge-1", duplicate.guest_id.clone()).await?;
    let for_leaving = file("erase-1", leaving.guest_id.clone()).await?;
    admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: survivor.guest_id.clone(),
            duplicate_guest_id: duplicate.guest_id.clone(),
        })
        .await?;
    admin
        .erase_guest(pb::EraseGuestRequest {
            guest_id: leaving.guest_id.clone(),
            reason: "data subject request".into(),
        })
        .await?;
    for (request_id, complaint_id) in [("gw-m", &for_duplicate), ("gw-e", &for_leaving)] {
        agent
            .propose_remedy(cpb::ProposeRemedyRequest {
                request_id: request_id.into(),
                complaint_id: complaint_id.clone(),
                remedy: Some(cpb::Remedy {
                    kind: cpb::RemedyKind::Points as i32,
                    points: 500,
                    ..Default::default()
                }),
            })
            .await?;
    }
    let pool = crm.database.admin_pool().await?;
    let goodwill_on = |guest_id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE kind = 'goodwill' AND guest_id = $1",
            )
            .bind(guest_id)
            .fetch_one(&pool)
            .await
        }
    };
    for _ in 0..100 {
        if goodwill_on(survivor.guest_id.clone()).await? == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(goodwill_on(survivor.guest_id.clone()).await?, 500);
    assert_eq!(goodwill_on(duplicate.guest_id.clone()).await?, 0);
    // The consumer has passed the erased guest's remedy too (it came after the merged one's).
    let cursor = || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(max(position), 0) FROM crm.consumer_cursors")
            .fetch_one(&pool)
            .await
    };
    let head: i64 = {
        let complaints_pool = complaints.database.admin_pool().await?;
        sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM complaints.outbox_events")
            .fetch_one(&complaints_pool)
            .await?
    };
    for _ in 0..100 {
        if cursor().await? >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cursor().await? >= head, "the feed was consumed");
    let revived: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM crm.loyalty_accounts WHERE guest_id = ANY($1)) \
              + (SELECT count(*) FROM crm.service_failures WHERE guest_id = ANY($1))",
    )
    .bind(vec![leaving.guest_id.clone(), duplicate.guest_id.clone()])
    .fetch_one(&pool)
    .await?;
    assert_eq!(revived, 0, "nothing under the erased or the merged id");
    let failures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.service_failures WHERE guest_id = $1")
            .bind(&survivor.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(failures, 1, "the merged guest's failure is the survivor's");
    crm.shutdown().await?;
    complaints.shutdown().await
}

/// A complaint cancelled as filed by mistake was no service failure: it leaves the guest's
/// failure memory, and the recovery care task it called for while open is withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_complaint_leaves_the_guests_failure_memory() -> anyhow::Result<()> {
    let (complaints, crm) = complaints_and_crm().await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let ken = create(&mut admin, guest("Ken", "Mori", "ken@example.jp", "")).await?;
    let today = chrono::Utc::now().date_naive();
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay_at(
                "tokyo",
                "R-KEN",
                &ken.guest_id,
                "1204",
                &today.to_string(),
                &(today + chrono::Duration::days(2)).to_string(),
                pb::StayStatus::InHouse,
            )],
        })
        .await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["tokyo"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let filed = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "cancel-1".into(),
            complaint: Some(cpb::Complaint {
                property_id: "tokyo".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: ken.guest_id.clone(),
                    ..Default::default()
                }),
                channel: cpb::Channel::App as i32,
                category: "noise".into(),
                description: "construction noise from next door".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let pool = crm.database.admin_pool().await?;
    let remembered = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM crm.service_failures WHERE complaint_id = $1 AND NOT recovered",
        )
        .bind(&filed.complaint_id)
        .fetch_one(&pool)
        .await
    };
    for _ in 0..100 {
        if remembered().await? == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        remembered().await?,
        1,
        "an open complaint is an unrecovered failure"
    );
    let generate = pb::GenerateCareTasksRequest {
        property_id: "tokyo".into(),
        date: today.to_string(),
    };
    admin.generate_care_tasks(generate.clone()).await?;
    let recovery_tasks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM crm.care_tasks WHERE pms_reservation_id = 'R-KEN' AND kind = 4 AND NOT done",
        )
        .fetch_one(&pool)
        .await
    };
    assert_eq!(
        recovery_tasks().await?,
        1,
        "the open complaint calls for recovery care"
    );

    agent
        .transition_complaint(cpb::TransitionComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
            action: cpb::Action::Cancel as i32,
            reason: "filed for the wrong guest".into(),
            etag: String::new(),
        })
        .await?;
    for _ in 0..100 {
        if remembered().await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: ken.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert!(
        profile.failures.is_empty(),
        "a cancelled complaint is no failure: {:?}",
        profile.failures
    );
    admin.generate_care_tasks(generate).await?;
    assert_eq!(recovery_tasks().await?, 0, "its recovery task is withdrawn");
    crm.shutdown().await?;
    complaints.shutdown().await
}

/// A whole-chain token reaches every property of its own chain, never another chain's: the
/// first PMS feed registers a property under its chain, and another chain's chain-wide admin
/// can then neither feed stays there nor read its occupancy, KPIs, arrivals or care tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_chains_property_is_out_of_reach() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut own = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut other = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("other-chain"),
    )
    .await?;
    let filed = pb::CreateGuestRequest {
        request_id: "pms-profile-0001".into(),
        guest: Some(guest("Ada", "Own", "ada@example.com", "")),
    };
    let g = own.create_guest(filed.clone()).await?.into_inner();
    // The same request under the same id from another chain is not a replay: request ids are
    // per chain, so it creates that chain's own guest and never hands back this chain's.
    let theirs = other.create_guest(filed.clone()).await?.into_inner();
    assert_ne!(theirs.guest_id, g.guest_id);
    assert_eq!(theirs.chain_id, "other-chain");
    // The caller's own retry still gets its guest back.
    let retried = own.create_guest(filed).await?.into_inner();
    assert_eq!(retried.guest_id, g.guest_id);
    let today = chrono::Utc::now().date_naive();
    let stay = |reservation: &str, guest_id: &str| {
        stay_at(
            "lisbon",
            reservation,
            guest_id,
            "101",
            &(today - chrono::Duration::days(1)).to_string(),
            &(today + chrono::Duration::days(2)).to_string(),
            pb::StayStatus::InHouse,
        )
    };
    own.upsert_stays(pb::UpsertStaysRequest {
        stays: vec![stay("L1", &g.guest_id)],
    })
    .await?;
    let stranger = create(&mut other, guest("Bo", "Other", "bo@example.com", "")).await?;

    let another_chain = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("another chain"), "{status:?}");
    };
    // Feeding stays, also mixed with a property of its own.
    for stays in [
        vec![stay("L2", &stranger.guest_id)],
        vec![
            stay("L3", &stranger.guest_id),
            stay_at(
                "porto",
                "P1",
                &stranger.guest_id,
                "",
                "2026-01-01",
                "2026-01-02",
                pb::StayStatus::CheckedOut,
            ),
        ],
    ] {
        another_chain(
            other
                .upsert_stays(pb::UpsertStaysRequest { stays })
                .await
                .expect_err("stays at another chain's property"),
        );
    }
    another_chain(
        other
            .get_occupancy(pb::GetOccupancyRequest {
                property_ids: vec!["lisbon".into()],
                period: Some(kpi_period()),
                ..Default::default()
            })
            .await
            .expect_err("another chain's occupancy"),
    );
    another_chain(
        other
            .get_crm_kpis(pb::GetCrmKpisRequest {
                property_ids: vec!["lisbon".into()],
                period: Some(kpi_period()),
                ..Default::default()
            })
            .await
            .expect_err("another chain's KPIs"),
    );
    another_chain(
        other
            .list_arrivals(pb::ListArrivalsRequest {
                property_id: "lisbon".into(),
                date: today.to_string(),
                ..Default::default()
            })
            .await
            .expect_err("another chain's arrivals"),
    );
    another_chain(
        other
            .generate_care_tasks(pb::GenerateCareTasksRequest {
                property_id: "lisbon".into(),
                date: today.to_string(),
            })
            .await
            .expect_err("care tasks at another chain's property"),
    );
    another_chain(
        other
            .list_care_tasks(pb::ListCareTasksRequest {
                property_id: "lisbon".into(),
                ..Default::default()
            })
            .await
            .expect_err("another chain's care tasks"),
    );

    // Nothing of the refused feeds was written, and the property stays its own chain's.
    let pool = service.database.admin_pool().await?;
    let reservations: Vec<String> =
        sqlx::query_scalar("SELECT pms_reservation_id FROM crm.stays ORDER BY pms_reservation_id")
            .fetch_all(&pool)
            .await?;
    assert_eq!(reservations, vec!["L1".to_string()]);
    let registered: Vec<(String, String)> = sqlx::query_as(
        "SELECT property_id, chain_id FROM crm.property_chains ORDER BY property_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        registered,
        vec![(
            "lisbon".to_string(),
            guestloop_testkit::TEST_CHAIN.to_string()
        )]
    );

    // The owning chain still reads and feeds it; the other chain's own properties are its own.
    let occupancy = own
        .get_occupancy(pb::GetOccupancyRequest {
            property_ids: vec!["lisbon".into()],
            period: Some(kpi_period()),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(occupancy.occupied_room_nights >= 1, "{occupancy:?}");
    // A service (facilities, for its KPIs) asking on the other chain's behalf is refused too;
    // on the owning chain's behalf it gets the same answer.
    let mut service_client = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let on_behalf = |chain: &str| pb::GetOccupancyRequest {
        property_ids: vec!["lisbon".into()],
        period: Some(kpi_period()),
        on_behalf_of_chain: chain.into(),
    };
    another_chain(
        service_client
            .get_occupancy(on_behalf("other-chain"))
            .await
            .expect_err("occupancy for another chain"),
    );
    let for_owner = service_client
        .get_occupancy(on_behalf(guestloop_testkit::TEST_CHAIN))
        .await?
        .into_inner();
    assert_eq!(
        for_owner.occupied_room_nights,
        occupancy.occupied_room_nights
    );
    let arrivals = own
        .list_arrivals(pb::ListArrivalsRequest {
            property_id: "lisbon".into(),
            date: today.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(arrivals.arrivals.len(), 1, "{arrivals:?}");
    own.upsert_stays(pb::UpsertStaysRequest {
        stays: vec![stay("L4", &g.guest_id)],
    })
    .await?;
    other
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay_at(
                "porto",
                "P1",
                &stranger.guest_id,
                "",
                "2026-01-01",
                "2026-01-02",
                pb::StayStatus::CheckedOut,
            )],
        })
        .await?;
    service.shutdown().await
}

/// The balance and the sum of the ledger of one guest.
async fn balance_and_ledger(pool: &sqlx::PgPool, guest_id: &str) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce((SELECT balance FROM crm.loyalty_accounts WHERE guest_id = $1), 0), \
         coalesce((SELECT sum(points) FROM crm.ledger WHERE guest_id = $1), 0)::bigint",
    )
    .bind(guest_id)
    .fetch_one(pool)
    .await?)
}

/// A PMS corrects stays after they earned: fewer nights give back at the rate first credited, a
/// cancellation gives back what is left (never more than the balance), another guest takes the
/// stay at their own rate. Replays and changes that do not touch the earning post nothing, and
/// a stay naming a merged profile earns for the profile it was merged into.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pms_corrections_move_the_points_a_stay_earned() -> anyhow::Result<()> {
    use pb::StayStatus::{Booked, Cancelled, CheckedOut};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let pool = service.database.admin_pool().await?;
    let ada = create(&mut admin, guest("Ada", "First", "ada@example.com", "")).await?;
    let ben = create(&mut admin, guest("Ben", "Second", "ben@example.com", "")).await?;
    let stay = |reservation: &str, guest_id: &str, departure: &str, room: &str, status| {
        stay_at(
            "berlin",
            reservation,
            guest_id,
            room,
            "2026-03-01",
            departure,
            status,
        )
    };
    let pms = admin.clone();
    let feed = move |stays: Vec<pb::Stay>| {
        let mut pms = pms.clone();
        async move {
            anyhow::Ok(
                pms.upsert_stays(pb::UpsertStaysRequest { stays })
                    .await?
                    .into_inner(),
            )
        }
    };
    let sources = |reservation: &'static str| {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_as::<_, (String, String, i64)>(
                    "SELECT source, guest_id, points FROM crm.ledger WHERE source LIKE $1 ORDER BY entry_id",
                )
                .bind(format!("stay:berlin/{reservation}%"))
                .fetch_all(&pool)
                .await?,
            )
        }
    };

    // Three nights at the new-tier rate, then the PMS says two.
    feed(vec![stay(
        "S1",
        &ada.guest_id,
        "2026-03-04",
        "101",
        CheckedOut,
    )])
    .await?;
    assert_eq!(balance_and_ledger(&pool, &ada.guest_id).await?, (300, 300));
    let corrected = feed(vec![stay(
        "S1",
        &ada.guest_id,
        "2026-03-03",
        "101",
        CheckedOut,
    )])
    .await?;
    assert_eq!(corrected.updated, 1);
    assert_eq!(balance_and_ledger(&pool, &ada.guest_id).await?, (200, 200));
    // The same correction again, and a room change: nothing moves.
    feed(vec![stay(
        "S1",
        &ada.guest_id,
        "2026-03-03",
        "101",
        CheckedOut,
    )])
    .await?;
    feed(vec![stay(
        "S1",
        &ada.guest_id,
        "2026-03-03",
        "102",
        CheckedOut,
    )])
    .await?;
    assert_eq!(balance_and_ledger(&pool, &ada.guest_id).await?, (200, 200));
    assert_eq!(
        sources("S1").await?,
        vec![
            ("stay:berlin/S1".to_string(), ada.guest_id.clone(), 300),
            ("stay:berlin/S1#1".to_string(), ada.guest_id.clone(), -100),
        ]
    );
    // The stay was Ben's all along.
    feed(vec![stay(
        "S1",
        &ben.guest_id,
        "2026-03-03",
        "102",
        CheckedOut,
    )])
    .await?;
    assert_eq!(balance_and_ledger(&pool, &ada.guest_id).await?, (0, 0));
    assert_eq!(balance_and_ledger(&pool, &ben.guest_id).await?, (200, 200));

    // A stay whose points were partly spent, then cancelled: it takes back what is left.
    feed(vec![stay(
        "S2",
        &ada.guest_id,
        "2026-03-03",
        "",
        CheckedOut,
    )])
    .await?;
    admin
        .post_points(pb::PostPointsRequest {
            request_id: "spend-s2".into(),
            guest_id: ada.guest_id.clone(),
            kind: pb::EntryKind::Redeem as i32,
            points: 150,
            debit: false,
            reason: "voucher".into(),
        })
        .await?;
    feed(vec![stay("S2", &ada.guest_id, "2026-03-03", "", Cancelled)]).await?;
    assert_eq!(balance_and_ledger(&pool, &ada.guest_id).await?, (0, 0));
    let given_back: Vec<i64> = sources("S2")
        .await?
        .into_iter()
        .map(|(_, _, p)| p)
        .collect();
    assert_eq!(given_back, vec![200, -50]);

    // Booked first, checked out later: earns once, however often the feed repeats it.
    feed(vec![stay("S3", &ben.guest_id, "2026-03-02", "", Booked)]).await?;
    for _ in 0..2 {
        feed(vec![stay(
            "S3",
            &ben.guest_id,
            "2026-03-02",
            "",
            CheckedOut,
        )])
        .await?;
    }
    assert_eq!(balance_and_ledger(&pool, &ben.guest_id).await?, (300, 300));

    // A stay naming a merged profile earns for the survivor and is stored under it.
    let dup = create(
        &mut admin,
        guest("Benjamin", "Second", "benjamin@example.com", ""),
    )
    .await?;
    admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: ben.guest_id.clone(),
            duplicate_guest_id: dup.guest_id.clone(),
        })
        .await?;
    feed(vec![stay(
        "S4",
        &dup.guest_id,
        "2026-03-02",
        "",
        CheckedOut,
    )])
    .await?;
    assert_eq!(balance_and_ledger(&pool, &ben.guest_id).await?, (400, 400));
    assert_eq!(balance_and_ledger(&pool, &dup.guest_id).await?, (0, 0));
    let holder: String =
        sqlx::query_scalar("SELECT guest_id FROM crm.stays WHERE pms_reservation_id = 'S4'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(holder, ben.guest_id);
    // The PMS repeating the old profile id is no change.
    let again = feed(vec![stay(
        "S4",
        &dup.guest_id,
        "2026-03-02",
        "",
        CheckedOut,
    )])
    .await?;
    assert_eq!(again.unchanged, 1);

    // The stays record what they credited: S1 two nights for Ben after four postings (Ada's
    // 300, her 100 back, her other 200 back, Ben's 200); S2 nothing after giving back.
    let recorded: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT pms_reservation_id, earned_nights, earn_postings FROM crm.stays ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        recorded,
        vec![
            ("S1".to_string(), 2, 4),
            ("S2".to_string(), 0, 2),
            ("S3".to_string(), 1, 1),
            ("S4".to_string(), 1, 1),
        ]
    );

    // An erased guest's stay corrected by a PMS that still knows the original id: the stay
    // stays with the pseudonym, and the original id gets no account back.
    let cy = create(&mut admin, guest("Cy", "Gone", "cy@example.com", "")).await?;
    feed(vec![stay(
        "S5",
        &cy.guest_id,
        "2026-03-04",
        "214",
        CheckedOut,
    )])
    .await?;
    let erased = admin
        .erase_guest(pb::EraseGuestRequest {
            guest_id: cy.guest_id.clone(),
            reason: "data subject request".into(),
        })
        .await?
        .into_inner();
    feed(vec![stay(
        "S5",
        &cy.guest_id,
        "2026-03-03",
        "214",
        CheckedOut,
    )])
    .await?;
    let (holder, nights, room): (String, i32, String) = sqlx::query_as(
        "SELECT guest_id, earned_nights, room FROM crm.stays WHERE pms_reservation_id = 'S5'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (holder.as_str(), nights, room.as_str()),
        (erased.guest_id.as_str(), 2, ""),
        "the room erasure blanked stays blank"
    );
    // The same stay sent again is no change.
    let resent = feed(vec![stay(
        "S5",
        &cy.guest_id,
        "2026-03-03",
        "214",
        CheckedOut,
    )])
    .await?;
    assert_eq!(resent.unchanged, 1);
    assert_eq!(
        balance_and_ledger(&pool, &erased.guest_id).await?,
        (200, 200)
    );
    let revived: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.loyalty_accounts WHERE guest_id = $1")
            .bind(&cy.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(revived, 0);
    service.shutdown().await
}

/// Properties the operator assigns to chains in the settings belong to them from the start: no
/// other chain's first write can take them, and one another chain registered first moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn properties_assigned_in_the_settings_belong_to_their_chain() -> anyhow::Result<()> {
    let stay = |property: &str, reservation: &str| {
        stay_at(
            property,
            reservation,
            "walk-in-guest",
            "",
            "2026-01-01",
            "2026-01-02",
            pb::StayStatus::Booked,
        )
    };
    // Before any assignment, this chain's feed registers porto.
    let first = spawn_service(&guestloop_crm::DEFINITION).await?;
    crm_as(&first, TokenBuilder::new(Role::ChainAdmin))
        .await?
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("porto", "P1")],
        })
        .await?;
    let TestService {
        service, database, ..
    } = first;
    service.shutdown().await?;

    // The operator assigns porto and lisbon to iberia; the service starts again on that data.
    let mut settings = test_settings();
    settings
        .chains
        .insert("iberia".into(), vec!["lisbon".into(), "porto".into()]);
    let service = spawn_service_with(&guestloop_crm::DEFINITION, settings, Some(database)).await?;
    let mut own = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut iberia = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("iberia"),
    )
    .await?;
    for property in ["lisbon", "porto"] {
        let refused = own
            .upsert_stays(pb::UpsertStaysRequest {
                stays: vec![stay(property, "X1")],
            })
            .await
            .expect_err("a property the settings give to another chain");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("another chain"), "{refused:?}");
        iberia
            .upsert_stays(pb::UpsertStaysRequest {
                stays: vec![stay(property, "I1")],
            })
            .await?;
    }
    let pool = service.database.admin_pool().await?;
    let registered: Vec<(String, String)> = sqlx::query_as(
        "SELECT property_id, chain_id FROM crm.property_chains ORDER BY property_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        registered,
        vec![
            ("lisbon".to_string(), "iberia".to_string()),
            ("porto".to_string(), "iberia".to_string()),
        ]
    );
    service.shutdown().await
}

/// Each chain defines its preference groups and their limits of likes; another chain keeps the
/// defaults, bad definitions are refused field by field, and negative entries are never limited.
#[tokio::test]
async fn each_chain_defines_its_preference_groups_and_limits() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut alpha = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("alpha")).await?;
    let mut beta = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("beta")).await?;
    let defaults = alpha
        .get_preference_groups(pb::GetPreferenceGroupsRequest {})
        .await?
        .into_inner();
    let names = |groups: &pb::PreferenceGroups| -> Vec<(String, i32)> {
        groups
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.likes_limit))
            .collect()
    };
    assert_eq!(names(&defaults).len(), 6);
    assert!(defaults.stamps.is_none(), "nobody set the defaults");
    let group = |name: &str, likes_limit: i32| pb::PreferenceGroup {
        name: name.into(),
        likes_limit,
    };
    let refused = alpha
        .update_preference_groups(pb::UpdatePreferenceGroupsRequest {
            groups: Some(pb::PreferenceGroups {
                groups: vec![group("minibar", 2), group("MiniBar ", 2), group("spa", 0)],
                stamps: None,
            }),
        })
        .await
        .expect_err("a name twice and a limit of 0");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = guestloop_testkit::violated_fields(&refused);
    assert_eq!(
        fields,
        ["groups.groups[1].name", "groups.groups[2].likes_limit"]
    );
    let mut supervisor =
        crm_as(&service, TokenBuilder::new(Role::Supervisor).chain("alpha")).await?;
    let denied = supervisor
        .update_preference_groups(pb::UpdatePreferenceGroupsRequest {
            groups: Some(pb::PreferenceGroups {
                groups: vec![group("minibar", 2)],
                stamps: None,
            }),
        })
        .await
        .expect_err("only chain roles define groups");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unchanged = alpha
        .get_preference_groups(pb::GetPreferenceGroupsRequest {})
        .await?
        .into_inner();
    assert_eq!(
        names(&unchanged),
        names(&defaults),
        "refusals change nothing"
    );

    let set = alpha
        .update_preference_groups(pb::UpdatePreferenceGroupsRequest {
            groups: Some(pb::PreferenceGroups {
                groups: vec![group(" Minibar", 2), group("room", 1)],
                stamps: None,
            }),
        })
        .await?
        .into_inner();
    assert_eq!(
        names(&set),
        [("minibar".to_string(), 2), ("room".to_string(), 1)]
    );
    assert!(set.stamps.is_some_and(|s| !s.updated_by.is_empty()));

    let preference = |group: &str, value: &str, polarity: pb::Polarity| pb::Preference {
        group: group.into(),
        value: value.into(),
        polarity: polarity as i32,
        ..Default::default()
    };
    let add = |client: &mut Crm, guest_id: &str, p: pb::Preference| {
        let mut client = client.clone();
        let request = pb::AddPreferenceRequest {
            guest_id: guest_id.into(),
            preference: Some(p),
        };
        async move { client.add_preference(request).await }
    };
    let ana = create(&mut alpha, guest("Ana", "Alpha", "ana@alpha.example", "")).await?;
    add(
        &mut alpha,
        &ana.guest_id,
        preference("minibar", "cola", pb::Polarity::Like),
    )
    .await?;
    add(
        &mut alpha,
        &ana.guest_id,
        preference("minibar", "juice", pb::Polarity::Like),
    )
    .await?;
    let full = add(
        &mut alpha,
        &ana.guest_id,
        preference("minibar", "beer", pb::Polarity::Like),
    )
    .await
    .expect_err("the chain allows two likes in minibar");
    assert_eq!(full.code(), Code::FailedPrecondition);
    add(
        &mut alpha,
        &ana.guest_id,
        preference("minibar", "peanuts", pb::Polarity::Allergy),
    )
    .await?;
    let unknown = add(
        &mut alpha,
        &ana.guest_id,
        preference("pillow", "soft", pb::Polarity::Like),
    )
    .await
    .expect_err("pillow is not one of alpha's groups");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("minibar"),
        "{}",
        unknown.message()
    );

    // Another chain keeps the defaults.
    let bo = create(&mut beta, guest("Bo", "Beta", "bo@beta.example", "")).await?;
    add(
        &mut beta,
        &bo.guest_id,
        preference("pillow", "soft", pb::Polarity::Like),
    )
    .await?;
    let foreign = add(
        &mut beta,
        &bo.guest_id,
        preference("minibar", "cola", pb::Polarity::Like),
    )
    .await
    .expect_err("minibar is alpha's group");
    assert_eq!(foreign.code(), Code::InvalidArgument);
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.preferences")
        .fetch_one(&service.database.admin_pool().await?)
        .await?;
    assert_eq!(held, 4, "two likes and an allergy of Ana's, Bo's pillow");
    service.shutdown().await
}

fn preference(group: &str, value: &str, polarity: pb::Polarity) -> pb::Preference {
    pb::Preference {
        group: group.into(),
        value: value.into(),
        polarity: polarity as i32,
        ..Default::default()
    }
}

async fn add_preference(
    client: &mut Crm,
    guest_id: &str,
    preference: pb::Preference,
) -> Result<pb::Guest, tonic::Status> {
    client
        .add_preference(pb::AddPreferenceRequest {
            guest_id: guest_id.into(),
            preference: Some(preference),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Adding an entry the guest already holds (same group, value and polarity; the value trimmed
/// as it is stored) records nothing: a retry answers the profile with the one entry, and a full
/// group still answers it instead of refusing it.
#[tokio::test]
async fn adding_a_preference_the_guest_holds_records_it_once() -> anyhow::Result<()> {
    use pb::Polarity::{Allergy, Dislike, Like};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let aiko = create(&mut admin, guest("Aiko", "Tanaka", "", "")).await?;
    let first = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("pillow", "buckwheat", Like),
    )
    .await?;
    let retried = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference(" Pillow", " buckwheat ", Like),
    )
    .await?;
    assert_eq!(retried.preferences, first.preferences, "the same one entry");
    assert_eq!(retried.preferences.len(), 1);
    add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("diet", "nuts", Allergy),
    )
    .await?;
    add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("diet", "nuts", Allergy),
    )
    .await?;
    let both = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("diet", "nuts", Dislike),
    )
    .await?;
    assert_eq!(
        both.avoid.len(),
        2,
        "an allergy and a dislike of the same are two entries"
    );
    // The retry took none of the group's three likes: two more fit, and then it is full.
    for value in ["feather", "memory foam"] {
        add_preference(
            &mut admin,
            &aiko.guest_id,
            preference("pillow", value, Like),
        )
        .await?;
    }
    let full = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("pillow", "latex", Like),
    )
    .await
    .expect_err("a fourth like");
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");
    let again = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("pillow", "buckwheat", Like),
    )
    .await?;
    assert_eq!(
        again.preferences.len(),
        3,
        "a retry into a full group is answered"
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.preferences WHERE guest_id = $1")
            .bind(&aiko.guest_id)
            .fetch_one(&service.database.admin_pool().await?)
            .await?;
    assert_eq!(stored, 5, "three likes, an allergy and a dislike");
    // Past 500 entries a profile takes no more, dislikes included, so it stays readable; an
    // entry it holds is still answered.
    sqlx::query(
        "INSERT INTO crm.preferences (preference_id, guest_id, grp, value, polarity, source, recorded_by, recorded_at) \
         SELECT gen_random_uuid(), $1, 'diet', 'dish ' || n, $2, 'staff', 'test', now() FROM generate_series(1, 495) AS n",
    )
    .bind(&aiko.guest_id)
    .bind(Dislike as i16)
    .execute(&service.database.admin_pool().await?)
    .await?;
    let crowded = add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("diet", "shellfish", Dislike),
    )
    .await
    .expect_err("a 501st entry");
    assert_eq!(crowded.code(), Code::FailedPrecondition, "{crowded:?}");
    add_preference(
        &mut admin,
        &aiko.guest_id,
        preference("diet", "nuts", Allergy),
    )
    .await?;
    service.shutdown().await
}

/// A merge keeps each entry once (the earliest recorded, with who recorded it), every dislike
/// and allergy of both, the survivor's likes and then the duplicate's latest up to the group's
/// limit; nothing is left on the merged profile.
#[tokio::test]
async fn a_merge_keeps_each_preference_once_and_no_group_beyond_its_limit() -> anyhow::Result<()> {
    use pb::Polarity::{Allergy, Dislike, Like};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut concierge = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).subject("concierge-oslo"),
    )
    .await?;
    let survivor = create(&mut admin, guest("Lars", "Holm", "lars@example.dk", "")).await?;
    let duplicate = create(&mut admin, guest("Lars", "Holm", "lars@example.dk", "")).await?;
    let (s, d) = (survivor.guest_id.as_str(), duplicate.guest_id.as_str());
    // The duplicate's buckwheat was recorded first, by the concierge.
    add_preference(&mut concierge, d, preference("pillow", "buckwheat", Like)).await?;
    add_preference(&mut admin, s, preference("pillow", "buckwheat", Like)).await?;
    add_preference(&mut admin, s, preference("pillow", "feather", Like)).await?;
    add_preference(&mut admin, s, preference("diet", "nuts", Allergy)).await?;
    add_preference(&mut admin, d, preference("pillow", "latex", Like)).await?;
    add_preference(&mut admin, d, preference("pillow", "down", Like)).await?;
    add_preference(&mut admin, d, preference("pillow", "very high", Dislike)).await?;
    add_preference(&mut admin, d, preference("diet", "nuts", Allergy)).await?;
    add_preference(&mut admin, d, preference("diet", "shellfish", Allergy)).await?;
    let merged = admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: s.into(),
            duplicate_guest_id: d.into(),
        })
        .await?
        .into_inner();
    let likes: Vec<(&str, &str)> = merged
        .preferences
        .iter()
        .map(|p| (p.value.as_str(), p.recorded_by.as_str()))
        .collect();
    let admin_subject = merged
        .preferences
        .iter()
        .find(|p| p.value == "feather")
        .map(|p| p.recorded_by.clone())
        .unwrap_or_default();
    assert_eq!(
        likes,
        [
            ("buckwheat", "concierge-oslo"),
            ("feather", admin_subject.as_str()),
            ("down", admin_subject.as_str())
        ],
        "pillow takes 3 likes: the survivor's two, then the duplicate's latest"
    );
    let mut avoid: Vec<&str> = merged.avoid.iter().map(|p| p.value.as_str()).collect();
    avoid.sort_unstable();
    assert_eq!(avoid, ["nuts", "shellfish", "very high"]);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.preferences WHERE guest_id = $1")
        .bind(d)
        .fetch_one(&service.database.admin_pool().await?)
        .await?;
    assert_eq!(left, 0, "nothing stays unseen on the merged profile");
    service.shutdown().await
}

/// Customer value and segments are profiling: a guest who has not consented is never scored,
/// and withdrawing consent clears what was stored.
#[tokio::test]
async fn customer_value_needs_the_guests_consent_to_profiling() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let willing = create(&mut admin, guest("Wil", "Willing", "wil@example.com", "")).await?;
    let unwilling = create(
        &mut admin,
        pb::Guest {
            consent: None,
            ..guest("Una", "Unwilling", "una@example.com", "")
        },
    )
    .await?;
    let today = chrono::Utc::now().date_naive();
    let stays: Vec<pb::Stay> = [&willing, &unwilling]
        .iter()
        .enumerate()
        .map(|(i, g)| pb::Stay {
            property_id: "paris".into(),
            pms_reservation_id: format!("C{i}"),
            guest_id: g.guest_id.clone(),
            arrival_date: (today - chrono::Duration::days(12)).to_string(),
            departure_date: (today - chrono::Duration::days(10)).to_string(),
            spend: Some(guestloop_proto::common::v1::Money {
                currency_code: "EUR".into(),
                minor_units: 80_000,
            }),
            status: pb::StayStatus::CheckedOut as i32,
            ..Default::default()
        })
        .collect();
    admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;
    admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: None })
        .await?;
    let read = |client: &mut Crm, guest_id: &str| {
        let mut client = client.clone();
        let request = pb::GetGuestRequest {
            guest_id: guest_id.into(),
            ..Default::default()
        };
        async move { anyhow::Ok(client.get_guest(request).await?.into_inner()) }
    };
    let scored = read(&mut admin, &willing.guest_id).await?;
    assert!(
        scored.customer_value > 0.0 && !scored.value_segment.is_empty(),
        "{scored:?}"
    );
    let unscored = read(&mut admin, &unwilling.guest_id).await?;
    assert_eq!(
        (unscored.customer_value, unscored.value_segment.as_str()),
        (0.0, "")
    );
    let refused = admin
        .get_customer_value(pb::GetCustomerValueRequest {
            guest_id: unwilling.guest_id.clone(),
        })
        .await
        .expect_err("no consent to profiling");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("profiling"),
        "{}",
        refused.message()
    );
    admin
        .get_customer_value(pb::GetCustomerValueRequest {
            guest_id: willing.guest_id.clone(),
        })
        .await?;
    // Wil withdraws consent: the value and segment go at once.
    let withdrawn = admin
        .update_guest(pb::UpdateGuestRequest {
            guest: Some(pb::Guest {
                guest_id: willing.guest_id.clone(),
                consent: Some(pb::Consent {
                    profiling: false,
                    source: "app".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["consent".into()],
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        (withdrawn.customer_value, withdrawn.value_segment.as_str()),
        (0.0, "")
    );
    admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: None })
        .await?;
    let still = read(&mut admin, &willing.guest_id).await?;
    assert_eq!(
        still.value_segment, "",
        "the next evaluation leaves them unscored"
    );
    service.shutdown().await
}

/// An empty guest id names no guest: every call that takes one refuses it as INVALID_ARGUMENT
/// naming the request's field, before looking anything up (and whatever the caller's role).
#[tokio::test]
async fn an_empty_guest_id_is_invalid_and_names_its_field() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Ana", "Silva", "", "")).await?;
    let mut own = crm_as(&service, TokenBuilder::new(Role::Guest).guest(&g.guest_id)).await?;
    let fields = |result: Result<(), tonic::Status>| match result {
        Ok(()) => vec!["accepted".to_string()],
        Err(status) if status.code() == Code::InvalidArgument => {
            guestloop_testkit::violated_fields(&status)
        }
        Err(status) => vec![format!("{:?}: {}", status.code(), status.message())],
    };
    let answers = [
        (
            "GetGuest",
            fields(
                admin
                    .get_guest(pb::GetGuestRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "GetGuest (guest)",
            fields(
                own.get_guest(pb::GetGuestRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "UpdateGuest",
            fields(
                admin
                    .update_guest(pb::UpdateGuestRequest {
                        guest: Some(pb::Guest {
                            notes: "quiet room".into(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["notes".into()],
                        }),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
            "guest.guest_id",
        ),
        (
            "MergeGuests (survivor)",
            fields(
                admin
                    .merge_guests(pb::MergeGuestsRequest {
                        surviving_guest_id: String::new(),
                        duplicate_guest_id: g.guest_id.clone(),
                    })
                    .await
                    .map(drop),
            ),
            "surviving_guest_id",
        ),
        (
            "MergeGuests (duplicate)",
            fields(
                admin
                    .merge_guests(pb::MergeGuestsRequest {
                        surviving_guest_id: g.guest_id.clone(),
                        duplicate_guest_id: String::new(),
                    })
                    .await
                    .map(drop),
            ),
            "duplicate_guest_id",
        ),
        (
            "EraseGuest",
            fields(
                admin
                    .erase_guest(pb::EraseGuestRequest {
                        guest_id: String::new(),
                        reason: "request by the guest".into(),
                    })
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "FindDuplicates",
            fields(
                admin
                    .find_duplicates(pb::FindDuplicatesRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "SetStrategicTier",
            fields(
                admin
                    .set_strategic_tier(pb::SetStrategicTierRequest {
                        guest_id: String::new(),
                        strategic: true,
                        reason: "key account".into(),
                    })
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "ExportGuestData",
            fields(
                admin
                    .export_guest_data(pb::ExportGuestDataRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "AddPreference",
            fields(
                admin
                    .add_preference(pb::AddPreferenceRequest {
                        guest_id: String::new(),
                        preference: Some(pb::Preference {
                            group: "pillow".into(),
                            value: "feather".into(),
                            polarity: pb::Polarity::Like as i32,
                            ..Default::default()
                        }),
                    })
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "RemovePreference",
            fields(
                admin
                    .remove_preference(pb::RemovePreferenceRequest {
                        guest_id: String::new(),
                        preference_id: "p-1".into(),
                    })
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "GetLoyaltyAccount",
            fields(
                admin
                    .get_loyalty_account(pb::GetLoyaltyAccountRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "ListLedger",
            fields(
                admin
                    .list_ledger(pb::ListLedgerRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "ListLedger (guest)",
            fields(
                own.list_ledger(pb::ListLedgerRequest::default())
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
        (
            "PostPoints",
            fields(
                admin
                    .post_points(pb::PostPointsRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        guest_id: String::new(),
                        kind: pb::EntryKind::Bonus as i32,
                        points: 100,
                        debit: false,
                        reason: "birthday".into(),
                    })
                    .await
                    .map(drop),
            ),
            "guest_id",
        ),
    ];
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, fields, field)| fields != &[field.to_string()])
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    service.shutdown().await
}

/// A guest id given at creation (an id from another system) is at most 128 characters of
/// printable ASCII, without spaces or control characters, and never a payment card number;
/// without one the service assigns an id.
#[tokio::test]
async fn a_given_guest_id_is_printable_bounded_and_no_card_number() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut wrong = Vec::new();
    for id in [
        "g".repeat(6000),
        "g".repeat(129),
        "4111111111111111".to_string(),
        "pms-4111-1111-1111-1111".to_string(),
        "g-1\nDROP".to_string(),
        "g 1".to_string(),
        "g-\u{7f}".to_string(),
        "gäst-1".to_string(),
    ] {
        let answer = admin
            .create_guest(pb::CreateGuestRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                guest: Some(pb::Guest {
                    guest_id: id.clone(),
                    ..guest("Ana", "Silva", "", "")
                }),
            })
            .await;
        match answer {
            Err(status)
                if status.code() == Code::InvalidArgument
                    && guestloop_testkit::violated_fields(&status) == ["guest.guest_id"] => {}
            other => wrong.push(format!("{id:.40?}: {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    for id in ["G".repeat(128), "pms:HX-0042/7".to_string()] {
        let created = create(
            &mut admin,
            pb::Guest {
                guest_id: id.clone(),
                ..guest("Ana", "Silva", "", "")
            },
        )
        .await?;
        assert_eq!(created.guest_id, id);
    }
    let assigned = create(&mut admin, guest("Ana", "Silva", "", "")).await?;
    assert!(assigned.guest_id.starts_with("g-"), "{}", assigned.guest_id);
    service.shutdown().await
}

/// A profile keeps a name, as CreateGuest requires one (given or family): an update may clear
/// one of them, not both.
#[tokio::test]
async fn an_update_cannot_leave_a_profile_without_a_name() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, guest("Ana", "Silva", "", "")).await?;
    let update = |paths: &[&str], given: &str, family: &str| pb::UpdateGuestRequest {
        guest: Some(pb::Guest {
            guest_id: g.guest_id.clone(),
            given_name: given.into(),
            family_name: family.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    };
    let refused = admin
        .update_guest(update(&["given_name", "family_name"], "", " "))
        .await
        .expect_err("both names cleared");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        guestloop_testkit::violated_fields(&refused),
        ["guest.given_name", "guest.family_name"]
    );
    // One name may go while the other stays; then the last one may not.
    let given_only = admin
        .update_guest(update(&["family_name"], "", ""))
        .await?
        .into_inner();
    assert_eq!(
        (
            given_only.given_name.as_str(),
            given_only.family_name.as_str()
        ),
        ("Ana", "")
    );
    let refused = admin
        .update_guest(update(&["given_name"], "", "Silva"))
        .await
        .expect_err("the last name cleared");
    assert_eq!(
        guestloop_testkit::violated_fields(&refused),
        ["guest.given_name"]
    );
    let kept = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: g.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(kept.given_name, "Ana");
    // Swapping names in one update is fine.
    let swapped = admin
        .update_guest(update(&["given_name", "family_name"], "", "Silva"))
        .await?
        .into_inner();
    assert_eq!(
        (swapped.given_name.as_str(), swapped.family_name.as_str()),
        ("", "Silva")
    );
    service.shutdown().await
}
