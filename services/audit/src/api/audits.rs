//! Programs, the idempotent audit scheduler, auditor assignment (the mystery-guest conflict
//! rule), submission with scores, findings and comparison, and corrective actions.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use guestloop_kit::auth::{principal, Role};
use guestloop_kit::text::free_text;
use guestloop_kit::time::{calendar_date, required_horizon, to_timestamp};
use guestloop_kit::{idempotency, paging, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::audit::v1 as pb;
use prost::Message;
use tonic::Request;
use uuid::Uuid;

use super::library::{library_chain, lock_template, standards_for, template, Reach};
use super::{Api, MAX_CODE, MAX_NAME, MAX_NOTE, MAX_ROOM};
use crate::domain::scoring::{raises_finding, score, CriticalRule, Item, Outcome};
use crate::domain::{actions, rooms};

/// How far ahead one schedule call may look.
const MAX_LOOKAHEAD_DAYS: i64 = 366;

fn parse_id(text: &str, field: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

pub async fn create_program(
    api: &Api,
    request: Request<pb::CreateProgramRequest>,
) -> ApiResult<pb::Program> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let program = request
        .program
        .clone()
        .ok_or_else(|| ApiError::invalid("program", "is required"))?;
    let mut v = Vec::new();
    if !matches!(pb::ProgramKind::try_from(program.kind), Ok(k) if k != pb::ProgramKind::Unspecified)
    {
        v.push(FieldViolation::new("program.kind", "is required"));
    }
    if !matches!(pb::Cadence::try_from(program.cadence), Ok(c) if c != pb::Cadence::Unspecified) {
        v.push(FieldViolation::new("program.cadence", "is required"));
    }
    let mut program = program;
    if program.kind == pb::ProgramKind::RoomInspection as i32 {
        room_program(&mut program, &mut v);
    } else {
        if !program.rooms.is_empty() || program.rooms_percent != 0 {
            v.push(FieldViolation::new(
                "program.rooms",
                "rooms and rooms_percent are for room-inspection programs only",
            ));
        }
        if !(1..=500).contains(&program.audits_per_period) {
            v.push(FieldViolation::new(
                "program.audits_per_period",
                "must be between 1 and 500",
            ));
        }
    }
    if program.property_id.is_empty() {
        v.push(FieldViolation::new("program.property_id", "is required"));
    }
    let template_id = parse_id(&program.template_id, "program.template_id")?;
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut conn = api.context.pool.begin().await?;
    // Before the idempotency lookup: a replay of this request by another chain's caller must not
    // get back the program it created.
    tenancy::claim_property(&mut conn, &principal, &program.property_id).await?;
    // Another chain's template is not there for the caller (shared ones are everyone's).
    lock_template(&mut conn, template_id, false).await?;
    template(&mut conn, template_id, None, Reach::of(&principal)).await?;
    if let Some(previous) = idempotency::claim::<_, pb::Program>(
        &mut conn,
        &principal,
        "CreateProgram",
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    let id = Uuid::now_v7();
    let today = Utc::now().date_naive();
    sqlx::query(
        "INSERT INTO programs (program_id, property_id, kind, template_id, cadence, audits_per_period, starts_on, rooms, rooms_percent) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    )
    .bind(id)
    .bind(&program.property_id)
    .bind(program.kind as i16)
    .bind(template_id)
    .bind(program.cadence as i16)
    .bind(program.audits_per_period)
    .bind(NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today))
    .bind(&program.rooms)
    .bind(program.rooms_percent)
    .execute(&mut *conn)
    .await?;
    let reply = pb::Program {
        program_id: id.to_string(),
        ..program
    };
    idempotency::record(
        &mut conn,
        &principal,
        "CreateProgram",
        &request.request_id,
        &reply,
    )
    .await?;
    conn.commit().await?;
    Ok(reply)
}

/// Checks a room-inspection program's rooms and share, and fills in its audits per period.
fn room_program(program: &mut pb::Program, v: &mut Vec<FieldViolation>) {
    let mut seen = std::collections::BTreeSet::new();
    if program.rooms.is_empty() || program.rooms.len() > rooms::MAX_ROOMS {
        v.push(FieldViolation::new(
            "program.rooms",
            format!("list the rooms to cover (1 to {})", rooms::MAX_ROOMS),
        ));
    }
    for (i, room) in program.rooms.iter_mut().enumerate() {
        let field = format!("program.rooms[{i}]");
        let problems = v.len();
        *room = free_text(room, &field, MAX_ROOM, true, v);
        if v.len() == problems && !seen.insert(room.clone()) {
            v.push(FieldViolation::new(
                field,
                format!("room {room} is listed twice"),
            ));
        }
    }
    if !(1..=100).contains(&program.rooms_percent) {
        v.push(FieldViolation::new(
            "program.rooms_percent",
            "must be between 1 and 100",
        ));
        return;
    }
    let per_period = rooms::audits_per_period(
        program.rooms.len(),
        u32::try_from(program.rooms_percent).unwrap_or(0),
    );
    let per_period = i32::try_from(per_period).unwrap_or(i32::MAX);
    if program.audits_per_period != 0 && program.audits_per_period != per_period {
        v.push(FieldViolation::new(
            "program.audits_per_period",
            format!(
                "{} % of {} rooms is {per_period} inspections a period; leave it 0 or give {per_period}",
                program.rooms_percent,
                program.rooms.len()
            ),
        ));
    }
    program.audits_per_period = per_period;
}

/// Periods from `start` through `until`: ("2026-11", last instant) or ("2026-Q4", last instant).
fn periods(
    start: NaiveDate,
    until: DateTime<Utc>,
    quarterly: bool,
) -> Vec<(String, DateTime<Utc>)> {
    let mut out = Vec::new();
    let step = if quarterly { 3 } else { 1 };
    let mut month0 = if quarterly {
        (start.month0() / 3) * 3
    } else {
        start.month0()
    };
    let mut year = start.year();
    loop {
        let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1);
        let (next_year, next_month0) = if month0 + step >= 12 {
            (year + 1, month0 + step - 12)
        } else {
            (year, month0 + step)
        };
        let next_first = NaiveDate::from_ymd_opt(next_year, next_month0 + 1, 1);
        let (Some(first), Some(next_first)) = (first, next_first) else {
            break;
        };
        if Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default()) > until {
            break;
        }
        let due = Utc.from_utc_datetime(&next_first.and_hms_opt(0, 0, 0).unwrap_or_default())
            - chrono::Duration::seconds(1);
        let key = if quarterly {
            format!("{}-Q{}", year, month0 / 3 + 1)
        } else {
            format!("{}-{:02}", year, month0 + 1)
        };
        out.push((key, due));
        year = next_year;
        month0 = next_month0;
        if out.len() > 240 {
            break;
        }
    }
    out
}

pub async fn schedule(
    api: &Api,
    request: Request<pb::ScheduleAuditsRequest>,
) -> ApiResult<pb::ScheduleAuditsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    if request.property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let until = required_horizon("until", request.until.as_ref(), MAX_LOOKAHEAD_DAYS)?;
    let mut tx = api.context.pool.begin().await?;
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    let programs: Vec<(Uuid, Uuid, i16, i32, NaiveDate, Vec<String>)> = sqlx::query_as(
        "SELECT program_id, template_id, cadence, audits_per_period, starts_on, rooms FROM programs WHERE property_id = $1",
    )
    .bind(&request.property_id)
    .fetch_all(&mut *tx)
    .await?;
    // Each program gets its template's latest version for the property's chain: the chain's own
    // or a shared one, not a version another chain published after taking a shared template over.
    let chain = library_chain(&mut tx, &principal, &request.property_id).await?;
    let mut response = pb::ScheduleAuditsResponse::default();
    for (program_id, template_id, cadence, per_period, starts_on, program_rooms) in programs {
        let version = template(&mut tx, template_id, None, Reach::Prefer(&chain))
            .await?
            .version;
        let all_periods = periods(starts_on, until, cadence == pb::Cadence::Quarterly as i16);
        for (index, (period, due)) in all_periods.into_iter().enumerate() {
            for slot in 1..=per_period {
                let room = rooms::room_for(
                    &program_rooms,
                    index,
                    usize::try_from(slot).unwrap_or(0),
                    usize::try_from(per_period).unwrap_or(0),
                )
                .unwrap_or_default();
                let inserted = sqlx::query(
                    "INSERT INTO audits (audit_id, program_id, property_id, template_id, template_version, period, slot, due_at, room) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (program_id, period, slot) DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(program_id)
                .bind(&request.property_id)
                .bind(template_id)
                .bind(version)
                .bind(&period)
                .bind(slot)
                .bind(due)
                .bind(room)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    response.created += 1
                } else {
                    response.already_scheduled += 1
                }
            }
        }
    }
    tx.commit().await?;
    Ok(response)
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_id: Uuid,
    program_id: Uuid,
    property_id: String,
    template_id: Uuid,
    template_version: i32,
    period: String,
    slot: i32,
    due_at: DateTime<Utc>,
    status: String,
    auditor_id: String,
    result: Option<Vec<u8>>,
    submitted_at: Option<DateTime<Utc>>,
    room: String,
}

const AUDIT_COLUMNS: &str = "audit_id, program_id, property_id, template_id, template_version, period, slot, due_at, status, auditor_id, result, submitted_at, room";

fn audit_to_proto(row: &AuditRow) -> pb::Audit {
    let stored = row
        .result
        .as_ref()
        .and_then(|r| pb::Audit::decode(r.as_slice()).ok())
        .unwrap_or_default();
    pb::Audit {
        audit_id: row.audit_id.to_string(),
        program_id: row.program_id.to_string(),
        property_id: row.property_id.clone(),
        template_id: row.template_id.to_string(),
        template_version: row.template_version,
        period: format!("{}#{}", row.period, row.slot),
        due_time: Some(to_timestamp(row.due_at)),
        status: row.status.clone(),
        auditor_id: row.auditor_id.clone(),
        submit_time: row.submitted_at.map(to_timestamp),
        room: row.room.clone(),
        ..stored
    }
}

async fn load(conn: &mut sqlx::PgConnection, id: Uuid, lock: bool) -> ApiResult<AuditRow> {
    sqlx::query_as(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audits WHERE audit_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("audit", id.to_string()))
}

pub async fn assign(api: &Api, request: Request<pb::AssignAuditorRequest>) -> ApiResult<pb::Audit> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let id = parse_id(&request.audit_id, "audit_id")?;
    let mut v = Vec::new();
    let auditor_id = free_text(&request.auditor_id, "auditor_id", MAX_NAME, true, &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut row = load(&mut tx, id, true).await?;
    // Outside the caller's scope, or another chain's: not there for the caller (as GetAudit).
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("audit", id.to_string()));
    }
    // A submitted audit names who audited it.
    if row.status == "submitted" {
        return Err(ApiError::failed_precondition(
            "AUDIT_SUBMITTED",
            format!("audits/{id}"),
            "the audit was submitted; its auditor no longer changes",
        ));
    }
    let kind: i16 = sqlx::query_scalar("SELECT kind FROM programs WHERE program_id = $1")
        .bind(row.program_id)
        .fetch_one(&mut *tx)
        .await?;
    if kind == pb::ProgramKind::MysteryGuest as i16
        && (request.auditor_property_id.is_empty()
            || request.auditor_property_id == row.property_id)
    {
        return Err(ApiError::failed_precondition(
            "MYSTERY_GUEST_CONFLICT",
            format!("audits/{id}"),
            "a mystery-guest auditor must not belong to the audited property (give auditor_property_id)",
        ));
    }
    sqlx::query("UPDATE audits SET auditor_id = $2 WHERE audit_id = $1")
        .bind(id)
        .bind(&auditor_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    row.auditor_id = auditor_id;
    Ok(audit_to_proto(&row))
}

pub async fn get(api: &Api, request: Request<pb::GetAuditRequest>) -> ApiResult<pb::Audit> {
    let principal = principal(&request)?.clone();
    let id = parse_id(&request.get_ref().audit_id, "audit_id")?;
    let mut conn = api.context.pool.acquire().await?;
    let row = load(&mut conn, id, false).await?;
    if !tenancy::can_access(&mut conn, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("audit", id.to_string()));
    }
    Ok(audit_to_proto(&row))
}

/// A mystery-guest audit is submitted by its assigned auditor only, so nobody of the audited
/// property (whom AssignAuditor refuses as its auditor) reports on their own hotel: none assigned
/// yet is a state to fix first, another submitter is refused.
fn check_mystery_guest_submitter(auditor_id: &str, submitter: &str, id: Uuid) -> ApiResult<()> {
    if auditor_id.is_empty() {
        return Err(ApiError::failed_precondition(
            "AUDITOR_NOT_ASSIGNED",
            format!("audits/{id}"),
            "a mystery-guest audit is submitted by its assigned auditor; assign one first (AssignAuditor)",
        ));
    }
    if auditor_id != submitter {
        return Err(ApiError::PermissionDenied(format!(
            "audit {id} is a mystery-guest audit; only its assigned auditor may submit it"
        )));
    }
    Ok(())
}

/// The answers as kept: their free text (evidence, standard codes, staff ids) checked and
/// trimmed. Every answer is kept with the audit, those for items the template lacks too. A
/// standard is answered once and names each staff member once: a second answer would be
/// ignored by the score yet count in staff scores, and a repeated staff id would double that
/// person's weight.
fn checked_answers(answers: Vec<pb::Answer>, v: &mut Vec<FieldViolation>) -> Vec<pb::Answer> {
    let mut answered = std::collections::HashSet::new();
    answers
        .into_iter()
        .enumerate()
        .map(|(i, mut answer)| {
            if !answer.standard_code.trim().is_empty()
                && !answered.insert(answer.standard_code.trim().to_string())
            {
                v.push(FieldViolation::new(
                    format!("answers[{i}].standard_code"),
                    format!("`{}` is answered twice", answer.standard_code.trim()),
                ));
            }
            if !answer.value.is_finite() {
                v.push(FieldViolation::new(
                    format!("answers[{i}].value"),
                    "must be a finite number",
                ));
            }
            let mut named = std::collections::HashSet::new();
            for (j, staff) in answer.staff_ids.iter().enumerate() {
                if !named.insert(staff.trim().to_string()) {
                    v.push(FieldViolation::new(
                        format!("answers[{i}].staff_ids[{j}]"),
                        format!("`{}` is named twice", staff.trim()),
                    ));
                }
            }
            answer.standard_code = free_text(
                &answer.standard_code,
                &format!("answers[{i}].standard_code"),
                MAX_CODE,
                false,
                v,
            );
            answer.evidence = free_text(
                &answer.evidence,
                &format!("answers[{i}].evidence"),
                MAX_NOTE,
                false,
                v,
            );
            for (j, staff) in answer.staff_ids.iter_mut().enumerate() {
                *staff = free_text(
                    staff,
                    &format!("answers[{i}].staff_ids[{j}]"),
                    MAX_CODE,
                    true,
                    v,
                );
            }
            answer
        })
        .collect()
}

pub async fn submit(api: &Api, request: Request<pb::SubmitAuditRequest>) -> ApiResult<pb::Audit> {
    let principal = principal(&request)?.clone();
    let mut request = request.into_inner();
    let id = parse_id(&request.audit_id, "audit_id")?;
    let mut v = Vec::new();
    request.answers = checked_answers(std::mem::take(&mut request.answers), &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let row = load(&mut tx, id, true).await?;
    // Everyone, chain quality managers included, submits only within their property scope: an
    // audit row carries no chain, so a chain-wide manager needs a whole-chain ("*") scope, and
    // the property must not be another chain's.
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("audit", id.to_string()));
    }
    // The findings and staff observations written below are records of the property: an audit
    // scheduled before properties were registered registers its property now.
    tenancy::claim_property(&mut tx, &principal, &row.property_id).await?;
    if row.status == "submitted" {
        return Err(ApiError::failed_precondition(
            "AUDIT_SUBMITTED",
            format!("audits/{id}"),
            "the audit was already submitted",
        ));
    }
    let kind: i16 = sqlx::query_scalar("SELECT kind FROM programs WHERE program_id = $1")
        .bind(row.program_id)
        .fetch_one(&mut *tx)
        .await?;
    let mystery_guest = kind == pb::ProgramKind::MysteryGuest as i16;
    if mystery_guest {
        check_mystery_guest_submitter(&row.auditor_id, principal.subject(), id)?;
    }
    let template = template(
        &mut tx,
        row.template_id,
        Some(row.template_version),
        Reach::Any,
    )
    .await?;
    // Scored against the library of the property's chain.
    let chain = library_chain(&mut tx, &principal, &row.property_id).await?;
    let standards = standards_for(&mut tx, &chain, &row.property_id).await?;
    let factors = if template.touchpoint_weighted {
        super::touchpoints::factors_for(&mut tx, &row.property_id, Utc::now()).await?
    } else {
        BTreeMap::new()
    };
    let mut applied: HashMap<String, f64> = HashMap::new();
    let mut items = Vec::new();
    // A template item whose standard this property's library lacks is not the submitter's to
    // fix: the library is (FAILED_PRECONDITION, naming the codes).
    let missing: Vec<&str> = template
        .sections
        .iter()
        .flat_map(|section| &section.items)
        .map(|entry| entry.standard_code.as_str())
        .filter(|code| !standards.iter().any(|st| st.code == *code))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::failed_precondition(
            "STANDARD_NOT_IN_LIBRARY",
            format!("audits/{id}"),
            format!(
                "the template's standards {} are not in the library of property {}; create them first",
                missing.join(", "),
                row.property_id
            ),
        ));
    }
    let mut failed_codes = Vec::new();
    for (s, section) in template.sections.iter().enumerate() {
        for entry in &section.items {
            let Some(standard) = standards.iter().find(|st| st.code == entry.standard_code) else {
                continue;
            };
            let Some(answer) = request
                .answers
                .iter()
                .find(|a| a.standard_code == entry.standard_code)
            else {
                v.push(FieldViolation::new(
                    "answers",
                    format!("no answer for `{}`", entry.standard_code),
                ));
                continue;
            };
            let kind = pb::AnswerKind::try_from(answer.kind).unwrap_or_default();
            let outcome = match (
                pb::StandardKind::try_from(i32::from(standard.kind)).unwrap_or_default(),
                kind,
            ) {
                (_, pb::AnswerKind::NotApplicable) => Outcome::NotApplicable,
                (pb::StandardKind::HardBinary, pb::AnswerKind::Pass) => Outcome::Score(1.0),
                (pb::StandardKind::HardBinary, pb::AnswerKind::Fail) => Outcome::Score(0.0),
                (pb::StandardKind::HardNumeric, pb::AnswerKind::Value) => Outcome::Score(
                    if answer.value >= standard.min_value && answer.value <= standard.max_value {
                        1.0
                    } else {
                        0.0
                    },
                ),
                (pb::StandardKind::Soft, pb::AnswerKind::Rating)
                    if (1..=5).contains(&answer.rating) =>
                {
                    Outcome::Score(f64::from(answer.rating - 1) / 4.0)
                }
                _ => {
                    v.push(FieldViolation::new(
                        "answers",
                        format!(
                            "`{}` needs an answer that fits its kind",
                            entry.standard_code
                        ),
                    ));
                    Outcome::NotApplicable
                }
            };
            let factor = if template.touchpoint_weighted {
                let touchpoint = standard.touchpoint.trim().to_lowercase();
                let factor = factors.get(&touchpoint).copied().unwrap_or(1.0);
                applied.insert(touchpoint, factor);
                factor
            } else {
                1.0
            };
            let item = Item {
                section: s,
                dimension: (standard.dimension - 1).clamp(0, 4) as usize,
                weight: entry.weight * factor,
                critical: entry.critical,
                outcome,
            };
            if raises_finding(&item) {
                failed_codes.push(entry.standard_code.clone());
            }
            items.push(item);
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let rule = if template.critical_rule == pb::CriticalRule::FailAudit as i32 {
        CriticalRule::FailAudit
    } else {
        CriticalRule::FailSection
    };
    let scores = score(
        &items,
        template.sections.len(),
        rule,
        template.pass_threshold,
    );
    let previous: Option<(Uuid, Option<f64>)> = sqlx::query_as(
        "SELECT audit_id, overall FROM audits WHERE program_id = $1 AND status = 'submitted' ORDER BY submitted_at DESC LIMIT 1",
    )
    .bind(row.program_id)
    .fetch_optional(&mut *tx)
    .await?;
    let previous_failed: Vec<String> = match previous {
        Some((previous_id, _)) => {
            sqlx::query_scalar("SELECT standard_code FROM findings WHERE audit_id = $1")
                .bind(previous_id)
                .fetch_all(&mut *tx)
                .await?
        }
        None => Vec::new(),
    };
    let now = Utc::now();
    let result = pb::Audit {
        answers: request.answers.clone(),
        overall: scores.overall,
        sections: template
            .sections
            .iter()
            .zip(&scores.sections)
            .map(|(s, v)| pb::ScoreLine {
                key: s.name.clone(),
                score: *v,
            })
            .collect(),
        dimensions: crate::domain::scoring::DIMENSIONS
            .iter()
            .zip(scores.dimensions.iter())
            .map(|(k, v)| pb::ScoreLine {
                key: k.to_string(),
                score: *v,
            })
            .collect(),
        passed: scores.passed,
        critical_failed: scores.critical_failed,
        previous_overall: previous.and_then(|(_, o)| o),
        touchpoint_factors: applied,
        ..Default::default()
    };
    // The submitter becomes the auditor of an unassigned audit, never of a mystery-guest one
    // (checked above: it has its assigned auditor, from outside the property).
    sqlx::query("UPDATE audits SET status = 'submitted', answers = $2, result = $3, overall = $4, passed = $5, submitted_at = $6, auditor_id = CASE WHEN auditor_id = '' AND NOT $8 THEN $7 ELSE auditor_id END WHERE audit_id = $1")
        .bind(id)
        .bind(pb::SubmitAuditRequest { audit_id: String::new(), answers: request.answers.clone() }.encode_to_vec())
        .bind(result.encode_to_vec())
        .bind(scores.overall)
        .bind(scores.passed)
        .bind(now)
        .bind(principal.subject())
        .bind(mystery_guest)
        .execute(&mut *tx)
        .await?;
    for code in &failed_codes {
        sqlx::query("INSERT INTO findings (finding_id, audit_id, program_id, property_id, standard_code, repeat) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(row.program_id)
            .bind(&row.property_id)
            .bind(code)
            .bind(previous_failed.contains(code))
            .execute(&mut *tx)
            .await?;
    }
    for (answer, item) in request.answers.iter().filter_map(|a| {
        items
            .iter()
            .zip(template.sections.iter().flat_map(|s| s.items.iter()))
            .find(|(_, t)| t.standard_code == a.standard_code)
            .map(|(i, _)| (a, i))
    }) {
        if let Outcome::Score(value) = item.outcome {
            for staff in &answer.staff_ids {
                sqlx::query("INSERT INTO staff_observations (audit_id, staff_id, property_id, standard_code, score, observed_at) VALUES ($1,$2,$3,$4,$5,$6)")
                    .bind(id)
                    .bind(staff)
                    .bind(&row.property_id)
                    .bind(&answer.standard_code)
                    .bind(value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    let submitted = AuditRow {
        status: "submitted".into(),
        result: Some(result.encode_to_vec()),
        submitted_at: Some(now),
        ..row
    };
    Ok(audit_to_proto(&submitted))
}

#[derive(sqlx::FromRow)]
struct FindingRow {
    finding_id: Uuid,
    audit_id: Uuid,
    property_id: String,
    standard_code: String,
    repeat: bool,
    action: String,
    owner: String,
    due_date: Option<NaiveDate>,
    status: String,
    verified_by: String,
}

fn finding_to_proto(row: FindingRow) -> pb::Finding {
    let today = Utc::now().date_naive();
    pb::Finding {
        finding_id: row.finding_id.to_string(),
        audit_id: row.audit_id.to_string(),
        property_id: row.property_id,
        standard_code: row.standard_code,
        repeat: row.repeat,
        action: row.action,
        owner: row.owner,
        overdue: row.due_date.is_some_and(|d| d < today)
            && matches!(row.status.as_str(), "open" | "in_progress"),
        due_date: row.due_date.map(|d| d.to_string()).unwrap_or_default(),
        status: row.status,
        verified_by: row.verified_by,
    }
}

const FINDING_COLUMNS: &str = "finding_id, audit_id, property_id, standard_code, repeat, action, owner, due_date, status, verified_by";

pub async fn list_findings(
    api: &Api,
    request: Request<pb::ListFindingsRequest>,
) -> ApiResult<pb::ListFindingsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let limit = paging::page_size(request.page_size, 100, 1000)?;
    let after: Option<FindingCursor> = paging::decode_token(&request.page_token)?;
    let mut conn = api.context.pool.acquire().await?;
    tenancy::require_property(&mut conn, &principal, &request.property_id).await?;
    let rows: Vec<(FindingRow, FindingCursor)> = sqlx::query(&format!(
        "SELECT {FINDING_COLUMNS}, created_at FROM findings \
         WHERE property_id = $1 AND (NOT $2 OR status IN ('open', 'in_progress')) \
           AND ($3::timestamptz IS NULL OR (created_at, finding_id) > ($3, $4)) \
         ORDER BY created_at, finding_id LIMIT $5"
    ))
    .bind(&request.property_id)
    .bind(request.open_only)
    .bind(after.as_ref().map(|c| c.created_at))
    .bind(after.as_ref().map_or(Uuid::nil(), |c| c.finding_id))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        use sqlx::Row;
        let finding = <FindingRow as sqlx::FromRow<'_, sqlx::postgres::PgRow>>::from_row(row)?;
        let cursor = FindingCursor {
            created_at: row.try_get("created_at")?,
            finding_id: finding.finding_id,
        };
        Ok((finding, cursor))
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let (rows, next_page_token) = paging::split_page(rows, limit, |(_, cursor)| cursor.clone());
    Ok(pb::ListFindingsResponse {
        findings: rows.into_iter().map(|(f, _)| finding_to_proto(f)).collect(),
        next_page_token,
    })
}

/// Where a page of findings ends: the order they were raised in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FindingCursor {
    created_at: DateTime<Utc>,
    finding_id: Uuid,
}

pub async fn update_action(
    api: &Api,
    request: Request<pb::UpdateCorrectiveActionRequest>,
) -> ApiResult<pb::Finding> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let id = parse_id(&request.finding_id, "finding_id")?;
    let mut v = Vec::new();
    // Empty leaves the stored text as it is; text given must not be blank.
    let action = free_text(
        &request.action,
        "action",
        MAX_NOTE,
        !request.action.is_empty(),
        &mut v,
    );
    let owner = free_text(
        &request.owner,
        "owner",
        MAX_NAME,
        !request.owner.is_empty(),
        &mut v,
    );
    // Within a year back (an action agreed late) and five years ahead.
    let today = Utc::now().date_naive();
    let due = if request.due_date.is_empty() {
        None
    } else {
        calendar_date(
            &request.due_date,
            "due_date",
            today - chrono::Duration::days(366),
            today + chrono::Duration::days(5 * 366),
        )
        .map_err(|e| v.push(e))
        .ok()
    };
    if !matches!(
        request.status.as_str(),
        "" | "in_progress" | "done" | "verified"
    ) {
        v.push(FieldViolation::new(
            "status",
            "must be in_progress, done or verified",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let row: FindingRow = sqlx::query_as(&format!(
        "SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("finding", id.to_string()))?;
    // Outside the caller's scope, or another chain's: not there for the caller (as GetAudit).
    if !tenancy::can_access(&mut tx, &principal, &row.property_id).await? {
        return Err(ApiError::not_found("finding", id.to_string()));
    }
    // Whether the action was done on time is read against its due date: once done, the date
    // stays as it was.
    if due.is_some_and(|d| Some(d) != row.due_date)
        && matches!(row.status.as_str(), "done" | "verified")
    {
        return Err(ApiError::failed_precondition(
            "DUE_DATE_FIXED",
            format!("findings/{id}"),
            format!(
                "the action is {}; its due date no longer changes",
                row.status
            ),
        ));
    }
    let status = if request.status.is_empty() {
        row.status.clone()
    } else {
        request.status.clone()
    };
    let current = actions::Action {
        status: &row.status,
        action: &row.action,
        owner: &row.owner,
        has_due_date: row.due_date.is_some(),
    };
    let next = actions::Action {
        status: &status,
        action: if action.is_empty() {
            &row.action
        } else {
            &action
        },
        owner: if owner.is_empty() { &row.owner } else { &owner },
        has_due_date: due.is_some() || row.due_date.is_some(),
    };
    let verifier = matches!(
        principal.role(),
        Role::ChainQualityManager | Role::GeneralManager | Role::ChainAdmin
    );
    let changes = !action.is_empty() || !owner.is_empty() || due.is_some() || status != row.status;
    if changes {
        actions::check(&current, &next, verifier).map_err(|refusal| match refusal {
            actions::Refusal::IllegalMove { from, to } => ApiError::failed_precondition(
                "ILLEGAL_ACTION_MOVE",
                format!("findings/{id}"),
                format!("a corrective action cannot go from {from} to {to}"),
            ),
            actions::Refusal::Incomplete(fields) => ApiError::InvalidArgument(
                fields
                    .into_iter()
                    .map(|f| FieldViolation::new(f, "is required before the action is done"))
                    .collect(),
            ),
            actions::Refusal::VerifierOnly(why) => ApiError::PermissionDenied(why.to_string()),
        })?;
    }
    let updated: FindingRow = sqlx::query_as(&format!(
        "UPDATE findings SET action = CASE WHEN $2 = '' THEN action ELSE $2 END, owner = CASE WHEN $3 = '' THEN owner ELSE $3 END, \
         due_date = coalesce($4, due_date), status = $5, verified_by = CASE WHEN $5 = 'verified' THEN \
         CASE WHEN status = 'verified' THEN verified_by ELSE $6 END ELSE '' END, \
         done_at = CASE WHEN $5 IN ('done', 'verified') THEN coalesce(done_at, now()) ELSE NULL END \
         WHERE finding_id = $1 RETURNING {FINDING_COLUMNS}"
    ))
    .bind(id)
    .bind(&action)
    .bind(&owner)
    .bind(due)
    .bind(&status)
    .bind(principal.subject())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(finding_to_proto(updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months_or_quarters() {
        let start = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let until = Utc
            .with_ymd_and_hms(2027, 2, 10, 0, 0, 0)
            .single()
            .expect("time");
        let months: Vec<String> = periods(start, until, false)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(months, vec!["2026-11", "2026-12", "2027-01", "2027-02"]);
        let quarters: Vec<String> = periods(start, until, true)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(quarters, vec!["2026-Q4", "2027-Q1"]);
    }
}
