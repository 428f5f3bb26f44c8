//! `GetArrivalBrief`: the "anticipate needs before arrival" list for a property and a date. CRM's
//! arrivals (stays and profiles) are the spine; open complaints, room work orders and statuses,
//! and care tasks are fetched in parallel on the caller's own token and joined per guest and room.
//! A backend that fails is named in `missing` and its part is left empty, never guessed.

use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone, Utc};
use guestloop_kit::auth::{principal, BearerToken};
use guestloop_kit::{ApiError, ApiResult};
use guestloop_proto::complaints::v1 as complaints;
use guestloop_proto::complaints::v1::complaints_service_client::ComplaintsServiceClient;
use guestloop_proto::crm::v1 as crm;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use guestloop_proto::facilities::v1 as facilities;
use guestloop_proto::facilities::v1::facilities_service_client::FacilitiesServiceClient;
use guestloop_proto::gateway::v1 as pb;
use tonic::Request;

use crate::Backends;

/// At most this many pages of 500 of any list are read (5,000 rows).
const MAX_PAGES: usize = 10;
/// Failures older than this before the date no longer raise an alert.
const FAILURE_ALERT_DAYS: i64 = 90;

fn why(service: &str, status: &tonic::Status) -> String {
    format!("{service}: {:?} {}", status.code(), status.message())
}

/// Statuses in which a complaint is still open.
pub const OPEN_STATUSES: [complaints::Status; 7] = [
    complaints::Status::Received,
    complaints::Status::Acknowledged,
    complaints::Status::Investigating,
    complaints::Status::RemedyPlanned,
    complaints::Status::RemedyInProgress,
    complaints::Status::WaitingOnGuest,
    complaints::Status::Reopened,
];

/// The alerts for one guest, most serious first.
pub fn alerts(entry: &pb::BriefEntry, date: NaiveDate) -> Vec<String> {
    let mut alerts: Vec<&str> = Vec::new();
    let guest = entry.arrival.as_ref().and_then(|a| a.guest.as_ref());
    let avoid = |polarity: crm::Polarity| {
        guest.is_some_and(|g| g.avoid.iter().any(|p| p.polarity == polarity as i32))
    };
    if entry.room_status.is_some() {
        alerts.push("ROOM_UNAVAILABLE");
    }
    if avoid(crm::Polarity::Allergy) {
        alerts.push("ALLERGY");
    }
    if !entry.open_complaints.is_empty() {
        alerts.push("OPEN_COMPLAINT");
    }
    let since = date - chrono::Duration::days(FAILURE_ALERT_DAYS);
    let unrecovered = guest.is_some_and(|g| {
        g.failures.iter().any(|f| {
            let day = f
                .occur_time
                .as_ref()
                .and_then(|t| Utc.timestamp_opt(t.seconds, 0).single())
                .map(|t| t.date_naive());
            let recent = day.is_some_and(|d| since <= d && d <= date);
            recent && (!f.recovered || (1..=2).contains(&f.csat))
        })
    });
    if unrecovered {
        alerts.push("UNRECOVERED_FAILURE");
    }
    if !entry.room_work_orders.is_empty() {
        alerts.push("ROOM_WORK_ORDER");
    }
    match guest {
        Some(g) if g.tier == "strategic" || g.strategic_manual => alerts.push("STRATEGIC"),
        Some(g) if g.tier == "vip" => alerts.push("VIP"),
        _ => {}
    }
    if avoid(crm::Polarity::Dislike) || avoid(crm::Polarity::Taboo) {
        alerts.push("DISLIKE");
    }
    for (kind, label) in [
        (crm::CareTaskKind::Birthday, "BIRTHDAY"),
        (crm::CareTaskKind::Anniversary, "ANNIVERSARY"),
    ] {
        if entry.care_tasks.iter().any(|t| t.kind == kind as i32) {
            alerts.push(label);
        }
    }
    alerts.into_iter().map(str::to_string).collect()
}

/// The arrivals of `date`, and whether there were more than [`MAX_PAGES`] pages of them.
async fn arrivals(
    backends: &Backends,
    token: &str,
    property_id: &str,
    date: &str,
) -> Result<(Vec<crm::Arrival>, bool), tonic::Status> {
    let channel = backends
        .as_caller("crm", token)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let client = CrmServiceClient::new(channel);
    let mut all = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let request = crm::ListArrivalsRequest {
            property_id: property_id.to_string(),
            date: date.to_string(),
            page_size: 500,
            page_token,
        };
        let page = backends
            .reads
            .read("crm", &client, &request, |mut c, r| async move {
                c.list_arrivals(r).await
            })
            .await?;
        all.extend(page.arrivals);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    Ok((all, !page_token.is_empty()))
}

/// The property's open complaints, and whether there were more than [`MAX_PAGES`] pages.
async fn open_complaints(
    backends: &Backends,
    token: &str,
    property_id: &str,
) -> Result<(Vec<complaints::Complaint>, bool), String> {
    let channel = backends
        .as_caller("complaints", token)
        .map_err(|e| format!("complaints: {e}"))?;
    let client = ComplaintsServiceClient::new(channel);
    let mut all = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let request = complaints::ListComplaintsRequest {
            property_ids: vec![property_id.to_string()],
            statuses: OPEN_STATUSES.iter().map(|s| *s as i32).collect(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        let page = backends
            .reads
            .read("complaints", &client, &request, |mut c, r| async move {
                c.list_complaints(r).await
            })
            .await
            .map_err(|s| why("complaints", &s))?;
        all.extend(page.complaints);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    Ok((all, !page_token.is_empty()))
}

type RoomFacts = (Vec<facilities::WorkOrder>, Vec<facilities::RoomStatus>);

async fn room_facts(
    backends: &Backends,
    token: &str,
    property_id: &str,
) -> Result<RoomFacts, String> {
    let channel = backends
        .as_caller("facilities", token)
        .map_err(|e| format!("facilities: {e}"))?;
    let client = FacilitiesServiceClient::new(channel);
    // Every open order, page by page: a room whose order sorts past the first page still
    // raises its alert.
    let mut orders = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut page_token = String::new();
    loop {
        let open_orders = facilities::ListWorkOrdersRequest {
            property_id: property_id.to_string(),
            open_only: true,
            page_size: 1000,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = backends
            .reads
            .read("facilities", &client, &open_orders, |mut c, r| async move {
                c.list_work_orders(r).await
            })
            .await
            .map_err(|s| why("facilities", &s))?;
        // An order whose repair deadline moved while paging can come twice: once each.
        orders.extend(
            page.work_orders
                .into_iter()
                .filter(|o| seen.insert(o.work_order_id.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let unavailable_rooms = facilities::ListRoomStatusesRequest {
        property_id: property_id.to_string(),
        rooms: Vec::new(),
        unavailable_only: true,
    };
    let rooms = backends
        .reads
        .read(
            "facilities",
            &client,
            &unavailable_rooms,
            |mut c, r| async move { c.list_room_statuses(r).await },
        )
        .await
        .map_err(|s| why("facilities", &s))?
        .rooms;
    Ok((orders, rooms))
}

/// The care tasks of `reservations`, and whether some list had more than [`MAX_PAGES`] pages.
async fn care_tasks(
    backends: &Backends,
    token: &str,
    property_id: &str,
    reservations: Vec<String>,
) -> Result<(Vec<crm::CareTask>, bool), String> {
    let channel = backends
        .as_caller("crm", token)
        .map_err(|e| format!("crm: {e}"))?;
    let client = CrmServiceClient::new(channel);
    let mut all = Vec::new();
    let mut truncated = false;
    for chunk in reservations.chunks(500) {
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let request = crm::ListCareTasksRequest {
                property_id: property_id.to_string(),
                pms_reservation_ids: chunk.to_vec(),
                page_size: 500,
                page_token,
                ..Default::default()
            };
            let page = backends
                .reads
                .read("crm", &client, &request, |mut c, r| async move {
                    c.list_care_tasks(r).await
                })
                .await
                .map_err(|s| why("crm care tasks", &s))?;
            all.extend(page.tasks);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
        truncated |= !page_token.is_empty();
    }
    Ok((all, truncated))
}

pub async fn get(
    backends: &Backends,
    request: Request<pb::GetArrivalBriefRequest>,
) -> ApiResult<pb::ArrivalBrief> {
    let principal = principal(&request)?.clone();
    let token = request
        .extensions()
        .get::<BearerToken>()
        .map(|t| t.0.clone())
        .ok_or_else(|| ApiError::Unauthenticated("no bearer token".into()))?;
    let request = request.into_inner();
    if request.property_id.is_empty() {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let date = NaiveDate::parse_from_str(&request.date, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid("date", "must be a date YYYY-MM-DD"))?;
    principal.require_property(&request.property_id)?;
    let property = request.property_id.as_str();

    let (arrivals, complaints, rooms) = tokio::join!(
        arrivals(backends, &token, property, &request.date),
        open_complaints(backends, &token, property),
        room_facts(backends, &token, property),
    );
    // Without CRM there is no list of guests to brief on.
    let mut missing = Vec::new();
    let cut = |what: &str| {
        format!(
            "{what}: more than {} rows, the rest left out",
            MAX_PAGES * 500
        )
    };
    let (arrivals, arrivals_cut) = arrivals.map_err(|status| match status.code() {
        tonic::Code::PermissionDenied => ApiError::PermissionDenied(why("crm", &status)),
        tonic::Code::InvalidArgument => ApiError::invalid("date", why("crm", &status)),
        _ => ApiError::Unavailable(format!(
            "the arrivals list is unavailable, so there is no brief ({})",
            why("crm", &status)
        )),
    })?;
    let reservations: Vec<String> = arrivals
        .iter()
        .filter_map(|a| a.stay.as_ref().map(|s| s.pms_reservation_id.clone()))
        .collect();
    if arrivals_cut {
        missing.push(cut("crm arrivals"));
    }
    let tasks = if reservations.is_empty() {
        Ok((Vec::new(), false))
    } else {
        care_tasks(backends, &token, property, reservations).await
    };

    let complaints = match complaints {
        Ok((complaints, truncated)) => {
            if truncated {
                missing.push(cut("complaints"));
            }
            complaints
        }
        Err(e) => {
            missing.push(e);
            Vec::new()
        }
    };
    let (orders, statuses) = rooms.unwrap_or_else(|e| {
        missing.push(e);
        (Vec::new(), Vec::new())
    });
    let tasks = match tasks {
        Ok((tasks, truncated)) => {
            if truncated {
                missing.push(cut("crm care tasks"));
            }
            tasks
        }
        Err(e) => {
            missing.push(e);
            Vec::new()
        }
    };

    let mut complaints_by_guest: HashMap<String, Vec<complaints::Complaint>> = HashMap::new();
    for c in complaints {
        if let Some(guest_id) = c.guest.as_ref().map(|g| g.guest_id.clone()) {
            complaints_by_guest.entry(guest_id).or_default().push(c);
        }
    }
    let mut orders_by_room: HashMap<String, Vec<facilities::WorkOrder>> = HashMap::new();
    for o in orders.into_iter().filter(|o| !o.room.is_empty()) {
        orders_by_room.entry(o.room.clone()).or_default().push(o);
    }
    let status_by_room: HashMap<String, facilities::RoomStatus> =
        statuses.into_iter().map(|s| (s.room.clone(), s)).collect();
    let mut tasks_by_stay: HashMap<String, Vec<crm::CareTask>> = HashMap::new();
    for t in tasks {
        tasks_by_stay
            .entry(t.pms_reservation_id.clone())
            .or_default()
            .push(t);
    }

    let mut entries: Vec<pb::BriefEntry> = arrivals
        .into_iter()
        .map(|arrival| {
            let stay = arrival.stay.clone().unwrap_or_default();
            let guest_id = arrival
                .guest
                .as_ref()
                .map(|g| g.guest_id.clone())
                .unwrap_or_default();
            let mut entry = pb::BriefEntry {
                // A guest in two rooms has their complaints on each.
                open_complaints: complaints_by_guest
                    .get(&guest_id)
                    .cloned()
                    .unwrap_or_default(),
                room_work_orders: if stay.room.is_empty() {
                    Vec::new()
                } else {
                    orders_by_room.get(&stay.room).cloned().unwrap_or_default()
                },
                room_status: status_by_room.get(&stay.room).cloned(),
                care_tasks: tasks_by_stay
                    .remove(&stay.pms_reservation_id)
                    .unwrap_or_default(),
                arrival: Some(arrival),
                alerts: Vec::new(),
            };
            entry.alerts = alerts(&entry, date);
            entry
        })
        .collect();
    // Arriving first, then in house; CRM already orders each by room.
    entries.sort_by_key(|e| !e.arrival.as_ref().is_some_and(|a| a.arriving));
    let arriving = entries
        .iter()
        .filter(|e| e.arrival.as_ref().is_some_and(|a| a.arriving))
        .count();
    let total = entries.len();
    Ok(pb::ArrivalBrief {
        property_id: request.property_id,
        date: request.date,
        arriving: i32::try_from(arriving).unwrap_or(i32::MAX),
        in_house: i32::try_from(total - arriving).unwrap_or(i32::MAX),
        entries,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2031, 3, 11).unwrap_or_default()
    }

    fn entry(guest: crm::Guest) -> pb::BriefEntry {
        pb::BriefEntry {
            arrival: Some(crm::Arrival {
                stay: Some(crm::Stay::default()),
                guest: Some(guest),
                arriving: true,
            }),
            ..Default::default()
        }
    }

    fn pref(polarity: crm::Polarity) -> crm::Preference {
        crm::Preference {
            polarity: polarity as i32,
            ..Default::default()
        }
    }

    fn failure(days_before: i64, recovered: bool, csat: i32) -> crm::ServiceFailure {
        let at = date().and_hms_opt(12, 0, 0).unwrap_or_default().and_utc()
            - chrono::Duration::days(days_before);
        crm::ServiceFailure {
            occur_time: Some(prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: 0,
            }),
            recovered,
            csat,
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_guest_raises_nothing() {
        assert!(alerts(&entry(crm::Guest::default()), date()).is_empty());
    }

    #[test]
    fn alerts_come_most_serious_first() {
        let mut e = entry(crm::Guest {
            tier: "vip".into(),
            avoid: vec![pref(crm::Polarity::Taboo), pref(crm::Polarity::Allergy)],
            failures: vec![failure(10, true, 1)],
            ..Default::default()
        });
        e.room_status = Some(facilities::RoomStatus::default());
        e.open_complaints = vec![complaints::Complaint::default()];
        e.room_work_orders = vec![facilities::WorkOrder::default()];
        e.care_tasks = vec![crm::CareTask {
            kind: crm::CareTaskKind::Birthday as i32,
            ..Default::default()
        }];
        assert_eq!(
            alerts(&e, date()),
            vec![
                "ROOM_UNAVAILABLE",
                "ALLERGY",
                "OPEN_COMPLAINT",
                "UNRECOVERED_FAILURE",
                "ROOM_WORK_ORDER",
                "VIP",
                "DISLIKE",
                "BIRTHDAY"
            ]
        );
    }

    #[test]
    fn only_recent_unrecovered_failures_alert() {
        let with = |f| {
            alerts(
                &entry(crm::Guest {
                    failures: vec![f],
                    ..Default::default()
                }),
                date(),
            )
        };
        assert_eq!(with(failure(5, false, 0)), vec!["UNRECOVERED_FAILURE"]);
        assert!(with(failure(5, true, 4)).is_empty());
        assert!(
            with(failure(5, true, 0)).is_empty(),
            "resolved, not yet rated"
        );
        assert!(with(failure(120, false, 0)).is_empty());
    }

    #[test]
    fn manual_strategic_outranks_the_earned_tier() {
        let e = entry(crm::Guest {
            tier: "vip".into(),
            strategic_manual: true,
            ..Default::default()
        });
        assert_eq!(alerts(&e, date()), vec!["STRATEGIC"]);
    }
}
