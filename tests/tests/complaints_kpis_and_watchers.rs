//! KPI values on a fixed dataset equal hand-computed numbers, the rollup equals the raw
//! GROUP BY, and two escalation watchers against one database fire each threshold once.

use std::time::Duration;

use guestloop_kit::auth::Role;
use guestloop_kit::events::EventLog;
use guestloop_proto::common::v1::TimeRange;
use guestloop_proto::complaints::v1 as pb;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_testkit::{spawn_service, test_settings, TokenBuilder};
use sqlx::PgPool;

async fn complaints_pool(url: &secrecy::SecretString) -> anyhow::Result<PgPool> {
    let settings = test_settings();
    let options = guestloop_kit::db::connect_options(url, "complaints", &settings.database)?;
    Ok(guestloop_kit::db::pool(options, &settings.database))
}

/// Three complaints with known times and outcomes (UTC), written as the service stores them, and
/// a fourth cancelled as a duplicate after missing its acknowledgement (an escalated repeat): it
/// counts in no complaint figure, but its missed deadline stays missed.
const DATASET: &str = r#"
INSERT INTO complaints (complaint_id, chain_id, property_id, guest_id, channel, category, department, urgency,
    description, status, reopen_count, escalation_count, first_escalated_at, waited_on_guest, repeat_issue,
    csat, nps, created_at, created_by, updated_at, first_response_at, first_resolved_at, resolved_at, etag)
VALUES
 ('00000000-0000-7000-8000-000000000001', 'chain-test', 'kpi-p', 'g1', 1, 'noise', 'front_office', 2,
  'noise', 'closed', 0, 0, NULL, false, false, 5, 10,
  '2026-11-01 10:00Z', 't', '2026-11-01 11:00Z', '2026-11-01 10:10Z', '2026-11-01 11:00Z', '2026-11-01 11:00Z', gen_random_uuid()),
 ('00000000-0000-7000-8000-000000000002', 'chain-test', 'kpi-p', 'g2', 2, 'noise', 'housekeeping', 2,
  'noise', 'reopened', 1, 1, '2026-11-01 12:45Z', false, false, 2, 5,
  '2026-11-01 12:00Z', 't', '2026-11-01 14:00Z', '2026-11-01 13:00Z', '2026-11-01 14:00Z', NULL, gen_random_uuid()),
 ('00000000-0000-7000-8000-000000000003', 'chain-test', 'kpi-p', 'g1', 3, 'wifi', 'it', 3,
  'wifi', 'received', 0, 0, NULL, false, true, NULL, NULL,
  '2026-11-02 09:00Z', 't', '2026-11-02 09:00Z', NULL, NULL, NULL, gen_random_uuid()),
 ('00000000-0000-7000-8000-000000000004', 'chain-test', 'kpi-p', 'g1', 1, 'noise', 'front_office', 2,
  'a duplicate', 'cancelled', 0, 1, '2026-11-02 10:30Z', false, true, NULL, NULL,
  '2026-11-02 10:00Z', 't', '2026-11-02 11:00Z', NULL, NULL, NULL, gen_random_uuid());
INSERT INTO complaint_clocks (complaint_id, stage, target_minutes, started_at, stopped_at, due_at, breached_at) VALUES
 ('00000000-0000-7000-8000-000000000001', 1, 30, '2026-11-01 10:00Z', '2026-11-01 10:10Z', '2026-11-01 10:30Z', NULL),
 ('00000000-0000-7000-8000-000000000001', 5, 120, '2026-11-01 10:00Z', '2026-11-01 11:00Z', '2026-11-01 12:00Z', NULL),
 ('00000000-0000-7000-8000-000000000002', 1, 30, '2026-11-01 12:00Z', '2026-11-01 13:00Z', '2026-11-01 12:30Z', NULL),
 ('00000000-0000-7000-8000-000000000002', 5, 120, '2026-11-01 12:00Z', NULL, '2026-11-01 14:00Z', '2026-11-01 14:00Z'),
 ('00000000-0000-7000-8000-000000000003', 1, 30, '2026-11-02 09:00Z', NULL, '2026-11-02 09:30Z', NULL),
 ('00000000-0000-7000-8000-000000000004', 1, 30, '2026-11-02 10:00Z', '2026-11-02 11:00Z', '2026-11-02 10:30Z', '2026-11-02 10:30Z');
INSERT INTO remedies (remedy_id, complaint_id, kind, currency_code, amount_minor, points, status, proposed_by, proposed_role, created_at) VALUES
 (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 9, 'EUR', 2500, 0, 'approved', 't', 'agent', '2026-11-01 10:30Z'),
 (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 7, '', 0, 500, 'delivered', 't', 'agent', '2026-11-01 10:31Z'),
 (gen_random_uuid(), '00000000-0000-7000-8000-000000000002', 4, 'EUR', 9000, 0, 'pending_approval', 't', 'agent', '2026-11-01 13:00Z'),
 (gen_random_uuid(), '00000000-0000-7000-8000-000000000002', 4, 'EUR', 100, 0, 'rejected', 't', 'agent', '2026-11-01 13:01Z');
INSERT INTO kpi_dirty (complaint_id) SELECT complaint_id FROM complaints;
INSERT INTO known_properties VALUES ('kpi-p', 'chain-test');
"#;

fn period() -> TimeRange {
    TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: 1_793_491_200,
            nanos: 0,
        }), // 2026-11-01T00:00Z
        end_time: Some(prost_types::Timestamp {
            seconds: 1_793_750_400,
            nanos: 0,
        }), // 2026-11-04T00:00Z
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_on_a_fixed_dataset_match_hand_computed_numbers() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let pool = complaints_pool(&service.database.url).await?;
    sqlx::raw_sql(DATASET).execute(&pool).await?;

    let token = TokenBuilder::new(Role::ChainQualityManager).mint()?;
    let mut client = ComplaintsServiceClient::new(service.channel_with_token(&token).await?);
    let request = pb::GetComplaintKpisRequest {
        property_ids: vec!["kpi-p".into()],
        period: Some(period()),
        daily_series: true,
        totals_only: false,
    };
    // The rollup worker folds the marked complaints in within a second or so.
    let mut kpis = pb::ComplaintKpis::default();
    for _ in 0..100 {
        kpis = client
            .get_complaint_kpis(request.clone())
            .await?
            .into_inner();
        if kpis.counts.as_ref().map(|c| c.complaints) == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = kpis.counts.clone().unwrap_or_default();
    let values = kpis.values.unwrap_or_default();
    assert_eq!(counts.complaints, 3);
    assert_eq!(
        (counts.responded, counts.first_response_seconds_sum),
        (2, 600 + 3600)
    );
    assert_eq!(values.first_response_mean_seconds, Some(2100.0));
    assert_eq!(
        (counts.resolved, counts.first_resolution_seconds_sum),
        (2, 3600 + 7200)
    );
    assert_eq!(values.first_resolution_mean_seconds, Some(5400.0));
    assert_eq!(
        (
            counts.currently_resolved,
            counts.total_resolution_seconds_sum
        ),
        (1, 3600)
    );
    assert_eq!(values.total_resolution_mean_seconds, Some(3600.0));
    assert_eq!(values.fcr_rate, Some(0.5));
    assert_eq!(
        (counts.rated, counts.csat_sum, counts.csat_top_two),
        (2, 7, 1)
    );
    assert_eq!(
        (values.csat_mean, values.csat_top_two_rate),
        (Some(3.5), Some(0.5))
    );
    assert_eq!(
        (
            counts.nps_answers,
            counts.nps_promoters,
            counts.nps_detractors
        ),
        (2, 1, 1)
    );
    assert_eq!(values.nps, Some(0.0));
    assert_eq!((counts.escalated, counts.escalation_seconds_sum), (1, 2700));
    assert_eq!(values.escalation_rate, Some(1.0 / 3.0));
    assert_eq!(values.reopen_rate, Some(0.5));
    assert_eq!(values.repeat_rate, Some(1.0 / 3.0));
    assert_eq!(counts.compensation_points, 500);
    assert_eq!(
        counts
            .compensation
            .iter()
            .map(|m| (m.currency_code.as_str(), m.minor_units))
            .collect::<Vec<_>>(),
        vec![("EUR", 2500)]
    );
    assert_eq!(
        values.sla_attainment,
        Some(0.4),
        "acknowledge 1 met 2 missed (one by the cancelled duplicate), resolution 1 met 1 missed"
    );
    assert_eq!(values.on_time_handling, Some(0.5));
    let by_category: Vec<(String, i64)> = kpis
        .by_category
        .iter()
        .map(|b| (b.key.clone(), b.counts.as_ref().map_or(0, |c| c.complaints)))
        .collect();
    assert_eq!(
        by_category,
        vec![("noise".to_string(), 2), ("wifi".to_string(), 1)]
    );
    let daily: Vec<(String, i64)> = kpis
        .daily
        .iter()
        .map(|d| (d.day.clone(), d.counts.as_ref().map_or(0, |c| c.complaints)))
        .collect();
    assert_eq!(
        daily,
        vec![("2026-11-01".to_string(), 2), ("2026-11-02".to_string(), 1)]
    );
    assert_eq!(kpis.by_channel.len(), 3);
    let without_series = client
        .get_complaint_kpis(pb::GetComplaintKpisRequest {
            daily_series: false,
            ..request.clone()
        })
        .await?
        .into_inner();
    assert!(without_series.daily.is_empty());
    assert_eq!(without_series.counts, kpis.counts);
    let totals_only = client
        .get_complaint_kpis(pb::GetComplaintKpisRequest {
            daily_series: false,
            totals_only: true,
            ..request.clone()
        })
        .await?
        .into_inner();
    assert_eq!(totals_only.counts, kpis.counts);
    assert_eq!(totals_only.by_property, kpis.by_property);
    // Asked for the whole chain, a property the chain has had complaints at but none in the
    // period still has its row, of zeros.
    sqlx::query("INSERT INTO known_properties VALUES ('kpi-quiet', 'chain-test')")
        .execute(&pool)
        .await?;
    // One with settings but no complaint yet is the chain's too; one the chain had complaints at
    // that another chain holds now is left out (rather than refusing the whole call).
    sqlx::raw_sql(
        "INSERT INTO property_chains (property_id, chain_id) VALUES ('kpi-settings-only', 'chain-test'), \
             ('kpi-moved', 'other-chain'); \
         INSERT INTO known_properties VALUES ('kpi-moved', 'chain-test');",
    )
    .execute(&pool)
    .await?;
    let chain_wide = client
        .get_complaint_kpis(pb::GetComplaintKpisRequest {
            property_ids: vec![],
            totals_only: true,
            ..request.clone()
        })
        .await?
        .into_inner();
    let rows: Vec<(String, i64)> = chain_wide
        .by_property
        .iter()
        .map(|b| {
            (
                b.key.clone(),
                b.counts.as_ref().map_or(-1, |c| c.complaints),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("kpi-p".to_string(), 3),
            ("kpi-quiet".to_string(), 0),
            ("kpi-settings-only".to_string(), 0)
        ]
    );
    assert_eq!(chain_wide.counts, kpis.counts, "the zeros change no total");
    assert!(
        totals_only.by_category.is_empty()
            && totals_only.by_channel.is_empty()
            && totals_only.by_department.is_empty(),
        "no breakdowns beyond properties"
    );

    // The maintained rollup equals the raw GROUP BY over the same facts, group by group.
    let mut conn = pool.acquire().await?;
    let from = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let to = chrono::NaiveDate::from_ymd_opt(2026, 11, 4).expect("date");
    let properties = vec!["kpi-p".to_string()];
    use guestloop_complaints::store::kpis::{query, Scope, Source};
    let rollup = query(
        &mut conn,
        Source::Rollup,
        Scope::properties(&properties),
        from,
        to,
        true,
        true,
    )
    .await?;
    let raw = query(
        &mut conn,
        Source::Raw,
        Scope::properties(&properties),
        from,
        to,
        true,
        true,
    )
    .await?;
    assert_eq!(rollup, raw);
    // Whole months come from the monthly rollup, edges from the daily one: still equal.
    for (a, b) in [
        ((2026, 11, 1), (2026, 12, 1)),
        ((2026, 10, 15), (2027, 1, 1)),
        ((2026, 10, 1), (2026, 11, 2)),
        ((2026, 11, 2), (2026, 11, 4)),
        ((2026, 10, 31), (2026, 12, 2)),
    ] {
        let a = chrono::NaiveDate::from_ymd_opt(a.0, a.1, a.2).expect("date");
        let b = chrono::NaiveDate::from_ymd_opt(b.0, b.1, b.2).expect("date");
        for (daily, dimensions) in [(true, true), (false, true), (true, false), (false, false)] {
            let raw = query(
                &mut conn,
                Source::Raw,
                Scope::properties(&properties),
                a,
                b,
                daily,
                dimensions,
            )
            .await?;
            // Named properties, and the whole chain (whose sums come from the chain rollup).
            for scope in [
                Scope::properties(&properties),
                Scope::chain("chain-test", &properties),
            ] {
                let rollup =
                    query(&mut conn, Source::Rollup, scope, a, b, daily, dimensions).await?;
                assert_eq!(
                    rollup, raw,
                    "{a}..{b} daily={daily} dimensions={dimensions} chain={:?}",
                    scope.chain
                );
                if !dimensions {
                    assert!(rollup
                        .iter()
                        .all(|g| matches!(g.dimension, "total" | "property")
                            || (daily && g.dimension == "day")));
                }
            }
        }
    }

    // A change after the fact moves the rollup with it.
    // Rated, and moved to another department: the old department's group empties and goes.
    sqlx::query("UPDATE complaints SET csat = 4, department = 'engineering' WHERE complaint_id = '00000000-0000-7000-8000-000000000002'").execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO kpi_dirty (complaint_id) VALUES ('00000000-0000-7000-8000-000000000002')",
    )
    .execute(&mut *conn)
    .await?;
    for _ in 0..100 {
        let k = client
            .get_complaint_kpis(request.clone())
            .await?
            .into_inner();
        if k.counts.as_ref().map(|c| c.csat_sum) == Some(9) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let month_start = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let month_end = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
    let mut rollup = Vec::new();
    for (a, b) in [(from, to), (month_start, month_end)] {
        let raw = query(
            &mut conn,
            Source::Raw,
            Scope::properties(&properties),
            a,
            b,
            true,
            true,
        )
        .await?;
        assert!(
            raw.iter()
                .any(|g| g.dimension == "department" && g.key == "engineering")
                && !raw
                    .iter()
                    .any(|g| g.dimension == "department" && g.key == "housekeeping"),
            "the raw facts moved department"
        );
        for scope in [
            Scope::properties(&properties),
            Scope::chain("chain-test", &properties),
        ] {
            rollup = query(&mut conn, Source::Rollup, scope, a, b, true, true).await?;
            assert_eq!(
                rollup, raw,
                "{a}..{b} chain={:?}: the daily, monthly and chain rollups follow changes",
                scope.chain
            );
        }
    }
    let csat_sum = guestloop_complaints::store::kpis::counter("csat_sum");
    assert_eq!(
        rollup
            .iter()
            .find(|g| g.dimension == "total")
            .map(|g| g.values[csat_sum]),
        Some(9)
    );
    drop(conn);
    service.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_watchers_fire_each_threshold_exactly_once() -> anyhow::Result<()> {
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["paris"])
        .mint()?;
    let mut client = ComplaintsServiceClient::new(service.channel_with_token(&token).await?);
    let mut ids = Vec::new();
    for i in 0..5 {
        let complaint = client
            .create_complaint(pb::CreateComplaintRequest {
                request_id: format!("w-{i}"),
                complaint: Some(pb::Complaint {
                    property_id: "paris".into(),
                    guest: Some(pb::GuestRef {
                        name: "Walk-in".into(),
                        ..Default::default()
                    }),
                    channel: pb::Channel::FrontDesk as i32,
                    urgency: pb::Urgency::High as i32,
                    category: format!("c{i}"),
                    description: "lift out of order".into(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        ids.push(uuid::Uuid::parse_str(&complaint.complaint_id)?);
    }
    // Let 2 h 1 min pass on every clock: acknowledge (30 min) and first investigation (2 h)
    // breach, and resolution (2 h) passes 50, 75 and 100 %: five triggers per complaint.
    let pool = complaints_pool(&service.database.url).await?;
    sqlx::query("UPDATE complaint_clocks SET started_at = started_at - interval '121 minutes', due_at = due_at - interval '121 minutes' WHERE complaint_id = ANY($1)")
        .bind(&ids).execute(&pool).await?;
    sqlx::query("UPDATE complaint_timeline SET at = at - interval '121 minutes' WHERE complaint_id = ANY($1)").bind(&ids).execute(&pool).await?;
    sqlx::query("UPDATE complaints SET created_at = created_at - interval '121 minutes', next_escalation_at = now() - interval '1 second' WHERE complaint_id = ANY($1)")
        .bind(&ids).execute(&pool).await?;

    // Two more watchers race the service's own one.
    let other_pool = complaints_pool(&service.database.url).await?;
    let first = EventLog::new(pool.clone(), "complaints");
    let second = EventLog::new(other_pool.clone(), "complaints");
    let a = tokio::spawn(async move {
        for _ in 0..20 {
            guestloop_complaints::workers::escalate_due(&pool, &first).await?;
        }
        anyhow::Ok(())
    });
    let b = tokio::spawn(async move {
        for _ in 0..20 {
            guestloop_complaints::workers::escalate_due(&other_pool, &second).await?;
        }
        anyhow::Ok(())
    });
    a.await??;
    b.await??;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let admin = service.database.admin_pool().await?;
    let per_complaint: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM complaints.complaint_escalations WHERE complaint_id = ANY($1) GROUP BY complaint_id",
    )
    .bind(&ids)
    .fetch_all(&admin)
    .await?;
    assert_eq!(per_complaint, vec![(5,); 5]);
    let counts: Vec<i32> = sqlx::query_scalar(
        "SELECT escalation_count FROM complaints.complaints WHERE complaint_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&admin)
    .await?;
    assert_eq!(counts, vec![5; 5]);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.outbox_events WHERE event_type = 'complaints.complaint.escalated'")
        .fetch_one(&admin)
        .await?;
    assert_eq!(events, 25, "one escalation event per trigger");
    let breached: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.complaint_clocks WHERE breached_at IS NOT NULL AND complaint_id = ANY($1)")
        .bind(&ids)
        .fetch_one(&admin)
        .await?;
    assert_eq!(
        breached, 15,
        "acknowledge, first investigation and resolution breached on each"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM complaints.complaints WHERE next_escalation_at <= now() AND complaint_id = ANY($1)")
        .bind(&ids)
        .fetch_one(&admin)
        .await?;
    assert_eq!(pending, 0, "nothing left due");
    service.shutdown().await
}

/// A complaint the watcher cannot escalate (its property's stored settings no longer pass the
/// rules: a repeat window saved before windows were bounded) is put back by five minutes and
/// holds up no other complaint's escalations, though it is first in line. Reading it says what
/// to fix (FAILED_PRECONDITION), not that the reader sent bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_that_cannot_be_escalated_holds_up_no_other() -> anyhow::Result<()> {
    use prost::Message;
    let service = spawn_service(&guestloop_complaints::DEFINITION).await?;
    let token = TokenBuilder::new(Role::Agent)
        .properties(&["paris", "rome"])
        .mint()?;
    let mut client = ComplaintsServiceClient::new(service.channel_with_token(&token).await?);
    let mut ids = Vec::new();
    for property in ["rome", "paris", "paris"] {
        let complaint = client
            .create_complaint(pb::CreateComplaintRequest {
                request_id: String::new(),
                complaint: Some(pb::Complaint {
                    property_id: property.into(),
                    guest: Some(pb::GuestRef {
                        name: "Walk-in".into(),
                        ..Default::default()
                    }),
                    channel: pb::Channel::FrontDesk as i32,
                    urgency: pb::Urgency::High as i32,
                    category: "lift".into(),
                    description: "lift out of order".into(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        ids.push(uuid::Uuid::parse_str(&complaint.complaint_id)?);
    }
    let pool = complaints_pool(&service.database.url).await?;
    let stale = pb::PropertySettings {
        property_id: "rome".into(),
        time_zone: "Europe/Rome".into(),
        repeat_window_days: 5_000,
        ..Default::default()
    };
    sqlx::query(
        "INSERT INTO property_settings (property_id, chain_id, settings, etag, updated_by) \
         VALUES ('rome', 'chain-test', $1, gen_random_uuid(), 'before-the-bounds')",
    )
    .bind(stale.encode_to_vec())
    .execute(&pool)
    .await?;
    sqlx::query("UPDATE complaint_clocks SET started_at = started_at - interval '121 minutes', due_at = due_at - interval '121 minutes' WHERE complaint_id = ANY($1)")
        .bind(&ids).execute(&pool).await?;
    sqlx::query("UPDATE complaint_timeline SET at = at - interval '121 minutes' WHERE complaint_id = ANY($1)").bind(&ids).execute(&pool).await?;
    sqlx::query("UPDATE complaints SET created_at = created_at - interval '121 minutes', \
                 next_escalation_at = now() - CASE WHEN property_id = 'rome' THEN interval '1 hour' ELSE interval '1 second' END \
                 WHERE complaint_id = ANY($1)")
        .bind(&ids).execute(&pool).await?;

    let log = EventLog::new(pool.clone(), "complaints");
    guestloop_complaints::workers::escalate_due(&pool, &log).await?;
    let per_complaint: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT c.complaint_id, count(e.*) FROM complaints c \
         LEFT JOIN complaint_escalations e ON e.complaint_id = c.complaint_id \
         WHERE c.complaint_id = ANY($1) GROUP BY c.complaint_id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await?;
    for (id, fired) in per_complaint {
        assert_eq!(fired, if id == ids[0] { 0 } else { 5 }, "{id}");
    }
    let put_back: bool = sqlx::query_scalar(
        "SELECT next_escalation_at > now() + interval '4 minutes' FROM complaints WHERE complaint_id = $1",
    )
    .bind(ids[0])
    .fetch_one(&pool)
    .await?;
    assert!(put_back, "the failing complaint waits five minutes");
    let read = client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: ids[0].to_string(),
        })
        .await
        .expect_err("rome's settings are stale");
    assert_eq!(read.code(), tonic::Code::FailedPrecondition, "{read:?}");
    assert!(read.message().contains("repeat_window_days"), "{read:?}");
    service.shutdown().await
}
