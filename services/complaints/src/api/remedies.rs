//! Remedies and compensation within authority limits: a proposal inside the caller's limit is
//! approved at once; above it, it waits for a role whose limit covers the complaint's total.
//! An approved remedy is announced once (`complaints.remedy.approved`), which is how CRM grants
//! goodwill points exactly once per remedy.

use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::events::{append, NewEvent};
use guestloop_kit::{idempotency, ApiError, ApiResult, FieldViolation};
use guestloop_proto::complaints::v1 as pb;
use tonic::Request;
use uuid::Uuid;

use super::Api;
use crate::convert::{complaint_id, remedy_to_proto, required_enum, text};
use crate::engine::{self, Loaded};
use crate::rules::{self, Authority};
use crate::store::remedies::{self as remedy_store, RemedyRow};
use crate::store::timeline::{self, Entry};

const METHOD: &str = "ProposeRemedy";

async fn load_for_remedy(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    id: &str,
) -> ApiResult<Loaded> {
    if principal.role() == Role::Guest || !principal.role().is_staff() {
        return Err(ApiError::PermissionDenied(
            "only staff decide remedies".into(),
        ));
    }
    let id = complaint_id(id, "complaint_id")?;
    let loaded = engine::load(conn, id, true).await?;
    if !principal.can_access_property(&loaded.row.property_id)
        || principal.chain_id() != loaded.row.chain_id
    {
        return Err(ApiError::not_found("complaint", id.to_string()));
    }
    Ok(loaded)
}

/// `a + b` per component, saturating: a total never wraps into something small enough to pass
/// an authority limit.
fn plus((money, points): (i64, i64), (more_money, more_points): (i64, i64)) -> (i64, i64) {
    (
        money.saturating_add(more_money),
        points.saturating_add(more_points),
    )
}

/// Money and points already committed on the complaint (approved, delivered or awaiting approval).
fn committed(remedies: &[RemedyRow]) -> (i64, i64) {
    remedies
        .iter()
        .filter(|r| {
            matches!(
                r.status.as_str(),
                "approved" | "delivered" | "pending_approval"
            )
        })
        .fold((0, 0), |total, r| plus(total, (r.amount_minor, r.points)))
}

fn authority(loaded: &Loaded) -> Authority<'_> {
    Authority {
        limits: &loaded.settings.authority_limits,
        ladder: &loaded.settings.escalation_ladder,
    }
}

async fn announce_approved(
    conn: &mut sqlx::PgConnection,
    loaded: &Loaded,
    remedy: &RemedyRow,
) -> ApiResult<()> {
    append(
        conn,
        NewEvent {
            event_type: "complaints.remedy.approved",
            subject: format!(
                "complaints/{}/remedies/{}",
                loaded.row.complaint_id, remedy.remedy_id
            ),
            chain_id: &loaded.row.chain_id,
            property_id: &loaded.row.property_id,
            payload: &pb::RemedyApproved {
                complaint_id: loaded.row.complaint_id.to_string(),
                property_id: loaded.row.property_id.clone(),
                guest_id: loaded.row.guest_id.clone(),
                remedy: Some(remedy_to_proto(remedy)),
                category: loaded.row.category.clone(),
            },
        },
    )
    .await?;
    Ok(())
}

pub async fn propose(
    api: &Api,
    request: Request<pb::ProposeRemedyRequest>,
) -> ApiResult<pb::Remedy> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let remedy = request
        .remedy
        .clone()
        .ok_or_else(|| ApiError::invalid("remedy", "is required"))?;
    let mut v: Vec<FieldViolation> = Vec::new();
    let kind = required_enum::<pb::RemedyKind>(remedy.kind, "remedy.kind", &mut v);
    let description = text(
        &remedy.description,
        "remedy.description",
        1000,
        false,
        &mut v,
    );
    let amount = remedy.amount.clone().unwrap_or_default();
    if amount.minor_units < 0 {
        v.push(FieldViolation::new(
            "remedy.amount.minor_units",
            "must not be negative",
        ));
    } else if amount.minor_units > rules::MAX_REMEDY_MINOR_UNITS {
        v.push(FieldViolation::new(
            "remedy.amount.minor_units",
            format!("must be at most {}", rules::MAX_REMEDY_MINOR_UNITS),
        ));
    }
    if remedy.points < 0 {
        v.push(FieldViolation::new("remedy.points", "must not be negative"));
    } else if remedy.points > rules::MAX_REMEDY_POINTS {
        v.push(FieldViolation::new(
            "remedy.points",
            format!("must be at most {}", rules::MAX_REMEDY_POINTS),
        ));
    }
    if let Some(kind) = kind {
        v.extend(rules::check_remedy_shape(
            kind,
            amount.minor_units,
            remedy.points,
        ));
    }
    let Some(kind) = kind.filter(|_| v.is_empty()) else {
        return Err(ApiError::InvalidArgument(v));
    };

    let mut tx = api.context.pool.begin().await?;
    let mut loaded = load_for_remedy(&mut tx, &principal, &request.complaint_id).await?;
    if let Some(previous) = idempotency::claim::<_, pb::Remedy>(
        &mut tx,
        &principal,
        METHOD,
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(previous);
    }
    if amount.minor_units > 0 && amount.currency_code != loaded.settings.currency_code {
        return Err(ApiError::invalid(
            "remedy.amount.currency_code",
            format!(
                "must be the property currency {}",
                loaded.settings.currency_code
            ),
        ));
    }
    if matches!(loaded.row.status.as_str(), "closed" | "cancelled") {
        return Err(ApiError::failed_precondition(
            "COMPLAINT_FINISHED",
            format!("complaints/{}", loaded.row.complaint_id),
            format!("no remedies on a {} complaint", loaded.row.status),
        ));
    }
    // Points are credited to the guest's loyalty account: with no guest id there is none, and
    // an approved grant would count points nobody received.
    if remedy.points > 0 && loaded.row.guest_id.is_empty() {
        return Err(ApiError::failed_precondition(
            "NO_LOYALTY_MEMBER",
            format!("complaints/{}", loaded.row.complaint_id),
            "points go to a loyalty member's account and this complaint names no guest id; \
             name the guest first, or offer another remedy",
        ));
    }
    let total = plus(
        committed(&loaded.remedies),
        (amount.minor_units, remedy.points),
    );
    let now = crate::engine::now();
    let decision = authority(&loaded).decide(principal.role(), total);
    let mut row = RemedyRow {
        remedy_id: Uuid::now_v7(),
        complaint_id: loaded.row.complaint_id,
        kind: kind as i16,
        currency_code: if amount.minor_units > 0 {
            amount.currency_code.clone()
        } else {
            String::new()
        },
        amount_minor: amount.minor_units,
        points: remedy.points,
        description,
        status: "approved".into(),
        proposed_by: principal.subject().to_string(),
        proposed_role: principal.role().as_str().to_string(),
        required_role: String::new(),
        decided_by: String::new(),
        decision_note: String::new(),
        created_at: now,
        decided_at: None,
        delivered_at: None,
    };
    match decision {
        rules::Decision::Approved => {
            row.decided_by = principal.subject().to_string();
            row.decided_at = Some(now);
        }
        rules::Decision::NeedsApproval(role) => {
            row.status = "pending_approval".into();
            row.required_role = role.as_str().to_string();
        }
    }
    remedy_store::insert(&mut tx, &row).await?;
    let note = format!(
        "{:?} {} {} / {} points: {}",
        kind, row.currency_code, row.amount_minor, row.points, row.status
    );
    timeline::append(
        &mut tx,
        loaded.row.complaint_id,
        Entry {
            at: now,
            actor: principal.subject(),
            kind: "remedy_proposed",
            from_status: None,
            to_status: None,
            note: &note,
        },
    )
    .await?;
    if row.status == "approved" {
        announce_approved(&mut tx, &loaded, &row).await?;
    }
    loaded.remedies.push(row.clone());
    loaded.save(&mut tx, now).await?;
    let reply = remedy_to_proto(&row);
    idempotency::record(&mut tx, &principal, METHOD, &request.request_id, &reply).await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(reply)
}

fn remedy_id(text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid("remedy_id", "must be a remedy id (UUID)"))
}

pub async fn decide(api: &Api, request: Request<pb::DecideRemedyRequest>) -> ApiResult<pb::Remedy> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let remedy_id = remedy_id(&request.remedy_id)?;
    let mut v = Vec::new();
    let note = text(&request.note, "note", 1000, false, &mut v);
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    let mut tx = api.context.pool.begin().await?;
    let mut loaded = load_for_remedy(&mut tx, &principal, &request.complaint_id).await?;
    let mut row =
        remedy_store::load_for_update(&mut tx, loaded.row.complaint_id, remedy_id).await?;
    if row.status != "pending_approval" {
        return Err(ApiError::failed_precondition(
            "REMEDY_ALREADY_DECIDED",
            format!("remedies/{remedy_id}"),
            format!("the remedy is already {}", row.status),
        ));
    }
    // Rejecting stays possible on a finished complaint (it tidies up); approving would
    // announce compensation (and CRM would grant points) for a complaint that is over.
    if request.approve && matches!(loaded.row.status.as_str(), "closed" | "cancelled") {
        return Err(ApiError::failed_precondition(
            "COMPLAINT_FINISHED",
            format!("complaints/{}", loaded.row.complaint_id),
            format!(
                "no remedy can be approved on a {} complaint",
                loaded.row.status
            ),
        ));
    }
    // Points go to a loyalty member: the guest may have been erased (and the complaint's guest
    // id with them) since the remedy was proposed.
    if request.approve && row.points > 0 && loaded.row.guest_id.is_empty() {
        return Err(ApiError::failed_precondition(
            "NO_LOYALTY_MEMBER",
            format!("complaints/{}", loaded.row.complaint_id),
            "points go to a loyalty member's account and this complaint names no guest id now; \
             reject the remedy and offer another",
        ));
    }
    let (money, points) = committed(&loaded.remedies);
    let may_approve =
        authority(&loaded).decide(principal.role(), (money, points)) == rules::Decision::Approved;
    if request.approve && !may_approve {
        return Err(ApiError::PermissionDenied(format!(
            "role {} cannot approve compensation of this size; {} or above is needed",
            principal.role(),
            row.required_role
        )));
    }
    // A rejection is the approver's decision, or the proposer withdrawing their own proposal.
    if !request.approve && !may_approve && row.proposed_by != principal.subject() {
        return Err(ApiError::PermissionDenied(format!(
            "role {} cannot decide on compensation of this size; {} or above, or its proposer, may reject it",
            principal.role(),
            row.required_role
        )));
    }
    let now = crate::engine::now();
    row.status = if request.approve {
        "approved"
    } else {
        "rejected"
    }
    .into();
    row.decided_by = principal.subject().to_string();
    row.decision_note = note;
    row.decided_at = Some(now);
    remedy_store::save_decision(&mut tx, &row).await?;
    timeline::append(
        &mut tx,
        loaded.row.complaint_id,
        Entry {
            at: now,
            actor: principal.subject(),
            kind: if request.approve {
                "remedy_approved"
            } else {
                "remedy_rejected"
            },
            from_status: None,
            to_status: None,
            note: &row.remedy_id.to_string(),
        },
    )
    .await?;
    if request.approve {
        announce_approved(&mut tx, &loaded, &row).await?;
    }
    if let Some(existing) = loaded
        .remedies
        .iter_mut()
        .find(|r| r.remedy_id == row.remedy_id)
    {
        *existing = row.clone();
    }
    loaded.save(&mut tx, now).await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(remedy_to_proto(&row))
}

pub async fn delivered(
    api: &Api,
    request: Request<pb::MarkRemedyDeliveredRequest>,
) -> ApiResult<pb::Remedy> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    let remedy_id = remedy_id(&request.remedy_id)?;
    let mut tx = api.context.pool.begin().await?;
    let mut loaded = load_for_remedy(&mut tx, &principal, &request.complaint_id).await?;
    let mut row =
        remedy_store::load_for_update(&mut tx, loaded.row.complaint_id, remedy_id).await?;
    if row.status != "approved" {
        return Err(ApiError::failed_precondition(
            "REMEDY_NOT_APPROVED",
            format!("remedies/{remedy_id}"),
            format!(
                "only an approved remedy can be delivered; it is {}",
                row.status
            ),
        ));
    }
    // An approved remedy may still be handed over after closing; not after cancelling.
    if loaded.row.status == "cancelled" {
        return Err(ApiError::failed_precondition(
            "COMPLAINT_FINISHED",
            format!("complaints/{}", loaded.row.complaint_id),
            "no remedy can be delivered on a cancelled complaint",
        ));
    }
    let now = crate::engine::now();
    row.status = "delivered".into();
    row.delivered_at = Some(now);
    remedy_store::save_decision(&mut tx, &row).await?;
    timeline::append(
        &mut tx,
        loaded.row.complaint_id,
        Entry {
            at: now,
            actor: principal.subject(),
            kind: "remedy_delivered",
            from_status: None,
            to_status: None,
            note: &row.remedy_id.to_string(),
        },
    )
    .await?;
    if let Some(existing) = loaded
        .remedies
        .iter_mut()
        .find(|r| r.remedy_id == row.remedy_id)
    {
        *existing = row.clone();
    }
    loaded.save(&mut tx, now).await?;
    tx.commit().await?;
    Ok(remedy_to_proto(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remedy(status: &str, amount_minor: i64, points: i64) -> RemedyRow {
        RemedyRow {
            remedy_id: Uuid::nil(),
            complaint_id: Uuid::nil(),
            kind: pb::RemedyKind::Refund as i16,
            currency_code: "EUR".into(),
            amount_minor,
            points,
            description: String::new(),
            status: status.into(),
            proposed_by: String::new(),
            proposed_role: String::new(),
            required_role: String::new(),
            decided_by: String::new(),
            decision_note: String::new(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            decided_at: None,
            delivered_at: None,
        }
    }

    #[test]
    fn committed_totals_saturate_instead_of_wrapping() {
        let remedies = [
            remedy("approved", i64::MAX, 1),
            remedy("pending_approval", i64::MAX, i64::MAX),
            remedy("rejected", 5, 5),
        ];
        assert_eq!(committed(&remedies), (i64::MAX, i64::MAX));
        let total = plus(committed(&remedies), (i64::MAX, i64::MAX));
        assert_eq!(total, (i64::MAX, i64::MAX));
        // A saturated total is beyond every limited role: an agent gets no approval from it.
        let limits = crate::settings::default_limits();
        let ladder = crate::settings::default_ladder();
        let authority = Authority {
            limits: &limits,
            ladder: &ladder,
        };
        assert_eq!(
            authority.decide(Role::Agent, total),
            rules::Decision::NeedsApproval(Role::GeneralManager)
        );
    }

    #[test]
    fn committed_counts_only_live_remedies() {
        let remedies = [
            remedy("approved", 100, 0),
            remedy("delivered", 20, 3),
            remedy("pending_approval", 1, 1),
            remedy("rejected", 1_000, 1_000),
        ];
        assert_eq!(committed(&remedies), (121, 4));
    }
}
