//! CRM care tasks end to end: tasks follow the PMS's corrections of the stays they were made
//! for (a cancelled or no-show stay's open tasks go with the feed that calls it off), completed
//! tasks stay as history, and generating again changes nothing.

use guestloop_kit::auth::Role;
use guestloop_proto::crm::v1 as pb;
use guestloop_testkit::crm::{crm_as, Crm};
use guestloop_testkit::{spawn_service, TokenBuilder};

/// A guest born on `birthday` (YYYY-MM-DD, or empty for none).
async fn guest(client: &mut Crm, family: &str, birthday: &str) -> anyhow::Result<String> {
    Ok(client
        .create_guest(pb::CreateGuestRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            guest: Some(pb::Guest {
                given_name: "Guest".into(),
                family_name: family.into(),
                birthday: birthday.into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .guest_id)
}

fn stay(
    reservation: &str,
    guest_id: &str,
    arrival: &str,
    departure: &str,
    status: pb::StayStatus,
) -> pb::Stay {
    pb::Stay {
        property_id: PROPERTY.into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: arrival.into(),
        departure_date: departure.into(),
        room: format!("room-{reservation}"),
        status: status as i32,
        ..Default::default()
    }
}

// Dates far from today, so the service's own daily run does not touch them.
const PROPERTY: &str = "care-recon-p";

async fn generate(client: &mut Crm, date: &str) -> anyhow::Result<(i32, i32)> {
    let made = client
        .generate_care_tasks(pb::GenerateCareTasksRequest {
            property_id: PROPERTY.into(),
            date: date.into(),
        })
        .await?
        .into_inner();
    Ok((made.created, made.existing))
}

async fn tasks(client: &mut Crm) -> anyhow::Result<Vec<pb::CareTask>> {
    Ok(client
        .list_care_tasks(pb::ListCareTasksRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks)
}

/// (reservation, guest, due date, reason, done) of each task.
fn summary(tasks: &[pb::CareTask]) -> Vec<(String, String, String, String, bool)> {
    let mut rows: Vec<_> = tasks
        .iter()
        .map(|t| {
            (
                t.pms_reservation_id.clone(),
                t.guest_id.clone(),
                t.due_date.clone(),
                t.reason.clone(),
                t.state == pb::CareTaskState::Done as i32,
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn care_tasks_follow_pms_corrections_and_keep_completed_ones() -> anyhow::Result<()> {
    use pb::StayStatus::{Booked, Cancelled, InHouse};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let ada = guest(&mut admin, "Ada", "1980-03-12").await?;
    let bea = guest(&mut admin, "Bea", "1980-03-13").await?;
    let fay = guest(&mut admin, "Fay", "1980-03-12").await?;
    let gus = guest(&mut admin, "Gus", "").await?;
    let eve = guest(&mut admin, "Eve", "1980-03-12").await?;
    let ivy = guest(&mut admin, "Ivy", "1980-03-11").await?;
    let dan = guest(&mut admin, "Dan", "").await?;
    let hal = guest(&mut admin, "Hal", "").await?;
    for strategic in [&dan, &hal] {
        admin
            .set_strategic_tier(pb::SetStrategicTierRequest {
                guest_id: strategic.clone(),
                strategic: true,
                reason: "corporate account".into(),
            })
            .await?;
    }
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay("R1", &ada, "2031-03-10", "2031-03-14", InHouse),
                stay("R6", &fay, "2031-03-10", "2031-03-14", InHouse),
                stay("R3", &dan, "2031-03-11", "2031-03-13", Booked),
                stay("R5", &hal, "2031-03-11", "2031-03-13", Booked),
                stay("R4", &eve, "2031-03-10", "2031-03-14", InHouse),
                stay("R7", &ivy, "2031-03-11", "2031-03-13", Booked),
            ],
        })
        .await?;
    let mut front = crm_as(
        &service,
        TokenBuilder::new(Role::Agent)
            .properties(&[PROPERTY])
            .department("front_office"),
    )
    .await?;
    assert_eq!(generate(&mut front, "2031-03-11").await?, (6, 0));
    let hal_task = tasks(&mut front)
        .await?
        .into_iter()
        .find(|t| t.pms_reservation_id == "R5")
        .ok_or_else(|| anyhow::anyhow!("the strategic arrival has a task"))?;
    front
        .complete_care_task(pb::CompleteCareTaskRequest {
            care_task_id: hal_task.care_task_id.clone(),
            outcome: "welcome note from the manager".into(),
        })
        .await?;

    // The PMS corrects: R1 was Bea's, R6 Gus's; R3 and R5 are cancelled; R4 moves to April;
    // Ivy's birthday was recorded wrongly.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                stay("R1", &bea, "2031-03-10", "2031-03-14", InHouse),
                stay("R6", &gus, "2031-03-10", "2031-03-14", InHouse),
                stay("R3", &dan, "2031-03-11", "2031-03-13", Cancelled),
                stay("R5", &hal, "2031-03-11", "2031-03-13", Cancelled),
                stay("R4", &eve, "2031-04-01", "2031-04-05", Booked),
            ],
        })
        .await?;
    admin
        .update_guest(pb::UpdateGuestRequest {
            guest: Some(pb::Guest {
                guest_id: ivy.clone(),
                birthday: "1980-07-01".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["birthday".into()],
            }),
            ..Default::default()
        })
        .await?;

    let rerun = front
        .generate_care_tasks(pb::GenerateCareTasksRequest {
            property_id: PROPERTY.into(),
            date: "2031-03-11".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (rerun.created, rerun.existing, rerun.corrected),
        (0, 1, 1),
        "R1's birthday task is Bea's now"
    );
    assert_eq!(
        rerun.withdrawn, 2,
        "Fay's task and Ivy's: no stay calls for them any more (the cancelled stay's open task \
         went with the feed that cancelled it)"
    );
    let row = |reservation: &str, guest: &str, due: &str, reason: &str, done: bool| {
        (
            reservation.to_string(),
            guest.to_string(),
            due.to_string(),
            reason.to_string(),
            done,
        )
    };
    assert_eq!(
        summary(&tasks(&mut front).await?),
        vec![
            row("R1", &bea, "2031-03-13", "birthday on 2031-03-13", false),
            // Due on another day: settled when that day is generated.
            row("R4", &eve, "2031-03-12", "birthday on 2031-03-12", false),
            row("R5", &hal, "2031-03-11", "strategic guest arriving", true),
        ],
        "Fay's task left with her, the cancelled stay's open task and Ivy's went; the done one stays"
    );
    assert_eq!(generate(&mut front, "2031-03-12").await?, (0, 1));
    let settled = tasks(&mut front).await?;
    assert_eq!(
        summary(&settled),
        vec![
            row("R1", &bea, "2031-03-13", "birthday on 2031-03-13", false),
            row("R5", &hal, "2031-03-11", "strategic guest arriving", true),
        ],
        "the stay that moved away no longer has a task on 12 March"
    );

    // Generating again changes nothing, not even the update times.
    for date in ["2031-03-11", "2031-03-12", "2031-03-13"] {
        assert_eq!(generate(&mut front, date).await?, (0, 1), "{date}");
    }
    assert_eq!(tasks(&mut front).await?, settled);
    service.shutdown().await
}

#[tokio::test]
async fn a_birthday_on_the_departure_morning_gets_a_task_that_lasts() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    // A stay in the past: a feed sends a checked-out stay once the guest has left.
    let leaving = guest(&mut admin, "Leaving", "1975-05-04").await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(
                "D1",
                &leaving,
                "2026-05-01",
                "2026-05-04",
                pb::StayStatus::InHouse,
            )],
        })
        .await?;
    assert_eq!(generate(&mut admin, "2026-05-01").await?, (1, 0));
    // Generating the departure day itself keeps the task rather than finding no stay for it.
    assert_eq!(generate(&mut admin, "2026-05-04").await?, (0, 1));
    let made = tasks(&mut admin).await?;
    assert_eq!(
        summary(&made),
        vec![(
            "D1".to_string(),
            leaving.clone(),
            "2026-05-04".to_string(),
            "birthday on 2026-05-04".to_string(),
            false
        )]
    );
    // The guest checks out at eleven; the next run for the day leaves the task for staff.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(
                "D1",
                &leaving,
                "2026-05-01",
                "2026-05-04",
                pb::StayStatus::CheckedOut,
            )],
        })
        .await?;
    let after = admin
        .generate_care_tasks(pb::GenerateCareTasksRequest {
            property_id: PROPERTY.into(),
            date: "2026-05-04".into(),
        })
        .await?
        .into_inner();
    assert_eq!(after.withdrawn, 0, "{after:?}");
    assert_eq!(summary(&tasks(&mut admin).await?), summary(&made));
    service.shutdown().await
}

/// INVALID_ARGUMENT naming `field`.
fn refuses(status: tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
}

#[tokio::test]
async fn card_numbers_are_refused_in_care_outcomes_and_tier_reasons() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let ada = guest(&mut admin, "Ada", "1980-06-02").await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(
                "C1",
                &ada,
                "2031-06-01",
                "2031-06-03",
                pb::StayStatus::InHouse,
            )],
        })
        .await?;
    assert_eq!(generate(&mut admin, "2031-06-01").await?, (1, 0));
    let task = tasks(&mut admin).await?.remove(0);
    for outcome in [
        "cake sent; deposit on 4111 1111 1111 1111 12/29",
        "took card 4111.1111.1111.1111 for the cake",
    ] {
        let refused = admin
            .complete_care_task(pb::CompleteCareTaskRequest {
                care_task_id: task.care_task_id.clone(),
                outcome: outcome.into(),
            })
            .await
            .expect_err("a card number in the outcome");
        refuses(refused, "outcome");
    }
    assert_eq!(
        tasks(&mut admin).await?[0].state,
        pb::CareTaskState::Open as i32,
        "the task stays open"
    );

    let refused = admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: ada.clone(),
            strategic: true,
            reason: "owner's friend, pays with 4111 1111 1111 1111 123".into(),
        })
        .await
        .expect_err("a card number in the reason");
    refuses(refused, "reason");
    let refused = admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: ada.clone(),
            strategic: true,
            reason: "x".repeat(501),
        })
        .await
        .expect_err("a reason too long");
    refuses(refused, "reason");
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: ada.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(tier.tier, "new", "nothing changed");
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.tier_history WHERE guest_id = $1")
            .bind(&ada)
            .fetch_one(&service.database.admin_pool().await?)
            .await?;
    assert_eq!(history, 0);
    service.shutdown().await
}

/// (from, to, reason) of a tier change.
type TierChange = (String, String, String);

/// The changes of a guest's tier recorded in its history and announced, oldest first: the
/// history rows and the `crm.tier.changed` events.
async fn tier_changes(
    pool: &sqlx::PgPool,
    guest_id: &str,
) -> anyhow::Result<(Vec<TierChange>, Vec<TierChange>)> {
    let history: Vec<TierChange> = sqlx::query_as(
        "SELECT from_tier, to_tier, reason FROM crm.tier_history WHERE guest_id = $1 ORDER BY changed_at",
    )
    .bind(guest_id)
    .fetch_all(pool)
    .await?;
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM crm.outbox_events WHERE event_type = 'crm.tier.changed' AND subject = $1 ORDER BY id",
    )
    .bind(format!("guests/{guest_id}"))
    .fetch_all(pool)
    .await?;
    let mut events = Vec::new();
    for payload in payloads {
        let event = <pb::TierChanged as prost::Message>::decode(payload.as_slice())?;
        events.push((event.from_tier, event.to_tier, event.reason));
    }
    Ok((history, events))
}

#[tokio::test]
async fn removing_the_strategic_flag_restores_the_tier_held_before() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let reg = guest(&mut admin, "Regular", "").await?;
    // A regular guest whose activity has fallen short of it for a while.
    sqlx::query(
        "UPDATE crm.guests SET tier = 'regular', tier_short_since = '2026-01-01Z' WHERE guest_id = $1",
    )
    .bind(&reg)
    .execute(&pool)
    .await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(
                "S1",
                &reg,
                "2031-07-01",
                "2031-07-03",
                pb::StayStatus::Booked,
            )],
        })
        .await?;
    let set = |guest_id: &str, strategic: bool, reason: &str| pb::SetStrategicTierRequest {
        guest_id: guest_id.into(),
        strategic,
        reason: reason.into(),
    };
    let short_since = |guest_id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "SELECT tier_short_since FROM crm.guests WHERE guest_id = $1",
            )
            .bind(guest_id)
            .fetch_one(&pool)
            .await
        }
    };

    let flagged = admin
        .set_strategic_tier(set(&reg, true, "owner's friend"))
        .await?
        .into_inner();
    assert_eq!(flagged.tier, "strategic");
    assert_eq!(short_since(reg.clone()).await?, None, "set by hand");
    assert_eq!(generate(&mut admin, "2031-07-01").await?, (1, 0));
    // A grace period that started while flagged is no reason to keep anything after.
    sqlx::query("UPDATE crm.guests SET tier_short_since = '2031-06-01Z' WHERE guest_id = $1")
        .bind(&reg)
        .execute(&pool)
        .await?;
    let unflagged = admin
        .set_strategic_tier(set(&reg, false, "friendship ended"))
        .await?
        .into_inner();
    assert_eq!(unflagged.tier, "regular", "not vip");
    assert_eq!(short_since(reg.clone()).await?, None, "set by hand");
    let changes = |from: &str, to: &str, reason: &str| (from.into(), to.into(), reason.into());
    let expected = vec![
        changes("regular", "strategic", "owner's friend"),
        changes("strategic", "regular", "friendship ended"),
    ];
    assert_eq!(
        tier_changes(&pool, &reg).await?,
        (expected.clone(), expected.clone())
    );
    // Removing it again changes nothing.
    admin.set_strategic_tier(set(&reg, false, "again")).await?;
    assert_eq!(
        tier_changes(&pool, &reg).await?,
        (expected.clone(), expected)
    );
    // The strategic arrival's care task goes with the flag.
    assert_eq!(generate(&mut admin, "2031-07-01").await?, (0, 0));
    assert!(tasks(&mut admin).await?.is_empty());

    // With no history of how the guest became strategic, they start again from `new`.
    let legacy = guest(&mut admin, "Legacy", "").await?;
    sqlx::query(
        "UPDATE crm.guests SET tier = 'strategic', strategic_manual = true WHERE guest_id = $1",
    )
    .bind(&legacy)
    .execute(&pool)
    .await?;
    let unflagged = admin
        .set_strategic_tier(set(&legacy, false, "review"))
        .await?
        .into_inner();
    assert_eq!(unflagged.tier, "new");
    let expected = vec![changes("strategic", "new", "review")];
    assert_eq!(
        tier_changes(&pool, &legacy).await?,
        (expected.clone(), expected)
    );
    service.shutdown().await
}

/// A stay the PMS cancels, or marks no-show, after its task's day has passed: the open task goes
/// at once (no run for that day comes again to withdraw it), a completed one stays as history.
#[tokio::test]
async fn a_stay_called_off_after_its_day_takes_its_open_tasks_along() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let open = guest(&mut admin, "Open", "1980-05-11").await?;
    let served = guest(&mut admin, "Served", "1981-05-11").await?;
    let booked = |reservation: &str, guest_id: &str, status: pb::StayStatus| {
        stay(reservation, guest_id, "2026-05-10", "2026-05-13", status)
    };
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                booked("N1", &open, pb::StayStatus::Booked),
                booked("N2", &served, pb::StayStatus::Booked),
            ],
        })
        .await?;
    assert_eq!(generate(&mut admin, "2026-05-10").await?, (2, 0));
    let made = tasks(&mut admin).await?;
    let done = made
        .iter()
        .find(|t| t.guest_id == served)
        .ok_or_else(|| anyhow::anyhow!("the served guest's task"))?;
    admin
        .complete_care_task(pb::CompleteCareTaskRequest {
            care_task_id: done.care_task_id.clone(),
            outcome: "cake in the room".into(),
        })
        .await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                booked("N1", &open, pb::StayStatus::NoShow),
                booked("N2", &served, pb::StayStatus::Cancelled),
            ],
        })
        .await?;
    let left = tasks(&mut admin).await?;
    assert_eq!(
        left.iter()
            .map(|t| (
                t.guest_id.as_str(),
                t.state == pb::CareTaskState::Done as i32
            ))
            .collect::<Vec<_>>(),
        vec![(served.as_str(), true)],
        "the open task went with its stay; the done one stays"
    );
    service.shutdown().await
}

/// Corrections of stays whose task's day has passed (and that no scheduled run reconciles any
/// more): a stay given to another guest, or moved to other dates, takes the open task along; a
/// stay corrected in another way (its room) keeps it.
#[tokio::test]
async fn a_past_stay_given_to_another_guest_or_moved_takes_its_open_task_along(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let ann = guest(&mut admin, "Ann", "1980-05-11").await?;
    let bob = guest(&mut admin, "Bob", "1981-05-11").await?;
    let cat = guest(&mut admin, "Cat", "1982-05-11").await?;
    let other = guest(&mut admin, "Other", "").await?;
    let booked = |reservation: &str, guest_id: &str| {
        stay(
            reservation,
            guest_id,
            "2026-05-10",
            "2026-05-13",
            pb::StayStatus::Booked,
        )
    };
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![booked("M1", &ann), booked("M2", &bob), booked("M3", &cat)],
        })
        .await?;
    assert_eq!(generate(&mut admin, "2026-05-10").await?, (3, 0));
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![
                booked("M1", &other),
                stay(
                    "M2",
                    &bob,
                    "2026-06-01",
                    "2026-06-03",
                    pb::StayStatus::Booked,
                ),
                pb::Stay {
                    room: "moved to 204".into(),
                    ..booked("M3", &cat)
                },
            ],
        })
        .await?;
    let left: Vec<String> = tasks(&mut admin)
        .await?
        .into_iter()
        .map(|t| t.guest_id)
        .collect();
    assert_eq!(
        left,
        vec![cat],
        "only the task whose stay still calls for it"
    );
    service.shutdown().await
}

/// Generating care tasks while an erasure of one of the guests is in flight waits for it and
/// then makes no task for the erased guest: no birthday task under the original id is left for
/// the erasure to miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generating_waits_for_an_erasure_in_flight() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let kim = guest(&mut admin, "Kim", "1980-03-12").await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay(
                "E1",
                &kim,
                "2030-03-10",
                "2030-03-14",
                pb::StayStatus::Booked,
            )],
        })
        .await?;
    // An erasure holds the guest (as erasure locks it first) ...
    let pool = service.database.admin_pool().await?;
    let mut erasure = pool.begin().await?;
    sqlx::query("SELECT 1 FROM crm.guests WHERE guest_id = $1 FOR UPDATE")
        .bind(&kim)
        .execute(&mut *erasure)
        .await?;
    // ... while the generation starts: it waits ...
    let mut generator = admin.clone();
    let run = tokio::spawn(async move { generate(&mut generator, "2030-03-12").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!run.is_finished(), "generation waits for the erasure");
    // ... and once the guest is gone, makes no task for them.
    sqlx::query("UPDATE crm.guests SET erased = true WHERE guest_id = $1")
        .bind(&kim)
        .execute(&mut *erasure)
        .await?;
    erasure.commit().await?;
    assert_eq!(run.await??, (0, 0));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.care_tasks WHERE guest_id = $1")
        .bind(&kim)
        .fetch_one(&pool)
        .await?;
    assert_eq!(left, 0);
    service.shutdown().await
}
