//! SLA clocks in working time. A clock starts at an instant, has a target, may be paused any
//! number of times (the pauses come from the complete state history, never just the last one),
//! and may be stopped. Its deadline moves by exactly the working time spent paused.

use chrono::{DateTime, Duration, Utc};

use super::WorkingCalendar;

/// How long a clock may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaTarget {
    /// An amount of working time.
    WorkingTime(Duration),
    /// N working days, each the calendar's working-day length.
    WorkingDays(u32),
}

impl SlaTarget {
    /// The target as working time on `calendar`.
    pub fn working_time(&self, calendar: &WorkingCalendar) -> Duration {
        match self {
            SlaTarget::WorkingTime(amount) => *amount,
            SlaTarget::WorkingDays(days) => {
                calendar.working_day_length() * i32::try_from(*days).unwrap_or(i32::MAX)
            }
        }
    }
}

/// A stretch during which the clock did not run; `end == None` means still paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseInterval {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// When a clock started and every pause since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockHistory {
    pub start: DateTime<Utc>,
    pub pauses: Vec<PauseInterval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOutcome {
    Running,
    Met,
    Missed,
}

/// A clock's state at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockStatus {
    /// The deadline; while paused, as if the clock resumed now.
    pub due_at: DateTime<Utc>,
    /// Working time run so far (pauses excluded).
    pub elapsed: Duration,
    /// Target minus elapsed; negative once overdue.
    pub remaining: Duration,
    pub fraction_elapsed: f64,
    pub paused: bool,
    pub at_risk: bool,
    pub breached: bool,
    pub outcome: ClockOutcome,
}

/// Pause intervals from a status history of `(instant, is a pausing state)`, in order.
pub fn pauses_from_history(history: &[(DateTime<Utc>, bool)]) -> Vec<PauseInterval> {
    let mut pauses: Vec<PauseInterval> = Vec::new();
    let mut open: Option<DateTime<Utc>> = None;
    for (at, pausing) in history {
        match (open, *pausing) {
            (None, true) => open = Some(*at),
            (Some(start), false) => {
                pauses.push(PauseInterval {
                    start,
                    end: Some(*at),
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        pauses.push(PauseInterval { start, end: None });
    }
    pauses
}

/// Pauses after `start`, clipped to it, sorted and merged.
fn normalised(
    history: &ClockHistory,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut pauses: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = history
        .pauses
        .iter()
        .filter(|p| p.end.is_none_or(|end| end > history.start))
        .map(|p| (p.start.max(history.start), p.end))
        .filter(|(start, end)| end.is_none_or(|e| e > *start) && *start <= now)
        .collect();
    pauses.sort_by_key(|(start, _)| *start);
    let mut merged: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    for (start, end) in pauses {
        match merged.last_mut() {
            Some((_, last_end)) if last_end.is_none_or(|e| e >= start) => {
                *last_end = match (*last_end, end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The instant at which the clock has run `amount` of working time; `None` when an open pause
/// comes first (unless `resume_open_at` says when to assume it ends).
fn reach(
    calendar: &WorkingCalendar,
    history: &ClockHistory,
    amount: Duration,
    now: DateTime<Utc>,
    resume_open_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let mut cursor = history.start;
    let mut remaining = amount;
    for (start, end) in normalised(history, now) {
        let available = calendar.working_time_between(cursor, start);
        if remaining <= available {
            return Some(calendar.add_working_time(cursor, remaining));
        }
        remaining -= available;
        cursor = match end {
            Some(end) => end.max(cursor),
            None => resume_open_at?.max(start),
        };
    }
    Some(calendar.add_working_time(cursor, remaining))
}

/// Working time the clock ran within `[start, until)`.
fn run_time(calendar: &WorkingCalendar, history: &ClockHistory, until: DateTime<Utc>) -> Duration {
    let mut total = calendar.working_time_between(history.start, until);
    for (start, end) in normalised(history, until) {
        let end = end.unwrap_or(until).min(until);
        if start < end {
            total -= calendar.working_time_between(start, end);
        }
    }
    total.max(Duration::zero())
}

/// When the clock reaches `fraction` of its target (e.g. 0.5, 0.75, 1.0); `None` while an
/// open pause comes first.
pub fn instant_at_fraction(
    calendar: &WorkingCalendar,
    target: &SlaTarget,
    history: &ClockHistory,
    fraction: f64,
) -> Option<DateTime<Utc>> {
    let total = target.working_time(calendar);
    let amount =
        Duration::milliseconds((total.num_milliseconds() as f64 * fraction).round() as i64);
    reach(calendar, history, amount, DateTime::<Utc>::MAX_UTC, None)
}

/// The state of a clock at `now`; `stopped_at` ends it.
pub fn evaluate(
    calendar: &WorkingCalendar,
    target: &SlaTarget,
    history: &ClockHistory,
    stopped_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    at_risk_ratio: f64,
) -> ClockStatus {
    let total = target.working_time(calendar);
    let end = stopped_at.unwrap_or(now).max(history.start);
    let paused = stopped_at.is_none()
        && normalised(history, now)
            .last()
            .is_some_and(|(start, e)| e.is_none() && *start <= now);
    let due_at = reach(calendar, history, total, now, Some(now)).unwrap_or(now);
    let elapsed = run_time(calendar, history, end);
    let fraction_elapsed = if total > Duration::zero() {
        elapsed.num_milliseconds() as f64 / total.num_milliseconds() as f64
    } else {
        1.0
    };
    let outcome = match stopped_at {
        None => ClockOutcome::Running,
        Some(stop) if stop <= due_at => ClockOutcome::Met,
        Some(_) => ClockOutcome::Missed,
    };
    let breached = match stopped_at {
        None => elapsed > total || (elapsed == total && now > due_at),
        Some(_) => outcome == ClockOutcome::Missed,
    };
    ClockStatus {
        due_at,
        elapsed,
        remaining: total - elapsed,
        fraction_elapsed,
        paused,
        at_risk: outcome == ClockOutcome::Running && !breached && fraction_elapsed >= at_risk_ratio,
        breached,
        outcome,
    }
}
