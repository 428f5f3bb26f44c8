//! The SLA clocks of one complaint: which start and stop with which status change, and their
//! state (due time, remaining, at-risk, breached) recomputed from the whole status history in
//! working time with the shared calculator in the kit.
//!
//! Every clock starts when the complaint is filed. The acknowledge clock stops when the
//! complaint leaves `received`; first investigation when investigation starts (or anything
//! later); remedy plan when a remedy is planned (or later); answer-to-guest and resolution when
//! it is resolved. Time in `waiting_on_guest` is excluded. A reopen restarts the answer and
//! resolution clocks for the new cycle. A cancellation drops the clocks still running.

use chrono::{DateTime, Duration, Utc};
use guestloop_kit::worktime::{
    evaluate, instant_at_fraction, pauses_from_history, ClockHistory, ClockOutcome, SlaTarget,
};
use guestloop_proto::complaints::v1 as pb;

use crate::settings::EffectiveSettings;
use crate::store::ClockRow;

pub const STAGES: [pb::Stage; 5] = [
    pb::Stage::Acknowledge,
    pb::Stage::FirstInvestigation,
    pb::Stage::RemedyPlan,
    pb::Stage::AnswerToGuest,
    pb::Stage::Resolution,
];

/// The state that pauses clocks.
pub const PAUSING_STATUS: &str = "waiting_on_guest";

fn stage_of(row: &ClockRow) -> pb::Stage {
    pb::Stage::try_from(i32::from(row.stage)).unwrap_or(pb::Stage::Unspecified)
}

fn target_of(row: &ClockRow) -> SlaTarget {
    if row.target_days > 0 {
        SlaTarget::WorkingDays(row.target_days as u32)
    } else {
        SlaTarget::WorkingTime(Duration::minutes(i64::from(row.target_minutes)))
    }
}

/// The statuses that complete a stage.
fn completes(stage: pb::Stage, status: &str) -> bool {
    match stage {
        pb::Stage::Acknowledge => !matches!(status, "received" | "cancelled"),
        pb::Stage::FirstInvestigation => {
            matches!(
                status,
                "investigating" | "remedy_planned" | "remedy_in_progress" | "resolved" | "closed"
            )
        }
        pb::Stage::RemedyPlan => matches!(
            status,
            "remedy_planned" | "remedy_in_progress" | "resolved" | "closed"
        ),
        pb::Stage::AnswerToGuest | pb::Stage::Resolution => matches!(status, "resolved" | "closed"),
        pb::Stage::Unspecified => false,
    }
}

/// The five clocks of a new complaint.
pub fn start_all(
    settings: &EffectiveSettings,
    urgency: pb::Urgency,
    department: &str,
    now: DateTime<Utc>,
) -> Vec<ClockRow> {
    STAGES
        .iter()
        .filter_map(|stage| {
            let target = settings.target_for(*stage, urgency)?;
            let (target_minutes, target_days) = stored_target(&target);
            let calendar = settings.calendar_for(*stage, department, &target);
            let history = ClockHistory {
                start: now,
                pauses: Vec::new(),
            };
            let due_at = instant_at_fraction(calendar, &target, &history, 1.0).unwrap_or(now);
            let at_risk_at =
                instant_at_fraction(calendar, &target, &history, settings.at_risk_ratio);
            Some(ClockRow {
                stage: *stage as i16,
                target_minutes,
                target_days,
                started_at: now,
                stopped_at: None,
                due_at,
                breached_at: None,
                at_risk_at,
            })
        })
        .collect()
}

/// A target as a clock row stores it: (minutes, working days).
fn stored_target(target: &SlaTarget) -> (i32, i32) {
    match target {
        SlaTarget::WorkingTime(d) => (i32::try_from(d.num_minutes()).unwrap_or(i32::MAX), 0),
        SlaTarget::WorkingDays(n) => (0, i32::try_from(*n).unwrap_or(i32::MAX)),
    }
}

/// Gives a running resolution clock the target of `urgency` (the complaint was reclassified);
/// a stopped clock keeps the target its cycle was measured against.
pub fn retarget_resolution(
    clocks: &mut [ClockRow],
    settings: &EffectiveSettings,
    urgency: pb::Urgency,
) {
    let Some(target) = settings.target_for(pb::Stage::Resolution, urgency) else {
        return;
    };
    let (target_minutes, target_days) = stored_target(&target);
    for clock in clocks
        .iter_mut()
        .filter(|c| c.stopped_at.is_none() && stage_of(c) == pb::Stage::Resolution)
    {
        clock.target_minutes = target_minutes;
        clock.target_days = target_days;
    }
}

/// An answer or resolution cycle a reopen ended: met or missed, it stays counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedCycle {
    pub stage: i16,
    pub started_at: DateTime<Utc>,
    pub met: bool,
}

/// Applies a status change to the clocks: stops completed stages, restarts the answer and
/// resolution clocks on reopen (returning the outcomes of the cycles that ended, to keep). On
/// cancel a running clock still within its deadline is dropped (a withdrawn complaint owes
/// nothing more), while one already past it is stopped and kept: a commitment missed before the
/// cancellation stays missed.
pub fn on_status_change(
    clocks: &mut Vec<ClockRow>,
    to_status: &str,
    now: DateTime<Utc>,
) -> Vec<FinishedCycle> {
    let mut finished = Vec::new();
    match to_status {
        "cancelled" => {
            clocks.retain(|c| c.stopped_at.is_some() || c.breached_at.is_some() || c.due_at < now);
            for clock in clocks.iter_mut().filter(|c| c.stopped_at.is_none()) {
                clock.stopped_at = Some(now);
            }
        }
        "reopened" => {
            for clock in clocks.iter_mut() {
                if matches!(
                    stage_of(clock),
                    pb::Stage::AnswerToGuest | pb::Stage::Resolution
                ) {
                    let missed = clock.breached_at.is_some()
                        || clock.stopped_at.is_some_and(|stop| stop > clock.due_at);
                    if missed || clock.stopped_at.is_some() {
                        finished.push(FinishedCycle {
                            stage: clock.stage,
                            started_at: clock.started_at,
                            met: !missed,
                        });
                    }
                    clock.started_at = now;
                    clock.stopped_at = None;
                    clock.breached_at = None;
                }
            }
        }
        status => {
            for clock in clocks.iter_mut() {
                if clock.stopped_at.is_none() && completes(stage_of(clock), status) {
                    clock.stopped_at = Some(now);
                }
            }
        }
    }
    finished
}

/// Escalation thresholds of a stage: the resolution clock escalates at 50, 75 and 100 %;
/// the other stages when they breach.
pub fn thresholds(stage: pb::Stage) -> &'static [u32] {
    match stage {
        pb::Stage::Resolution => &[50, 75, 100],
        _ => &[100],
    }
}

/// The trigger key of a threshold in a resolution cycle, e.g. `resolution#0:75`.
pub fn trigger_key(stage: pb::Stage, cycle: i32, percent: u32) -> String {
    let name = match stage {
        pb::Stage::Acknowledge => "acknowledge",
        pb::Stage::FirstInvestigation => "first_investigation",
        pb::Stage::RemedyPlan => "remedy_plan",
        pb::Stage::AnswerToGuest => "answer_to_guest",
        pb::Stage::Resolution => "resolution",
        pb::Stage::Unspecified => "unknown",
    };
    format!("{name}#{cycle}:{percent}")
}

/// Clock states for clients, updated due times, and when the watcher must look next.
pub struct Refreshed {
    pub clocks: Vec<pb::SlaClock>,
    pub next_escalation_at: Option<DateTime<Utc>>,
}

/// Brings every clock's stored due time up to `now` from the status history so far: a clock
/// paused while the complaint waits on the guest is due later than when it was last saved. A
/// cancellation reads these to tell a deadline already missed from one still ahead.
pub fn bring_due_times_up_to(
    clocks: &mut [ClockRow],
    settings: &EffectiveSettings,
    department: &str,
    status_history: &[(DateTime<Utc>, String)],
    now: DateTime<Utc>,
) {
    refresh(clocks, settings, department, status_history, &[], 0, now);
}

/// Recomputes every clock from the complete status history.
pub fn refresh(
    clocks: &mut [ClockRow],
    settings: &EffectiveSettings,
    department: &str,
    status_history: &[(DateTime<Utc>, String)],
    fired: &[String],
    cycle: i32,
    now: DateTime<Utc>,
) -> Refreshed {
    let history: Vec<(DateTime<Utc>, bool)> = status_history
        .iter()
        .map(|(at, status)| (*at, status == PAUSING_STATUS))
        .collect();
    let all_pauses = pauses_from_history(&history);
    let mut states = Vec::with_capacity(clocks.len());
    let mut next: Option<DateTime<Utc>> = None;
    for clock in clocks.iter_mut() {
        let stage = stage_of(clock);
        let target = target_of(clock);
        let calendar = settings.calendar_for(stage, department, &target);
        let pauses = all_pauses
            .iter()
            .filter(|p| p.end.is_none_or(|end| end > clock.started_at))
            .cloned()
            .collect();
        let clock_history = ClockHistory {
            start: clock.started_at,
            pauses,
        };
        let mut status = evaluate(
            calendar,
            &target,
            &clock_history,
            clock.stopped_at,
            now,
            settings.at_risk_ratio,
        );
        // A clock stopped before this change keeps the deadline it was measured against: a
        // later change of department, calendar or holidays does not turn a met commitment into
        // a missed one (or back). One stopped now gets its deadline from the calendar above.
        match clock.stopped_at {
            Some(stop) if stop < now => {
                status.due_at = clock.due_at;
                status.outcome = if stop <= clock.due_at {
                    ClockOutcome::Met
                } else {
                    ClockOutcome::Missed
                };
                status.breached = status.outcome == ClockOutcome::Missed;
            }
            _ => {
                clock.due_at = status.due_at;
                clock.at_risk_at =
                    instant_at_fraction(calendar, &target, &clock_history, settings.at_risk_ratio);
            }
        }
        if clock.stopped_at.is_none() && !status.paused {
            let cycle_for_stage =
                if stage == pb::Stage::Resolution || stage == pb::Stage::AnswerToGuest {
                    cycle
                } else {
                    0
                };
            for percent in thresholds(stage) {
                if fired.contains(&trigger_key(stage, cycle_for_stage, *percent)) {
                    continue;
                }
                if let Some(at) = instant_at_fraction(
                    calendar,
                    &target,
                    &clock_history,
                    f64::from(*percent) / 100.0,
                ) {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                break;
            }
        }
        let missed = clock.breached_at.is_some() || status.outcome == ClockOutcome::Missed;
        states.push(pb::SlaClock {
            stage: stage as i32,
            start_time: Some(guestloop_kit::time::to_timestamp(clock.started_at)),
            due_time: Some(guestloop_kit::time::to_timestamp(status.due_at)),
            stop_time: clock.stopped_at.map(guestloop_kit::time::to_timestamp),
            remaining_seconds: status.remaining.num_seconds(),
            elapsed_fraction: status.fraction_elapsed,
            paused: status.paused,
            at_risk: status.at_risk,
            breached: status.breached || clock.breached_at.is_some(),
            outcome: match status.outcome {
                ClockOutcome::Running if clock.breached_at.is_some() => pb::ClockOutcome::Running,
                ClockOutcome::Running => pb::ClockOutcome::Running,
                _ if missed => pb::ClockOutcome::Missed,
                _ => pb::ClockOutcome::Met,
            } as i32,
        });
    }
    Refreshed {
        clocks: states,
        next_escalation_at: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{default_settings, effective};

    #[test]
    fn retargeting_changes_only_the_running_resolution_clock() {
        let settings = effective(&default_settings("paris")).expect("defaults are valid");
        let now = chrono::DateTime::UNIX_EPOCH;
        let mut clocks = start_all(&settings, pb::Urgency::Medium, "", now);
        let resolution = |clocks: &[ClockRow]| {
            clocks
                .iter()
                .find(|c| stage_of(c) == pb::Stage::Resolution)
                .map(|c| (c.target_minutes, c.target_days))
        };
        assert_eq!(resolution(&clocks), Some((24 * 60, 0)));
        let acknowledge_before = clocks[0].target_minutes;

        retarget_resolution(&mut clocks, &settings, pb::Urgency::Critical);
        assert_eq!(resolution(&clocks), Some((30, 0)));
        assert_eq!(clocks[0].target_minutes, acknowledge_before);
        retarget_resolution(&mut clocks, &settings, pb::Urgency::Low);
        assert_eq!(resolution(&clocks), Some((0, 3)));

        // A stopped clock keeps the target its cycle was measured against.
        on_status_change(&mut clocks, "resolved", now + Duration::hours(1));
        retarget_resolution(&mut clocks, &settings, pb::Urgency::Critical);
        assert_eq!(resolution(&clocks), Some((0, 3)));
    }

    #[test]
    fn a_cancellation_keeps_the_deadlines_already_missed() {
        let start = Utc::now() - Duration::hours(3);
        let clock = |stage: pb::Stage, due_hours: i64, stopped: bool, breached: bool| ClockRow {
            stage: stage as i16,
            target_minutes: 60,
            target_days: 0,
            started_at: start,
            stopped_at: stopped.then(|| start + Duration::minutes(10)),
            due_at: start + Duration::hours(due_hours),
            breached_at: breached.then(|| start + Duration::hours(due_hours)),
            at_risk_at: None,
        };
        let mut clocks = vec![
            clock(pb::Stage::Acknowledge, 1, true, false),
            clock(pb::Stage::FirstInvestigation, 2, false, true),
            clock(pb::Stage::RemedyPlan, 2, false, false),
            clock(pb::Stage::AnswerToGuest, 24, false, false),
            clock(pb::Stage::Resolution, 48, false, false),
        ];
        let now = start + Duration::hours(3);
        assert!(on_status_change(&mut clocks, "cancelled", now).is_empty());
        let kept: Vec<(pb::Stage, Option<DateTime<Utc>>)> =
            clocks.iter().map(|c| (stage_of(c), c.stopped_at)).collect();
        assert_eq!(
            kept,
            vec![
                (pb::Stage::Acknowledge, Some(start + Duration::minutes(10))),
                (pb::Stage::FirstInvestigation, Some(now)),
                (pb::Stage::RemedyPlan, Some(now)),
            ],
            "met and missed stay; the clocks still within their deadline go"
        );
    }

    #[test]
    fn a_cancellation_while_waiting_on_the_guest_drops_the_paused_clocks() {
        let settings = effective(&default_settings("paris")).expect("defaults are valid");
        let filed = chrono::DateTime::UNIX_EPOCH;
        let mut clocks = start_all(&settings, pb::Urgency::Medium, "", filed);
        // Acknowledged after 5 minutes, then waiting on the guest for three days: the stored due
        // times are those saved when the wait began.
        let acknowledged = filed + Duration::minutes(5);
        on_status_change(&mut clocks, "acknowledged", acknowledged);
        let history = vec![
            (filed, "received".to_string()),
            (acknowledged, "acknowledged".to_string()),
            (acknowledged, PAUSING_STATUS.to_string()),
        ];
        bring_due_times_up_to(&mut clocks, &settings, "", &history, acknowledged);
        let now = filed + Duration::days(3);
        assert!(
            clocks
                .iter()
                .any(|c| c.stopped_at.is_none() && c.due_at < now),
            "the stale due times lie before the cancellation"
        );
        bring_due_times_up_to(&mut clocks, &settings, "", &history, now);
        on_status_change(&mut clocks, "cancelled", now);
        let kept: Vec<pb::Stage> = clocks.iter().map(stage_of).collect();
        assert_eq!(
            kept,
            vec![pb::Stage::Acknowledge],
            "only the clock stopped before the wait stays; the paused ones owed nothing yet"
        );

        // A clock that ran past its deadline before the wait began stays missed.
        let mut clocks = start_all(&settings, pb::Urgency::Critical, "", filed);
        let late = filed + Duration::hours(1);
        let history = vec![
            (filed, "received".to_string()),
            (late, PAUSING_STATUS.to_string()),
        ];
        bring_due_times_up_to(&mut clocks, &settings, "", &history, now);
        on_status_change(&mut clocks, "cancelled", now);
        let kept: Vec<pb::Stage> = clocks.iter().map(stage_of).collect();
        assert_eq!(
            kept,
            vec![pb::Stage::Acknowledge, pb::Stage::Resolution],
            "30 minutes to acknowledge and resolve, an hour gone before the wait"
        );
    }

    #[test]
    fn resolution_limits_in_minutes_run_around_the_clock() {
        use guestloop_proto::common::v1::{WorkingDay, WorkingInterval};
        use pb::Stage::{FirstInvestigation, Resolution};
        // Engineering works Monday to Friday, 09:00 to 17:00.
        let office = |weekday: &str| WorkingDay {
            weekday: weekday.into(),
            intervals: vec![WorkingInterval {
                start: "09:00".into(),
                end: "17:00".into(),
            }],
        };
        let settings = effective(&pb::PropertySettings {
            calendars: vec![pb::WorkingCalendar {
                department: "engineering".into(),
                days: ["mon", "tue", "wed", "thu", "fri"]
                    .into_iter()
                    .map(office)
                    .collect(),
                ..Default::default()
            }],
            ..default_settings("paris")
        })
        .expect("valid settings");
        // Friday 2026-12-04, 18:00 UTC.
        let friday_evening = chrono::DateTime::from_timestamp(1_796_407_200, 0).unwrap_or_default();
        let due = |urgency: pb::Urgency, stage: pb::Stage| {
            start_all(&settings, urgency, "engineering", friday_evening)
                .into_iter()
                .find(|c| stage_of(c) == stage)
                .map(|c| c.due_at - friday_evening)
        };
        assert_eq!(
            due(pb::Urgency::Critical, Resolution),
            Some(Duration::minutes(30))
        );
        assert_eq!(due(pb::Urgency::High, Resolution), Some(Duration::hours(2)));
        assert_eq!(
            due(pb::Urgency::Medium, Resolution),
            Some(Duration::hours(24))
        );
        // Three working days of eight hours from Friday evening: Wednesday at 17:00.
        assert_eq!(
            due(pb::Urgency::Low, Resolution),
            Some(Duration::days(5) - Duration::hours(1))
        );
        // The department's own stages still follow its calendar: Monday 11:00.
        assert_eq!(
            due(pb::Urgency::Critical, FirstInvestigation),
            Some(Duration::days(2) + Duration::hours(17))
        );
    }

    #[test]
    fn a_stopped_clock_keeps_the_deadline_it_was_measured_against() {
        let mut settings = effective(&default_settings("paris")).expect("defaults are valid");
        let filed = chrono::DateTime::UNIX_EPOCH;
        let mut clocks = start_all(&settings, pb::Urgency::Medium, "", filed);
        let acknowledged = filed + Duration::minutes(20);
        on_status_change(&mut clocks, "acknowledged", acknowledged);
        let history = vec![
            (filed, "received".to_string()),
            (acknowledged, "acknowledged".to_string()),
        ];
        refresh(&mut clocks, &settings, "", &history, &[], 0, acknowledged);
        let due = clocks[0].due_at;
        assert_eq!(
            due,
            filed + Duration::minutes(30),
            "30 minutes around the clock"
        );
        // The acknowledgement target later shrinks to 10 minutes (or a calendar changes): the
        // stopped clock's deadline and outcome stay as they were measured.
        settings.stage_targets.insert(
            pb::Stage::Acknowledge as i32,
            guestloop_kit::worktime::SlaTarget::WorkingTime(Duration::minutes(10)),
        );
        clocks[0].target_minutes = 10;
        let later = acknowledged + Duration::days(3);
        let view = refresh(&mut clocks, &settings, "", &history, &[], 0, later);
        assert_eq!(clocks[0].due_at, due);
        assert_eq!(view.clocks[0].outcome, pb::ClockOutcome::Met as i32);
        assert!(!view.clocks[0].breached);
    }

    #[test]
    fn a_reopen_keeps_the_outcome_of_the_cycles_it_ends() {
        let start = Utc::now() - Duration::days(2);
        let clock = |stage: pb::Stage, hours_to_stop: Option<i64>| ClockRow {
            stage: stage as i16,
            target_minutes: 120,
            target_days: 0,
            started_at: start,
            stopped_at: hours_to_stop.map(|h| start + Duration::hours(h)),
            due_at: start + Duration::hours(2),
            breached_at: None,
            at_risk_at: None,
        };
        let mut clocks = vec![
            clock(pb::Stage::Acknowledge, Some(1)),
            clock(pb::Stage::AnswerToGuest, Some(1)),
            clock(pb::Stage::Resolution, Some(5)),
        ];
        let now = Utc::now();
        let finished = on_status_change(&mut clocks, "reopened", now);
        assert_eq!(
            finished,
            vec![
                FinishedCycle {
                    stage: pb::Stage::AnswerToGuest as i16,
                    started_at: start,
                    met: true
                },
                FinishedCycle {
                    stage: pb::Stage::Resolution as i16,
                    started_at: start,
                    met: false
                },
            ],
            "answered in 1 h of 2: met; resolved after 5 h of 2: missed"
        );
        assert!(clocks[1..]
            .iter()
            .all(|c| c.started_at == now && c.stopped_at.is_none()));
        assert_eq!(clocks[0].stopped_at, Some(start + Duration::hours(1)));
        // A cycle still running (undecided) leaves no outcome.
        clocks[2].started_at = now;
        assert!(on_status_change(&mut clocks, "reopened", now)
            .iter()
            .all(|c| c.stage != pb::Stage::Resolution as i16));
    }
}
