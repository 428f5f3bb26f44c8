//! Demo data for `guestloop up --demo`: the chain's service standards (grooming, greeting within
//! three metres, phone answered within three rings, reply within 24 h, warmth, empathy), an
//! arrival-experience template, a monthly internal program and a room-inspection program per
//! property, a year of submitted audits with their scores, findings and staff observations,
//! SERVQUAL surveys and touchpoint-importance ratings. Deterministic.

use chrono::{Datelike, Duration, TimeZone, Utc};
use guestloop_kit::demo::{DemoRandom, DEMO_CHAIN, DEMO_PROPERTIES};
use guestloop_proto::audit::v1 as pb;
use prost::Message;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::scoring::{score, CriticalRule, Item, Outcome};

/// (code, title, kind, min, max, unit, dimension 1..=5, touchpoint)
type StandardRow = (
    &'static str,
    &'static str,
    pb::StandardKind,
    f64,
    f64,
    &'static str,
    i16,
    &'static str,
);

const STANDARDS: [StandardRow; 7] = [
    (
        "grooming",
        "Uniform and grooming to standard",
        pb::StandardKind::HardBinary,
        0.0,
        0.0,
        "",
        1,
        "lobby",
    ),
    (
        "greet_3m",
        "Guest greeted within three metres",
        pb::StandardKind::HardBinary,
        0.0,
        0.0,
        "",
        5,
        "arrival",
    ),
    (
        "phone_3_rings",
        "Phone answered within three rings",
        pb::StandardKind::HardNumeric,
        0.0,
        3.0,
        "rings",
        3,
        "phone",
    ),
    (
        "reply_24h",
        "Written enquiry answered within 24 hours",
        pb::StandardKind::HardNumeric,
        0.0,
        24.0,
        "hours",
        3,
        "email",
    ),
    (
        "room_ready",
        "Room ready and clean at check-in",
        pb::StandardKind::HardBinary,
        0.0,
        0.0,
        "",
        2,
        "room",
    ),
    (
        "warmth",
        "Warmth of the welcome",
        pb::StandardKind::Soft,
        0.0,
        0.0,
        "",
        5,
        "arrival",
    ),
    (
        "assurance",
        "Staff knowledge inspires confidence",
        pb::StandardKind::Soft,
        0.0,
        0.0,
        "",
        4,
        "front desk",
    ),
];

/// Loads the demo audits unless they are there already.
pub async fn load(pool: &PgPool) -> anyhow::Result<()> {
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM standards WHERE code = 'greet_3m')")
            .fetch_one(pool)
            .await?;
    if already {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    guestloop_kit::demo::claim_demo_properties(&mut tx).await?;
    for (code, title, kind, min, max, unit, dimension, touchpoint) in STANDARDS {
        sqlx::query(
            "INSERT INTO standards (standard_id, code, title, department, touchpoint, kind, min_value, max_value, unit, dimension, weight, chain_id) \
             VALUES ($1, $2, $3, 'front_office', $4, $5, $6, $7, $8, $9, 1, $10)",
        )
        .bind(Uuid::now_v7())
        .bind(code)
        .bind(title)
        .bind(touchpoint)
        .bind(kind as i16)
        .bind(min)
        .bind(max)
        .bind(unit)
        .bind(dimension)
        .bind(DEMO_CHAIN)
        .execute(&mut *tx)
        .await?;
    }
    let item = |code: &str, weight: f64, critical: bool| pb::TemplateItem {
        standard_code: code.into(),
        weight,
        critical,
    };
    let sections = vec![
        pb::TemplateSection {
            name: "arrival".into(),
            items: vec![
                item("greet_3m", 2.0, true),
                item("grooming", 1.0, false),
                item("warmth", 2.0, false),
            ],
        },
        pb::TemplateSection {
            name: "contact".into(),
            items: vec![
                item("phone_3_rings", 1.0, false),
                item("reply_24h", 1.0, false),
                item("assurance", 1.0, false),
            ],
        },
        pb::TemplateSection {
            name: "room".into(),
            items: vec![item("room_ready", 2.0, true)],
        },
    ];
    let template = Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_00a0_0001);
    let stored = pb::PublishTemplateRequest {
        sections: sections.clone(),
        ..Default::default()
    };
    sqlx::query("INSERT INTO templates (template_id, version, name, sections, critical_rule, pass_threshold, chain_id) VALUES ($1, 1, 'Arrival experience', $2, 1, 80, $3)")
        .bind(template)
        .bind(stored.encode_to_vec())
        .bind(DEMO_CHAIN)
        .execute(&mut *tx)
        .await?;
    let now = Utc::now();
    for (index, property) in DEMO_PROPERTIES.iter().enumerate() {
        let mut random = DemoRandom::new(0xa0d1_0000 + index as u64);
        let program = Uuid::now_v7();
        let start = (now - Duration::days(365)).date_naive();
        sqlx::query("INSERT INTO programs (program_id, property_id, kind, template_id, cadence, audits_per_period, starts_on) VALUES ($1, $2, 1, $3, 1, 2, $4)")
            .bind(program)
            .bind(property.property_id)
            .bind(template)
            .bind(chrono::NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or(start))
            .execute(&mut *tx)
            .await?;
        // A room-inspection program from this month: a quarter of the rooms each month.
        let rooms: Vec<String> = (0..property.rooms)
            .map(|i| format!("{}{:02}", i / 30 + 1, i % 30 + 1))
            .collect();
        let this_month = now.date_naive();
        sqlx::query(
            "INSERT INTO programs (program_id, property_id, kind, template_id, cadence, audits_per_period, starts_on, rooms, rooms_percent) \
             VALUES ($1, $2, 4, $3, 1, $4, $5, $6, 25)",
        )
        .bind(Uuid::now_v7())
        .bind(property.property_id)
        .bind(template)
        .bind(i32::try_from(crate::domain::rooms::audits_per_period(rooms.len(), 25)).unwrap_or(1))
        .bind(
            chrono::NaiveDate::from_ymd_opt(this_month.year(), this_month.month(), 1)
                .unwrap_or(this_month),
        )
        .bind(&rooms)
        .execute(&mut *tx)
        .await?;
        // Guests' touchpoint importance: 60 survey responses over the last 90 days.
        let mut surveys = DemoRandom::new(0x70c4_0000 + index as u64);
        for response in 0..60u64 {
            let response_id = Uuid::now_v7();
            let recorded_at = now - Duration::days(surveys.below(90) as i64);
            sqlx::query(
                "INSERT INTO touchpoint_responses (response_id, request_id, property_id, recorded_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(response_id)
            .bind(format!("demo-{}-{response}", property.property_id))
            .bind(property.property_id)
            .bind(recorded_at)
            .execute(&mut *tx)
            .await?;
            for (touchpoint, low, spread) in [
                ("arrival", 4, 2),
                ("room", 4, 2),
                ("phone", 2, 3),
                ("email", 2, 2),
                ("lobby", 2, 3),
            ] {
                sqlx::query(
                    "INSERT INTO touchpoint_ratings (response_id, property_id, touchpoint, importance, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(response_id)
                .bind(property.property_id)
                .bind(touchpoint)
                .bind((low + surveys.below(spread) as i16).min(5))
                .bind(recorded_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        // SERVQUAL: 30 surveys over the last 90 days, all 22 items each.
        for survey in 0..30u64 {
            let survey_id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO servqual_surveys (survey_id, property_id, request_id, submitted_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(survey_id)
            .bind(property.property_id)
            .bind(format!("demo-servqual-{}-{survey}", property.property_id))
            .bind(now - Duration::days(surveys.below(90) as i64))
            .execute(&mut *tx)
            .await?;
            let items: Vec<i16> = (1..=22).collect();
            let expectations: Vec<i16> =
                items.iter().map(|_| 5 + surveys.below(3) as i16).collect();
            let perceptions: Vec<i16> = items.iter().map(|_| 4 + surveys.below(4) as i16).collect();
            sqlx::query(
                "INSERT INTO servqual_answers (survey_id, item, expectation, perception) \
                 SELECT $1, * FROM unnest($2::smallint[], $3::smallint[], $4::smallint[])",
            )
            .bind(survey_id)
            .bind(&items)
            .bind(&expectations)
            .bind(&perceptions)
            .execute(&mut *tx)
            .await?;
        }
        // Eight staff members per property, observed by the audits.
        let mut staffing = DemoRandom::new(0x57af_0000 + index as u64);
        let mut previous: Option<f64> = None;
        for month in 0..12 {
            let first = chrono::NaiveDate::from_ymd_opt(start.year(), start.month(), 1)
                .unwrap_or(start)
                + chrono::Months::new(month);
            for slot in 1..=2 {
                let submitted = Utc.from_utc_datetime(
                    &(first + Duration::days(5 + 10 * i64::from(slot)))
                        .and_hms_opt(15, 0, 0)
                        .unwrap_or_default(),
                );
                if submitted > now {
                    continue;
                }
                let mut items = Vec::new();
                let mut answers = Vec::new();
                let mut failed = Vec::new();
                let mut observations: Vec<(String, String, f64)> = Vec::new();
                for (s, section) in sections.iter().enumerate() {
                    for entry in &section.items {
                        let standard = STANDARDS.iter().find(|st| st.0 == entry.standard_code);
                        let (kind, dimension) =
                            standard.map_or((pb::StandardKind::HardBinary, 1), |st| (st.2, st.6));
                        let (answer, outcome) = match kind {
                            pb::StandardKind::Soft => {
                                let rating = 2 + random.below(4) as i32;
                                (
                                    pb::Answer {
                                        standard_code: entry.standard_code.clone(),
                                        kind: pb::AnswerKind::Rating as i32,
                                        rating,
                                        ..Default::default()
                                    },
                                    Outcome::Score(f64::from(rating - 1) / 4.0),
                                )
                            }
                            pb::StandardKind::HardNumeric => {
                                let value = random.below(5) as f64;
                                let ok = value <= standard.map_or(3.0, |st| st.4);
                                (
                                    pb::Answer {
                                        standard_code: entry.standard_code.clone(),
                                        kind: pb::AnswerKind::Value as i32,
                                        value,
                                        ..Default::default()
                                    },
                                    Outcome::Score(if ok { 1.0 } else { 0.0 }),
                                )
                            }
                            _ => {
                                let pass = random.chance(90);
                                let kind = if pass {
                                    pb::AnswerKind::Pass
                                } else {
                                    pb::AnswerKind::Fail
                                };
                                (
                                    pb::Answer {
                                        standard_code: entry.standard_code.clone(),
                                        kind: kind as i32,
                                        ..Default::default()
                                    },
                                    Outcome::Score(if pass { 1.0 } else { 0.0 }),
                                )
                            }
                        };
                        if matches!(outcome, Outcome::Score(x) if x < 0.5) {
                            failed.push(entry.standard_code.clone());
                        }
                        let mut answer = answer;
                        if let Outcome::Score(x) = outcome {
                            let staff = format!(
                                "{}-staff-{:02}",
                                property.property_id,
                                staffing.below(8) + 1
                            );
                            answer.staff_ids.push(staff.clone());
                            observations.push((staff, entry.standard_code.clone(), x));
                        }
                        items.push(Item {
                            section: s,
                            dimension: (dimension - 1).clamp(0, 4) as usize,
                            weight: entry.weight,
                            critical: entry.critical,
                            outcome,
                        });
                        answers.push(answer);
                    }
                }
                let scores = score(&items, sections.len(), CriticalRule::FailSection, 80.0);
                let result = pb::Audit {
                    answers,
                    overall: scores.overall,
                    sections: sections
                        .iter()
                        .zip(&scores.sections)
                        .map(|(s, v)| pb::ScoreLine {
                            key: s.name.clone(),
                            score: *v,
                        })
                        .collect(),
                    dimensions: crate::domain::scoring::DIMENSIONS
                        .iter()
                        .zip(&scores.dimensions)
                        .map(|(k, v)| pb::ScoreLine {
                            key: k.to_string(),
                            score: *v,
                        })
                        .collect(),
                    passed: scores.passed,
                    critical_failed: scores.critical_failed,
                    previous_overall: previous,
                    ..Default::default()
                };
                previous = scores.overall;
                let audit = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO audits (audit_id, program_id, property_id, template_id, template_version, period, slot, due_at, status, auditor_id, result, overall, passed, submitted_at) \
                     VALUES ($1, $2, $3, $4, 1, $5, $6, $7, 'submitted', 'quality-team', $8, $9, $10, $11)",
                )
                .bind(audit)
                .bind(program)
                .bind(property.property_id)
                .bind(template)
                .bind(first.format("%Y-%m").to_string())
                .bind(slot)
                .bind(submitted + Duration::days(10))
                .bind(result.encode_to_vec())
                .bind(scores.overall)
                .bind(scores.passed)
                .bind(submitted)
                .execute(&mut *tx)
                .await?;
                for (staff, code, score) in &observations {
                    sqlx::query(
                        "INSERT INTO staff_observations (audit_id, staff_id, property_id, standard_code, score, observed_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(audit)
                    .bind(staff)
                    .bind(property.property_id)
                    .bind(code)
                    .bind(score)
                    .bind(submitted)
                    .execute(&mut *tx)
                    .await?;
                }
                for code in failed {
                    // Actions are due two weeks after the audit; older ones were done, some late.
                    let closed = submitted < now - Duration::days(30);
                    let done_at = closed
                        .then(|| submitted + Duration::days(5 + (code.len() as i64 * 3) % 15));
                    sqlx::query("INSERT INTO findings (finding_id, audit_id, program_id, property_id, standard_code, status, created_at, due_date, done_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                        .bind(Uuid::now_v7())
                        .bind(audit)
                        .bind(program)
                        .bind(property.property_id)
                        .bind(code)
                        .bind(if closed { "verified" } else { "open" })
                        .bind(submitted)
                        .bind((submitted + Duration::days(14)).date_naive())
                        .bind(done_at)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
