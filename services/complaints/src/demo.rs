//! Demo data for `guestloop up --demo`: 90 days of complaints across the demo chain, with the
//! property settings (time zones, currencies, department calendars) they are measured against.
//! Deterministic: the same generator seed gives the same complaints relative to today.

use chrono::{Duration, NaiveTime, TimeZone, Utc};
use guestloop_kit::demo::{DemoRandom, DEMO_CHAIN, DEMO_PROPERTIES};
use guestloop_proto::complaints::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::clocks;
use crate::settings::{default_settings, effective};
use crate::store::{self, ComplaintRow};

/// Categories, with the department responsible and the usual cause.
const CATEGORIES: [(&str, &str, pb::Cause); 10] = [
    ("cleanliness", "housekeeping", pb::Cause::Process),
    ("noise", "front_office", pb::Cause::External),
    ("heating_ac", "engineering", pb::Cause::Facility),
    ("plumbing", "engineering", pb::Cause::Facility),
    ("wifi", "it", pb::Cause::SupportSystem),
    (
        "food_beverage",
        "food_beverage",
        pb::Cause::DeliveryTimeliness,
    ),
    ("check_in_wait", "front_office", pb::Cause::Process),
    ("billing", "front_office", pb::Cause::PriceBilling),
    ("safety", "security", pb::Cause::Facility),
    ("lost_items", "housekeeping", pb::Cause::InternalManagement),
];

/// Number of demo guests (ids `demo-guest-0001` …), shared with CRM's demo data.
pub const DEMO_GUESTS: u64 = 3000;

pub fn demo_guest_id(n: u64) -> String {
    format!("demo-guest-{:04}", n % DEMO_GUESTS + 1)
}

fn engineering_calendar() -> pb::WorkingCalendar {
    pb::WorkingCalendar {
        department: "engineering".into(),
        always_open: false,
        days: guestloop_kit::demo::engineering_week(),
        holidays: guestloop_kit::demo::ENGINEERING_HOLIDAYS
            .iter()
            .map(|d| d.to_string())
            .collect(),
        working_day_hours: 10,
    }
}

/// Loads the demo data unless it is already there.
pub async fn load(pool: &PgPool) -> anyhow::Result<()> {
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM known_properties WHERE chain_id = $1)")
            .bind(DEMO_CHAIN)
            .fetch_one(pool)
            .await?;
    if already {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    guestloop_kit::demo::claim_demo_properties(&mut tx).await?;
    let today = Utc::now().date_naive();
    for (index, property) in DEMO_PROPERTIES.iter().enumerate() {
        let mut settings = default_settings(property.property_id);
        settings.time_zone = property.time_zone.into();
        settings.currency_code = property.currency_code.into();
        settings.region = property.region.into();
        settings.calendars = vec![engineering_calendar()];
        settings.categories = CATEGORIES.iter().map(|(c, _, _)| c.to_string()).collect();
        store::settings::put(&mut tx, DEMO_CHAIN, &settings, "", "demo").await?;
        let effective = effective(&settings)?;
        sqlx::query("INSERT INTO known_properties (property_id, chain_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(property.property_id)
            .bind(DEMO_CHAIN)
            .execute(&mut *tx)
            .await?;
        let zone: chrono_tz::Tz = property.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let mut random = DemoRandom::new(0x5eed_0000 + index as u64);
        for days_ago in (1..=90).rev() {
            let day = today - Duration::days(days_ago);
            let per_day = 3 + random.below(u64::from(property.rooms / 40));
            for _ in 0..per_day {
                let (category, department, cause) = *random.pick(&CATEGORIES);
                let local = NaiveTime::from_hms_opt(
                    7 + random.below(16) as u32,
                    random.below(60) as u32,
                    0,
                )
                .unwrap_or_default();
                let Some(created_at) = zone
                    .from_local_datetime(&day.and_time(local))
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                else {
                    continue;
                };
                let urgency = match random.below(100) {
                    0..=4 => pb::Urgency::Critical,
                    5..=29 => pb::Urgency::High,
                    30..=84 => pb::Urgency::Medium,
                    _ => pb::Urgency::Low,
                };
                let channel = *random.pick(&[
                    pb::Channel::Phone,
                    pb::Channel::FrontDesk,
                    pb::Channel::FrontDesk,
                    pb::Channel::App,
                    pb::Channel::Email,
                    pb::Channel::Survey,
                    pb::Channel::Social,
                    pb::Channel::StaffObserved,
                ]);
                let mut clock_rows = clocks::start_all(&effective, urgency, department, created_at);
                let resolution_minutes = clock_rows
                    .iter()
                    .find(|c| c.stage == pb::Stage::Resolution as i16)
                    .map_or(240, |c| (c.due_at - created_at).num_minutes().max(10));
                let response = created_at + Duration::minutes(3 + random.below(45) as i64);
                // Most recoveries land inside the target; some run over it.
                let resolve_after = resolution_minutes * (25 + random.below(110) as i64) / 100;
                let resolved_at = created_at + Duration::minutes(resolve_after.max(5));
                let finished = resolved_at < Utc::now() - Duration::hours(6) && days_ago > 1;
                let rated = finished && random.chance(70);
                let csat = rated.then(|| match random.below(100) {
                    0..=44 => 5,
                    45..=74 => 4,
                    75..=86 => 3,
                    87..=94 => 2,
                    _ => 1,
                });
                let nps = csat.map(|c| (c * 2 - random.below(2) as i16).clamp(0, 10));
                let status = if finished {
                    if random.chance(85) {
                        "closed"
                    } else {
                        "resolved"
                    }
                } else {
                    "acknowledged"
                };
                for clock in clock_rows.iter_mut() {
                    let stop = match pb::Stage::try_from(i32::from(clock.stage)).unwrap_or_default()
                    {
                        pb::Stage::Acknowledge => Some(response),
                        pb::Stage::FirstInvestigation => Some(response + Duration::minutes(10)),
                        pb::Stage::RemedyPlan => Some(response + Duration::minutes(20)),
                        _ if finished => Some(resolved_at),
                        _ => None,
                    };
                    clock.stopped_at = stop.map(|s| s.max(created_at));
                }
                let guest_number = random.below(DEMO_GUESTS);
                let id = Uuid::now_v7();
                let row = ComplaintRow {
                    complaint_id: id,
                    chain_id: DEMO_CHAIN.into(),
                    property_id: property.property_id.into(),
                    guest_id: if channel == pb::Channel::StaffObserved {
                        String::new()
                    } else {
                        demo_guest_id(guest_number)
                    },
                    guest_name: String::new(),
                    guest_email: String::new(),
                    guest_phone: String::new(),
                    reservation_ref: format!("R{}", 100_000 + random.below(900_000)),
                    room: format!("{}{:02}", 1 + random.below(12), 1 + random.below(30)),
                    stay_phase: pb::StayPhase::InHouse as i16,
                    channel: channel as i16,
                    category: category.into(),
                    subcategory: String::new(),
                    cause: cause as i16,
                    impact: pb::Impact::NeedUnmet as i16,
                    urgency: urgency as i16,
                    description: format!(
                        "{} issue reported by the guest",
                        category.replace('_', " ")
                    ),
                    department: department.into(),
                    assignee: String::new(),
                    status: status.into(),
                    resume_status: None,
                    guest_tier: String::new(),
                    tier_checked: true,
                    repeat_issue: random.chance(6),
                    repeat_of: None,
                    hotspot: false,
                    reopen_count: if finished && random.chance(5) { 1 } else { 0 },
                    waited_on_guest: false,
                    escalation_level: "agent".into(),
                    escalation_count: 0,
                    first_escalated_at: None,
                    root_cause_summary: if status == "closed" {
                        format!("{category}: cause found and fixed")
                    } else {
                        String::new()
                    },
                    last_reason: String::new(),
                    csat,
                    nps,
                    rating_comment: String::new(),
                    rated_by: String::new(),
                    rated_at: rated.then_some(resolved_at + Duration::hours(20)),
                    work_order_ids: Vec::new(),
                    standard_codes: Vec::new(),
                    staff_involved: Vec::new(),
                    created_at,
                    created_by: "demo".into(),
                    updated_at: if finished { resolved_at } else { response },
                    first_response_at: Some(response),
                    first_resolved_at: finished.then_some(resolved_at),
                    resolved_at: finished.then_some(resolved_at),
                    closed_at: (status == "closed").then_some(resolved_at + Duration::days(1)),
                    follow_up_due_at: finished.then_some(resolved_at + Duration::hours(24)),
                    next_escalation_at: (!finished).then_some(Utc::now()),
                    etag: Uuid::now_v7(),
                };
                store::complaints::insert(&mut tx, &row).await?;
                store::complaints::save_clocks(
                    &mut tx,
                    id,
                    &clock_rows,
                    store::complaints::Rollup::Leave,
                )
                .await?;
                let filed = store::timeline::Entry {
                    at: created_at,
                    actor: "demo",
                    kind: "filed",
                    from_status: None,
                    to_status: Some("received"),
                    note: "",
                };
                store::timeline::append(&mut tx, id, filed).await?;
                let last = store::timeline::Entry {
                    at: if finished { resolved_at } else { response },
                    actor: "demo",
                    kind: "transition",
                    from_status: Some("received"),
                    to_status: Some(status),
                    note: "",
                };
                store::timeline::append(&mut tx, id, last).await?;
                if finished && random.chance(30) {
                    let (kind, amount, points) = match random.below(3) {
                        0 => (
                            pb::RemedyKind::Points,
                            0,
                            500 + 500 * random.below(4) as i64,
                        ),
                        1 => (
                            pb::RemedyKind::Voucher,
                            1_000 + 500 * random.below(4) as i64,
                            0,
                        ),
                        _ => (pb::RemedyKind::Apology, 0, 0),
                    };
                    let remedy = store::remedies::RemedyRow {
                        remedy_id: Uuid::now_v7(),
                        complaint_id: id,
                        kind: kind as i16,
                        currency_code: if amount > 0 {
                            property.currency_code.into()
                        } else {
                            String::new()
                        },
                        amount_minor: amount,
                        points,
                        description: "service recovery".into(),
                        status: "delivered".into(),
                        proposed_by: "demo".into(),
                        proposed_role: "agent".into(),
                        required_role: String::new(),
                        decided_by: "demo".into(),
                        decision_note: String::new(),
                        created_at: resolved_at,
                        decided_at: Some(resolved_at),
                        delivered_at: Some(resolved_at),
                    };
                    store::remedies::insert(&mut tx, &remedy).await?;
                }
            }
        }
    }
    store::kpis::rebuild(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
