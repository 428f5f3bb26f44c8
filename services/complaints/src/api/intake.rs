//! Filing a complaint: validate, detect repeats and hotspots, start the clocks, escalate on
//! intake triggers, record the event — all in one transaction, idempotent by request_id. The
//! guest's tier comes from CRM while the transaction reads, within a short deadline (see
//! [`super::tier`]); intake never waits longer than that.

use guestloop_kit::auth::{principal, Principal, Role};
use guestloop_kit::{idempotency, tenancy, ApiError, ApiResult, FieldViolation};
use guestloop_proto::complaints::v1 as pb;
use tonic::Request;
use uuid::Uuid;

use super::Api;
use crate::clocks;
use crate::convert::{optional_enum, required_enum, text};
use crate::engine::{self, emit_changed, Loaded};
use crate::settings::EffectiveSettings;
use crate::store::timeline::{self, Entry};
use crate::store::{self, ComplaintRow};

const METHOD: &str = "CreateComplaint";

/// The validated parts of a new complaint.
struct NewComplaint {
    property_id: String,
    guest: pb::GuestRef,
    stay: pb::StayContext,
    channel: pb::Channel,
    urgency: pb::Urgency,
    cause: pb::Cause,
    impact: pb::Impact,
    category: String,
    subcategory: String,
    description: String,
    department: String,
    assignee: String,
    root_cause_summary: String,
    standard_codes: Vec<String>,
    staff_involved: Vec<String>,
}

fn looks_like_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'))
}

fn validate(principal: &Principal, complaint: pb::Complaint) -> ApiResult<NewComplaint> {
    let mut v: Vec<FieldViolation> = Vec::new();
    let property_id = text(
        &complaint.property_id,
        "complaint.property_id",
        64,
        true,
        &mut v,
    );
    // `chain:<id>` names a chain's default settings, never a property: a complaint filed there
    // would take on that chain's settings.
    if property_id.starts_with(crate::store::settings::CHAIN_KEY_PREFIX) {
        v.push(FieldViolation::new(
            "complaint.property_id",
            "must not start with `chain:`, which names a chain's default settings",
        ));
    }
    let channel = required_enum::<pb::Channel>(complaint.channel, "complaint.channel", &mut v);
    let urgency =
        optional_enum::<pb::Urgency>(complaint.urgency, "complaint.urgency", &mut v).map(|u| {
            if u == pb::Urgency::Unspecified {
                pb::Urgency::Medium
            } else {
                u
            }
        });
    let cause = optional_enum::<pb::Cause>(complaint.cause, "complaint.cause", &mut v);
    let impact = optional_enum::<pb::Impact>(complaint.impact, "complaint.impact", &mut v);
    let stay = complaint.stay.unwrap_or_default();
    let phase = optional_enum::<pb::StayPhase>(stay.phase, "complaint.stay.phase", &mut v);
    let description = text(
        &complaint.description,
        "complaint.description",
        4000,
        true,
        &mut v,
    );
    let category = text(
        &complaint.category,
        "complaint.category",
        100,
        false,
        &mut v,
    )
    .to_lowercase();
    let subcategory = text(
        &complaint.subcategory,
        "complaint.subcategory",
        100,
        false,
        &mut v,
    )
    .to_lowercase();
    let department = text(
        &complaint.department,
        "complaint.department",
        100,
        false,
        &mut v,
    )
    .to_lowercase();
    let assignee = text(
        &complaint.assignee,
        "complaint.assignee",
        200,
        false,
        &mut v,
    );
    // What staff record about their own work, given at intake as on update; a guest filing
    // does not name staff or root causes.
    let root_cause_summary = text(
        &complaint.root_cause_summary,
        "complaint.root_cause_summary",
        4000,
        false,
        &mut v,
    );
    let standard_codes = crate::rules::codes(
        &complaint.standard_codes,
        "complaint.standard_codes",
        &mut v,
    );
    let staff_involved = crate::rules::codes(
        &complaint.staff_involved,
        "complaint.staff_involved",
        &mut v,
    );
    if principal.role() == Role::Guest {
        for (field, given) in [
            (
                "complaint.root_cause_summary",
                !root_cause_summary.is_empty(),
            ),
            ("complaint.standard_codes", !standard_codes.is_empty()),
            ("complaint.staff_involved", !staff_involved.is_empty()),
        ] {
            if given {
                v.push(FieldViolation::new(
                    field,
                    "is recorded by staff, not by the guest",
                ));
            }
        }
    }
    let room = text(&stay.room, "complaint.stay.room", 32, false, &mut v);
    let reservation_ref = text(
        &stay.reservation_ref,
        "complaint.stay.reservation_ref",
        64,
        false,
        &mut v,
    );
    let mut guest = complaint.guest.unwrap_or_default();
    if principal.role() == Role::Guest {
        // A guest files for themselves; the token says who they are.
        let own = super::own_guest_id(principal)?.to_string();
        if !guest.guest_id.is_empty() && guest.guest_id != own {
            v.push(FieldViolation::new(
                "complaint.guest.guest_id",
                "a guest can only file complaints for themselves",
            ));
        }
        guest.guest_id = own;
    } else if guest.guest_id.is_empty()
        && guest.name.trim().is_empty()
        && channel != Some(pb::Channel::StaffObserved)
    {
        // Staff-observed failures may be found before anyone knows which guest they touch.
        v.push(FieldViolation::new(
            "complaint.guest",
            "a guest id, or the name of a non-member, is required",
        ));
    }
    // A guest id is shaped as CRM takes it: bounded printable ASCII, never a card number.
    if let Err(problem) = guestloop_kit::guest_id::guest_id_shape(&guest.guest_id) {
        v.push(FieldViolation::new("complaint.guest.guest_id", problem));
    }
    // What identifies a non-member: bounded, and never a card number (a phone field holds
    // digits and spaces, as a card number written in groups does).
    guest.name = text(&guest.name, "complaint.guest.name", 200, false, &mut v);
    guest.email = text(&guest.email, "complaint.guest.email", 254, false, &mut v);
    guest.phone = text(&guest.phone, "complaint.guest.phone", 40, false, &mut v);
    if !guest.email.is_empty() && !looks_like_email(&guest.email) {
        v.push(FieldViolation::new(
            "complaint.guest.email",
            "is not an email address",
        ));
    }
    let phone = guest.phone.trim();
    if !phone.is_empty()
        && (!phone.chars().any(|c| c.is_ascii_digit())
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c)))
    {
        v.push(FieldViolation::new(
            "complaint.guest.phone",
            "must be a phone number: digits, spaces and + - ( ) . (leave it empty when unknown)",
        ));
    }
    if !v.is_empty() {
        return Err(ApiError::InvalidArgument(v));
    }
    principal.require_property(&property_id)?;
    Ok(NewComplaint {
        property_id,
        guest,
        stay: pb::StayContext {
            reservation_ref,
            room,
            phase: phase.unwrap_or_default() as i32,
        },
        channel: channel.unwrap_or_default(),
        urgency: urgency.unwrap_or(pb::Urgency::Medium),
        cause: cause.unwrap_or_default(),
        impact: impact.unwrap_or_default(),
        category,
        subcategory,
        description,
        department,
        assignee,
        root_cause_summary,
        standard_codes,
        staff_involved,
    })
}

/// Why a (lowercased) category is refused: it is outside the property's list, when it keeps one.
pub(crate) fn category_violation(
    settings: &EffectiveSettings,
    category: &str,
) -> Option<FieldViolation> {
    if settings.categories.is_empty()
        || category.is_empty()
        || settings.categories.iter().any(|c| c == category)
    {
        return None;
    }
    Some(FieldViolation::new(
        "complaint.category",
        format!(
            "not a category of this property; expected one of {}",
            settings.categories.join(", ")
        ),
    ))
}

pub fn is_priority_tier(tier: &str) -> bool {
    matches!(tier, "vip" | "strategic")
}

/// Where and for whom a complaint was filed, for the repeat and hotspot checks.
pub(super) struct Placed<'a> {
    /// `None` before the complaint is stored.
    pub complaint_id: Option<Uuid>,
    pub filed_at: chrono::DateTime<chrono::Utc>,
    /// The chain the guest id belongs to: another chain's guest of the same id is not this
    /// guest.
    pub chain_id: &'a str,
    pub property_id: &'a str,
    pub guest_id: &'a str,
    pub room: &'a str,
    pub category: &'a str,
}

/// The guest's earlier complaint of the same category within the repeat window (a repeat
/// issue), and whether the room is a hotspot: a room (with a category) that had the threshold's
/// number of complaints of that category within the hotspot window, this one included. Intake
/// and reclassification ask the same.
pub(super) async fn repeat_and_hotspot(
    conn: &mut sqlx::PgConnection,
    settings: &EffectiveSettings,
    placed: Placed<'_>,
) -> ApiResult<(Option<Uuid>, bool)> {
    let window = |length| store::complaints::Window {
        since: placed.filed_at - length,
        before: placed.filed_at,
        other_than: placed.complaint_id,
    };
    let repeat_of = store::complaints::previous_for_guest(
        &mut *conn,
        placed.chain_id,
        placed.guest_id,
        placed.category,
        window(settings.repeat_window),
    )
    .await?;
    let room_count = store::complaints::count_for_room(
        &mut *conn,
        placed.property_id,
        placed.room,
        placed.category,
        window(settings.hotspot_window),
        settings.hotspot_threshold,
    )
    .await?;
    let hotspot = !placed.room.is_empty()
        && !placed.category.is_empty()
        && room_count + 1 >= settings.hotspot_threshold;
    Ok((repeat_of, hotspot))
}

pub async fn create(
    api: &Api,
    request: Request<pb::CreateComplaintRequest>,
) -> ApiResult<pb::Complaint> {
    let principal = principal(&request)?.clone();
    let request = request.into_inner();
    idempotency::check_request_id(&request.request_id)?;
    let complaint = request
        .complaint
        .clone()
        .ok_or_else(|| ApiError::invalid("complaint", "is required"))?;
    let new = validate(&principal, complaint)?;
    // CRM answers while the transaction reads; the tier is needed only for the new row.
    let tier = api.tiers.start(&new.guest.guest_id, principal.chain_id());

    let mut tx = api.context.pool.begin().await?;
    // The first complaint at a property registers it under the caller's chain. The scope is
    // checked before a stored answer is handed back, so a caller no longer at the property gets
    // nothing by replaying.
    tenancy::claim_property(&mut tx, &principal, &new.property_id).await?;
    if let Some(previous) = idempotency::claim::<_, pb::Complaint>(
        &mut tx,
        &principal,
        METHOD,
        &request.request_id,
        &request,
    )
    .await?
    {
        return Ok(crate::convert::for_caller(&principal, previous));
    }
    let settings = engine::settings_for(&mut tx, principal.chain_id(), &new.property_id).await?;
    if let Some(violation) = category_violation(&settings, &new.category) {
        return Err(ApiError::InvalidArgument(vec![violation]));
    }
    let now = crate::engine::now();
    let (repeat_of, hotspot) = repeat_and_hotspot(
        &mut tx,
        &settings,
        Placed {
            complaint_id: None,
            filed_at: now,
            chain_id: principal.chain_id(),
            property_id: &new.property_id,
            guest_id: &new.guest.guest_id,
            room: &new.stay.room,
            category: &new.category,
        },
    )
    .await?;
    let tier = tier.answer().await;
    let row = ComplaintRow {
        complaint_id: Uuid::now_v7(),
        chain_id: principal.chain_id().to_string(),
        property_id: new.property_id.clone(),
        guest_id: new.guest.guest_id.clone(),
        guest_name: new.guest.name.trim().to_string(),
        guest_email: new.guest.email.trim().to_lowercase(),
        guest_phone: new.guest.phone.trim().to_string(),
        reservation_ref: new.stay.reservation_ref.clone(),
        room: new.stay.room.clone(),
        stay_phase: new.stay.phase as i16,
        channel: new.channel as i16,
        category: new.category.clone(),
        subcategory: new.subcategory.clone(),
        cause: new.cause as i16,
        impact: new.impact as i16,
        urgency: new.urgency as i16,
        description: new.description.clone(),
        department: new.department.clone(),
        assignee: new.assignee.clone(),
        status: "received".into(),
        resume_status: None,
        guest_tier: tier.clone().unwrap_or_default(),
        tier_checked: tier.is_some() || new.guest.guest_id.is_empty(),
        repeat_issue: repeat_of.is_some(),
        repeat_of,
        hotspot,
        reopen_count: 0,
        waited_on_guest: false,
        escalation_level: settings
            .escalation_ladder
            .first()
            .copied()
            .unwrap_or(Role::Agent)
            .as_str()
            .to_string(),
        escalation_count: 0,
        first_escalated_at: None,
        root_cause_summary: new.root_cause_summary.clone(),
        last_reason: String::new(),
        csat: None,
        nps: None,
        rating_comment: String::new(),
        rated_by: String::new(),
        rated_at: None,
        work_order_ids: Vec::new(),
        standard_codes: new.standard_codes.clone(),
        staff_involved: new.staff_involved.clone(),
        created_at: now,
        created_by: principal.actor().to_string(),
        updated_at: now,
        first_response_at: None,
        first_resolved_at: None,
        resolved_at: None,
        closed_at: None,
        follow_up_due_at: None,
        next_escalation_at: None,
        etag: Uuid::now_v7(),
    };
    store::complaints::insert(&mut tx, &row).await?;
    sqlx::query("INSERT INTO known_properties (property_id, chain_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&row.property_id)
        .bind(&row.chain_id)
        .execute(&mut *tx)
        .await?;
    let clocks = clocks::start_all(&settings, new.urgency, &new.department, now);
    let mut loaded = Loaded {
        row,
        clocks,
        remedies: Vec::new(),
        history: Vec::new(),
        fired: Vec::new(),
        settings,
    };
    timeline::append(
        &mut tx,
        loaded.row.complaint_id,
        Entry {
            at: now,
            actor: principal.actor(),
            kind: "filed",
            from_status: None,
            to_status: Some("received"),
            note: "",
        },
    )
    .await?;
    loaded.history.push((now, "received".to_string()));
    if is_priority_tier(&loaded.row.guest_tier) {
        loaded.escalate(&mut tx, "priority_guest", now).await?;
    }
    if new.urgency == pb::Urgency::Critical || new.impact == pb::Impact::EmotionalHarm {
        loaded.escalate(&mut tx, "high_impact", now).await?;
    }
    let view = loaded.save(&mut tx, now).await?;
    emit_changed(
        &mut tx,
        "complaints.complaint.filed",
        &view,
        pb::Status::Unspecified,
        principal.actor(),
    )
    .await?;
    idempotency::record(&mut tx, &principal, METHOD, &request.request_id, &view).await?;
    tx.commit().await?;
    api.context.events.wake();
    Ok(crate::convert::for_caller(&principal, view))
}
