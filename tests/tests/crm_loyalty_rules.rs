//! CRM loyalty rules end to end: per-credit expiry rerun for a past night, what a posting
//! refuses, staff credits within a daily limit, stays naming another chain's guest, a merge
//! committing while a PMS batch runs (both orders), the tier grace period counted from the
//! first evaluation that finds a guest short (and no look-ahead by staff), the chain a
//! service's call acts for, the accuracy of the chain's profiles, and the points a feed earns
//! for guests who are not members yet (kept for the chain whose properties earned them), and
//! a chain's earn rule (nights and spend by tier, the rate a stay keeps).

use chrono::{Duration, Utc};
use guestloop_kit::auth::Role;
use guestloop_proto::crm::v1 as pb;
use guestloop_testkit::crm::{create_guest, crm_as, guest, Crm};
use guestloop_testkit::{spawn_service, violated_fields, wait_for_lock, TokenBuilder};
use tonic::Code;

/// A guest of the token's chain with a name and an email.
async fn create(client: &mut Crm, given: &str, email: &str) -> anyhow::Result<pb::Guest> {
    create_guest(client, guest(given, "Tester", email, "")).await
}

fn posting(
    guest_id: &str,
    request_id: &str,
    kind: pb::EntryKind,
    points: i64,
) -> pb::PostPointsRequest {
    pb::PostPointsRequest {
        request_id: request_id.into(),
        guest_id: guest_id.into(),
        kind: kind as i32,
        points,
        debit: false,
        reason: "test".into(),
    }
}

fn timestamp(at: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

async fn balance(client: &mut Crm, guest_id: &str) -> anyhow::Result<i64> {
    Ok(client
        .get_loyalty_account(pb::GetLoyaltyAccountRequest {
            guest_id: guest_id.into(),
        })
        .await?
        .into_inner()
        .balance)
}

async fn ledger_sum(pool: &sqlx::PgPool, guest_id: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(points), 0)::bigint FROM crm.ledger WHERE guest_id = $1",
    )
    .bind(guest_id)
    .fetch_one(pool)
    .await?)
}

/// A chain reruns a missed night of per-credit expiry after the guest has redeemed: the
/// redemption used the old credit first, so only what it left of that credit expires.
#[tokio::test]
async fn a_past_night_of_per_credit_expiry_keeps_what_later_redemptions_spent() -> anyhow::Result<()>
{
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
    let g = create(&mut admin, "Rita", "rita@example.de").await?;
    let pool = service.database.admin_pool().await?;
    admin
        .post_points(posting(&g.guest_id, "old", pb::EntryKind::Bonus, 1_000))
        .await?;
    admin
        .post_points(posting(&g.guest_id, "recent", pb::EntryKind::Bonus, 5_000))
        .await?;
    sqlx::query(
        "UPDATE crm.ledger SET posted_at = CASE WHEN source LIKE '%:old' THEN now() - interval '30 months' \
         ELSE now() - interval '1 month' END WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&pool)
    .await?;
    // The night being rerun is an hour ago; the redemption came after it.
    let night = Utc::now() - Duration::hours(1);
    admin
        .post_points(posting(&g.guest_id, "redeem", pb::EntryKind::Redeem, 800))
        .await?;
    let run = admin
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: timestamp(night),
        })
        .await?
        .into_inner();
    assert_eq!(
        (run.accounts_expired, run.points_expired),
        (1, 200),
        "the 800 redeemed came out of the old credit; 200 of it are left to expire"
    );
    assert_eq!(balance(&mut admin, &g.guest_id).await?, 5_000);
    assert_eq!(ledger_sum(&pool, &g.guest_id).await?, 5_000);
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM crm.ledger WHERE guest_id = $1 AND kind = 'expire'")
            .bind(&g.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_ne!(actor, "system", "a run staff started names who started it");
    let again = admin
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: timestamp(night),
        })
        .await?
        .into_inner();
    assert_eq!(again.points_expired, 0, "a rerun expires nothing more");
    service.shutdown().await
}

#[tokio::test]
async fn postings_refuse_bad_input_and_reused_request_ids_and_change_nothing() -> anyhow::Result<()>
{
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, "Pia", "pia@example.de").await?;
    let other = create(&mut admin, "Otto", "otto@example.de").await?;
    admin
        .post_points(posting(&g.guest_id, "first", pb::EntryKind::Bonus, 1_000))
        .await?;

    let debit_bonus = pb::PostPointsRequest {
        debit: true,
        ..posting(&g.guest_id, "debit-bonus", pb::EntryKind::Bonus, 10)
    };
    let too_many = posting(&g.guest_id, "too-many", pb::EntryKind::Bonus, 10_000_001);
    let card = pb::PostPointsRequest {
        reason: "bonus, card 4111 1111 1111 1111".into(),
        ..posting(&g.guest_id, "card", pb::EntryKind::Bonus, 10)
    };
    for (request, field) in [
        (debit_bonus, "debit"),
        (too_many, "points"),
        (card, "reason"),
    ] {
        let refused = admin
            .post_points(request)
            .await
            .expect_err("bad input is refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&refused), vec![field.to_string()]);
    }
    // The same request id with another reason is another posting, not a retry.
    let reworded = pb::PostPointsRequest {
        reason: "something else".into(),
        ..posting(&g.guest_id, "first", pb::EntryKind::Bonus, 1_000)
    };
    let refused = admin.post_points(reworded).await.expect_err("reused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("request id"),
        "{}",
        refused.message()
    );
    // Two guests, one request id, at the same time: one posts, the other hears of the reuse.
    let (mut first, mut second) = (admin.clone(), admin.clone());
    let (a, b) = tokio::join!(
        first.post_points(posting(&g.guest_id, "raced", pb::EntryKind::Bonus, 7)),
        second.post_points(posting(&other.guest_id, "raced", pb::EntryKind::Bonus, 7)),
    );
    let refusals: Vec<tonic::Status> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(refusals.len(), 1, "exactly one of the two posts");
    assert_eq!(
        refusals[0].code(),
        Code::FailedPrecondition,
        "{:?}",
        refusals[0]
    );
    let pool = service.database.admin_pool().await?;
    let total =
        balance(&mut admin, &g.guest_id).await? + balance(&mut admin, &other.guest_id).await?;
    assert_eq!(
        total, 1_007,
        "only the first bonus and one of the raced ones"
    );
    assert_eq!(
        ledger_sum(&pool, &g.guest_id).await? + ledger_sum(&pool, &other.guest_id).await?,
        1_007
    );
    // Staff never run an expiry ahead of time.
    let refused = admin
        .run_points_expiry(pb::RunPointsExpiryRequest {
            as_of: timestamp(Utc::now() + Duration::days(800)),
        })
        .await
        .expect_err("future expiry");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["as_of".to_string()]);
    assert_eq!(
        balance(&mut admin, &g.guest_id).await? + balance(&mut admin, &other.guest_id).await?,
        1_007,
        "the refusals changed nothing"
    );
    service.shutdown().await
}

#[tokio::test]
async fn a_stay_never_earns_for_another_chains_guest() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut ours = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("alpha")).await?;
    let mut theirs = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("beta")).await?;
    let mine = create(&mut ours, "Ana", "ana@example.pt").await?;
    let foreign = create(&mut theirs, "Bea", "bea@example.es").await?;
    let today = Utc::now().date_naive();
    let stay = |reservation: &str, guest_id: &str| pb::Stay {
        property_id: "lisbon".into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: (today - Duration::days(5)).to_string(),
        departure_date: (today - Duration::days(2)).to_string(),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    let refused = ours
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("R1", &mine.guest_id), stay("R2", &foreign.guest_id)],
        })
        .await
        .expect_err("another chain's guest");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("stays[1]"),
        "names the entry: {}",
        refused.message()
    );
    let pool = service.database.admin_pool().await?;
    let (stays, entries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays), (SELECT count(*) FROM crm.ledger)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((stays, entries), (0, 0), "the refused batch wrote nothing");
    assert_eq!(balance(&mut theirs, &foreign.guest_id).await?, 0);
    // The chain's own guest earns as before.
    ours.upsert_stays(pb::UpsertStaysRequest {
        stays: vec![stay("R1", &mine.guest_id)],
    })
    .await?;
    assert!(balance(&mut ours, &mine.guest_id).await? > 0);
    // A service acts for the chain that holds the property: the same refusal.
    let mut pms = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let refused = pms
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("R3", &foreign.guest_id)],
        })
        .await
        .expect_err("lisbon is alpha's; Bea is beta's");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(balance(&mut theirs, &foreign.guest_id).await?, 0);
    service.shutdown().await
}

/// A guest who reached their tier long ago keeps it for the grace period once their stays age
/// out of the window, and steps down once, with one event, when it has passed.
#[tokio::test]
async fn grace_runs_from_the_first_evaluation_that_finds_a_guest_short() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, "Gus", "gus@example.de").await?;
    let today = Utc::now().date_naive();
    let stays: Vec<pb::Stay> = (0..3)
        .map(|i| pb::Stay {
            property_id: "berlin".into(),
            pms_reservation_id: format!("G{i}"),
            guest_id: g.guest_id.clone(),
            arrival_date: (today - Duration::days(402 + i)).to_string(),
            departure_date: (today - Duration::days(400 + i)).to_string(),
            status: pb::StayStatus::CheckedOut as i32,
            ..Default::default()
        })
        .collect();
    admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;
    let then = Utc::now() - Duration::days(390);
    let reached = admin
        .evaluate_tiers(pb::EvaluateTiersRequest {
            as_of: timestamp(then),
        })
        .await?
        .into_inner();
    assert_eq!(reached.changed, 1);
    // Nor is an evaluation run for a time before the last one: it would judge guests by a past
    // they have moved on from.
    let behind = admin
        .evaluate_tiers(pb::EvaluateTiersRequest {
            as_of: timestamp(then - Duration::days(30)),
        })
        .await
        .expect_err("before the last evaluation");
    assert_eq!(behind.code(), Code::FailedPrecondition, "{behind:?}");
    let tier = |client: &mut Crm| {
        let mut client = client.clone();
        let guest_id = g.guest_id.clone();
        async move {
            anyhow::Ok(
                client
                    .get_guest_tier(pb::GetGuestTierRequest {
                        guest_id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .tier,
            )
        }
    };
    assert_eq!(tier(&mut admin).await?, "regular");
    let pool = service.database.admin_pool().await?;
    // The tier was reached over a year ago, and the stays that earned it have left the window.
    sqlx::query(
        "UPDATE crm.tier_history SET changed_at = now() - interval '390 days' WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&pool)
    .await?;
    let now = Utc::now();
    // Staff evaluate now or a time that was missed, never ahead of time: that would start the
    // grace, or take the guest down, before it is due.
    let refused = admin
        .evaluate_tiers(pb::EvaluateTiersRequest {
            as_of: timestamp(now + Duration::days(91)),
        })
        .await
        .expect_err("a chain admin evaluating 91 days ahead");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["as_of"]);
    let short_since: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT tier_short_since FROM crm.guests WHERE guest_id = $1")
            .bind(&g.guest_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(short_since, None, "the refused evaluation changed nothing");
    let refused = admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest {
            as_of: timestamp(now + Duration::days(365)),
        })
        .await
        .expect_err("customer values a year ahead");
    assert_eq!(violated_fields(&refused), ["as_of"]);
    // The service role's scheduled batch may look ahead: the days to come, evaluated now.
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    for (at, expected) in [
        (now, "regular"),
        (now + Duration::days(45), "regular"),
        (now + Duration::days(89), "regular"),
        (now + Duration::days(91), "new"),
        (now + Duration::days(92), "new"),
    ] {
        scheduler
            .evaluate_tiers(pb::EvaluateTiersRequest {
                as_of: timestamp(at),
            })
            .await?;
        assert_eq!(
            tier(&mut admin).await?,
            expected,
            "{} days on",
            (at - now).num_days()
        );
    }
    let downgrades: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.tier_history WHERE guest_id = $1 AND to_tier = 'new'",
    )
    .bind(&g.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(downgrades, 1, "one step down, one history row");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.outbox_events WHERE event_type = 'crm.tier.changed' \
         AND subject = $1",
    )
    .bind(format!("guests/{}", g.guest_id))
    .fetch_one(&pool)
    .await?;
    assert_eq!(events, 2, "reaching regular, then the one step down");
    service.shutdown().await
}

/// A staff adjustment is no activity of the guest's: it neither keeps points from expiring nor
/// revives them.
#[tokio::test]
async fn an_adjustment_does_not_keep_inactive_points_alive() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let g = create(&mut admin, "Ines", "ines@example.de").await?;
    admin
        .post_points(posting(&g.guest_id, "bonus", pb::EntryKind::Bonus, 1_000))
        .await?;
    let pool = service.database.admin_pool().await?;
    sqlx::query(
        "UPDATE crm.loyalty_accounts SET last_activity_at = now() - interval '25 months' WHERE guest_id = $1",
    )
    .bind(&g.guest_id)
    .execute(&pool)
    .await?;
    let adjust = pb::PostPointsRequest {
        reason: "typo in last month's statement".into(),
        ..posting(&g.guest_id, "adjust", pb::EntryKind::Adjust, 5)
    };
    admin.post_points(adjust).await?;
    let run = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(
        (run.accounts_expired, run.points_expired),
        (1, 1_005),
        "25 months without the guest's own activity"
    );
    assert_eq!(balance(&mut admin, &g.guest_id).await?, 0);
    service.shutdown().await
}

async fn idle_for(pool: &sqlx::PgPool, guest_id: &str, months: i32) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE crm.loyalty_accounts SET last_activity_at = now() - make_interval(months => $2) WHERE guest_id = $1",
    )
    .bind(guest_id)
    .bind(months)
    .execute(pool)
    .await?;
    Ok(())
}

/// Points can come back to an account whose points expired without the guest being active
/// again: a staff adjustment, or a merge bringing another inactive account's balance. The next
/// run expires them as a new entry (not a clash with the first expiry's), goes on to the
/// chain's other accounts, and a rerun expires nothing more.
#[tokio::test]
async fn points_back_on_an_expired_inactive_account_expire_again() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let pool = service.database.admin_pool().await?;
    let run = |scheduler: &mut Crm| {
        let mut scheduler = scheduler.clone();
        async move {
            anyhow::Ok(
                scheduler
                    .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
                    .await?
                    .into_inner(),
            )
        }
    };
    let a = create(&mut admin, "Ada", "ada@example.de").await?;
    admin
        .post_points(posting(&a.guest_id, "a-bonus", pb::EntryKind::Bonus, 1_000))
        .await?;
    idle_for(&pool, &a.guest_id, 25).await?;
    let first = run(&mut scheduler).await?;
    assert_eq!((first.accounts_expired, first.points_expired), (1, 1_000));

    // A correction by staff after the expiry (no activity of the guest's).
    let adjust = pb::PostPointsRequest {
        reason: "statement correction".into(),
        ..posting(&a.guest_id, "a-adjust", pb::EntryKind::Adjust, 50)
    };
    admin.post_points(adjust).await?;
    // Another inactive guest of the chain, after `a` in no particular order.
    let b = create(&mut admin, "Bea", "bea@example.de").await?;
    admin
        .post_points(posting(&b.guest_id, "b-bonus", pb::EntryKind::Bonus, 700))
        .await?;
    idle_for(&pool, &b.guest_id, 25).await?;
    let second = run(&mut scheduler).await?;
    assert_eq!((second.accounts_expired, second.points_expired), (2, 750));
    assert_eq!(balance(&mut admin, &a.guest_id).await?, 0);
    assert_eq!(balance(&mut admin, &b.guest_id).await?, 0);

    // A merge brings an inactive duplicate's points to `a`, which keeps its own (later) last
    // activity: the state of the account's first expiry, with another balance.
    let dup = create(&mut admin, "Ada", "ada.other@example.de").await?;
    admin
        .post_points(posting(&dup.guest_id, "d-bonus", pb::EntryKind::Bonus, 300))
        .await?;
    idle_for(&pool, &dup.guest_id, 26).await?;
    admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: a.guest_id.clone(),
            duplicate_guest_id: dup.guest_id.clone(),
        })
        .await?;
    assert_eq!(balance(&mut admin, &a.guest_id).await?, 300);
    let third = run(&mut scheduler).await?;
    assert_eq!((third.accounts_expired, third.points_expired), (1, 300));
    let again = run(&mut scheduler).await?;
    assert_eq!((again.accounts_expired, again.points_expired), (0, 0));
    for guest_id in [&a.guest_id, &b.guest_id] {
        assert_eq!(ledger_sum(&pool, guest_id).await?, 0, "{guest_id}");
    }
    let expiries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm.ledger WHERE guest_id = $1 AND kind = 'expire'",
    )
    .bind(&a.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(expiries, 3);
    service.shutdown().await
}

/// A feed's non-member earns into an account of the chain, counted in its points outstanding:
/// those points expire under the chain's program like a member's, also for a chain that has no
/// member profiles at all.
#[tokio::test]
async fn a_non_members_points_expire_under_the_chains_program() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut alpha = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("alpha")).await?;
    let mut scheduler = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let pool = service.database.admin_pool().await?;
    let today = Utc::now().date_naive();
    alpha
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "lisbon".into(),
                pms_reservation_id: "L1".into(),
                guest_id: "PMS-1".into(),
                arrival_date: (today - Duration::days(5)).to_string(),
                departure_date: (today - Duration::days(2)).to_string(),
                status: pb::StayStatus::CheckedOut as i32,
                ..Default::default()
            }],
        })
        .await?;
    let (earned, chain) = account_row(&pool, "PMS-1").await?;
    assert_eq!((earned, chain.as_deref()), (300, Some("alpha")));
    let run = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(run.accounts_expired, 0, "active: nothing expires");
    idle_for(&pool, "PMS-1", 25).await?;
    let run = scheduler
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!((run.accounts_expired, run.points_expired), (1, 300));
    assert_eq!(account_row(&pool, "PMS-1").await?.0, 0);
    assert_eq!(ledger_sum(&pool, "PMS-1").await?, 0);
    service.shutdown().await
}

/// Batch dates are timestamps of the wire type's range (years 1 to 9999): one before it is
/// INVALID_ARGUMENT naming `as_of`, not a database error.
#[tokio::test]
async fn batch_dates_outside_the_timestamp_range_are_refused() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    create(&mut admin, "Ole", "ole@example.de").await?;
    let ancient = Some(prost_types::Timestamp {
        seconds: -300_000_000_000,
        nanos: 0,
    });
    let expiry = admin
        .run_points_expiry(pb::RunPointsExpiryRequest { as_of: ancient })
        .await
        .expect_err("out of range");
    let tiers = admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of: ancient })
        .await
        .expect_err("out of range");
    let values = admin
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: ancient })
        .await
        .expect_err("out of range");
    for status in [expiry, tiers, values] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), vec!["as_of"]);
    }
    service.shutdown().await
}

/// A service acts for every chain: its reads at a property answer for the chain that holds the
/// property (not for no chain at all), and a call that names no such property is refused.
#[tokio::test]
async fn a_service_reads_for_the_chain_that_holds_the_property() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("alpha")).await?;
    let mut peer = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let today = Utc::now().date_naive();
    // Born on this day, in house: a birthday task is due today.
    let g = admin
        .create_guest(pb::CreateGuestRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            guest: Some(pb::Guest {
                given_name: "Sven".into(),
                family_name: "Tester".into(),
                birthday: format!("1980-{}", today.format("%m-%d")),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let stays: Vec<pb::Stay> = (0..3)
        .map(|i| pb::Stay {
            property_id: "stockholm".into(),
            pms_reservation_id: format!("S{i}"),
            guest_id: g.guest_id.clone(),
            arrival_date: (today - Duration::days(30 + 10 * i)).to_string(),
            departure_date: (today - Duration::days(28 + 10 * i)).to_string(),
            status: pb::StayStatus::CheckedOut as i32,
            ..Default::default()
        })
        .chain(std::iter::once(pb::Stay {
            property_id: "stockholm".into(),
            pms_reservation_id: "NOW".into(),
            guest_id: g.guest_id.clone(),
            arrival_date: today.to_string(),
            departure_date: (today + Duration::days(2)).to_string(),
            status: pb::StayStatus::InHouse as i32,
            ..Default::default()
        }))
        .collect();
    admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;
    let period = guestloop_proto::common::v1::TimeRange {
        start_time: timestamp(Utc::now() - Duration::days(365)),
        end_time: timestamp(Utc::now() + Duration::days(1)),
    };
    let kpis = |properties: Vec<String>| pb::GetCrmKpisRequest {
        property_ids: properties,
        period: Some(period),
        ..Default::default()
    };
    let theirs = admin
        .get_crm_kpis(kpis(vec!["stockholm".into()]))
        .await?
        .into_inner();
    let ours = peer
        .get_crm_kpis(kpis(vec!["stockholm".into()]))
        .await?
        .into_inner();
    assert_eq!(ours, theirs, "the service sees what the chain sees");
    assert!(ours.staying_guests > 0, "{ours:?}");
    for properties in [vec![], vec!["nowhere".to_string()]] {
        let refused = peer
            .get_crm_kpis(kpis(properties))
            .await
            .expect_err("no chain holds these");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), vec!["property_ids".to_string()]);
    }
    let arrivals = peer
        .list_arrivals(pb::ListArrivalsRequest {
            property_id: "stockholm".into(),
            date: today.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!arrivals.arrivals.is_empty(), "the guest in house today");
    let generated = peer
        .generate_care_tasks(pb::GenerateCareTasksRequest {
            property_id: "stockholm".into(),
            date: today.to_string(),
        })
        .await?
        .into_inner();
    let listed = peer
        .list_care_tasks(pb::ListCareTasksRequest {
            property_id: "stockholm".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    // The service's own run for today may have made the task first: it is then found existing.
    assert!(generated.created + generated.existing > 0, "{generated:?}");
    assert_eq!(
        listed.tasks.len() as i32,
        generated.created + generated.existing
    );
    let chains: Vec<String> = sqlx::query_scalar("SELECT DISTINCT chain_id FROM crm.care_tasks")
        .fetch_all(&service.database.admin_pool().await?)
        .await?;
    assert!(chains.iter().all(|c| c == "alpha"), "{chains:?}");
    let values = peer
        .evaluate_customer_values(pb::EvaluateCustomerValuesRequest { as_of: None })
        .await?
        .into_inner();
    assert_eq!(values.evaluated, 1, "every chain's guests, not none");
    service.shutdown().await
}

/// Accuracy counts a duplicate waiting to be merged as an error, and the merge mends it.
#[tokio::test]
async fn accuracy_counts_duplicates_waiting_to_be_merged_as_errors() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let ann = create(&mut admin, "Ann", "ann@example.de").await?;
    let again = create(&mut admin, "Anna", "ANN@Example.de").await?;
    create(&mut admin, "Bob", "bob@example.de").await?;
    let period = guestloop_proto::common::v1::TimeRange {
        start_time: timestamp(Utc::now() - Duration::days(30)),
        end_time: timestamp(Utc::now() + Duration::days(1)),
    };
    let kpis = |client: &mut Crm| {
        let mut client = client.clone();
        async move {
            anyhow::Ok(
                client
                    .get_crm_kpis(pb::GetCrmKpisRequest {
                        period: Some(period),
                        ..Default::default()
                    })
                    .await?
                    .into_inner(),
            )
        }
    };
    let before = kpis(&mut admin).await?;
    assert_eq!(
        (
            before.members,
            before.profiles_accurate,
            before.contacts_valid
        ),
        (3, 1, 3),
        "both halves of the duplicate are errors, though each contact parses"
    );
    admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: ann.guest_id.clone(),
            duplicate_guest_id: again.guest_id.clone(),
        })
        .await?;
    let after = kpis(&mut admin).await?;
    assert_eq!((after.members, after.profiles_accurate), (2, 2));
    service.shutdown().await
}

/// A survivor that takes over the duplicate's higher tier in a merge keeps it through a grace
/// period of its own, whatever it had fallen short of before.
#[tokio::test]
async fn a_tier_taken_over_in_a_merge_gets_its_own_grace() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let kept = create(&mut admin, "Kai", "kai@example.de").await?;
    let merged = create(&mut admin, "Kai", "kai.other@example.de").await?;
    let pool = service.database.admin_pool().await?;
    // Kai has been short of regular for 200 days; the duplicate profile is VIP.
    sqlx::query(
        "UPDATE crm.guests SET tier = CASE WHEN guest_id = $1 THEN 'regular' ELSE 'vip' END, \
         tier_short_since = CASE WHEN guest_id = $1 THEN now() - interval '200 days' END \
         WHERE guest_id IN ($1, $2)",
    )
    .bind(&kept.guest_id)
    .bind(&merged.guest_id)
    .execute(&pool)
    .await?;
    admin
        .merge_guests(pb::MergeGuestsRequest {
            surviving_guest_id: kept.guest_id.clone(),
            duplicate_guest_id: merged.guest_id.clone(),
        })
        .await?;
    admin
        .evaluate_tiers(pb::EvaluateTiersRequest { as_of: None })
        .await?;
    let tier = admin
        .get_guest_tier(pb::GetGuestTierRequest {
            guest_id: kept.guest_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tier;
    assert_eq!(tier, "vip", "in the grace period that starts now");
    let since: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT tier_short_since FROM crm.guests WHERE guest_id = $1")
            .bind(&kept.guest_id)
            .fetch_one(&pool)
            .await?;
    assert!(
        since.is_some_and(|s| Utc::now() - s < Duration::minutes(5)),
        "{since:?}"
    );
    service.shutdown().await
}

/// A merge of the guest a PMS batch names, made while the batch runs: the batch's stay and
/// points end up with the survivor, and nothing is left under the merged id. The batch is held
/// on its stay (another session holds the reservation's row) after it read the guests; the
/// merge waits for it, and moves what it wrote once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_made_while_a_pms_batch_runs_leaves_nothing_under_the_merged_id(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, "Mara", "mara@example.com").await?;
    let duplicate = create(&mut admin, "Mara", "m.kent@example.com").await?;
    let today = Utc::now().date_naive();
    let pool = service.database.admin_pool().await?;
    // Another session holds the reservation: the batch waits on its stay.
    let mut holder = pool.begin().await?;
    sqlx::query(
        "INSERT INTO crm.stays (property_id, pms_reservation_id, guest_id, arrival_date, departure_date, status) \
         VALUES ('lisbon', 'R-race', $1, $2, $3, 'booked')",
    )
    .bind(&duplicate.guest_id)
    .bind(today - Duration::days(5))
    .bind(today - Duration::days(2))
    .execute(&mut *holder)
    .await?;
    let mut pms = admin.clone();
    let stay = pb::Stay {
        property_id: "lisbon".into(),
        pms_reservation_id: "R-race".into(),
        guest_id: duplicate.guest_id.clone(),
        arrival_date: (today - Duration::days(5)).to_string(),
        departure_date: (today - Duration::days(2)).to_string(),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    let batch = tokio::spawn(async move {
        pms.upsert_stays(pb::UpsertStaysRequest { stays: vec![stay] })
            .await
    });
    wait_for_lock(&pool, "INSERT INTO stays", 1).await?;
    let mut merging = admin.clone();
    let request = pb::MergeGuestsRequest {
        surviving_guest_id: survivor.guest_id.clone(),
        duplicate_guest_id: duplicate.guest_id.clone(),
    };
    let merge = tokio::spawn(async move { merging.merge_guests(request).await });
    // The merge either waits for the batch or (were the batch not holding the guest) commits.
    for _ in 0..1_000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND strpos(query, 'FROM guests') > 0",
        )
        .fetch_one(&pool)
        .await?;
        if merge.is_finished() || waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    holder.rollback().await?;
    let written = batch.await??.into_inner();
    merge.await??;
    assert_eq!(written.inserted, 1);
    let left_behind: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays WHERE guest_id = $1), \
                (SELECT count(*) FROM crm.ledger WHERE guest_id = $1), \
                (SELECT count(*) FROM crm.loyalty_accounts WHERE guest_id = $1)",
    )
    .bind(&duplicate.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        left_behind,
        (0, 0, 0),
        "stays, entries, accounts under the merged id"
    );
    let earned = balance(&mut admin, &survivor.guest_id).await?;
    assert!(earned > 0, "the stay's points are the survivor's");
    assert_eq!(ledger_sum(&pool, &survivor.guest_id).await?, earned);
    let stays: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.stays WHERE guest_id = $1")
        .bind(&survivor.guest_id)
        .fetch_one(&pool)
        .await?;
    assert_eq!(stays, 1, "the stay is the survivor's");
    service.shutdown().await
}

/// The other order: a merge holds both profiles when a PMS batch naming the duplicate reads
/// them. The batch waits for the merge, finds the duplicate merged once it commits, reads the
/// guests again and credits the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pms_batch_that_waited_for_a_merge_credits_the_survivor() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let survivor = create(&mut admin, "Mara", "mara@example.com").await?;
    let duplicate = create(&mut admin, "Mara", "m.kent@example.com").await?;
    let pool = service.database.admin_pool().await?;
    // Another session holds the duplicate's account: the merge locks both profiles, then waits.
    let mut holder = pool.begin().await?;
    sqlx::query("SELECT balance FROM crm.loyalty_accounts WHERE guest_id = $1 FOR UPDATE")
        .bind(&duplicate.guest_id)
        .execute(&mut *holder)
        .await?;
    let mut merging = admin.clone();
    let request = pb::MergeGuestsRequest {
        surviving_guest_id: survivor.guest_id.clone(),
        duplicate_guest_id: duplicate.guest_id.clone(),
    };
    let merge = tokio::spawn(async move { merging.merge_guests(request).await });
    wait_for_lock(&pool, "FROM loyalty_accounts", 1).await?;
    let today = Utc::now().date_naive();
    let stay = pb::Stay {
        property_id: "lisbon".into(),
        pms_reservation_id: "R-after".into(),
        guest_id: duplicate.guest_id.clone(),
        arrival_date: (today - Duration::days(4)).to_string(),
        departure_date: (today - Duration::days(1)).to_string(),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    let mut pms = admin.clone();
    let batch = tokio::spawn(async move {
        pms.upsert_stays(pb::UpsertStaysRequest { stays: vec![stay] })
            .await
    });
    wait_for_lock(&pool, "FOR KEY SHARE", 1).await?;
    holder.rollback().await?;
    merge.await??;
    assert_eq!(batch.await??.into_inner().inserted, 1);
    let under: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE guest_id = $1), count(*) FILTER (WHERE guest_id = $2) FROM crm.stays",
    )
    .bind(&survivor.guest_id)
    .bind(&duplicate.guest_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(under, (1, 0), "the stay is the survivor's");
    let earned = balance(&mut admin, &survivor.guest_id).await?;
    assert!(earned > 0, "the survivor earned the stay's points");
    assert_eq!(ledger_sum(&pool, &survivor.guest_id).await?, earned);
    assert_eq!(ledger_sum(&pool, &duplicate.guest_id).await?, 0);
    service.shutdown().await
}

/// A supervisor credits at most 20,000 points by hand a day (four postings at their limit of
/// 5,000): the fifth is refused and changes nothing, a retry of one already made still answers
/// its entry, another supervisor has their own day, and redemptions are not held to it.
#[tokio::test]
async fn staff_credit_points_by_hand_within_a_daily_limit() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let g = create(&mut admin, "Dora", "dora@example.de").await?;
    let supervisor = |subject: &str| {
        TokenBuilder::new(Role::Supervisor)
            .subject(subject)
            .properties(&["berlin"])
    };
    let mut sam = crm_as(&service, supervisor("sam")).await?;
    let mut sue = crm_as(&service, supervisor("sue")).await?;
    let kinds = [
        pb::EntryKind::Bonus,
        pb::EntryKind::Earn,
        pb::EntryKind::Adjust,
        pb::EntryKind::Bonus,
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        sam.post_points(posting(&g.guest_id, &format!("sam-{n}"), kind, 5_000))
            .await?;
    }
    let refused = sam
        .post_points(posting(&g.guest_id, "sam-4", pb::EntryKind::Bonus, 1))
        .await
        .expect_err("a point past the day's 20,000");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("20000"), "{}", refused.message());
    assert_eq!(balance(&mut admin, &g.guest_id).await?, 20_000);
    // A retry of a posting made is answered as before, not counted again.
    let again = sam
        .post_points(posting(&g.guest_id, "sam-3", pb::EntryKind::Bonus, 5_000))
        .await?
        .into_inner();
    assert_eq!(again.balance_after, 20_000);
    // Debits are not credits: a debit adjustment and a redemption go through.
    sam.post_points(pb::PostPointsRequest {
        debit: true,
        ..posting(&g.guest_id, "sam-5", pb::EntryKind::Adjust, 100)
    })
    .await?;
    sam.post_points(posting(&g.guest_id, "sam-6", pb::EntryKind::Redeem, 100))
        .await?;
    // Another person's day is their own; a chain admin has no daily limit.
    sue.post_points(posting(&g.guest_id, "sue-0", pb::EntryKind::Bonus, 5_000))
        .await?;
    admin
        .post_points(posting(
            &g.guest_id,
            "admin-0",
            pb::EntryKind::Bonus,
            100_000,
        ))
        .await?;
    assert_eq!(balance(&mut admin, &g.guest_id).await?, 124_800);
    let pool = service.database.admin_pool().await?;
    assert_eq!(ledger_sum(&pool, &g.guest_id).await?, 124_800);
    service.shutdown().await
}

/// The balance and chain of an account, straight from the table.
async fn account_row(pool: &sqlx::PgPool, guest_id: &str) -> anyhow::Result<(i64, Option<String>)> {
    Ok(
        sqlx::query_as("SELECT balance, chain_id FROM crm.loyalty_accounts WHERE guest_id = $1")
            .bind(guest_id)
            .fetch_one(pool)
            .await?,
    )
}

/// A PMS feed earns for guests who are not members yet, into accounts of the chain whose
/// properties they stayed at. Another chain can neither take those points by creating a profile
/// with the id, nor earn into the account with its own feed; the chain itself can, and counts
/// them in its liability meanwhile.
#[tokio::test]
async fn a_non_members_points_stay_with_the_chain_whose_properties_earned_them(
) -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut alpha = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("alpha")).await?;
    let mut beta = crm_as(&service, TokenBuilder::new(Role::ChainAdmin).chain("beta")).await?;
    let mut pms = crm_as(&service, TokenBuilder::new(Role::Service)).await?;
    let today = Utc::now().date_naive();
    let stay = |property: &str, reservation: &str, guest_id: &str, nights: i64| pb::Stay {
        property_id: property.into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: (today - Duration::days(2 + nights)).to_string(),
        departure_date: (today - Duration::days(2)).to_string(),
        status: pb::StayStatus::CheckedOut as i32,
        ..Default::default()
    };
    let upsert = |stays: Vec<pb::Stay>| pb::UpsertStaysRequest { stays };
    // Lisbon is alpha's, Madrid beta's (their first writes register them).
    alpha
        .upsert_stays(upsert(vec![stay("lisbon", "L1", "PMS-1", 3)]))
        .await?;
    beta.upsert_stays(upsert(vec![stay("madrid", "M1", "PMS-9", 3)]))
        .await?;
    let pool = service.database.admin_pool().await?;
    let (earned, chain) = account_row(&pool, "PMS-1").await?;
    assert!(earned > 0, "a non-member earns");
    assert_eq!(chain.as_deref(), Some("alpha"));

    // Alpha's liability counts the points of its non-member's account.
    let period = guestloop_proto::common::v1::TimeRange {
        start_time: timestamp(Utc::now() - Duration::days(30)),
        end_time: timestamp(Utc::now() + Duration::days(1)),
    };
    let kpis = |property_ids: Vec<String>| pb::GetCrmKpisRequest {
        property_ids,
        period: Some(period),
        loyalty_only: false,
    };
    let own = alpha.get_crm_kpis(kpis(Vec::new())).await?.into_inner();
    assert_eq!(
        (own.members, own.points_outstanding, own.points_earned),
        (0, earned, earned)
    );
    let named = alpha
        .get_crm_kpis(kpis(vec!["lisbon".into()]))
        .await?
        .into_inner();
    assert_eq!(named.points_outstanding, earned);
    let theirs = beta.get_crm_kpis(kpis(Vec::new())).await?.into_inner();
    assert_eq!(
        theirs.points_outstanding,
        account_row(&pool, "PMS-9").await?.0,
        "beta's liability is its own non-member's, not alpha's"
    );

    // Beta cannot take the id, and with it alpha's points.
    let taken = beta
        .create_guest(pb::CreateGuestRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            guest: Some(pb::Guest {
                guest_id: "PMS-1".into(),
                ..guest("Bea", "Tester", "bea@example.es", "")
            }),
        })
        .await
        .expect_err("alpha's non-member");
    assert_eq!(taken.code(), Code::AlreadyExists, "{}", taken.message());
    let profiles: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.guests")
        .fetch_one(&pool)
        .await?;
    assert_eq!(profiles, 0, "the refused profile was not kept");

    // Nor earn into it: a new stay at its own property, alone or next to a correction that
    // gives points back (the batch then locks its accounts before posting).
    let refused = beta
        .upsert_stays(upsert(vec![stay("madrid", "M2", "PMS-1", 2)]))
        .await
        .expect_err("alpha's account");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("stays[0]"),
        "{}",
        refused.message()
    );
    let refused = beta
        .upsert_stays(upsert(vec![
            stay("madrid", "M1", "PMS-9", 1),
            stay("madrid", "M2", "PMS-1", 2),
        ]))
        .await
        .expect_err("alpha's account, with a give-back");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("stays[1]"),
        "{}",
        refused.message()
    );
    // A service's batch naming one id at both chains' properties is refused whole.
    let refused = pms
        .upsert_stays(upsert(vec![
            stay("lisbon", "L7", "PMS-7", 1),
            stay("madrid", "M7", "PMS-7", 1),
        ]))
        .await
        .expect_err("one id, two chains");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("stays[1]"),
        "{}",
        refused.message()
    );
    let (stays, entries, accounts): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm.stays), (SELECT count(*) FROM crm.ledger), \
                (SELECT count(*) FROM crm.loyalty_accounts)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (stays, entries, accounts),
        (2, 2, 2),
        "the refused batches wrote nothing"
    );
    let nights: i32 = sqlx::query_scalar(
        "SELECT departure_date - arrival_date FROM crm.stays WHERE pms_reservation_id = 'M1'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        nights, 3,
        "the correction in the refused batch was not applied"
    );
    assert_eq!(
        account_row(&pool, "PMS-1").await?,
        (earned, Some("alpha".into()))
    );

    // Alpha's guest joins under their PMS id and finds their points.
    let member = create_guest(
        &mut alpha,
        pb::Guest {
            guest_id: "PMS-1".into(),
            ..guest("Ana", "Tester", "ana@example.pt", "")
        },
    )
    .await?;
    assert_eq!(balance(&mut alpha, &member.guest_id).await?, earned);
    let joined = alpha.get_crm_kpis(kpis(Vec::new())).await?.into_inner();
    assert_eq!(
        (joined.members, joined.points_outstanding),
        (1, earned),
        "counted once, now as a member's"
    );

    // An account a service's feed opened at a property no chain holds has no chain yet: the
    // first chain to write to it claims it.
    pms.upsert_stays(upsert(vec![stay("unlisted", "U1", "PMS-5", 2)]))
        .await?;
    assert_eq!(account_row(&pool, "PMS-5").await?.1, None);
    let claimed = create_guest(
        &mut beta,
        pb::Guest {
            guest_id: "PMS-5".into(),
            ..guest("Carl", "Tester", "carl@example.es", "")
        },
    )
    .await?;
    assert!(balance(&mut beta, &claimed.guest_id).await? > 0);
    assert_eq!(
        account_row(&pool, "PMS-5").await?.1.as_deref(),
        Some("beta")
    );
    service.shutdown().await
}

/// A chain's earn rule prices a checked-out stay's nights and spend by its guest's tier. The
/// stay keeps the rate it was first credited at: a PMS correction of its spend earns at that
/// rate after the chain raised it, a cancellation gives everything back. Spend in another
/// currency earns nothing; a rule that cannot hold is refused by field and changes nothing.
#[tokio::test]
async fn a_chains_earn_rule_prices_nights_and_spend_and_a_stay_keeps_its_rate() -> anyhow::Result<()>
{
    use guestloop_proto::common::v1::Money;
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let pool = service.database.admin_pool().await?;
    let rate = |per_night: i64, per_spend_unit: i64| {
        Some(pb::EarnRate {
            points_per_night: per_night,
            points_per_spend_unit: per_spend_unit,
        })
    };
    let program = |earn: pb::EarnRule, currency: &str| pb::UpdateLoyaltyProgramRequest {
        program: Some(pb::LoyaltyProgram {
            spend_currency: currency.into(),
            earn: Some(earn),
            ..Default::default()
        }),
    };
    // Refused by field, and nothing stored.
    let refused = admin
        .update_loyalty_program(program(
            pb::EarnRule {
                new: rate(50, 10),
                vip: rate(-1, 0),
                ..Default::default()
            },
            "",
        ))
        .await
        .expect_err("no currency for spend; a negative rate");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "program.earn.vip.points_per_night",
            "program.spend_currency"
        ]
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM crm.loyalty_programs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(stored, 0, "a refused program changes nothing");
    let current = admin
        .get_loyalty_program(pb::GetLoyaltyProgramRequest {})
        .await?
        .into_inner();
    let earn = current.earn.unwrap_or_default();
    assert_eq!(
        (earn.new, earn.regular, earn.vip, earn.strategic),
        (rate(100, 0), rate(120, 0), rate(150, 0), rate(150, 0)),
        "the defaults are shown"
    );

    // 50 a night and 10 a euro for new members; strategic guests 300 a night. Tiers left out
    // keep the defaults.
    let saved = admin
        .update_loyalty_program(program(
            pb::EarnRule {
                new: rate(50, 10),
                strategic: rate(300, 0),
                ..Default::default()
            },
            "EUR",
        ))
        .await?
        .into_inner()
        .earn
        .unwrap_or_default();
    assert_eq!((saved.new, saved.regular), (rate(50, 10), rate(120, 0)));
    let ada = create(&mut admin, "Ada", "ada@example.de").await?;
    let ben = create(&mut admin, "Ben", "ben@example.de").await?;
    admin
        .set_strategic_tier(pb::SetStrategicTierRequest {
            guest_id: ben.guest_id.clone(),
            strategic: true,
            reason: "owner's guest".into(),
        })
        .await?;
    let today = Utc::now().date_naive();
    let stay = |reservation: &str, guest_id: &str, spend: Option<(&str, i64)>, status| pb::Stay {
        property_id: "munich".into(),
        pms_reservation_id: reservation.into(),
        guest_id: guest_id.into(),
        arrival_date: (today - Duration::days(4)).to_string(),
        departure_date: (today - Duration::days(2)).to_string(),
        spend: spend.map(|(currency, minor)| Money {
            currency_code: currency.into(),
            minor_units: minor,
        }),
        status: status as i32,
        ..Default::default()
    };
    use pb::StayStatus::{Cancelled, CheckedOut};
    // 2 nights and 123.45 EUR: 100 + 1,234 (the product rounded down to whole points).
    let s1 = stay("S1", &ada.guest_id, Some(("EUR", 12_345)), CheckedOut);
    // Spend in dollars earns the nights alone; a strategic guest 300 a night.
    let s2 = stay("S2", &ada.guest_id, Some(("USD", 50_000)), CheckedOut);
    let s3 = stay("S3", &ben.guest_id, Some(("EUR", 10_000)), CheckedOut);
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![s1.clone(), s2.clone(), s3.clone()],
        })
        .await?;
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 1_334 + 100);
    assert_eq!(balance(&mut admin, &ben.guest_id).await?, 600);
    let recorded: (Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT earn_rate_night, earn_rate_spend FROM crm.stays WHERE pms_reservation_id = 'S1'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(recorded, (Some(50), Some(10)));

    // The chain raises the rate; the PMS then adds 100 EUR to S1. The stay earns the 1,000
    // for it at the rate it was credited at, and nothing is repriced.
    admin
        .update_loyalty_program(program(
            pb::EarnRule {
                new: rate(500, 50),
                ..Default::default()
            },
            "EUR",
        ))
        .await?;
    let more = stay("S1", &ada.guest_id, Some(("EUR", 22_345)), CheckedOut);
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![more.clone(), s2.clone()],
        })
        .await?;
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 2_334 + 100);
    // A replay posts nothing.
    let replay = admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![more, s2, s3],
        })
        .await?
        .into_inner();
    assert_eq!(replay.unchanged, 3);
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 2_434);
    // Cancelled after all: every point of S1 goes back, and it records no rate.
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("S1", &ada.guest_id, Some(("EUR", 22_345)), Cancelled)],
        })
        .await?;
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 100);
    let recorded: (Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT earn_rate_night, earn_rate_spend FROM crm.stays WHERE pms_reservation_id = 'S1'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(recorded, (None, None));
    // Checked out again: it earns as a new credit, at today's rate (2 × 500 + 223.45 × 50).
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("S1", &ada.guest_id, Some(("EUR", 22_345)), CheckedOut)],
        })
        .await?;
    assert_eq!(
        balance(&mut admin, &ada.guest_id).await?,
        100 + 1_000 + 11_172
    );
    // A stay credited before stays recorded their rate reads it back from its ledger entries:
    // S3 one night shorter gives back one of its two nights, 300, whatever the rule says now.
    sqlx::query(
        "UPDATE crm.stays SET earn_rate_night = NULL, earn_rate_spend = NULL \
         WHERE pms_reservation_id = 'S3'",
    )
    .execute(&pool)
    .await?;
    let mut shorter = stay("S3", &ben.guest_id, Some(("EUR", 10_000)), CheckedOut);
    shorter.arrival_date = (today - Duration::days(3)).to_string();
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![shorter],
        })
        .await?;
    assert_eq!(balance(&mut admin, &ben.guest_id).await?, 300);
    for guest in [&ada.guest_id, &ben.guest_id] {
        let balance = balance(&mut admin, guest).await?;
        assert_eq!(ledger_sum(&pool, guest).await?, balance, "{guest}");
    }
    service.shutdown().await
}

/// A PMS that says when it last changed each reservation has its latest version kept: an older
/// export sent again is counted stale and changes nothing (a checked-out stay stays checked
/// out, a stay called off earns nothing), a row without the time applies as it comes, and a
/// time in the future or out of range is refused by field.
#[tokio::test]
async fn an_older_version_of_a_reservation_never_undoes_a_later_one() -> anyhow::Result<()> {
    use pb::StayStatus::{Booked, Cancelled, CheckedOut, InHouse};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let pool = service.database.admin_pool().await?;
    let ada = create(&mut admin, "Ada", "ada@example.at").await?;
    let today = Utc::now().date_naive();
    let now = Utc::now();
    let stay =
        |reservation: &str, status: pb::StayStatus, modified: Option<chrono::DateTime<Utc>>| {
            pb::Stay {
                property_id: "vienna".into(),
                pms_reservation_id: reservation.into(),
                guest_id: ada.guest_id.clone(),
                arrival_date: (today - Duration::days(4)).to_string(),
                departure_date: (today - Duration::days(2)).to_string(),
                status: status as i32,
                pms_modified_time: modified.and_then(timestamp),
                ..Default::default()
            }
        };
    let pms = admin.clone();
    let send = |stays: Vec<pb::Stay>| {
        let mut admin = pms.clone();
        async move {
            let r = admin
                .upsert_stays(pb::UpsertStaysRequest { stays })
                .await?
                .into_inner();
            anyhow::Ok((r.inserted, r.updated, r.unchanged, r.stale))
        }
    };
    let status_of = |reservation: &'static str| {
        let pool = pool.clone();
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, String>(
                    "SELECT status FROM crm.stays WHERE pms_reservation_id = $1",
                )
                .bind(reservation)
                .fetch_one(&pool)
                .await?,
            )
        }
    };
    let (t1, t2, t3) = (
        now - Duration::hours(3),
        now - Duration::hours(2),
        now - Duration::hours(1),
    );
    // S1 checked out (2 nights, 200 points) as of t2; the in-house version of t1 comes late.
    assert_eq!(
        send(vec![stay("S1", CheckedOut, Some(t2))]).await?,
        (1, 0, 0, 0)
    );
    assert_eq!(
        send(vec![stay("S1", InHouse, Some(t1))]).await?,
        (0, 0, 0, 1)
    );
    assert_eq!(status_of("S1").await?, "checked_out");
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 200);
    // S2 booked, then called off as of t3; a checked-out version of t2 earns nothing.
    send(vec![stay("S2", Booked, Some(t1))]).await?;
    send(vec![stay("S2", Cancelled, Some(t3))]).await?;
    assert_eq!(
        send(vec![
            stay("S2", CheckedOut, Some(t2)),
            stay("S1", CheckedOut, Some(t2))
        ])
        .await?,
        (0, 0, 1, 1)
    );
    assert_eq!(status_of("S2").await?, "cancelled");
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 200);
    let s2_entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM crm.ledger WHERE source LIKE 'stay:vienna/S2%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(s2_entries, 0);
    // A row without the time applies as it comes and keeps the time held: S1 in house gives
    // its points back, and the t1 version is still older than what CRM holds.
    assert_eq!(send(vec![stay("S1", InHouse, None)]).await?, (0, 1, 0, 0));
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 0);
    assert_eq!(
        send(vec![stay("S1", CheckedOut, Some(t1))]).await?,
        (0, 0, 0, 1)
    );
    // A later version applies; the same version again is unchanged.
    assert_eq!(
        send(vec![stay("S1", CheckedOut, Some(t3))]).await?,
        (0, 1, 0, 0)
    );
    assert_eq!(
        send(vec![stay("S1", CheckedOut, Some(t3))]).await?,
        (0, 0, 1, 0)
    );
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 200);
    assert_eq!(ledger_sum(&pool, &ada.guest_id).await?, 200);

    // A time in the future would hold the reservation against every later version; refused.
    let future = admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![stay("S1", InHouse, Some(now + Duration::hours(3)))],
        })
        .await
        .expect_err("a modification time hours ahead");
    assert_eq!(future.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&future), vec!["stays[0].pms_modified_time"]);
    let mut bad = stay("S1", InHouse, Some(t3));
    if let Some(t) = bad.pms_modified_time.as_mut() {
        t.nanos = -1;
    }
    let out_of_range = admin
        .upsert_stays(pb::UpsertStaysRequest { stays: vec![bad] })
        .await
        .expect_err("negative nanos");
    assert_eq!(
        violated_fields(&out_of_range),
        vec!["stays[0].pms_modified_time"]
    );
    assert_eq!(
        status_of("S1").await?,
        "checked_out",
        "a refused batch changes nothing"
    );
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 200);
    service.shutdown().await
}

/// Reservation and property ids holding `#`, `/` or `%` never make two stays share a ledger
/// source: reservation `R#1` earns after reservation `R`'s first correction posted, and the
/// postings of such a stay written under the old spelling are found again after the
/// migration that respells them.
#[tokio::test]
async fn stays_whose_ids_hold_separators_keep_their_own_points() -> anyhow::Result<()> {
    use pb::StayStatus::{Cancelled, CheckedOut};
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let pool = service.database.admin_pool().await?;
    let ada = create(&mut admin, "Ada", "ada@example.be").await?;
    let today = Utc::now().date_naive();
    let stay = |reservation: &str, nights: i64, status: pb::StayStatus| pb::Stay {
        property_id: "ghent".into(),
        pms_reservation_id: reservation.into(),
        guest_id: ada.guest_id.clone(),
        arrival_date: (today - Duration::days(2 + nights)).to_string(),
        departure_date: (today - Duration::days(2)).to_string(),
        status: status as i32,
        ..Default::default()
    };
    let pms = admin.clone();
    let send = |stays: Vec<pb::Stay>| {
        let mut admin = pms.clone();
        async move {
            admin.upsert_stays(pb::UpsertStaysRequest { stays }).await?;
            anyhow::Ok(())
        }
    };
    // R earns 200, then one night less: its second posting.
    send(vec![stay("R", 2, CheckedOut)]).await?;
    send(vec![stay("R", 1, CheckedOut)]).await?;
    // R#1 is another reservation: it earns its own 200.
    send(vec![stay("R#1", 2, CheckedOut)]).await?;
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 100 + 200);
    // A stay whose postings were written under the old spelling, respelled by the migration.
    send(vec![stay("L/1", 3, CheckedOut)]).await?;
    sqlx::query(
        "UPDATE crm.ledger SET source = 'stay:ghent/L/1' WHERE source = 'stay:ghent/L%2F1'",
    )
    .execute(&pool)
    .await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL search_path TO crm")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(include_str!(
        "../../services/crm/migrations/0120_stay_sources_escaped.sql"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let sources: Vec<String> = sqlx::query_scalar(
        "SELECT source FROM crm.ledger WHERE source LIKE 'stay:ghent/%' ORDER BY entry_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        sources,
        vec![
            "stay:ghent/R",
            "stay:ghent/R#1",
            "stay:ghent/R%231",
            "stay:ghent/L%2F1"
        ]
    );
    // Called off: the migrated posting is found and its 300 go back.
    send(vec![stay("L/1", 3, Cancelled)]).await?;
    assert_eq!(balance(&mut admin, &ada.guest_id).await?, 300);
    assert_eq!(ledger_sum(&pool, &ada.guest_id).await?, 300);
    service.shutdown().await
}

/// A chain's program names its time zone, and the program's days follow it: a stay that
/// departed on New Year's Day in Auckland counts for the new year as soon as the year has
/// begun there (still 31 December in UTC), and a supervisor's daily limit starts again at
/// midnight there. An unknown zone is refused and changes nothing.
#[tokio::test]
async fn a_programs_days_follow_its_time_zone() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_crm::DEFINITION).await?;
    let pool = service.database.admin_pool().await?;
    let mut admin = crm_as(&service, TokenBuilder::new(Role::ChainAdmin)).await?;
    let program = |zone: &str| pb::UpdateLoyaltyProgramRequest {
        program: Some(pb::LoyaltyProgram {
            window: pb::TierWindow::CalendarYear as i32,
            regular: Some(pb::TierThreshold {
                nights: 2,
                ..Default::default()
            }),
            grace_days: Some(0),
            time_zone: zone.into(),
            ..Default::default()
        }),
    };
    let refused = admin
        .update_loyalty_program(program("Mars/Olympus_Mons"))
        .await
        .expect_err("no such zone");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["program.time_zone"]);
    let kept = admin
        .get_loyalty_program(pb::GetLoyaltyProgramRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (kept.time_zone.as_str(), kept.window),
        ("UTC", pb::TierWindow::Rolling12Months as i32),
        "the defaults are untouched"
    );

    let g = create(&mut admin, "Aroha", "aroha@example.nz").await?;
    admin
        .upsert_stays(pb::UpsertStaysRequest {
            stays: vec![pb::Stay {
                property_id: "auckland".into(),
                pms_reservation_id: "NY1".into(),
                guest_id: g.guest_id.clone(),
                arrival_date: "2025-12-30".into(),
                departure_date: "2026-01-01".into(),
                status: pb::StayStatus::CheckedOut as i32,
                ..Default::default()
            }],
        })
        .await?;
    // 31 December 2025, 12:00 UTC: 1 January 2026, 01:00 in Auckland.
    let new_years_morning =
        chrono::DateTime::parse_from_rfc3339("2025-12-31T12:00:00Z")?.with_timezone(&Utc);
    let tier_after = |client: &mut Crm| {
        let mut client = client.clone();
        let guest_id = g.guest_id.clone();
        async move {
            client
                .evaluate_tiers(pb::EvaluateTiersRequest {
                    as_of: timestamp(new_years_morning),
                })
                .await?;
            let tier = client
                .get_guest_tier(pb::GetGuestTierRequest {
                    guest_id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(tier.tier)
        }
    };
    admin.update_loyalty_program(program("")).await?;
    assert_eq!(
        tier_after(&mut admin).await?,
        "new",
        "in UTC the stay departs tomorrow"
    );
    let set = admin
        .update_loyalty_program(program("Pacific/Auckland"))
        .await?
        .into_inner();
    assert_eq!(set.time_zone, "Pacific/Auckland");
    assert_eq!(
        tier_after(&mut admin).await?,
        "regular",
        "in Auckland the year has begun"
    );

    // Credits by hand before midnight in Auckland were yesterday's; from midnight, today's.
    let mut sam = crm_as(
        &service,
        TokenBuilder::new(Role::Supervisor)
            .subject("sam")
            .properties(&["auckland"]),
    )
    .await?;
    for n in 0..4 {
        sam.post_points(posting(
            &g.guest_id,
            &format!("sam-{n}"),
            pb::EntryKind::Bonus,
            5_000,
        ))
        .await?;
    }
    let day_began =
        "date_trunc('day', now() AT TIME ZONE 'Pacific/Auckland') AT TIME ZONE 'Pacific/Auckland'";
    sqlx::query(&format!(
        "UPDATE crm.ledger SET posted_at = {day_began} - interval '1 second' WHERE actor = 'sam'"
    ))
    .execute(&pool)
    .await?;
    sam.post_points(posting(&g.guest_id, "sam-4", pb::EntryKind::Bonus, 5_000))
        .await?;
    sqlx::query(&format!(
        "UPDATE crm.ledger SET posted_at = {day_began} WHERE actor = 'sam'"
    ))
    .execute(&pool)
    .await?;
    let refused = sam
        .post_points(posting(&g.guest_id, "sam-5", pb::EntryKind::Bonus, 5_000))
        .await
        .expect_err("25,000 credited since midnight in Auckland");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("Pacific/Auckland"),
        "{}",
        refused.message()
    );
    assert_eq!(balance(&mut admin, &g.guest_id).await?, 25_000 + 200);
    service.shutdown().await
}
