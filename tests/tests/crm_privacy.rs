//! CRM privacy end to end: erasure reaches every id a guest was known by (profiles merged into
//! theirs included), every copy of the guest's words (complaints, the work orders facilities
//! opened from them) and nothing of anyone else, and is logged.

use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_proto::complaints::v1 as cpb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as pb;
use guestloop_testkit::crm::{create_guest as create, crm_as, guest, Crm};
use guestloop_testkit::{
    spawn_peers, spawn_service, spawn_service_with, test_settings, TestService, TokenBuilder,
};
use tonic::Code;

async fn erase(client: &mut Crm, guest_id: &str) -> anyhow::Result<pb::EraseGuestResponse> {
    Ok(client
        .erase_guest(pb::EraseGuestRequest {
            guest_id: guest_id.into(),
            reason: "data subject request".into(),
        })
        .await?
        .into_inner())
}

async fn merge(client: &mut Crm, survivor: &str, duplicate: &str) -> anyhow::Result<pb::Guest> {
    Ok(client
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: survivor.into(),
            duplicate_guest_id: duplicate.into(),
        })
        .await?
        .into_inner())
}

/// CRM, and a complaints service that follows CRM's feed.
async fn crm_and_complaints() -> anyhow::Result<(TestService, TestService)> {
    let crm = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut settings = test_settings();
    settings.endpoints.insert("crm".into(), crm.url());
    let complaints = spawn_service_with(&guestloop_complaints::DEFINITION, settings, None).await?;
    Ok((crm, complaints))
}

/// A complaint filed under the duplicate's id (before the merge) names the same person: erasing
/// the survivor scrubs it too, the guest's rating comment included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_scrubs_the_complaints_of_profiles_merged_into_the_guest() -> anyhow::Result<()> {
    let (crm, complaints) = crm_and_complaints().await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, guest("Ines", "Moreau", "ines@example.com", "")).await?;
    let duplicate = create(
        &mut admin,
        guest(
            "Ines",
            "Moreau",
            "i.moreau@example.com",
            "+33 6 12 34 56 78",
        ),
    )
    .await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["paris"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let filed = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "dup-1".into(),
            complaint: Some(cpb::Complaint {
                property_id: "paris".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: duplicate.guest_id.clone(),
                    name: "Ines Moreau".into(),
                    email: duplicate.email.clone(),
                    phone: duplicate.phone.clone(),
                }),
                channel: cpb::Channel::App as i32,
                category: "noise".into(),
                description: "street noise all night".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let pool = complaints.database.admin_pool().await?;
    sqlx::query(
        "UPDATE complaints.complaints SET rating_comment = 'Ines: the night porter was rude' \
         WHERE complaint_id = $1::uuid",
    )
    .bind(&filed.complaint_id)
    .execute(&pool)
    .await?;
    merge(&mut admin, &survivor.guest_id, &duplicate.guest_id).await?;
    erase(&mut admin, &survivor.guest_id).await?;
    let identified = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM complaints.complaints WHERE guest_id = $1 OR guest_email = $2 \
             OR guest_name <> '' OR rating_comment <> ''",
        )
        .bind(&duplicate.guest_id)
        .bind(&duplicate.email)
        .fetch_one(&pool)
        .await
    };
    for _ in 0..100 {
        if identified().await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        identified().await?,
        0,
        "the merged profile's complaint is scrubbed"
    );
    let in_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events WHERE position(convert_to($1, 'UTF8') IN payload) > 0",
    )
    .bind(&duplicate.email)
    .fetch_one(&pool)
    .await?;
    assert_eq!(in_events, 0, "its events no longer name the guest");
    complaints.shutdown().await?;
    crm.shutdown().await
}

/// An event a complaints writer commits while the erasure is under way is scrubbed too: the
/// erasure waits for the writer's lock on the complaint, and then reads the writer's event
/// along with the rest of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_written_during_the_erasure_loses_the_guests_words() -> anyhow::Result<()> {
    let (crm, complaints) = crm_and_complaints().await?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let noa = create(&mut admin, guest("Noa", "Levi", "noa@example.com", "")).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["lisbon"])
        .mint()?;
    let mut agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let words = "Noa Levi, gluten free: the kitchen served bread again";
    let filed = agent
        .create_complaint(cpb::CreateComplaintRequest {
            request_id: "race-1".into(),
            complaint: Some(cpb::Complaint {
                property_id: "lisbon".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: noa.guest_id.clone(),
                    name: "Noa Levi".into(),
                    ..Default::default()
                }),
                channel: cpb::Channel::App as i32,
                category: "noise".into(),
                description: words.into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let pool = complaints.database.admin_pool().await?;
    // A writer holds the complaint, as a status change or a linked work order does.
    let mut writer = pool.begin().await?;
    sqlx::query("SET LOCAL search_path = complaints")
        .execute(&mut *writer)
        .await?;
    sqlx::query("SELECT 1 FROM complaints WHERE complaint_id = $1::uuid FOR UPDATE")
        .bind(&filed.complaint_id)
        .execute(&mut *writer)
        .await?;
    erase(&mut admin, &noa.guest_id).await?;
    // The erasure comes to wait on the writer's lock (on whichever of its statements first
    // touches the complaint); the writer then records its event and commits.
    guestloop_testkit::wait_for_lock(&pool, "guest_id = $1", 1).await?;
    guestloop_kit::events::append(
        &mut writer,
        guestloop_kit::events::NewEvent {
            event_type: "complaints.complaint.updated",
            subject: format!("complaints/{}", filed.complaint_id),
            chain_id: &filed.chain_id,
            property_id: &filed.property_id,
            payload: &cpb::ComplaintChanged {
                complaint: Some(filed.clone()),
                from_status: filed.status,
                actor: "writer".into(),
            },
        },
    )
    .await?;
    writer.commit().await?;
    let description = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT description FROM complaints.complaints WHERE complaint_id = $1::uuid",
        )
        .bind(&filed.complaint_id)
        .fetch_one(&pool)
        .await
    };
    for _ in 0..100 {
        if description().await? != words {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(description().await?, guestloop_kit::text::ERASED);
    let in_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events WHERE position(convert_to($1, 'UTF8') IN payload) > 0",
    )
    .bind(words)
    .fetch_one(&pool)
    .await?;
    assert_eq!(in_events, 0, "the writer's event lost the words as well");
    complaints.shutdown().await?;
    crm.shutdown().await
}

/// The guest's words go everywhere they were copied: the erased guest's facility complaint
/// loses its description and booking reference, and the work order facilities opened from it
/// loses the description it copied, in its events too. Another guest's complaint and work order
/// keep theirs, and the room, category and repair history stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_drops_the_guests_words_from_complaints_and_their_work_orders() -> anyhow::Result<()>
{
    let crm = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut settings = test_settings();
    settings.endpoints.insert("crm".into(), crm.url());
    let [facilities, complaints]: [TestService; 2] = spawn_peers(
        settings,
        &[
            &guestloop_facilities::DEFINITION,
            &guestloop_complaints::DEFINITION,
        ],
    )
    .await?
    .try_into()
    .map_err(|_| anyhow::anyhow!("two services"))?;
    let mut admin = crm_as(&crm, TokenBuilder::new(Role::ChainAdmin)).await?;
    let erased = create(&mut admin, guest("Lena", "Vogel", "lena@example.com", "")).await?;
    let kept = create(&mut admin, guest("Omar", "Haddad", "omar@example.com", "")).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["berlin"])
        .mint()?;
    let agent = ComplaintsServiceClient::new(complaints.channel_with_token(&token).await?);
    let file = |g: &pb::Guest, room: &str, words: &str| {
        let request = cpb::CreateComplaintRequest {
            request_id: format!("ac-{room}"),
            complaint: Some(cpb::Complaint {
                property_id: "berlin".into(),
                guest: Some(cpb::GuestRef {
                    guest_id: g.guest_id.clone(),
                    name: format!("{} {}", g.given_name, g.family_name),
                    ..Default::default()
                }),
                stay: Some(cpb::StayContext {
                    reservation_ref: format!("PMS-{room}"),
                    room: room.into(),
                    phase: cpb::StayPhase::InHouse as i32,
                }),
                channel: cpb::Channel::App as i32,
                category: "heating_ac".into(),
                cause: cpb::Cause::Facility as i32,
                description: words.into(),
                ..Default::default()
            }),
        };
        let mut agent = agent.clone();
        async move { agent.create_complaint(request).await }
    };
    let lena_words = "Lena Vogel here, allergic to dust: the AC in 305 blows dust";
    let omar_words = "The AC in 306 is loud";
    let lena = file(&erased, "305", lena_words).await?.into_inner();
    let omar = file(&kept, "306", omar_words).await?.into_inner();
    let facilities_pool = facilities.database.admin_pool().await?;
    let complaints_pool = complaints.database.admin_pool().await?;
    let descriptions = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT source_id, room, description FROM facilities.work_orders ORDER BY room",
        )
        .fetch_all(&facilities_pool)
        .await
    };
    let mut orders = Vec::new();
    for _ in 0..150 {
        orders = descriptions().await?;
        if orders.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        orders,
        vec![
            (lena.complaint_id.clone(), "305".into(), lena_words.into()),
            (omar.complaint_id.clone(), "306".into(), omar_words.into()),
        ],
        "each facility complaint opened a work order with its words"
    );

    erase(&mut admin, &erased.guest_id).await?;
    let expected = vec![
        (lena.complaint_id.clone(), "305".into(), "[erased]".into()),
        (omar.complaint_id.clone(), "306".into(), omar_words.into()),
    ];
    for _ in 0..150 {
        orders = descriptions().await?;
        if orders == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(orders, expected, "only the erased guest's words went");
    let complaint: (String, String, String, String) = sqlx::query_as(
        "SELECT description, reservation_ref, room, category FROM complaints.complaints          WHERE complaint_id = $1::uuid",
    )
    .bind(&lena.complaint_id)
    .fetch_one(&complaints_pool)
    .await?;
    assert_eq!(
        complaint,
        (
            "[erased]".into(),
            String::new(),
            "305".into(),
            "heating_ac".into()
        )
    );
    let other: (String, String) = sqlx::query_as(
        "SELECT description, reservation_ref FROM complaints.complaints WHERE complaint_id = $1::uuid",
    )
    .bind(&omar.complaint_id)
    .fetch_one(&complaints_pool)
    .await?;
    assert_eq!(other, (omar_words.to_string(), "PMS-306".to_string()));
    let in_log = |pool: sqlx::PgPool, table: &'static str, text: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM {table} WHERE position(convert_to($1, 'UTF8') IN payload) > 0"
        ))
        .bind(text)
        .fetch_one(&pool)
        .await
    };
    for (pool, table) in [
        (&complaints_pool, "complaints.outbox_events"),
        (&facilities_pool, "facilities.outbox_events"),
    ] {
        assert_eq!(
            in_log(pool.clone(), table, "allergic to dust").await?,
            0,
            "{table} no longer holds the erased guest's words"
        );
        assert!(
            in_log(pool.clone(), table, omar_words).await? > 0,
            "{table} keeps the other guest's"
        );
    }
    assert_eq!(
        in_log(
            complaints_pool.clone(),
            "complaints.outbox_events",
            "PMS-305"
        )
        .await?,
        0,
        "nor the booking reference"
    );
    let notices: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM complaints.outbox_events WHERE event_type = 'complaints.complaint.guest_erased'",
    )
    .fetch_one(&complaints_pool)
    .await?;
    assert_eq!(notices, 1, "one notice, for the erased guest's complaint");
    facilities.shutdown().await?;
    complaints.shutdown().await?;
    crm.shutdown().await
}

/// Stored CreateGuest answers go with exactly the erased guest: not with a guest whose id starts
/// the same, nor with another chain's guest whose answer merely mentions the id.
#[tokio::test]
async fn erasure_removes_only_the_erased_guests_stored_answers() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut other_chain = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("other-chain"),
    )
    .await?;
    let create_with = |request_id: &str, guest_id: &str, notes: &str| pb::CreateGuestRequest {
        request_id: request_id.into(),
        guest: Some(pb::Guest {
            guest_id: guest_id.into(),
            family_name: "Berg".into(),
            notes: notes.into(),
            ..Default::default()
        }),
    };
    admin
        .create_guest(create_with("create-g1001", "G1001", ""))
        .await?;
    admin
        .create_guest(create_with("create-g10011", "G10011", ""))
        .await?;
    other_chain
        .create_guest(create_with("create-g2001", "G2001", "same person as G1001"))
        .await?;
    erase(&mut admin, "G1001").await?;
    // A retried create gets its stored answer back; had it been deleted, the retry would try
    // to create the guest again and fail.
    let replayed = admin
        .create_guest(create_with("create-g10011", "G10011", ""))
        .await?
        .into_inner();
    assert_eq!(replayed.guest_id, "G10011");
    let replayed = other_chain
        .create_guest(create_with("create-g2001", "G2001", "same person as G1001"))
        .await?
        .into_inner();
    assert_eq!(replayed.guest_id, "G2001");
    let pool = service.database.admin_pool().await?;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM crm.idempotency_keys WHERE method = 'CreateGuest' ORDER BY request_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        stored,
        vec!["create-g1001", "create-g10011", "create-g2001"]
    );
    // The erased guest's own create, retried, answers the erased record: it creates nobody
    // again and shows none of their details.
    let retried = admin
        .create_guest(create_with("create-g1001", "G1001", ""))
        .await?
        .into_inner();
    assert!(
        retried.erased && retried.guest_id.starts_with("erased-"),
        "{retried:?}"
    );
    assert!(retried.given_name.is_empty() && retried.email.is_empty());
    let gone = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: "G1001".into(),
            property_id: String::new(),
        })
        .await
        .expect_err("erased");
    assert_eq!(gone.code(), Code::NotFound);
    service.shutdown().await
}

/// Erasing by the old id of a merged profile erases the person (the survivor), not the empty
/// shell the merge left, as export reads the survivor under that id too.
#[tokio::test]
async fn erasing_by_a_merged_id_erases_the_survivor() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, guest("Jonas", "Weber", "jonas@example.com", "")).await?;
    let duplicate = create(
        &mut admin,
        guest("Jonas", "Weber", "j.weber@example.com", "+49 170 1234567"),
    )
    .await?;
    merge(&mut admin, &survivor.guest_id, &duplicate.guest_id).await?;
    let erased = erase(&mut admin, &duplicate.guest_id).await?;
    assert!(
        erased.guest_id.starts_with("erased-"),
        "{}",
        erased.guest_id
    );
    for id in [&survivor.guest_id, &duplicate.guest_id] {
        let gone = admin
            .get_guest(pb::GetGuestRequest {
                guest_id: id.clone(),
                property_id: String::new(),
            })
            .await
            .expect_err("erased");
        assert_eq!(gone.code(), Code::NotFound, "{id}");
    }
    let pool = service.database.admin_pool().await?;
    let (left, erased_row): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.guests WHERE family_name = 'Weber'), \
                (SELECT erased FROM crm.guests WHERE guest_id = $1)",
    )
    .bind(&erased.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!((left, erased_row), (0, true), "the person is gone");
    let subjects: Vec<String> = sqlx::query_scalar(
        "SELECT subject FROM crm.outbox_events WHERE event_type = 'crm.guest.erased' ORDER BY subject",
    )
    .fetch_all(&pool)
    .await?;
    let mut expected = vec![
        format!("guests/{}", survivor.guest_id),
        format!("guests/{}", duplicate.guest_id),
    ];
    expected.sort();
    assert_eq!(subjects, expected, "the events name the survivor too");
    service.shutdown().await
}

/// Requests to erase one person made at once, by their id and by the old id of a profile merged
/// into theirs: one erases, the others find nobody left (NOT_FOUND). None fails on a deadlock
/// (ABORTED) or half-way: the person and their merged profile go once, with one event per id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasures_of_one_person_by_two_ids_at_once_erase_once() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    for round in 0..6 {
        let survivor = create(
            &mut admin,
            guest("Ines", "Round", &format!("ines{round}@example.com"), ""),
        )
        .await?;
        let duplicate = create(
            &mut admin,
            guest("Ines", "Round", &format!("i.round{round}@example.com"), ""),
        )
        .await?;
        merge(&mut admin, &survivor.guest_id, &duplicate.guest_id).await?;
        let calls: Vec<_> = (0..6)
            .map(|n| {
                let mut client = admin.clone();
                let id = if n % 2 == 0 {
                    survivor.guest_id.clone()
                } else {
                    duplicate.guest_id.clone()
                };
                tokio::spawn(async move {
                    client
                        .erase_guest(pb::EraseGuestRequest {
                            guest_id: id,
                            reason: "data subject request".into(),
                        })
                        .await
                })
            })
            .collect();
        let mut erased = 0;
        for call in calls {
            match call.await? {
                Ok(_) => erased += 1,
                Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            }
        }
        assert_eq!(
            erased, 1,
            "round {round}: one erasure, the rest find nobody"
        );
    }
    let pool = service.database.admin_pool().await?;
    let (left, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.guests WHERE family_name = 'Round'), \
                (SELECT count(*) FROM crm.outbox_events WHERE event_type = 'crm.guest.erased')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (left, events),
        (0, 12),
        "six people, two ids each, one event per id"
    );
    service.shutdown().await
}

async fn export(client: &mut Crm, guest_id: &str) -> anyhow::Result<serde_json::Value> {
    let export = client
        .export_guest_data(pb::ExportGuestDataRequest {
            guest_id: guest_id.into(),
        })
        .await?
        .into_inner();
    Ok(serde_json::from_str(&export.json)?)
}

/// A quality manager may export a guest's data but not read their contact details: the export
/// leaves them (and their normalised forms) out; a chain admin's export holds them.
#[tokio::test]
async fn exports_hold_contact_details_only_for_roles_that_may_read_them() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut quality = crm_as(&service, TokenBuilder::new(Role::ChainQualityManager)).await?;
    let created = create(
        &mut admin,
        guest(
            "Sofia",
            "Lund",
            "Sofia.Lund@example.com",
            "+46 70 123 45 67",
        ),
    )
    .await?;
    let full = export(&mut admin, &created.guest_id).await?;
    assert_eq!(full["guest"][0]["email"], "Sofia.Lund@example.com");
    assert_eq!(full["guest"][0]["phone_key"], "+46701234567");
    let without = export(&mut quality, &created.guest_id).await?;
    assert_eq!(without["guest"][0]["family_name"], "Lund");
    let text = without.to_string();
    for contact in [
        "sofia.lund@example.com",
        "Sofia.Lund",
        "70 123 45 67",
        "+46701234567",
    ] {
        assert!(!text.contains(contact), "`{contact}` in {text}");
    }
    service.shutdown().await
}

/// The export holds everything CRM keeps on the profiles merged into the guest, as it does the
/// guest's own profile (company, language, consent, …), and what is still filed under their
/// ids; their contact keys only for roles that may read contact details.
#[tokio::test]
async fn an_export_holds_what_crm_keeps_on_profiles_merged_into_the_guest() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut quality = crm_as(&service, TokenBuilder::new(Role::ChainQualityManager)).await?;
    let survivor = create(
        &mut admin,
        pb::Guest {
            company: "Holm Shipping".into(),
            language: "da".into(),
            ..guest("Lars", "Holm", "lars@example.dk", "")
        },
    )
    .await?;
    let duplicate = create(
        &mut admin,
        pb::Guest {
            company: "Nordic Freight Partners".into(),
            language: "sv".into(),
            consent: Some(pb::Consent {
                marketing: true,
                source: "kiosk-goteborg".into(),
                ..Default::default()
            }),
            ..guest("Lars", "Holm", "lars.holm@example.se", "")
        },
    )
    .await?;
    // The survivor's consent is the more recent, so the duplicate's stays on its own profile.
    admin
        .update_guest(pb::UpdateGuestRequest {
            guest: Some(pb::Guest {
                guest_id: survivor.guest_id.clone(),
                consent: Some(pb::Consent {
                    source: "front_desk".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["consent".into()],
            }),
            ..Default::default()
        })
        .await?;
    merge(&mut admin, &survivor.guest_id, &duplicate.guest_id).await?;
    // A stay still filed under the old id (written as the merge took the rest along).
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "INSERT INTO crm.stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, status) \
         VALUES ('oslo', 'R-OLD', $1, '2026-02-01', '2026-02-03', 'checked_out')",
    )
    .bind(&duplicate.guest_id)
    .execute(&pool)
    .await?;

    let full = export(&mut admin, &survivor.guest_id).await?;
    let merged = &full["merged_guests"][0];
    assert_eq!(merged["guest_id"], duplicate.guest_id.as_str());
    assert_eq!(merged["company"], "Nordic Freight Partners");
    assert_eq!(merged["language"], "sv");
    assert_eq!(merged["consent_marketing"], true);
    assert_eq!(merged["consent_source"], "kiosk-goteborg");
    assert_eq!(merged["email_key"], "lars.holm@example.se");
    assert_eq!(full["guest"][0]["company"], "Holm Shipping");
    assert_eq!(full["guest"].as_array().map(Vec::len), Some(1));
    assert_eq!(full["stays"][0]["pms_reservation_id"], "R-OLD");
    // By the merged id, the export is the same person's.
    let by_old_id = export(&mut admin, &duplicate.guest_id).await?;
    assert_eq!(by_old_id["merged_guests"], full["merged_guests"]);

    let without = export(&mut quality, &survivor.guest_id).await?;
    assert_eq!(
        without["merged_guests"][0]["company"],
        "Nordic Freight Partners"
    );
    let text = without.to_string();
    for contact in ["lars.holm@example.se", "lars@example.dk", "email_key"] {
        assert!(!text.contains(contact), "`{contact}` in {text}");
    }
    service.shutdown().await
}

/// Whether an agent reads contact details depends on their department; a token that names no
/// department reads none (and logs no contact read), where it used to read them all.
#[tokio::test]
async fn staff_without_a_department_read_no_contact_details() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let created = create(
        &mut admin,
        guest("Tomas", "Novak", "tomas@example.cz", "+420 601 123 456"),
    )
    .await?;
    let mut undepartmented = crm_as(
        &service,
        TokenBuilder::new(Role::Agent).subject("no-department"),
    )
    .await?;
    let seen = undepartmented
        .get_guest(pb::GetGuestRequest {
            guest_id: created.guest_id.clone(),
            property_id: String::new(),
        })
        .await?
        .into_inner();
    assert!(seen.contact_details_hidden);
    assert_eq!((seen.email.as_str(), seen.phone.as_str()), ("", ""));
    assert_eq!(seen.family_name, "Novak");
    let pool = service.database.admin_pool().await?;
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.contact_access_log WHERE actor = 'no-department'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(logged, 0);
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

/// A group full of likes still takes an allergy or a dislike (what could harm the guest is never
/// refused), while one more like is refused; an erased profile takes nothing.
#[tokio::test]
async fn a_full_group_still_takes_allergies_and_an_erased_profile_takes_nothing(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let created = create(&mut admin, guest("Aiko", "Tanaka", "", "")).await?;
    let client = admin.clone();
    let add = |p: pb::Preference, guest_id: String| {
        let mut admin = client.clone();
        async move {
            admin
                .add_preference(pb::AddPreferenceRequest {
                    guest_id,
                    preference: Some(p),
                })
                .await
        }
    };
    // "pillow" holds 3 likes.
    for value in ["buckwheat", "feather", "memory foam"] {
        add(
            preference("pillow", value, pb::Polarity::Like),
            created.guest_id.clone(),
        )
        .await?;
    }
    let full = add(
        preference("pillow", "latex", pb::Polarity::Like),
        created.guest_id.clone(),
    )
    .await
    .expect_err("a fourth like");
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");
    add(
        preference("pillow", "down feathers", pb::Polarity::Allergy),
        created.guest_id.clone(),
    )
    .await?;
    let answered = add(
        preference("pillow", "very high pillows", pb::Polarity::Dislike),
        created.guest_id.clone(),
    )
    .await?
    .into_inner();
    assert_eq!(
        (answered.preferences.len(), answered.avoid.len()),
        (3, 2),
        "three likes, and both things to avoid"
    );

    let erased = erase(&mut admin, &created.guest_id).await?;
    let refused = add(
        preference("diet", "shellfish", pb::Polarity::Allergy),
        erased.guest_id.clone(),
    )
    .await
    .expect_err("an erased profile");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let pool = service.database.admin_pool().await?;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.preferences WHERE guest_id = $1")
            .bind(&erased.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(stored, 0);
    service.shutdown().await
}

/// A merge keeps the higher tier of the two profiles and a strategic tier set by hand on the
/// duplicate, each tier change recorded in the survivor's history with an event.
#[tokio::test]
async fn a_merge_keeps_the_higher_tier_and_a_manual_strategic_flag() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, guest("Lars", "Holm", "lars@example.dk", "")).await?;
    let regular = create(&mut admin, guest("Lars", "Holm", "l.holm@example.dk", "")).await?;
    let strategic = create(&mut admin, guest("Lars", "Holm", "holm@example.dk", "")).await?;
    let pool = service.database.admin_pool().await?;
    sqlx::query("UPDATE crm.guests SET tier = 'regular' WHERE guest_id = $1")
        .bind(&regular.guest_id)
        .execute(&pool)
        .await?;
    admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: strategic.guest_id.clone(),
            strategic: true,
            reason: "key account".into(),
        })
        .await?;
    let merged = merge(&mut admin, &survivor.guest_id, &regular.guest_id).await?;
    assert_eq!(
        (merged.tier.as_str(), merged.strategic_manual),
        ("regular", false)
    );
    let merged = merge(&mut admin, &survivor.guest_id, &strategic.guest_id).await?;
    assert_eq!(
        (merged.tier.as_str(), merged.strategic_manual),
        ("strategic", true),
        "the manual strategic tier survives the merge"
    );
    // Merging a lower tier in changes nothing.
    let lower = create(&mut admin, guest("Lars", "Holm", "lh@example.dk", "")).await?;
    let merged = merge(&mut admin, &survivor.guest_id, &lower.guest_id).await?;
    assert_eq!(
        (merged.tier.as_str(), merged.strategic_manual),
        ("strategic", true)
    );
    let changes: Vec<(String, String)> = sqlx::query_as(
        "SELECT from_tier, to_tier FROM crm.tier_history WHERE guest_id = $1 AND reason LIKE 'merged%' \
         ORDER BY changed_at",
    )
    .bind(&survivor.guest_id)
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        changes,
        vec![
            ("new".to_string(), "regular".to_string()),
            ("regular".to_string(), "strategic".to_string())
        ]
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.outbox_events WHERE event_type = 'crm.tier.changed' AND subject = $1",
    )
    .bind(format!("guests/{}", survivor.guest_id))
    .fetch_one(&pool)
    .await?;
    assert_eq!(events, 2, "one tier-changed event per change");
    service.shutdown().await
}

/// Every erasure is logged in its own transaction's commit: the pseudonym, who (subject and
/// role), the chain, the reason and when; never the original id.
#[tokio::test]
async fn an_erasure_is_logged_under_the_pseudonym() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut dpo = crm_as(
        &service,
        TokenBuilder::new(Role::GeneralManager).subject("gm-privacy"),
    )
    .await?;
    let created = create(&mut admin, guest("Eva", "Kovac", "eva@example.si", "")).await?;
    let too_long = dpo
        .erase_guest(pb::EraseGuestRequest {
            guest_id: created.guest_id.clone(),
            reason: "x".repeat(501),
        })
        .await
        .expect_err("a reason of 501 characters");
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(too_long.message().contains("reason"), "{too_long:?}");
    // The log outlives the person: it names the request, not them.
    let naming = dpo
        .erase_guest(pb::EraseGuestRequest {
            guest_id: created.guest_id.clone(),
            reason: "asked by eva@example.si on the phone".into(),
        })
        .await
        .expect_err("an email address in the reason");
    assert_eq!(naming.code(), Code::InvalidArgument);
    let erased = dpo
        .erase_guest(pb::EraseGuestRequest {
            guest_id: created.guest_id.clone(),
            reason: "request of 2031-05-02, ticket DSR-17".into(),
        })
        .await?
        .into_inner();
    // The erased record takes no new free text: a tier set by hand would store its reason and
    // announce it, with nothing left to scrub it.
    let refused = admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: erased.guest_id.clone(),
            strategic: true,
            reason: "asked for by Eva Kovac".into(),
        })
        .await
        .expect_err("an erased guest");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let pool = service.database.admin_pool().await?;
    let logged: Vec<(String, String, String, String, String, bool)> = sqlx::query_as(
        "SELECT pseudonym, chain_id, actor, role, reason, erased_at > now() - interval '1 minute' \
         FROM crm.erasure_log",
    )
    .fetch_all(&pool)
    .await?;
    let chain: String = sqlx::query_scalar("SELECT chain_id FROM crm.guests WHERE guest_id = $1")
        .bind(&erased.guest_id)
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        logged,
        vec![(
            erased.guest_id.clone(),
            chain,
            "gm-privacy".to_string(),
            Role::GeneralManager.as_str().to_string(),
            "request of 2031-05-02, ticket DSR-17".to_string(),
            true
        )]
    );
    let naming: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.erasure_log t WHERE position($1 IN t::text) > 0",
    )
    .bind(&created.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(naming, 0, "the log never names the original id");
    service.shutdown().await
}

/// Redirects never chain: ten profiles merged one after another into the next all lead to the
/// last survivor in one step, so the oldest id still reaches the guest.
#[tokio::test]
async fn a_long_line_of_merges_leaves_every_old_id_one_step_from_the_guest() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut ids = Vec::new();
    for n in 0..11 {
        let g = create(
            &mut admin,
            guest("Mia", "Merge", &format!("mia{n}@example.de"), ""),
        )
        .await?;
        ids.push(g.guest_id);
    }
    for pair in ids.windows(2) {
        merge(&mut admin, &pair[1], &pair[0]).await?;
    }
    let last = ids.last().cloned().unwrap_or_default();
    let pool = service.database.admin_pool().await?;
    let targets: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT merged_into FROM crm.guests WHERE guest_id = ANY($1) ORDER BY guest_id",
    )
    .bind(&ids[..10])
    .fetch_all(&pool)
    .await?;
    assert_eq!(targets, vec![Some(last.clone()); 10]);
    let oldest = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: ids[0].clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        oldest.guest_id, last,
        "ten merges back, the id still finds the guest"
    );
    service.shutdown().await
}

/// The same mobile number written the French way from abroad and in international form is one
/// guest's: duplicate detection finds the pair.
#[tokio::test]
async fn a_number_with_its_trunk_prefix_in_parentheses_is_found_as_a_duplicate(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let first = create(&mut admin, guest("Léa", "Roux", "", "+33 (0)6 12-34-56-78")).await?;
    let second = create(&mut admin, guest("Lea", "Roux", "", "0033 6 12 34 56 78")).await?;
    let found = admin
        .find_duplicates(pb::FindDuplicatesRequest {
            guest_id: first.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(found.guest_ids, vec![second.guest_id]);
    service.shutdown().await
}

/// A merge keeps the duplicate's other email and phone as keys: a new profile with them is
/// found as a duplicate of the guest, the export lists them (to roles that read contacts), and
/// erasing the guest removes them.
#[tokio::test]
async fn a_merged_profiles_contacts_still_find_the_guest_until_erasure() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut quality = crm_as(&service, TokenBuilder::new(Role::ChainQualityManager)).await?;
    let work = create(
        &mut admin,
        guest("Maria", "Rossi", "maria@work.example", ""),
    )
    .await?;
    let home = create(
        &mut admin,
        guest("Maria", "Rossi", "maria@home.example", "+39 333 123 4567"),
    )
    .await?;
    merge(&mut admin, &work.guest_id, &home.guest_id).await?;
    let again = create(&mut admin, guest("M.", "Rossi", "Maria@Home.example", "")).await?;
    let found = admin
        .find_duplicates(pb::FindDuplicatesRequest {
            guest_id: again.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        found.guest_ids,
        vec![work.guest_id.clone()],
        "the merged profile's email leads to the guest it was merged into"
    );
    let back = admin
        .find_duplicates(pb::FindDuplicatesRequest {
            guest_id: work.guest_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(back.guest_ids, vec![again.guest_id.clone()]);
    let full = export(&mut admin, &work.guest_id).await?;
    assert_eq!(full["merged_guests"][0]["email_key"], "maria@home.example");
    let without = export(&mut quality, &work.guest_id).await?;
    assert!(!without.to_string().contains("maria@home"), "{without}");
    erase(&mut admin, &work.guest_id).await?;
    let pool = service.database.admin_pool().await?;
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.guests WHERE email_key = 'maria@home.example' OR phone_key = '+393331234567'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(left, 1, "only the new profile, which was not erased");
    service.shutdown().await
}

/// Every consent choice is kept with when, how and who: the export shows the history (a
/// merged profile's included), a card number is no source, and erasure deletes it all.
#[tokio::test]
async fn consent_choices_are_kept_as_a_history_until_erasure() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let consent = |marketing: bool, profiling: bool, source: &str| pb::Consent {
        marketing,
        profiling,
        source: source.into(),
        ..Default::default()
    };
    let first = create(
        &mut admin,
        pb::Guest {
            consent: Some(consent(true, false, "app")),
            ..guest("Cleo", "Consent", "cleo@example.fr", "")
        },
    )
    .await?;
    let update = |c: pb::Consent| pb::UpdateGuestRequest {
        guest: Some(pb::Guest {
            guest_id: first.guest_id.clone(),
            consent: Some(c),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["consent".into()],
        }),
        ..Default::default()
    };
    admin
        .update_guest(update(consent(false, true, "front_desk")))
        .await?;
    let refused = admin
        .update_guest(update(consent(false, true, "card 4111 1111 1111 1111")))
        .await
        .expect_err("no card number as a source");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("guest.consent.source"),
        "{}",
        refused.message()
    );
    let duplicate = create(
        &mut admin,
        pb::Guest {
            consent: Some(consent(false, false, "web")),
            ..guest("Cleo", "Consent", "cleo@example.fr", "")
        },
    )
    .await?;
    merge(&mut admin, &first.guest_id, &duplicate.guest_id).await?;
    let survivor = admin
        .get_guest(pb::GetGuestRequest {
            guest_id: first.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let current = survivor.consent.unwrap_or_default();
    assert_eq!(
        (
            current.marketing,
            current.profiling,
            current.source.as_str()
        ),
        (false, false, "web"),
        "the later choice, a refusal of everything, is the one kept"
    );
    let exported = export(&mut admin, &first.guest_id).await?;
    let history: Vec<(bool, bool, String)> = exported["consent_history"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["marketing"].as_bool().unwrap_or_default(),
                        r["profiling"].as_bool().unwrap_or_default(),
                        r["source"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        history,
        vec![
            (true, false, "app".to_string()),
            (false, true, "front_desk".to_string()),
            (false, false, "web".to_string()),
        ],
        "both profiles' choices, in the order they were made; the refused one is not there"
    );
    erase(&mut admin, &first.guest_id).await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.consent_history")
        .fetch_one(&service.database.admin_pool().await?)
        .await?;
    assert_eq!(left, 0);
    service.shutdown().await
}

/// Erasures made before merged profiles were erased with the guest are finished on upgrade: the
/// merged profile's row goes, what was filed under it moves to the pseudonym, and the erasure
/// event it was owed is written.
#[tokio::test]
async fn erasures_from_before_merged_profiles_went_along_are_finished() -> anyhow::Result<()> {
    use prost::Message;
    let settings = test_settings();
    let database = guestloop_testkit::fresh_database().await?;
    let pool = guestloop_kit::db::pool(
        guestloop_kit::db::connect_options(&database.url, "crm", &settings.database)?,
        &settings.database,
    );
    guestloop_kit::db::ensure_schema(&pool, "crm").await?;
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            guestloop_crm::DEFINITION
                .migrator
                .iter()
                .filter(|m| m.version < 115)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    guestloop_kit::db::migrate(&pool, &before).await?;
    // As an old erasure left it: the pseudonym, and the profile once merged into the guest
    // still pointing at it, with a stay and an account filed under it after the merge.
    for statement in [
        "INSERT INTO guests (guest_id, chain_id, erased) VALUES ('erased-old', 'chain-1', true)",
        "INSERT INTO guests (guest_id, chain_id, merged_into, email_key) VALUES ('G-OLD', 'chain-1', 'erased-old', 'old@example.com')",
        "INSERT INTO guests (guest_id, chain_id, given_name) VALUES ('G-OTHER', 'chain-1', 'Otto')",
        "INSERT INTO stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, status) \
         VALUES ('paris', 'OLD-1', 'G-OLD', '2026-01-01', '2026-01-03', 'checked_out')",
        "INSERT INTO loyalty_accounts (guest_id, balance, lifetime_earned) VALUES ('G-OLD', 200, 200)",
        "INSERT INTO ledger (guest_id, kind, points, balance_after, actor, source) VALUES ('G-OLD', 'earn', 200, 200, 'system', 'stay:paris/OLD-1')",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    pool.close().await;

    let service = guestloop_testkit::spawn_service_on(
        &guestloop_crm::DEFINITION,
        settings,
        Some(database),
        0,
    )
    .await?;
    let pool = service.database.admin_pool().await?;
    let left: Vec<String> = sqlx::query_scalar("SELECT guest_id FROM crm.guests ORDER BY guest_id")
        .fetch_all(&pool)
        .await?;
    assert_eq!(
        left,
        ["G-OTHER", "erased-old"],
        "the old merged profile is gone"
    );
    let (stay_guest, balance, ledger): (String, i64, i64) = sqlx::query_as(
        "SELECT (SELECT guest_id FROM crm.stays WHERE pms_reservation_id = 'OLD-1'), \
                (SELECT balance FROM crm.loyalty_accounts WHERE guest_id = 'erased-old'), \
                (SELECT sum(points)::bigint FROM crm.ledger WHERE guest_id = 'erased-old')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (stay_guest.as_str(), balance, ledger),
        ("erased-old", 200, 200)
    );
    let payloads: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT subject, payload FROM crm.outbox_events WHERE event_type = 'crm.guest.erased'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].0, "guests/G-OLD");
    let event = guestloop_proto::crm::v1::GuestErased::decode(payloads[0].1.as_slice())?;
    assert_eq!(
        event.guest_id, "G-OLD",
        "the payload decodes as the service writes it"
    );
    service.shutdown().await
}

/// What people wrote about the guest, or were logged as, goes with the erasure too: staff's
/// reasons for postings and tier changes (also in the tier event), the guest's login as the
/// actor of their own redemption and export, and the guest's id in the sources of their
/// expiries. Amounts, kinds and the system's own reasons stay.
#[tokio::test]
async fn erasure_takes_the_words_and_logins_that_name_the_guest() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let pool = service.database.admin_pool().await?;
    let g = create(
        &mut admin,
        guest("Giulia", "Bianchi", "giulia@example.it", ""),
    )
    .await?;
    let id = g.guest_id.clone();
    let mut own = crm_as(
        &service,
        TokenBuilder::new(Role::Guest)
            .guest(&id)
            .subject("login|giulia.bianchi"),
    )
    .await?;
    let bonus = pb::PostPointsRequest {
        request_id: "bonus-1".into(),
        guest_id: id.clone(),
        kind: pb::EntryKind::Bonus as i32,
        points: 1_000,
        debit: false,
        reason: "anniversary gift for Mrs Bianchi".into(),
    };
    admin.post_points(bonus).await?;
    let redeem = pb::PostPointsRequest {
        request_id: "redeem-1".into(),
        guest_id: id.clone(),
        kind: pb::EntryKind::Redeem as i32,
        points: 200,
        debit: false,
        reason: String::new(),
    };
    own.post_points(redeem).await?;
    own.export_guest_data(pb::ExportGuestDataRequest {
        guest_id: id.clone(),
    })
    .await?;
    admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: id.clone(),
            strategic: true,
            reason: "Bianchi family office".into(),
        })
        .await?;
    sqlx::query(
        "UPDATE crm.loyalty_accounts SET last_activity_at = now() - interval '25 months' WHERE guest_id = $1",
    )
    .bind(&id)
    .execute(&pool)
    .await?;
    let run = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(run.points_expired, 800);
    // A guest acting for themselves is recorded as `guest`; records written before that was so
    // hold their login, as this one now does.
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT actor FROM crm.ledger WHERE kind = 'redeem' \
         UNION ALL SELECT actor FROM crm.contact_access_log WHERE role = 'guest'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(actors, vec!["guest", "guest"]);
    sqlx::query("UPDATE crm.ledger SET actor = 'login|giulia.bianchi' WHERE kind = 'redeem'")
        .execute(&pool)
        .await?;
    sqlx::query(
        "UPDATE crm.contact_access_log SET actor = 'login|giulia.bianchi' WHERE role = 'guest'",
    )
    .execute(&pool)
    .await?;
    assert_eq!(
        naming(&pool, "Bianchi").await?,
        vec![
            "ledger.reason",
            "outbox_events.payload",
            "tier_history.reason"
        ]
    );
    assert_eq!(
        naming(&pool, "giulia.bianchi").await?,
        vec!["contact_access_log.actor", "ledger.actor"]
    );
    assert_eq!(
        naming(&pool, &id).await?,
        vec!["ledger.source", "outbox_events.payload"]
    );

    let erased = erase(&mut admin, &id).await?;
    for needle in ["Bianchi", "giulia.bianchi", id.as_str()] {
        assert_eq!(
            naming(&pool, needle).await?,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let entries: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT kind, points, reason, actor FROM crm.ledger WHERE guest_id = $1 ORDER BY entry_id",
    )
    .bind(&erased.guest_id)
    .fetch_all(&pool)
    .await?;
    let kinds: Vec<(&str, i64)> = entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        kinds,
        vec![("bonus", 1_000), ("redeem", -200), ("expire", -800)]
    );
    assert_eq!(entries[0].2, "[erased]");
    assert_eq!(entries[1].3, "guest");
    assert!(
        entries[2].2.contains("months without activity"),
        "the system's reason stays: {}",
        entries[2].2
    );
    let source: String =
        sqlx::query_scalar("SELECT source FROM crm.ledger WHERE guest_id = $1 AND kind = 'expire'")
            .bind(&erased.guest_id)
            .fetch_one(&pool)
            .await?;
    assert!(
        source.starts_with(&format!("expiry:{}:", erased.guest_id)),
        "{source}"
    );
    // A rerun under the pseudonym finds nothing left to expire.
    let rerun = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(rerun.points_expired, 0);
    service.shutdown().await
}

/// Where `needle` appears in what an erasure rewrites rather than deletes; the
/// erasure events themselves name the original id on purpose.
async fn naming(pool: &sqlx::PgPool, needle: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT 'ledger.reason' FROM crm.ledger WHERE strpos(reason, $1) > 0 \
         UNION ALL SELECT 'ledger.actor' FROM crm.ledger WHERE strpos(actor, $1) > 0 \
         UNION ALL SELECT 'ledger.source' FROM crm.ledger WHERE strpos(source, $1) > 0 \
         UNION ALL SELECT 'tier_history.reason' FROM crm.tier_history WHERE strpos(reason, $1) > 0 \
         UNION ALL SELECT 'contact_access_log.actor' FROM crm.contact_access_log WHERE strpos(actor, $1) > 0 \
         UNION ALL SELECT 'outbox_events.payload' FROM crm.outbox_events \
            WHERE event_type <> 'crm.guest.erased' AND position(convert_to($1, 'UTF8') IN payload) > 0 \
         ORDER BY 1",
    )
    .bind(needle)
    .fetch_all(pool)
    .await?)
}

/// The CreateGuest answers CRM keeps for retries hold the profile as it was created: an export
/// holds them (the guest's own only, contacts only for roles that may read them).
#[tokio::test]
async fn an_export_holds_the_stored_answers_of_the_guests_creation() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut quality = crm_as(&service, TokenBuilder::new(Role::ChainQualityManager)).await?;
    let create_with = |request_id: &str, guest_id: &str, email: &str| pb::CreateGuestRequest {
        request_id: request_id.into(),
        guest: Some(pb::Guest {
            guest_id: guest_id.into(),
            given_name: "Ines".into(),
            family_name: "Berg".into(),
            email: email.into(),
            phone: "+351 912 345 678".into(),
            notes: "prefers the garden side".into(),
            ..Default::default()
        }),
    };
    admin
        .create_guest(create_with(
            "create-g1001",
            "G1001",
            "ines.berg@example.com",
        ))
        .await?;
    admin
        .create_guest(create_with(
            "create-g10011",
            "G10011",
            "other.berg@example.com",
        ))
        .await?;

    let full = export(&mut admin, "G1001").await?;
    let stored = full["stored_answers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        stored.len(),
        1,
        "G10011's answer is not G1001's: {stored:?}"
    );
    assert_eq!(stored[0]["method"], "CreateGuest");
    assert_eq!(stored[0]["request_id"], "create-g1001");
    assert_eq!(stored[0]["guest"]["guest_id"], "G1001");
    assert_eq!(stored[0]["guest"]["email"], "ines.berg@example.com");
    assert_eq!(stored[0]["guest"]["notes"], "prefers the garden side");
    assert!(stored[0]["stored_at"].is_string());

    let without = export(&mut quality, "G1001").await?;
    assert_eq!(without["stored_answers"][0]["guest"]["family_name"], "Berg");
    let text = without.to_string();
    for contact in ["ines.berg@example.com", "912 345 678"] {
        assert!(!text.contains(contact), "`{contact}` in {text}");
    }

    // Erasing G1001 leaves G10011's stored answer, which G10011's own export holds.
    erase(&mut admin, "G1001").await?;
    let other = export(&mut admin, "G10011").await?;
    assert_eq!(other["stored_answers"][0]["request_id"], "create-g10011");
    service.shutdown().await
}

/// A guest CRM knows only from a PMS feed (stays and the points they earned, no profile) is
/// exported and erased like any other: the stays and ledger move to a pseudonym, the id is
/// announced for other services to scrub, and nothing in the crm schema names it any more.
#[tokio::test]
async fn a_guest_known_only_from_stays_is_exported_and_erased() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let today = chrono::Utc::now().date_naive();
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "oslo".into(),
                pms_reservation_id: "R-77".into(),
                guest_id: "PMS-77".into(),
                arrival_date: (today - chrono::Days::new(5)).to_string(),
                departure_date: (today - chrono::Days::new(2)).to_string(),
                room: "512".into(),
                status: pb::StayStatus::CheckedOut as i32,
                spend: Some(guestloop_proto::common::v1::Money {
                    currency_code: "EUR".into(),
                    minor_units: 45_000,
                }),
                ..Default::default()
            }],
        })
        .await?;
    let exported = admin
        .export_guest_data(pb::ExportGuestDataRequest {
            guest_id: "PMS-77".into(),
        })
        .await?
        .into_inner();
    let document: serde_json::Value = serde_json::from_str(&exported.json)?;
    assert_eq!(document["stays"][0]["pms_reservation_id"], "R-77");
    assert_eq!(document["guest"], serde_json::json!([]));
    // Another chain neither exports nor erases it.
    let mut other = crm_as(
        &service,
        TokenBuilder::new(Role::ChainAdmin).chain("other-chain"),
    )
    .await?;
    let hidden = other
        .export_guest_data(pb::ExportGuestDataRequest {
            guest_id: "PMS-77".into(),
        })
        .await
        .expect_err("another chain's guest");
    assert_eq!(hidden.code(), Code::NotFound);

    let erased = admin
        .erase_guest(pb::EraseGuestRequest {
            guest_id: "PMS-77".into(),
            reason: "data subject request".into(),
        })
        .await?
        .into_inner();
    assert!(erased.guest_id.starts_with("erased-"), "{erased:?}");
    let pool = service.database.admin_pool().await?;
    let (stays, ledger): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays WHERE guest_id = $1), \
                (SELECT count(*) FROM crm.ledger WHERE guest_id = $1)",
    )
    .bind(&erased.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(stays, 1, "the stay stays, under the pseudonym");
    assert!(
        ledger >= 1,
        "the points it earned stay, under the pseudonym"
    );
    let naming: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM crm.guests t WHERE position('PMS-77' IN t::text) > 0) \
              + (SELECT count(*) FROM crm.stays t WHERE position('PMS-77' IN t::text) > 0) \
              + (SELECT count(*) FROM crm.loyalty_accounts t WHERE position('PMS-77' IN t::text) > 0) \
              + (SELECT count(*) FROM crm.ledger t WHERE position('PMS-77' IN t::text) > 0)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(naming, 0, "no row names the id any more");
    let announced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.outbox_events WHERE event_type = 'crm.guest.erased' AND subject = 'guests/PMS-77'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(announced, 1);
    service.shutdown().await
}
