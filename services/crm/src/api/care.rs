//! Arrivals and in-house lists, and the daily care tasks generated from them.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use guestloop_kit::auth::{principal, Principal};
use guestloop_kit::paging::{decode_token, page_size, split_page};
use guestloop_kit::tenancy;
use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::common::v1::{AuditStamps, Money};
use guestloop_proto::crm::v1 as pb;
use sqlx::PgConnection;
use tonic::Request;
use uuid::Uuid;

use super::guests::text;
use super::store::{load, log_contact_read, may_read_contacts, to_proto};
use super::Api;
use crate::domain::care::{
    due_tasks, open_task_stands, CareKind, Failure, GuestFacts, StayDates, RECOVERY_WINDOW_DAYS,
};
use crate::domain::tiers::Tier;

/// Stays that count: booked or in house (cancelled, no-show and checked-out stays need no care).
const ACTIVE_STATUSES: &str = "s.status IN ('booked', 'in_house')";

/// Stays arriving on `$2` or sleeping at the property the night of `$2`.
const ACTIVE_ON: &str = "s.arrival_date <= $2 AND (s.departure_date > $2 OR s.arrival_date = $2)";

/// Stays with the guest at the property on `$2`, the departure morning included: the stays care
/// tasks are generated for (as [`StayDates::is_active_on`]).
const IN_HOUSE_ON: &str = "s.arrival_date <= $2 AND s.departure_date >= $2";

fn required_date(value: &str, field: &str) -> ApiResult<NaiveDate> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    // A business date within five years either way.
    let today = chrono::Utc::now().date_naive();
    let years = chrono::Duration::days(5 * 366);
    guestloop_kit::time::calendar_date(value, field, today - years, today + years)
        .map_err(|e| ApiError::InvalidArgument(vec![e]))
}

/// The property a call names: required, in the caller's scope and not another chain's.
/// Checks the caller may read at the property; answers the chain the call acts for.
async fn property(
    conn: &mut PgConnection,
    principal: &Principal,
    property_id: &str,
) -> ApiResult<String> {
    if property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    tenancy::require_property(conn, principal, property_id).await?;
    tenancy::acting_chain(conn, principal, "property_id", &[property_id]).await
}

#[derive(Debug, sqlx::FromRow)]
struct StayRow {
    property_id: String,
    pms_reservation_id: String,
    guest_id: String,
    arrival_date: NaiveDate,
    departure_date: NaiveDate,
    room: String,
    rate_currency: String,
    rate_minor: i64,
    spend_currency: String,
    spend_minor: i64,
    status: String,
    pms_modified_at: Option<DateTime<Utc>>,
}

fn stay_status(text: &str) -> pb::StayStatus {
    match text {
        "booked" => pb::StayStatus::Booked,
        "in_house" => pb::StayStatus::InHouse,
        "checked_out" => pb::StayStatus::CheckedOut,
        "cancelled" => pb::StayStatus::Cancelled,
        "no_show" => pb::StayStatus::NoShow,
        _ => pb::StayStatus::Unspecified,
    }
}

fn stay_to_proto(row: &StayRow) -> pb::Stay {
    let money = |currency: &str, minor: i64| {
        (!currency.is_empty()).then(|| Money {
            currency_code: currency.to_string(),
            minor_units: minor,
        })
    };
    pb::Stay {
        property_id: row.property_id.clone(),
        pms_reservation_id: row.pms_reservation_id.clone(),
        guest_id: row.guest_id.clone(),
        arrival_date: row.arrival_date.to_string(),
        departure_date: row.departure_date.to_string(),
        room: row.room.clone(),
        rate: money(&row.rate_currency, row.rate_minor),
        spend: money(&row.spend_currency, row.spend_minor),
        status: stay_status(&row.status) as i32,
        pms_modified_time: row.pms_modified_at.map(to_timestamp),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ArrivalCursor {
    room: String,
    reservation: String,
}

pub async fn list_arrivals(
    api: &Api,
    request: Request<pb::ListArrivalsRequest>,
) -> ApiResult<pb::ListArrivalsResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let date = required_date(&request.date, "date")?;
    let size = page_size(request.page_size, 100, 500)?;
    let cursor: Option<ArrivalCursor> = decode_token(&request.page_token)?;
    let (after_room, after_reservation) =
        cursor.map_or((None, None), |c| (Some(c.room), Some(c.reservation)));
    let mut conn = api.context.pool.acquire().await?;
    let chain = property(&mut conn, &principal, &request.property_id).await?;
    let rows: Vec<StayRow> = sqlx::query_as(&format!(
        "SELECT s.property_id, s.pms_reservation_id, s.guest_id, s.arrival_date, s.departure_date, s.room, \
         s.rate_currency, s.rate_minor, s.spend_currency, s.spend_minor, s.status, s.pms_modified_at \
         FROM stays s JOIN guests g ON g.guest_id = s.guest_id \
         WHERE s.property_id = $1 AND {ACTIVE_ON} AND {ACTIVE_STATUSES} AND g.chain_id = $3 AND NOT g.erased \
         AND ($4::text IS NULL OR (s.room, s.pms_reservation_id) > ($4, $5)) \
         ORDER BY s.room, s.pms_reservation_id LIMIT $6"
    ))
    .bind(&request.property_id)
    .bind(date)
    .bind(&chain)
    .bind(after_room)
    .bind(after_reservation)
    .bind(size + 1)
    .fetch_all(&mut *conn)
    .await?;
    let (rows, next_page_token) = split_page(rows, size, |r| ArrivalCursor {
        room: r.room.clone(),
        reservation: r.pms_reservation_id.clone(),
    });
    let contacts = may_read_contacts(&principal);
    let mut arrivals = Vec::with_capacity(rows.len());
    for row in &rows {
        let guest = load(&mut conn, &principal, &row.guest_id, false, true).await?;
        if contacts {
            log_contact_read(&mut conn, &principal, &guest.guest_id, &request.property_id).await?;
        }
        arrivals.push(pb::Arrival {
            stay: Some(stay_to_proto(row)),
            guest: Some(to_proto(&mut conn, &guest, contacts).await?),
            arriving: row.arrival_date == date,
        });
    }
    Ok(pb::ListArrivalsResponse {
        arrivals,
        next_page_token,
    })
}

#[derive(Debug, sqlx::FromRow)]
struct CandidateRow {
    pms_reservation_id: String,
    guest_id: String,
    arrival_date: NaiveDate,
    departure_date: NaiveDate,
    birthday: Option<NaiveDate>,
    anniversary: Option<NaiveDate>,
    tier: String,
    strategic_manual: bool,
}

#[derive(Debug, sqlx::FromRow)]
struct FailureRow {
    guest_id: String,
    occurred_at: DateTime<Utc>,
    category: String,
    recovered: bool,
    csat: i16,
}

pub async fn generate(
    api: &Api,
    request: Request<pb::GenerateCareTasksRequest>,
) -> ApiResult<pb::GenerateCareTasksResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let date = required_date(&request.date, "date")?;
    if request.property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let mut tx = api.context.pool.begin().await?;
    // Generating is the first write some properties see: it registers the property.
    tenancy::claim_property(&mut tx, &principal, &request.property_id).await?;
    let chain =
        tenancy::acting_chain(&mut tx, &principal, "property_id", &[&request.property_id]).await?;
    let generated = generate_for(
        &mut tx,
        &chain,
        &request.property_id,
        date,
        principal.subject(),
    )
    .await?;
    tx.commit().await?;
    Ok(generated)
}

#[derive(Debug, sqlx::FromRow)]
struct ExistingTask {
    care_task_id: Uuid,
    pms_reservation_id: String,
    kind: i16,
    guest_id: String,
    due_date: NaiveDate,
    reason: String,
    done: bool,
}

/// Brings the tasks at a property in line with its stays on `date`: creates the tasks due,
/// corrects open tasks of those stays that the PMS changed since (another guest on the
/// reservation, other dates, another birthday), and deletes open tasks due on `date` that no
/// stay calls for any more (cancelled, no-show, moved away, guest no longer qualifying) and
/// open tasks of these stays for a guest no longer on them. Completed tasks are history and
/// never change. A second run changes nothing. Returns the counts of each.
pub async fn generate_for(
    conn: &mut PgConnection,
    chain_id: &str,
    property_id: &str,
    date: NaiveDate,
    actor: &str,
) -> ApiResult<pb::GenerateCareTasksResponse> {
    // The guests are key-share locked (in id order, as erasure and merges lock theirs) until
    // the tasks are written: an erasure or merge in flight finishes first, and the guest is then
    // read as it left them (an erased guest is no candidate), or waits for these tasks and
    // finds them when it scrubs or moves the guest's tasks.
    let candidates: Vec<CandidateRow> = sqlx::query_as(&format!(
        "SELECT s.pms_reservation_id, g.guest_id, s.arrival_date, s.departure_date, g.birthday, g.anniversary, \
         g.tier, g.strategic_manual \
         FROM stays s JOIN guests g ON g.guest_id = s.guest_id \
         WHERE s.property_id = $1 AND {IN_HOUSE_ON} AND {ACTIVE_STATUSES} AND g.chain_id = $3 AND NOT g.erased \
         AND g.merged_into IS NULL ORDER BY g.guest_id, s.pms_reservation_id FOR KEY SHARE OF g"
    ))
    .bind(property_id)
    .bind(date)
    .bind(chain_id)
    .fetch_all(&mut *conn)
    .await?;
    let guest_ids: Vec<&str> = candidates.iter().map(|c| c.guest_id.as_str()).collect();
    let reservations: Vec<&str> = candidates
        .iter()
        .map(|c| c.pms_reservation_id.as_str())
        .collect();
    let window_start = date - Duration::days(RECOVERY_WINDOW_DAYS);
    let failures: Vec<FailureRow> = sqlx::query_as(
        "SELECT guest_id, occurred_at, category, recovered, csat FROM service_failures \
         WHERE guest_id = ANY($1) AND occurred_at >= $2::date",
    )
    .bind(&guest_ids)
    .bind(window_start)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_guest: HashMap<&str, Vec<Failure>> = HashMap::new();
    for f in &failures {
        by_guest
            .entry(f.guest_id.as_str())
            .or_default()
            .push(Failure {
                occurred: f.occurred_at.date_naive(),
                category: f.category.clone(),
                recovered: f.recovered,
                csat: f.csat,
            });
    }
    // Locked so that an assignment or completion in flight finishes before it is judged.
    let existing_tasks: Vec<ExistingTask> = sqlx::query_as(
        "SELECT care_task_id, pms_reservation_id, kind, guest_id, due_date, reason, done FROM care_tasks \
         WHERE property_id = $1 AND pms_reservation_id = ANY($2) ORDER BY care_task_id FOR UPDATE",
    )
    .bind(property_id)
    .bind(&reservations)
    .fetch_all(&mut *conn)
    .await?;
    let existing_by_key: HashMap<(&str, i16), &ExistingTask> = existing_tasks
        .iter()
        .map(|t| ((t.pms_reservation_id.as_str(), t.kind), t))
        .collect();
    let (mut created, mut existing, mut corrected) = (0, 0, 0);
    let (mut wanted_reservations, mut wanted_kinds) = (Vec::new(), Vec::new());
    for candidate in &candidates {
        let facts = GuestFacts {
            birthday: candidate.birthday,
            anniversary: candidate.anniversary,
            tier: Tier::parse(&candidate.tier),
            strategic_manual: candidate.strategic_manual,
            failures: by_guest
                .get(candidate.guest_id.as_str())
                .cloned()
                .unwrap_or_default(),
        };
        let stay = StayDates {
            arrival: candidate.arrival_date,
            departure: candidate.departure_date,
        };
        for task in due_tasks(date, stay, &facts) {
            let kind = task.kind as i16;
            wanted_reservations.push(candidate.pms_reservation_id.as_str());
            wanted_kinds.push(kind);
            if let Some(found) = existing_by_key.get(&(candidate.pms_reservation_id.as_str(), kind))
            {
                existing += 1;
                let stands = found.guest_id == candidate.guest_id
                    && open_task_stands(found.due_date, &found.reason, &task, stay);
                if !found.done && !stands {
                    sqlx::query(
                        "UPDATE care_tasks SET guest_id = $2, due_date = $3, reason = $4, updated_at = now(), \
                         updated_by = $5 WHERE care_task_id = $1 AND NOT done",
                    )
                    .bind(found.care_task_id)
                    .bind(&candidate.guest_id)
                    .bind(task.due)
                    .bind(&task.reason)
                    .bind(actor)
                    .execute(&mut *conn)
                    .await?;
                    corrected += 1;
                }
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO care_tasks (care_task_id, chain_id, property_id, pms_reservation_id, kind, due_date, \
                 guest_id, reason, created_by, updated_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9) \
                 ON CONFLICT (property_id, pms_reservation_id, kind) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(chain_id)
            .bind(property_id)
            .bind(&candidate.pms_reservation_id)
            .bind(kind)
            .bind(task.due)
            .bind(&candidate.guest_id)
            .bind(&task.reason)
            .bind(actor)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                created += 1;
            } else {
                existing += 1;
            }
        }
    }
    // Open tasks no stay calls for: due today with no active stay wanting them, or of an active
    // stay but for a guest no longer on it. Tasks due on other days are settled on their day.
    // A stay checked out is no longer active but was real: its open tasks within its dates stay
    // (a birthday on the departure morning, checked out at eleven), for staff to close.
    let candidate_guests: Vec<&str> = candidates.iter().map(|c| c.guest_id.as_str()).collect();
    let withdrawn = sqlx::query(
        "DELETE FROM care_tasks t WHERE t.property_id = $1 AND t.chain_id = $2 AND NOT t.done \
         AND (t.pms_reservation_id, t.kind) NOT IN (SELECT * FROM unnest($4::text[], $5::smallint[])) \
         AND (t.due_date = $3 OR EXISTS (SELECT 1 FROM unnest($6::text[], $7::text[]) AS c(reservation, guest) \
              WHERE c.reservation = t.pms_reservation_id AND c.guest <> t.guest_id)) \
         AND NOT EXISTS (SELECT 1 FROM stays s WHERE s.property_id = t.property_id \
              AND s.pms_reservation_id = t.pms_reservation_id AND s.guest_id = t.guest_id \
              AND s.status = 'checked_out' AND t.due_date BETWEEN s.arrival_date AND s.departure_date)",
    )
    .bind(property_id)
    .bind(chain_id)
    .bind(date)
    .bind(&wanted_reservations)
    .bind(&wanted_kinds)
    .bind(&reservations)
    .bind(&candidate_guests)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let withdrawn = i32::try_from(withdrawn).unwrap_or(i32::MAX);
    if created > 0 || corrected > 0 || withdrawn > 0 {
        tracing::info!(
            property = %property_id, %date, created, existing, corrected, withdrawn,
            "care tasks generated"
        );
    }
    Ok(pb::GenerateCareTasksResponse {
        created,
        existing,
        corrected,
        withdrawn,
    })
}

/// The daily run: every property with stays active or open tasks due yesterday, today or
/// tomorrow (UTC), which covers each property's local business date wherever it is. Returns the
/// tasks created.
pub async fn generate_due(pool: &sqlx::PgPool) -> ApiResult<usize> {
    let today = Utc::now().date_naive();
    let mut created = 0usize;
    for date in [today - Duration::days(1), today, today + Duration::days(1)] {
        let properties: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT DISTINCT g.chain_id, s.property_id FROM stays s JOIN guests g ON g.guest_id = s.guest_id \
             WHERE s.property_id <> $1 AND {IN_HOUSE_ON} AND {ACTIVE_STATUSES} \
             UNION SELECT chain_id, property_id FROM care_tasks WHERE due_date = $2 AND NOT done"
        ))
        .bind("")
        .bind(date)
        .fetch_all(pool)
        .await?;
        for (chain_id, property_id) in properties {
            let mut tx = pool.begin().await?;
            let generated = generate_for(
                &mut tx,
                &chain_id,
                &property_id,
                date,
                "care-task-scheduler",
            )
            .await?;
            tx.commit().await?;
            created += usize::try_from(generated.created).unwrap_or(0);
        }
    }
    Ok(created)
}

#[derive(Debug, sqlx::FromRow)]
struct TaskRow {
    care_task_id: Uuid,
    chain_id: String,
    property_id: String,
    pms_reservation_id: String,
    kind: i16,
    due_date: NaiveDate,
    guest_id: String,
    guest_name: String,
    room: String,
    reason: String,
    done: bool,
    assignee: String,
    completed_by: String,
    completed_at: Option<DateTime<Utc>>,
    outcome: String,
    created_at: DateTime<Utc>,
    created_by: String,
    updated_at: DateTime<Utc>,
    updated_by: String,
}

const TASK_SELECT: &str = "SELECT t.care_task_id, t.chain_id, t.property_id, t.pms_reservation_id, t.kind, t.due_date, \
    t.guest_id, trim(g.given_name || ' ' || g.family_name) AS guest_name, coalesce(s.room, '') AS room, t.reason, t.done, \
    t.assignee, t.completed_by, t.completed_at, t.outcome, t.created_at, t.created_by, t.updated_at, t.updated_by \
    FROM care_tasks t JOIN guests g ON g.guest_id = t.guest_id \
    LEFT JOIN stays s ON s.property_id = t.property_id AND s.pms_reservation_id = t.pms_reservation_id";

fn task_to_proto(row: TaskRow) -> pb::CareTask {
    let kind = match CareKind::from_code(row.kind) {
        Some(CareKind::Birthday) => pb::CareTaskKind::Birthday,
        Some(CareKind::Anniversary) => pb::CareTaskKind::Anniversary,
        Some(CareKind::VipArrival) => pb::CareTaskKind::VipArrival,
        Some(CareKind::Recovery) => pb::CareTaskKind::Recovery,
        None => pb::CareTaskKind::Unspecified,
    };
    pb::CareTask {
        care_task_id: row.care_task_id.to_string(),
        property_id: row.property_id,
        due_date: row.due_date.to_string(),
        kind: kind as i32,
        guest_id: row.guest_id,
        guest_name: row.guest_name,
        pms_reservation_id: row.pms_reservation_id,
        room: row.room,
        reason: row.reason,
        state: if row.done {
            pb::CareTaskState::Done
        } else {
            pb::CareTaskState::Open
        } as i32,
        assignee: row.assignee,
        completed_by: row.completed_by,
        complete_time: row.completed_at.map(to_timestamp),
        outcome: row.outcome,
        stamps: Some(AuditStamps {
            create_time: Some(to_timestamp(row.created_at)),
            created_by: row.created_by,
            update_time: Some(to_timestamp(row.updated_at)),
            updated_by: row.updated_by,
        }),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TaskCursor {
    due: NaiveDate,
    kind: i16,
    guest: String,
    id: Uuid,
}

pub async fn list_tasks(
    api: &Api,
    request: Request<pb::ListCareTasksRequest>,
) -> ApiResult<pb::ListCareTasksResponse> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut conn = api.context.pool.acquire().await?;
    let chain = property(&mut conn, &principal, &request.property_id).await?;
    let due = if request.due_date.is_empty() {
        None
    } else {
        Some(required_date(&request.due_date, "due_date")?)
    };
    let done = match pb::CareTaskState::try_from(request.state) {
        Ok(pb::CareTaskState::Unspecified) => None,
        Ok(pb::CareTaskState::Open) => Some(false),
        Ok(pb::CareTaskState::Done) => Some(true),
        Err(_) => return Err(ApiError::invalid("state", "is not a care task state")),
    };
    if request.pms_reservation_ids.len() > 500 {
        return Err(ApiError::invalid(
            "pms_reservation_ids",
            "name at most 500 stays per call",
        ));
    }
    let size = page_size(request.page_size, 100, 500)?;
    let cursor: Option<TaskCursor> = decode_token(&request.page_token)?;
    let mut query = sqlx::QueryBuilder::new(TASK_SELECT);
    query
        .push(" WHERE t.property_id = ")
        .push_bind(&request.property_id)
        .push(" AND t.chain_id = ")
        .push_bind(&chain);
    if let Some(due) = due {
        query.push(" AND t.due_date = ").push_bind(due);
    }
    if let Some(done) = done {
        query.push(" AND t.done = ").push_bind(done);
    }
    if !request.pms_reservation_ids.is_empty() {
        query
            .push(" AND t.pms_reservation_id = ANY(")
            .push_bind(&request.pms_reservation_ids)
            .push(")");
    }
    if let Some(c) = cursor {
        query
            .push(" AND (t.due_date, t.kind, t.guest_id, t.care_task_id) > (")
            .push_bind(c.due)
            .push(", ")
            .push_bind(c.kind)
            .push(", ")
            .push_bind(c.guest)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    query
        .push(" ORDER BY t.due_date, t.kind, t.guest_id, t.care_task_id LIMIT ")
        .push_bind(size + 1);
    let rows: Vec<TaskRow> = query.build_query_as().fetch_all(&mut *conn).await?;
    let (rows, next_page_token) = split_page(rows, size, |r| TaskCursor {
        due: r.due_date,
        kind: r.kind,
        guest: r.guest_id.clone(),
        id: r.care_task_id,
    });
    Ok(pb::ListCareTasksResponse {
        tasks: rows.into_iter().map(task_to_proto).collect(),
        next_page_token,
    })
}

/// Loads a task for change. A task of another chain or of a property outside the caller's scope
/// answers NOT_FOUND, as for an id that does not exist, so its existence is not revealed.
async fn load_task(
    conn: &mut PgConnection,
    principal: &Principal,
    care_task_id: &str,
) -> ApiResult<TaskRow> {
    let id = Uuid::parse_str(care_task_id)
        .map_err(|_| ApiError::invalid("care_task_id", "must be a care task id (UUID)"))?;
    let row: Option<TaskRow> = sqlx::query_as(&format!(
        "{TASK_SELECT} WHERE t.care_task_id = $1 FOR UPDATE OF t"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let not_found = || ApiError::not_found("care task", care_task_id);
    let row = row
        .filter(|r| r.chain_id == principal.chain_id())
        .ok_or_else(not_found)?;
    if !tenancy::can_access(conn, principal, &row.property_id).await? {
        return Err(not_found());
    }
    Ok(row)
}

pub async fn assign(
    api: &Api,
    request: Request<pb::AssignCareTaskRequest>,
) -> ApiResult<pb::CareTask> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    let assignee = text(&request.assignee, "assignee", 200, &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let assignee = assignee.as_str();
    let mut tx = api.context.pool.begin().await?;
    let task = load_task(&mut tx, &principal, &request.care_task_id).await?;
    if task.done {
        return Err(ApiError::failed_precondition(
            "CARE_TASK_DONE",
            request.care_task_id,
            "a completed care task cannot be reassigned",
        ));
    }
    if task.assignee != assignee {
        sqlx::query(
            "UPDATE care_tasks SET assignee = $2, updated_at = now(), updated_by = $3 WHERE care_task_id = $1",
        )
        .bind(task.care_task_id)
        .bind(assignee)
        .bind(principal.subject())
        .execute(&mut *tx)
        .await?;
    }
    let task = load_task(&mut tx, &principal, &request.care_task_id).await?;
    tx.commit().await?;
    Ok(task_to_proto(task))
}

pub async fn complete(
    api: &Api,
    request: Request<pb::CompleteCareTaskRequest>,
) -> ApiResult<pb::CareTask> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    let outcome = text(&request.outcome, "outcome", 2000, &mut v);
    if outcome.is_empty() {
        v.push(FieldViolation::new(
            "outcome",
            "is required: say what was done for the guest",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let task = load_task(&mut tx, &principal, &request.care_task_id).await?;
    if task.done {
        // A retry of the same completion answers as the first did; a different one is refused.
        if task.outcome == outcome && task.completed_by == principal.subject() {
            return Ok(task_to_proto(task));
        }
        return Err(ApiError::failed_precondition(
            "CARE_TASK_DONE",
            request.care_task_id,
            format!("already completed by {}", task.completed_by),
        ));
    }
    sqlx::query(
        "UPDATE care_tasks SET done = true, completed_by = $2, completed_at = now(), outcome = $3, \
         updated_at = now(), updated_by = $2 WHERE care_task_id = $1",
    )
    .bind(task.care_task_id)
    .bind(principal.subject())
    .bind(outcome)
    .execute(&mut *tx)
    .await?;
    let task = load_task(&mut tx, &principal, &request.care_task_id).await?;
    tx.commit().await?;
    Ok(task_to_proto(task))
}
