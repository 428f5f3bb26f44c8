//! Changing a complaint: classification and assignment (field mask), lifecycle transitions,
//! and the follow-up rating (which may reopen it).

use chrono::Utc;
use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::{ApiError, ApiResult, FieldViolation};
use guestloop_proto::complaints::v1 as pb;
use tonic::Request;

use super::Api;
use crate::convert::{complaint_id, optional_enum, required_enum, status_name, text};
use crate::engine::{self, emit_changed, Loaded};
use crate::rules;

/// Loads a complaint for change and checks the caller may touch it.
async fn load_for_change(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    id: &str,
    etag: &str,
) -> ApiResult<Loaded> {
    let id = complaint_id(id, "complaint_id")?;
    let loaded = engine::load(conn, id, true).await?;
    if !principal.can_access_property(&loaded.row.property_id)
        || principal.chain_id() != loaded.row.chain_id
    {
        // Not found rather than forbidden: do not reveal complaints outside the caller's scope.
        return Err(ApiError::not_found("complaint", id.to_string()));
    }
    loaded.check_etag(etag)?;
    Ok(loaded)
}

const UPDATABLE: [&str; 12] = [
    "category",
    "subcategory",
    "cause",
    "impact",
    "urgency",
    "department",
    "assignee",
    "description",
    "root_cause_summary",
    "stay",
    "standard_codes",
    "staff_involved",
];

pub async fn update(
    api: &Api,
    request: Request<pb::UpdateComplaintRequest>,
) -> ApiResult<pb::Complaint> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let patch = request
        .complaint
        .ok_or_else(|| ApiError::invalid("complaint", "is required"))?;
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::invalid(
            "update_mask",
            "list the fields to update",
        ));
    }
    let mut v: Vec<FieldViolation> = Vec::new();
    for path in &paths {
        if !UPDATABLE.contains(&path.as_str()) {
            v.push(FieldViolation::new(
                "update_mask",
                format!(
                    "`{path}` cannot be updated; updatable: {}",
                    UPDATABLE.join(", ")
                ),
            ));
        }
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut loaded =
        load_for_change(&mut tx, &principal, &patch.complaint_id, &request.etag).await?;
    if matches!(loaded.row.status.as_str(), "closed" | "cancelled") {
        return Err(ApiError::failed_precondition(
            "COMPLAINT_FINISHED",
            format!("complaints/{}", loaded.row.complaint_id),
            format!(
                "a {} complaint cannot be changed; reopen it first",
                loaded.row.status
            ),
        ));
    }
    let (old_urgency, old_impact) = (loaded.row.urgency, loaded.row.impact);
    let row = &mut loaded.row;
    for path in &paths {
        match path.as_str() {
            "category" => {
                row.category =
                    text(&patch.category, "complaint.category", 100, false, &mut v).to_lowercase()
            }
            "subcategory" => {
                row.subcategory = text(
                    &patch.subcategory,
                    "complaint.subcategory",
                    100,
                    false,
                    &mut v,
                )
                .to_lowercase()
            }
            "cause" => {
                row.cause = optional_enum::<pb::Cause>(patch.cause, "complaint.cause", &mut v)
                    .unwrap_or_default() as i16
            }
            "impact" => {
                row.impact = optional_enum::<pb::Impact>(patch.impact, "complaint.impact", &mut v)
                    .unwrap_or_default() as i16
            }
            "urgency" => {
                if let Some(urgency) =
                    required_enum::<pb::Urgency>(patch.urgency, "complaint.urgency", &mut v)
                {
                    row.urgency = urgency as i16;
                }
            }
            "department" => {
                row.department = text(
                    &patch.department,
                    "complaint.department",
                    100,
                    false,
                    &mut v,
                )
                .to_lowercase()
            }
            "assignee" => {
                row.assignee = text(&patch.assignee, "complaint.assignee", 200, false, &mut v)
            }
            "description" => {
                row.description = text(
                    &patch.description,
                    "complaint.description",
                    4000,
                    true,
                    &mut v,
                )
            }
            "root_cause_summary" => {
                row.root_cause_summary = text(
                    &patch.root_cause_summary,
                    "complaint.root_cause_summary",
                    4000,
                    false,
                    &mut v,
                )
            }
            "stay" => {
                let stay = patch.stay.clone().unwrap_or_default();
                row.room = text(&stay.room, "complaint.stay.room", 32, false, &mut v);
                row.reservation_ref = text(
                    &stay.reservation_ref,
                    "complaint.stay.reservation_ref",
                    64,
                    false,
                    &mut v,
                );
                row.stay_phase =
                    optional_enum::<pb::StayPhase>(stay.phase, "complaint.stay.phase", &mut v)
                        .unwrap_or_default() as i16;
            }
            "standard_codes" => {
                row.standard_codes =
                    crate::rules::codes(&patch.standard_codes, "complaint.standard_codes", &mut v)
            }
            "staff_involved" => {
                row.staff_involved =
                    crate::rules::codes(&patch.staff_involved, "complaint.staff_involved", &mut v)
            }
            _ => {}
        }
    }
    if paths.iter().any(|p| p == "category") {
        v.extend(super::intake::category_violation(
            &loaded.settings,
            &loaded.row.category,
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    // Classified or placed after intake: the repeat and hotspot checks see what intake would
    // have seen at the time of filing.
    if paths.iter().any(|p| p == "category" || p == "stay") {
        let row = &loaded.row;
        let (repeat_of, hotspot) = super::intake::repeat_and_hotspot(
            &mut tx,
            &loaded.settings,
            super::intake::Placed {
                complaint_id: Some(row.complaint_id),
                filed_at: row.created_at,
                chain_id: &row.chain_id,
                property_id: &row.property_id,
                guest_id: &row.guest_id,
                room: &row.room,
                category: &row.category,
            },
        )
        .await?;
        loaded.row.repeat_issue = repeat_of.is_some();
        loaded.row.repeat_of = repeat_of;
        loaded.row.hotspot = hotspot;
    }
    let now = crate::engine::now();
    crate::store::timeline::append(
        &mut tx,
        loaded.row.complaint_id,
        crate::store::timeline::Entry {
            at: now,
            actor: principal.subject(),
            kind: "updated",
            from_status: None,
            to_status: None,
            note: &paths.join(", "),
        },
    )
    .await?;
    // A reclassification counts as intake would have counted it: the running resolution clock
    // takes the new urgency's target, and critical urgency or emotional harm escalates.
    if loaded.row.status != "resolved" {
        let urgency = pb::Urgency::try_from(i32::from(loaded.row.urgency)).unwrap_or_default();
        if loaded.row.urgency != old_urgency {
            crate::clocks::retarget_resolution(&mut loaded.clocks, &loaded.settings, urgency);
        }
        let now_critical = loaded.row.urgency != old_urgency && urgency == pb::Urgency::Critical;
        let now_harmful = loaded.row.impact != old_impact
            && loaded.row.impact == pb::Impact::EmotionalHarm as i16;
        if now_critical || now_harmful {
            loaded.escalate(&mut tx, "high_impact", now).await?;
        }
    }
    let from = loaded.status();
    let view = loaded.save(&mut tx, now).await?;
    emit_changed(
        &mut tx,
        "complaints.complaint.updated",
        &view,
        from,
        principal.subject(),
    )
    .await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(view)
}

/// The event type announcing a move into `to`.
fn event_type(to: pb::Status) -> &'static str {
    match to {
        pb::Status::Acknowledged => "complaints.complaint.acknowledged",
        pb::Status::Resolved => "complaints.complaint.resolved",
        pb::Status::Reopened => "complaints.complaint.reopened",
        pb::Status::Closed => "complaints.complaint.closed",
        _ => "complaints.complaint.transitioned",
    }
}

/// Applies one lifecycle action to a loaded complaint (shared by the RPC, the rating
/// follow-up and facilities' work-order events).
pub async fn apply_action(
    conn: &mut sqlx::PgConnection,
    loaded: &mut Loaded,
    action: pb::Action,
    reason: &str,
    actor: &str,
    now: chrono::DateTime<Utc>,
) -> ApiResult<pb::Complaint> {
    let from = loaded.status();
    let resume = loaded
        .row
        .resume_status
        .as_deref()
        .map(crate::convert::status_from_name);
    let to = rules::next_status(
        from,
        action,
        resume,
        &rules::Readiness {
            has_cause: loaded.row.cause != 0,
            root_cause_summary: &loaded.row.root_cause_summary,
            reason,
        },
    )
    .map_err(|message| {
        ApiError::failed_precondition(
            "ILLEGAL_TRANSITION",
            format!("complaints/{}", loaded.row.complaint_id),
            message,
        )
    })?;
    // The guest answered: back to where the complaint was, with none of the effects of
    // entering that status (a complaint back in `reopened` is not reopened again).
    let resume = from == pb::Status::WaitingOnGuest && action == pb::Action::GuestResponded;
    let row = &mut loaded.row;
    if from == pb::Status::Received
        && row.first_response_at.is_none()
        && to != pb::Status::Cancelled
    {
        row.first_response_at = Some(now);
    }
    match to {
        _ if resume => {}
        pb::Status::WaitingOnGuest => {
            row.resume_status = Some(status_name(from).to_string());
            row.waited_on_guest = true;
        }
        pb::Status::Resolved => {
            row.first_response_at.get_or_insert(now);
            row.first_resolved_at.get_or_insert(now);
            row.resolved_at = Some(now);
            row.follow_up_due_at = Some(now + loaded.settings.follow_up_delay);
        }
        pb::Status::Reopened => {
            row.reopen_count += 1;
            row.resolved_at = None;
            row.closed_at = None;
            row.last_reason = reason.to_string();
        }
        pb::Status::Closed => row.closed_at = Some(now),
        pb::Status::Cancelled => row.last_reason = reason.to_string(),
        _ => {}
    }
    if from == pb::Status::WaitingOnGuest {
        loaded.row.resume_status = None;
    }
    loaded
        .record_status(conn, status_name(to), resume, actor, reason, now)
        .await?;
    // A cancelled complaint owes nothing more: proposals still waiting for approval are
    // withdrawn, rather than waiting forever (approving is refused on a cancelled complaint).
    if to == pb::Status::Cancelled {
        for remedy in loaded
            .remedies
            .iter_mut()
            .filter(|r| r.status == "pending_approval")
        {
            remedy.status = "rejected".into();
            remedy.decided_by = "system".into();
            remedy.decision_note = "withdrawn: the complaint was cancelled".into();
            remedy.decided_at = Some(now);
            crate::store::remedies::save_decision(&mut *conn, remedy).await?;
        }
    }
    if to == pb::Status::Reopened && !resume {
        // The new cycle's resolution clock runs on the urgency the complaint has now (it may
        // have been reclassified while resolved, when no clock ran), and a complaint that is
        // critical or harmful escalates as at intake, if it has not already.
        let urgency = pb::Urgency::try_from(i32::from(loaded.row.urgency)).unwrap_or_default();
        crate::clocks::retarget_resolution(&mut loaded.clocks, &loaded.settings, urgency);
        if urgency == pb::Urgency::Critical || loaded.row.impact == pb::Impact::EmotionalHarm as i16
        {
            loaded.escalate(conn, "high_impact", now).await?;
        }
        if loaded.row.reopen_count >= 2 {
            let trigger = format!("reopen#{}", loaded.row.reopen_count);
            loaded.escalate(conn, &trigger, now).await?;
        }
    }
    let view = loaded.save(conn, now).await?;
    let event = if resume {
        "complaints.complaint.transitioned"
    } else {
        event_type(to)
    };
    emit_changed(conn, event, &view, from, actor).await?;
    Ok(view)
}

pub async fn transition(
    api: &Api,
    request: Request<pb::TransitionComplaintRequest>,
) -> ApiResult<pb::Complaint> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    let action = required_enum::<pb::Action>(request.action, "action", &mut v);
    let reason = text(&request.reason, "reason", 2000, false, &mut v);
    let Some(action) = action else {
        return Err(ApiError::InvalidArgument(v));
    };
    if matches!(action, pb::Action::Reopen | pb::Action::Cancel) && reason.is_empty() {
        v.push(FieldViolation::new(
            "reason",
            "is required to reopen or cancel",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    if principal.role() == Role::Guest {
        return Err(ApiError::PermissionDenied(
            "guests cannot move complaints through their lifecycle".into(),
        ));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut loaded =
        load_for_change(&mut tx, &principal, &request.complaint_id, &request.etag).await?;
    let view = apply_action(
        &mut tx,
        &mut loaded,
        action,
        &reason,
        principal.subject(),
        crate::engine::now(),
    )
    .await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(view)
}

pub async fn rate(
    api: &Api,
    request: Request<pb::RateComplaintRequest>,
) -> ApiResult<pb::Complaint> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let mut v = Vec::new();
    if !(1..=5).contains(&request.csat) {
        v.push(FieldViolation::new("csat", "must be between 1 and 5"));
    }
    if let Some(nps) = request.nps {
        if !(0..=10).contains(&nps) {
            v.push(FieldViolation::new("nps", "must be between 0 and 10"));
        }
    }
    let comment = text(&request.comment, "comment", 2000, false, &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let id = complaint_id(&request.complaint_id, "complaint_id")?;
    let mut loaded = if principal.role() == Role::Guest {
        let own = super::own_guest_id(&principal)?;
        let loaded = engine::load(&mut tx, id, true).await?;
        if own != loaded.row.guest_id || principal.chain_id() != loaded.row.chain_id {
            return Err(ApiError::not_found("complaint", id.to_string()));
        }
        loaded
    } else {
        load_for_change(&mut tx, &principal, &request.complaint_id, "").await?
    };
    if !matches!(loaded.row.status.as_str(), "resolved" | "closed") {
        return Err(ApiError::failed_precondition(
            "NOT_RESOLVED",
            format!("complaints/{id}"),
            "only a resolved or closed complaint can be rated",
        ));
    }
    let now = crate::engine::now();
    let row = &mut loaded.row;
    row.csat = Some(request.csat as i16);
    row.nps = request.nps.map(|n| n as i16);
    row.rating_comment = comment;
    row.rated_by = principal.actor().to_string();
    row.rated_at = Some(now);
    crate::store::timeline::append(
        &mut tx,
        id,
        crate::store::timeline::Entry {
            at: now,
            actor: principal.actor(),
            kind: "rated",
            from_status: None,
            to_status: None,
            note: &format!("csat {}", request.csat),
        },
    )
    .await?;
    let threshold = loaded.settings.reopen_csat_threshold;
    let view = if threshold > 0 && request.csat <= threshold {
        // Recovery continues until the guest is satisfied.
        let reason = format!("follow-up CSAT {} at or below {threshold}", request.csat);
        apply_action(
            &mut tx,
            &mut loaded,
            pb::Action::Reopen,
            &reason,
            "system",
            now,
        )
        .await?
    } else {
        let from = loaded.status();
        let view = loaded.save(&mut tx, now).await?;
        emit_changed(
            &mut tx,
            "complaints.complaint.rated",
            &view,
            from,
            principal.actor(),
        )
        .await?;
        view
    };
    tx.commit().await?;
    api.context.events.wake();
    Ok(crate::convert::for_caller(&principal, view))
}
