//! Conversions at the API boundary: wire enums and messages to rows and back, and the checks
//! that turn a request into something the rules accept (errors name the field).

use guestloop_kit::time::to_timestamp;
use guestloop_kit::{ApiError, FieldViolation};
use guestloop_proto::common::v1::Money;
use guestloop_proto::complaints::v1 as pb;

use crate::store::remedies::RemedyRow;
use crate::store::ComplaintRow;

/// Database names of the lifecycle states.
pub const STATUS_NAMES: [(pb::Status, &str); 10] = [
    (pb::Status::Received, "received"),
    (pb::Status::Acknowledged, "acknowledged"),
    (pb::Status::Investigating, "investigating"),
    (pb::Status::RemedyPlanned, "remedy_planned"),
    (pb::Status::RemedyInProgress, "remedy_in_progress"),
    (pb::Status::WaitingOnGuest, "waiting_on_guest"),
    (pb::Status::Resolved, "resolved"),
    (pb::Status::Reopened, "reopened"),
    (pb::Status::Closed, "closed"),
    (pb::Status::Cancelled, "cancelled"),
];

pub fn status_name(status: pb::Status) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("received", |(_, n)| n)
}

pub fn status_from_name(name: &str) -> pb::Status {
    STATUS_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(pb::Status::Unspecified, |(s, _)| *s)
}

/// A known, specified enum value, or a violation naming `field`.
pub fn required_enum<E>(value: i32, field: &str, violations: &mut Vec<FieldViolation>) -> Option<E>
where
    E: TryFrom<i32> + PartialEq + Default,
{
    match E::try_from(value) {
        Ok(v) if v != E::default() => Some(v),
        Ok(_) => {
            violations.push(FieldViolation::new(field, "is required"));
            None
        }
        Err(_) => {
            violations.push(FieldViolation::new(field, format!("unknown value {value}")));
            None
        }
    }
}

/// A known enum value where UNSPECIFIED (0) is allowed.
pub fn optional_enum<E>(value: i32, field: &str, violations: &mut Vec<FieldViolation>) -> Option<E>
where
    E: TryFrom<i32>,
{
    match E::try_from(value) {
        Ok(v) => Some(v),
        Err(_) => {
            violations.push(FieldViolation::new(field, format!("unknown value {value}")));
            None
        }
    }
}

/// Free text with a length limit, never a payment card number; `required` rejects empty or
/// blank text.
pub use guestloop_kit::text::free_text as text;

/// Parses a complaint id, naming `field` when it is not a UUID.
pub fn complaint_id(value: &str, field: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(value)
        .map_err(|_| ApiError::invalid(field, "must be a complaint id (UUID)"))
}

pub fn money(currency: &str, minor: i64) -> Money {
    Money {
        currency_code: currency.to_string(),
        minor_units: minor,
    }
}

pub fn remedy_status(name: &str) -> pb::RemedyStatus {
    match name {
        "pending_approval" => pb::RemedyStatus::PendingApproval,
        "approved" => pb::RemedyStatus::Approved,
        "rejected" => pb::RemedyStatus::Rejected,
        "delivered" => pb::RemedyStatus::Delivered,
        _ => pb::RemedyStatus::Unspecified,
    }
}

pub fn remedy_to_proto(row: &RemedyRow) -> pb::Remedy {
    pb::Remedy {
        remedy_id: row.remedy_id.to_string(),
        kind: i32::from(row.kind),
        amount: (row.amount_minor > 0).then(|| money(&row.currency_code, row.amount_minor)),
        points: row.points,
        description: row.description.clone(),
        status: remedy_status(&row.status) as i32,
        proposed_by: row.proposed_by.clone(),
        required_role: row.required_role.clone(),
        decided_by: row.decided_by.clone(),
        decision_note: row.decision_note.clone(),
        create_time: Some(to_timestamp(row.created_at)),
        decide_time: row.decided_at.map(to_timestamp),
    }
}

/// The complaint as its guest sees it: what happened and what they were offered, without what
/// staff record about their own work (who was involved or assigned, the cause and root cause,
/// the standards broken, escalations, who proposed or decided each remedy and why), which
/// feeds staff scores and is not the guest's to read.
pub fn guest_view(mut complaint: pb::Complaint) -> pb::Complaint {
    complaint.assignee.clear();
    complaint.cause = pb::Cause::Unspecified as i32;
    complaint.root_cause_summary.clear();
    complaint.guest_tier.clear();
    complaint.hotspot = false;
    complaint.escalation_level.clear();
    complaint.escalation_count = 0;
    complaint.standard_codes.clear();
    complaint.staff_involved.clear();
    for remedy in &mut complaint.remedies {
        remedy.proposed_by.clear();
        remedy.decided_by.clear();
        remedy.decision_note.clear();
        remedy.required_role.clear();
    }
    complaint
}

/// The complaint as `caller` may see it: whole for staff, [`guest_view`] for a guest.
pub fn for_caller(
    caller: &guestloop_kit::auth::Principal,
    complaint: pb::Complaint,
) -> pb::Complaint {
    if caller.role() == guestloop_kit::auth::Role::Guest {
        guest_view(complaint)
    } else {
        complaint
    }
}

/// The timeline entries a guest sees of their complaint: it was filed, its status changed,
/// they rated it, a remedy reached them. Who acted (staff logins) and staff's notes are left
/// out, except the guest's own.
pub fn guest_timeline(entries: Vec<pb::TimelineEntry>) -> Vec<pb::TimelineEntry> {
    entries
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "filed" | "transition" | "rated" | "remedy_delivered"
            )
        })
        .map(|mut e| {
            if e.actor != "guest" {
                e.actor.clear();
                e.note.clear();
            }
            e
        })
        .collect()
}

/// The complaint as clients see it.
pub fn complaint_to_proto(
    row: &ComplaintRow,
    clocks: Vec<pb::SlaClock>,
    remedies: &[RemedyRow],
) -> pb::Complaint {
    let effective = remedies
        .iter()
        .filter(|r| r.status == "approved" || r.status == "delivered");
    let mut compensation: Vec<Money> = Vec::new();
    let mut points: i64 = 0;
    for remedy in effective {
        points = points.saturating_add(remedy.points);
        if remedy.amount_minor > 0 {
            match compensation
                .iter_mut()
                .find(|m| m.currency_code == remedy.currency_code)
            {
                Some(m) => m.minor_units = m.minor_units.saturating_add(remedy.amount_minor),
                None => compensation.push(money(&remedy.currency_code, remedy.amount_minor)),
            }
        }
    }
    pb::Complaint {
        complaint_id: row.complaint_id.to_string(),
        chain_id: row.chain_id.clone(),
        property_id: row.property_id.clone(),
        guest: Some(pb::GuestRef {
            guest_id: row.guest_id.clone(),
            name: row.guest_name.clone(),
            email: row.guest_email.clone(),
            phone: row.guest_phone.clone(),
        }),
        stay: Some(pb::StayContext {
            reservation_ref: row.reservation_ref.clone(),
            room: row.room.clone(),
            phase: i32::from(row.stay_phase),
        }),
        channel: i32::from(row.channel),
        category: row.category.clone(),
        subcategory: row.subcategory.clone(),
        cause: i32::from(row.cause),
        impact: i32::from(row.impact),
        urgency: i32::from(row.urgency),
        description: row.description.clone(),
        department: row.department.clone(),
        assignee: row.assignee.clone(),
        status: status_from_name(&row.status) as i32,
        work_order_ids: row.work_order_ids.clone(),
        standard_codes: row.standard_codes.clone(),
        staff_involved: row.staff_involved.clone(),
        remedies: remedies.iter().map(remedy_to_proto).collect(),
        compensation,
        compensation_points: points,
        rating: row.csat.map(|csat| pb::Rating {
            csat: i32::from(csat),
            nps: row.nps.map(i32::from),
            comment: row.rating_comment.clone(),
            rated_by: row.rated_by.clone(),
            rate_time: row.rated_at.map(to_timestamp),
        }),
        root_cause_summary: row.root_cause_summary.clone(),
        clocks,
        guest_tier: row.guest_tier.clone(),
        repeat_issue: row.repeat_issue,
        repeat_of_complaint_id: row.repeat_of.map(|id| id.to_string()).unwrap_or_default(),
        hotspot: row.hotspot,
        reopen_count: row.reopen_count,
        escalation_level: row.escalation_level.clone(),
        escalation_count: row.escalation_count,
        create_time: Some(to_timestamp(row.created_at)),
        update_time: Some(to_timestamp(row.updated_at)),
        first_response_time: row.first_response_at.map(to_timestamp),
        first_resolve_time: row.first_resolved_at.map(to_timestamp),
        resolve_time: row.resolved_at.map(to_timestamp),
        close_time: row.closed_at.map(to_timestamp),
        follow_up_due_time: row.follow_up_due_at.map(to_timestamp),
        etag: row.etag.to_string(),
        last_reason: row.last_reason.clone(),
    }
}
