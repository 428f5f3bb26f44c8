//! The JSON bodies of the HTTP API, each with its OpenAPI schema, and their conversion from the
//! gRPC messages. Instants are RFC 3339 strings in UTC; dates are `YYYY-MM-DD`; enums are
//! lower-case words. Field names are stable: clients and BI pipelines rely on them.

use chrono::{TimeZone, Utc};
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::gateway::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(super) fn instant(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| Utc.timestamp_opt(t.seconds, 0).single())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `STATUS_REMEDY_PLANNED` → `remedy_planned`.
fn enum_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves HTTP.
    pub status: String,
}

/// One KPI as it enters the composite score.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreComponent {
    /// csat_mean, sla_attainment, fcr_rate, nps, repeat_rate, work_order_attainment or audit_score.
    pub kpi: String,
    /// The KPI's value; null when there was nothing to measure or its source is missing.
    pub value: Option<f64>,
    /// 0–100 between floor and target, clamped.
    pub normalized: Option<f64>,
    pub weight: f64,
    /// weight × normalized, with weights re-scaled over the components present.
    pub contribution: Option<f64>,
    pub target: f64,
    pub floor: f64,
}

/// A property, a region or the whole scope, scored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoredUnit {
    /// A property id, a region, or `scope`.
    pub key: String,
    pub region: String,
    /// Composite service-quality score 0–100; null when no component could be measured.
    pub sqs: Option<f64>,
    /// The score over the previous period of the same length.
    pub previous_sqs: Option<f64>,
    /// League-table rank (1 = best), scored properties only; 0 otherwise (not ranked).
    pub rank: i32,
    pub complaints: i64,
    pub components: Vec<ScoreComponent>,
    /// The unit's complaint KPIs, computed from its summed counts.
    pub kpis: ComplaintKpis,
}

/// Complaint KPIs (DOMAIN §3) of a property, a region or the scope; each null when there was
/// nothing to measure. Times in seconds, rates as fractions 0–1, NPS −100 to 100.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ComplaintKpis {
    /// Mean time from filing to the first answer (FRT).
    pub first_response_mean_seconds: Option<f64>,
    /// Mean time from filing to the first resolution.
    pub first_resolution_mean_seconds: Option<f64>,
    /// Mean time from filing to the final resolution of complaints resolved now (TAT).
    pub total_resolution_mean_seconds: Option<f64>,
    /// Resolved in the first interaction / resolved.
    pub fcr_rate: Option<f64>,
    /// Mean follow-up rating, 1–5.
    pub csat_mean: Option<f64>,
    /// Ratings of 4 or 5 / ratings.
    pub csat_top_two_rate: Option<f64>,
    pub nps: Option<f64>,
    /// Escalated / complaints.
    pub escalation_rate: Option<f64>,
    /// Mean time from filing to escalation.
    pub escalation_mean_seconds: Option<f64>,
    /// Reopened / resolved.
    pub reopen_rate: Option<f64>,
    /// Repeat issues / complaints.
    pub repeat_rate: Option<f64>,
    /// Clocks met / clocks decided, every stage.
    pub sla_attainment: Option<f64>,
    /// Resolution clocks met / decided.
    pub on_time_handling: Option<f64>,
}

impl From<Option<&complaints::KpiValues>> for ComplaintKpis {
    fn from(values: Option<&complaints::KpiValues>) -> Self {
        let Some(v) = values else {
            return Self::default();
        };
        Self {
            first_response_mean_seconds: v.first_response_mean_seconds,
            first_resolution_mean_seconds: v.first_resolution_mean_seconds,
            total_resolution_mean_seconds: v.total_resolution_mean_seconds,
            fcr_rate: v.fcr_rate,
            csat_mean: v.csat_mean,
            csat_top_two_rate: v.csat_top_two_rate,
            nps: v.nps,
            escalation_rate: v.escalation_rate,
            escalation_mean_seconds: v.escalation_mean_seconds,
            reopen_rate: v.reopen_rate,
            repeat_rate: v.repeat_rate,
            sla_attainment: v.sla_attainment,
            on_time_handling: v.on_time_handling,
        }
    }
}

impl From<&pb::ScoredUnit> for ScoredUnit {
    fn from(unit: &pb::ScoredUnit) -> Self {
        Self {
            key: unit.key.clone(),
            region: unit.region.clone(),
            sqs: unit.sqs,
            previous_sqs: unit.previous_sqs,
            rank: unit.rank,
            complaints: unit.complaints,
            components: unit
                .components
                .iter()
                .map(|c| ScoreComponent {
                    kpi: c.kpi.clone(),
                    value: c.value,
                    normalized: c.normalized,
                    weight: c.weight,
                    contribution: c.contribution,
                    target: c.target,
                    floor: c.floor,
                })
                .collect(),
            kpis: ComplaintKpis::from(unit.kpis.as_ref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Scorecard {
    /// League table: properties by score, best first.
    pub properties: Vec<ScoredUnit>,
    pub regions: Vec<ScoredUnit>,
    pub scope: Option<ScoredUnit>,
    /// Parts a backend could not deliver, e.g. `facilities: Unavailable ...`.
    pub missing: Vec<String>,
    /// With `granularity`: the scope's score per bucket, oldest first; empty otherwise.
    pub trend: Vec<TrendPoint>,
    /// Guest loyalty and recovery for the scope's properties; null when CRM did not answer.
    pub loyalty: Option<LoyaltySummary>,
    /// The period every part of the card covers (RFC 3339): the requested one widened to whole
    /// UTC days. The previous period is as long and ends at `period_start`.
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

/// CRM figures for guests who stayed at the scope's properties (counts with their rates).
#[derive(Debug, Serialize, ToSchema)]
pub struct LoyaltySummary {
    pub members: i64,
    pub repeat_guests: i64,
    pub staying_guests: i64,
    pub repeat_stay_rate: Option<f64>,
    pub recovered_guests: i64,
    pub recovered_returned: i64,
    pub unrecovered_guests: i64,
    pub unrecovered_returned: i64,
    pub recovered_return_rate: Option<f64>,
    pub unrecovered_return_rate: Option<f64>,
    pub points_earned: i64,
    pub points_redeemed: i64,
    /// When CRM computed these figures (RFC 3339). A summary is reused for up to
    /// `scorecard.loyalty_max_age_seconds` (default 60).
    pub as_of: Option<String>,
    /// The period the figures cover: within twice that age of the requested one.
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

impl From<&pb::LoyaltySummary> for LoyaltySummary {
    fn from(l: &pb::LoyaltySummary) -> Self {
        Self {
            members: l.members,
            repeat_guests: l.repeat_guests,
            staying_guests: l.staying_guests,
            repeat_stay_rate: l.repeat_stay_rate,
            recovered_guests: l.recovered_guests,
            recovered_returned: l.recovered_returned,
            unrecovered_guests: l.unrecovered_guests,
            unrecovered_returned: l.unrecovered_returned,
            recovered_return_rate: l.recovered_return_rate,
            unrecovered_return_rate: l.unrecovered_return_rate,
            points_earned: l.points_earned,
            points_redeemed: l.points_redeemed,
            as_of: instant(l.as_of.as_ref()),
            period_start: instant(l.period.as_ref().and_then(|p| p.start_time.as_ref())),
            period_end: instant(l.period.as_ref().and_then(|p| p.end_time.as_ref())),
        }
    }
}

impl From<&pb::Scorecard> for Scorecard {
    fn from(card: &pb::Scorecard) -> Self {
        Self {
            properties: card.properties.iter().map(ScoredUnit::from).collect(),
            regions: card.regions.iter().map(ScoredUnit::from).collect(),
            scope: card.scope.as_ref().map(ScoredUnit::from),
            missing: card.missing.clone(),
            trend: card.trend.iter().map(TrendPoint::from).collect(),
            loyalty: card.loyalty.as_ref().map(LoyaltySummary::from),
            period_start: instant(card.period.as_ref().and_then(|p| p.start_time.as_ref())),
            period_end: instant(card.period.as_ref().and_then(|p| p.end_time.as_ref())),
        }
    }
}

/// A complaint as a guest or staff app lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintSummary {
    pub complaint_id: String,
    pub property_id: String,
    /// received, acknowledged, investigating, remedy_planned, remedy_in_progress,
    /// waiting_on_guest, resolved, reopened, closed or cancelled.
    pub status: String,
    pub category: String,
    /// low, medium, high or critical.
    pub urgency: String,
    pub description: String,
    pub department: String,
    pub assignee: String,
    /// A running SLA clock has used most of its time.
    pub at_risk: bool,
    /// An SLA clock ran out.
    pub breached: bool,
    /// The earliest deadline among the running clocks.
    pub next_due_at: Option<String>,
    pub created_at: Option<String>,
    pub resolved_at: Option<String>,
    /// The complaint's version: send it back as `etag` with an action to have the action refused
    /// (409) if the complaint changed since.
    pub etag: String,
}

impl From<&complaints::Complaint> for ComplaintSummary {
    fn from(c: &complaints::Complaint) -> Self {
        let status = complaints::Status::try_from(c.status)
            .map(|s| enum_word(s.as_str_name(), "STATUS_"))
            .unwrap_or_default();
        let urgency = complaints::Urgency::try_from(c.urgency)
            .map(|s| enum_word(s.as_str_name(), "URGENCY_"))
            .unwrap_or_default();
        Self {
            complaint_id: c.complaint_id.clone(),
            property_id: c.property_id.clone(),
            status,
            category: c.category.clone(),
            urgency,
            description: c.description.clone(),
            department: c.department.clone(),
            assignee: c.assignee.clone(),
            at_risk: c.clocks.iter().any(|k| k.at_risk && k.stop_time.is_none()),
            breached: c.clocks.iter().any(|k| k.breached),
            next_due_at: instant(
                c.clocks
                    .iter()
                    .filter(|k| k.stop_time.is_none())
                    .filter_map(|k| k.due_time.as_ref())
                    .min_by_key(|t| (t.seconds, t.nanos)),
            ),
            created_at: instant(c.create_time.as_ref()),
            resolved_at: instant(c.resolve_time.as_ref()),
            etag: c.etag.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintList {
    pub complaints: Vec<ComplaintSummary>,
    /// Pass as `page_token` for the next page; empty on the last page.
    pub next_page_token: String,
}

/// One bucket of a score trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendPoint {
    pub start: Option<String>,
    pub end: Option<String>,
    pub sqs: Option<f64>,
    pub complaints: i64,
    /// The bucket's complaint KPIs.
    pub kpis: ComplaintKpis,
}

impl From<&pb::TrendPoint> for TrendPoint {
    fn from(p: &pb::TrendPoint) -> Self {
        Self {
            start: instant(p.bucket.as_ref().and_then(|b| b.start_time.as_ref())),
            end: instant(p.bucket.as_ref().and_then(|b| b.end_time.as_ref())),
            sqs: p.sqs,
            complaints: p.complaints,
            kpis: ComplaintKpis::from(p.kpis.as_ref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreTrend {
    pub points: Vec<TrendPoint>,
    pub missing: Vec<String>,
}

impl From<&pb::ScoreTrend> for ScoreTrend {
    fn from(t: &pb::ScoreTrend) -> Self {
        Self {
            points: t.points.iter().map(TrendPoint::from).collect(),
            missing: t.missing.clone(),
        }
    }
}

/// A complaint filed from a guest app.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewComplaint {
    /// Client-chosen id that makes a retry safe: the same id returns the first result.
    pub request_id: String,
    pub property_id: String,
    /// One of the property's categories, e.g. cleanliness, noise, maintenance.
    pub category: String,
    pub description: String,
    /// The guest's room, when known.
    #[serde(default)]
    pub room: String,
}

/// The guest's follow-up rating of a resolved complaint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Rating {
    /// 1–5.
    #[schema(minimum = 1, maximum = 5)]
    pub csat: i32,
    /// 0–10, optional.
    #[schema(minimum = 0, maximum = 10)]
    pub nps: Option<i32>,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preference {
    /// One of the chain's preference groups (by default room, floor, pillow, diet, amenities or
    /// communication).
    pub group: String,
    pub value: String,
    /// like, dislike, allergy or taboo.
    pub kind: String,
}

impl From<&crm::Preference> for Preference {
    fn from(p: &crm::Preference) -> Self {
        Self {
            group: p.group.clone(),
            value: p.value.clone(),
            kind: crm::Polarity::try_from(p.polarity)
                .map(|k| enum_word(k.as_str_name(), "POLARITY_"))
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Loyalty {
    /// new, regular, vip or strategic.
    pub tier: String,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub likes: Vec<Preference>,
    /// Dislikes, allergies and taboos.
    pub avoid: Vec<Preference>,
}

/// A service failure the guest had, and how it was recovered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Failure {
    pub complaint_id: String,
    pub property_id: String,
    pub category: String,
    pub occurred_at: Option<String>,
    /// Remedies given, e.g. `voucher 20.00 EUR`.
    pub remedies: Vec<String>,
    /// Follow-up rating 1–5; 0 when not rated.
    pub csat: i32,
    pub recovered: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomStatus {
    /// out_of_order or out_of_service.
    pub status: String,
    pub reason: String,
    pub since: Option<String>,
    pub expected_return: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrder {
    pub work_order_id: String,
    pub property_id: String,
    pub room: String,
    pub title: String,
    /// open, assigned, in_progress or on_hold.
    pub status: String,
    /// life_safety, guest_impacting, normal or low.
    pub priority: String,
    pub fix_due_at: Option<String>,
    pub fix_breached: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CareTask {
    pub care_task_id: String,
    /// birthday, anniversary, vip_arrival or recovery.
    pub kind: String,
    pub due_date: String,
    pub reason: String,
    /// open or done.
    pub state: String,
    pub assignee: String,
    pub outcome: String,
}

/// One guest of an arrival brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct BriefEntry {
    pub guest_id: String,
    pub name: String,
    /// new, regular, vip or strategic.
    pub tier: String,
    pub room: String,
    pub reservation: String,
    pub arrival_date: String,
    pub departure_date: String,
    /// True when the stay starts on the brief's date; false when the guest is in house.
    pub arriving: bool,
    /// What to look at first, most serious first: ROOM_UNAVAILABLE, ALLERGY, OPEN_COMPLAINT,
    /// UNRECOVERED_FAILURE, ROOM_WORK_ORDER, VIP, STRATEGIC, DISLIKE, BIRTHDAY, ANNIVERSARY.
    pub alerts: Vec<String>,
    pub likes: Vec<Preference>,
    pub avoid: Vec<Preference>,
    pub failures: Vec<Failure>,
    pub open_complaints: Vec<ComplaintSummary>,
    pub room_status: Option<RoomStatus>,
    pub room_work_orders: Vec<WorkOrder>,
    pub care_tasks: Vec<CareTask>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArrivalBrief {
    pub property_id: String,
    pub date: String,
    pub arriving: i32,
    pub in_house: i32,
    /// Arriving guests first, then in house; each by room.
    pub entries: Vec<BriefEntry>,
    /// Parts a backend could not deliver; everything else is complete.
    pub missing: Vec<String>,
}

fn brief_entry(e: &pb::BriefEntry) -> BriefEntry {
    let arrival = e.arrival.clone().unwrap_or_default();
    let stay = arrival.stay.unwrap_or_default();
    let guest = arrival.guest.unwrap_or_default();
    BriefEntry {
        name: format!("{} {}", guest.given_name, guest.family_name)
            .trim()
            .to_string(),
        guest_id: guest.guest_id,
        tier: guest.tier,
        room: stay.room,
        reservation: stay.pms_reservation_id,
        arrival_date: stay.arrival_date,
        departure_date: stay.departure_date,
        arriving: arrival.arriving,
        alerts: e.alerts.clone(),
        likes: guest.preferences.iter().map(Preference::from).collect(),
        avoid: guest.avoid.iter().map(Preference::from).collect(),
        failures: guest
            .failures
            .iter()
            .map(|f| Failure {
                complaint_id: f.complaint_id.clone(),
                property_id: f.property_id.clone(),
                category: f.category.clone(),
                occurred_at: instant(f.occur_time.as_ref()),
                remedies: f.remedies.clone(),
                csat: f.csat,
                recovered: f.recovered,
            })
            .collect(),
        open_complaints: e
            .open_complaints
            .iter()
            .map(ComplaintSummary::from)
            .collect(),
        room_status: e
            .room_status
            .as_ref()
            .map(|s: &facilities::RoomStatus| RoomStatus {
                status: s.status.clone(),
                reason: s.reason.clone(),
                since: instant(s.since.as_ref()),
                expected_return: instant(s.expected_return.as_ref()),
            }),
        room_work_orders: e.room_work_orders.iter().map(WorkOrder::from).collect(),
        care_tasks: e
            .care_tasks
            .iter()
            .map(|t| CareTask {
                care_task_id: t.care_task_id.clone(),
                kind: crm::CareTaskKind::try_from(t.kind)
                    .map(|k| enum_word(k.as_str_name(), "CARE_TASK_KIND_"))
                    .unwrap_or_default(),
                due_date: t.due_date.clone(),
                reason: t.reason.clone(),
                state: crm::CareTaskState::try_from(t.state)
                    .map(|s| enum_word(s.as_str_name(), "CARE_TASK_STATE_"))
                    .unwrap_or_default(),
                assignee: t.assignee.clone(),
                outcome: t.outcome.clone(),
            })
            .collect(),
    }
}

impl From<&pb::ArrivalBrief> for ArrivalBrief {
    fn from(b: &pb::ArrivalBrief) -> Self {
        Self {
            property_id: b.property_id.clone(),
            date: b.date.clone(),
            arriving: b.arriving,
            in_house: b.in_house,
            entries: b.entries.iter().map(brief_entry).collect(),
            missing: b.missing.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_become_lower_case_words() {
        assert_eq!(
            enum_word("STATUS_REMEDY_PLANNED", "STATUS_"),
            "remedy_planned"
        );
        assert_eq!(enum_word("POLARITY_ALLERGY", "POLARITY_"), "allergy");
    }

    #[test]
    fn instants_are_rfc3339_utc() {
        let t = prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        };
        assert_eq!(instant(Some(&t)).as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(instant(None), None);
    }
}

impl From<&facilities::WorkOrder> for WorkOrder {
    fn from(w: &facilities::WorkOrder) -> Self {
        Self {
            work_order_id: w.work_order_id.clone(),
            property_id: w.property_id.clone(),
            room: w.room.clone(),
            title: w.title.clone(),
            status: w.status.clone(),
            priority: facilities::Priority::try_from(w.priority)
                .map(|p| enum_word(p.as_str_name(), "PRIORITY_"))
                .unwrap_or_default(),
            fix_due_at: instant(w.fix_due_time.as_ref()),
            fix_breached: w.fix_breached,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderList {
    /// Most urgent repair deadline first.
    pub work_orders: Vec<WorkOrder>,
    /// Pass as `page_token` for the next page; empty on the last.
    pub next_page_token: String,
}

/// A step in a complaint's recovery.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ComplaintAction {
    /// acknowledge, start_investigation, plan_remedy, start_remedy, wait_for_guest,
    /// guest_responded, resolve, reopen, close or cancel.
    #[schema(
        pattern = "^(acknowledge|start_investigation|plan_remedy|start_remedy|wait_for_guest|guest_responded|resolve|reopen|close|cancel)$"
    )]
    pub action: String,
    /// Required to reopen or cancel.
    #[serde(default)]
    pub reason: String,
    /// The etag last read: the action applies only if nobody changed the complaint since.
    #[serde(default)]
    pub etag: String,
}

/// A step in a work order's life.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WorkOrderAction {
    /// assign, start, hold, resume, complete, verify or cancel.
    #[schema(pattern = "^(assign|start|hold|resume|complete|verify|cancel)$")]
    pub action: String,
    /// With assign: `team:<name>` or `contractor:<name>`.
    #[serde(default)]
    pub assignee: String,
    /// With hold and cancel.
    #[serde(default)]
    pub reason: String,
    /// With complete: labour and parts in minor units of `currency`.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub labour_minor: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub parts_minor: i64,
    /// ISO 4217, required with a cost.
    #[serde(default)]
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inspection {
    pub inspection_id: String,
    pub plan_id: String,
    pub property_id: String,
    pub asset_id: String,
    pub due_at: Option<String>,
    /// due or done.
    pub status: String,
    pub overdue: bool,
    pub done_at: Option<String>,
    /// Codes of the checklist items that failed.
    pub failed_items: Vec<String>,
    pub work_order_ids: Vec<String>,
}

impl From<&facilities::Inspection> for Inspection {
    fn from(i: &facilities::Inspection) -> Self {
        Self {
            inspection_id: i.inspection_id.clone(),
            plan_id: i.plan_id.clone(),
            property_id: i.property_id.clone(),
            asset_id: i.asset_id.clone(),
            due_at: instant(i.due_time.as_ref()),
            status: i.status.clone(),
            overdue: i.overdue,
            done_at: instant(i.done_time.as_ref()),
            failed_items: i.failed_items.clone(),
            work_order_ids: i.work_order_ids.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InspectionList {
    pub inspections: Vec<Inspection>,
    /// Pass as `page_token` for the next page; empty on the last.
    pub next_page_token: String,
}

/// One posting of the guest's points ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub entry_id: i64,
    /// earn, bonus, goodwill, redeem, expire or adjust.
    pub kind: String,
    /// Positive for credits, negative for debits.
    pub points: i64,
    pub balance_after: i64,
    pub reason: String,
    pub posted_at: Option<String>,
}

impl From<&crm::LedgerEntry> for LedgerEntry {
    fn from(e: &crm::LedgerEntry) -> Self {
        Self {
            entry_id: e.entry_id,
            kind: crm::EntryKind::try_from(e.kind)
                .map(|k| enum_word(k.as_str_name(), "ENTRY_KIND_"))
                .unwrap_or_default(),
            points: e.points,
            balance_after: e.balance_after,
            reason: e.reason.clone(),
            posted_at: instant(e.post_time.as_ref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    /// In posting order, oldest first.
    pub entries: Vec<LedgerEntry>,
    /// Pass as `page_token` for the next page; empty on the last.
    pub next_page_token: String,
}

/// One event of a service's log, for BI exports.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedEvent {
    /// Position in the producing service's log (gap-free there; a scoped export skips events
    /// outside the caller's scope).
    pub position: i64,
    pub event_id: String,
    /// e.g. complaints.complaint.filed.
    pub event_type: String,
    /// The resource, e.g. complaints/0191c2….
    pub subject: String,
    pub chain_id: String,
    pub property_id: String,
    pub occurred_at: Option<String>,
    /// Protobuf type of the payload, e.g. type.googleapis.com/guestloop.complaints.v1.ComplaintChanged.
    pub payload_type: String,
    /// The protobuf-encoded payload, base64 (standard alphabet); decode it with the .proto files.
    pub payload_base64: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<ExportedEvent>,
    /// Pass as `after` for the next page; when it equals the `after` you sent, you are at the end.
    pub next_after: i64,
}
