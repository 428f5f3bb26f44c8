//! Demo data for `guestloop up --demo`: assets in every demo property's rooms and plant rooms, a
//! room-inspection checklist and plans, and 90 days of inspections and work orders (some on hold,
//! some repeated on the same asset), and engineering settings on each property's engineering
//! week. Deterministic.

use chrono::{Duration, Utc};
use guestloop_kit::demo::{DemoRandom, DEMO_CHAIN, DEMO_PROPERTIES};
use guestloop_proto::facilities::v1 as pb;
use prost::Message;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::settings::Engineering;
use crate::domain::work_orders::Priority;

const CATEGORIES: [(pb::AssetCategory, &str); 5] = [
    (pb::AssetCategory::Hvac, "Fan coil unit"),
    (pb::AssetCategory::Plumbing, "Shower mixer"),
    (pb::AssetCategory::ItNetwork, "Wi-Fi access point"),
    (pb::AssetCategory::Appliance, "Minibar"),
    (pb::AssetCategory::Electrical, "Bedside lighting"),
];

/// Loads the demo facilities unless they are there already.
pub async fn load(pool: &PgPool) -> anyhow::Result<()> {
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM assets WHERE property_id = $1)")
            .bind(DEMO_PROPERTIES[0].property_id)
            .fetch_one(pool)
            .await?;
    if already {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    guestloop_kit::demo::claim_demo_properties(&mut tx).await?;
    let checklist = Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0001);
    let items: Vec<pb::ChecklistItem> = vec![
        pb::ChecklistItem {
            code: "hot_water".into(),
            text: "Hot water 50–60 °C".into(),
            kind: pb::ItemKind::Numeric as i32,
            min: 50.0,
            max: 60.0,
            unit: "°C".into(),
            tag: "safety".into(),
            critical: true,
            ..Default::default()
        },
        pb::ChecklistItem {
            code: "ac".into(),
            text: "Air conditioning cools".into(),
            kind: pb::ItemKind::PassFail as i32,
            tag: "operation".into(),
            ..Default::default()
        },
        pb::ChecklistItem {
            code: "clean".into(),
            text: "Bathroom clean".into(),
            kind: pb::ItemKind::PassFail as i32,
            tag: "hygiene".into(),
            ..Default::default()
        },
    ];
    let items_json = serde_json::Value::Array(
        items
            .iter()
            .map(|i| serde_json::Value::String(hex::encode(i.encode_to_vec())))
            .collect(),
    );
    // The demo chain's checklist, as if its admin had published it.
    sqlx::query("INSERT INTO checklists (checklist_id, version, name, items, chain_id) VALUES ($1, 1, 'Room readiness', $2, $3)")
        .bind(checklist)
        .bind(items_json)
        .bind(DEMO_CHAIN)
        .execute(&mut *tx)
        .await?;
    let now = Utc::now();
    for (index, property) in DEMO_PROPERTIES.iter().enumerate() {
        let mut random = DemoRandom::new(0xfac1_0000 + index as u64);
        let settings = pb::EngineeringSettings {
            property_id: property.property_id.into(),
            time_zone: property.time_zone.into(),
            always_open: false,
            days: guestloop_kit::demo::engineering_week(),
            holidays: guestloop_kit::demo::ENGINEERING_HOLIDAYS
                .iter()
                .map(|d| d.to_string())
                .collect(),
            ..Default::default()
        };
        let engineering = Engineering::from_wire(&settings).map_err(|violations| {
            anyhow::anyhow!("demo engineering settings do not validate: {violations:?}")
        })?;
        sqlx::query(
            "INSERT INTO engineering_settings (property_id, settings, etag, updated_by) VALUES ($1, $2, $3, 'demo')",
        )
        .bind(property.property_id)
        .bind(settings.encode_to_vec())
        .bind(Uuid::now_v7())
        .execute(&mut *tx)
        .await?;
        let mut assets = Vec::new();
        for floor in 1..=4u32 {
            for room in 1..=5u32 {
                let room_no = format!("{floor}{room:02}");
                for (category, name) in CATEGORIES {
                    let id = Uuid::now_v7();
                    let installed =
                        now.date_naive() - Duration::days(365 + random.below(3000) as i64);
                    sqlx::query(
                        "INSERT INTO assets (asset_id, property_id, name, category, building, floor, room, install_date, expected_life_years, \
                         replacement_currency, replacement_minor) VALUES ($1,$2,$3,$4,'main',$5,$6,$7,$8,$9,$10)",
                    )
                    .bind(id)
                    .bind(property.property_id)
                    .bind(format!("{name} {room_no}"))
                    .bind(category as i16)
                    .bind(floor.to_string())
                    .bind(&room_no)
                    .bind(installed)
                    .bind(8 + random.below(8) as i32)
                    .bind(property.currency_code)
                    .bind(20_000 + 10_000 * random.below(30) as i64)
                    .execute(&mut *tx)
                    .await?;
                    assets.push((id, room_no.clone()));
                }
            }
        }
        let plan = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO plans (plan_id, property_id, checklist_id, frequency, start_date, due_time, time_zone, responsible_role) \
             VALUES ($1, $2, $3, 2, $4, '09:00', $5, 'department_head')",
        )
        .bind(plan)
        .bind(property.property_id)
        .bind(checklist)
        .bind(now.date_naive() - Duration::days(91))
        .bind(property.time_zone)
        .execute(&mut *tx)
        .await?;
        for week in 0..13u32 {
            let due = now - Duration::days(91 - 7 * i64::from(week));
            let done = random.chance(92);
            let failed: Vec<String> = if done && random.chance(30) {
                vec![(*random.pick(&["hot_water", "ac", "clean"])).to_string()]
            } else {
                Vec::new()
            };
            sqlx::query(
                "INSERT INTO inspections (inspection_id, plan_id, occurrence, property_id, checklist_id, checklist_version, due_at, status, done_at, failed_items) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9)",
            )
            .bind(Uuid::now_v7())
            .bind(plan)
            .bind(format!("n:{week}"))
            .bind(property.property_id)
            .bind(checklist)
            .bind(due)
            .bind(if done { "done" } else { "due" })
            .bind(done.then(|| due + Duration::hours(2 + random.below(30) as i64)))
            .bind(&failed)
            .execute(&mut *tx)
            .await?;
        }
        for _ in 0..(40 + random.below(30)) {
            let (asset, room) = random.pick(&assets).clone();
            let created = now
                - Duration::days(1 + random.below(89) as i64)
                - Duration::minutes(random.below(600) as i64);
            let priority = 1 + random.below(4) as i16;
            let level = match priority {
                1 => Priority::LifeSafety,
                2 => Priority::GuestImpacting,
                3 => Priority::Normal,
                _ => Priority::Low,
            };
            let target = engineering.target(level);
            let calendar = engineering.calendar(level);
            let done_after = target.fix.num_minutes() * (30 + random.below(110) as i64) / 100;
            let done_at = created + Duration::minutes(done_after.max(10));
            let finished = done_at < now;
            sqlx::query(
                "INSERT INTO work_orders (work_order_id, property_id, asset_id, room, title, priority, source, status, assignee, created_at, \
                 respond_due_at, fix_due_at, responded_at, done_at, labour_currency, labour_minor, etag) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'team:engineering',$9,$10,$11,$12,$13,$14,$15,$16)",
            )
            .bind(Uuid::now_v7())
            .bind(property.property_id)
            .bind(asset)
            .bind(&room)
            .bind(format!("Repair in room {room}"))
            .bind(priority)
            .bind(*random.pick(&[1i16, 3, 3, 4]))
            .bind(if finished { "done" } else { "in_progress" })
            .bind(created)
            .bind(calendar.add_working_time(created, target.respond))
            .bind(calendar.add_working_time(created, target.fix))
            .bind(created + Duration::minutes(5 + random.below(60) as i64))
            .bind(finished.then_some(done_at))
            .bind(property.currency_code)
            .bind(if finished { 2_000 + 500 * random.below(20) as i64 } else { 0 })
            .bind(Uuid::now_v7())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
