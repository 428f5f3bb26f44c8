//! Which care tasks a stay calls for on a business date — the "anticipate needs before arrival"
//! and "settle discontent before it becomes a complaint" standards turned into a daily list.
//!
//! A stay is active on a date when the guest is at the property that day: from the arrival day to
//! the departure morning. For an active stay:
//! - a birthday or anniversary that falls on a day from the date to the departure day gives a
//!   task due on that day (29 February is kept on 28 February in other years);
//! - a VIP or strategic guest arriving that day gives a task due on arrival;
//! - a service failure in the [`RECOVERY_WINDOW_DAYS`] before the date that was not recovered
//!   (never resolved, or rated 1–2) gives a task due that day.
//!
//! Each kind exists at most once per stay (the store's unique key), so generating every day of a
//! stay yields one birthday task, not one per night.

use chrono::{Datelike, Duration, NaiveDate};

use super::tiers::Tier;

/// How far back an unrecovered failure still calls for extra care.
pub const RECOVERY_WINDOW_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CareKind {
    Birthday = 1,
    Anniversary = 2,
    VipArrival = 3,
    Recovery = 4,
}

impl CareKind {
    pub fn from_code(code: i16) -> Option<CareKind> {
        [
            CareKind::Birthday,
            CareKind::Anniversary,
            CareKind::VipArrival,
            CareKind::Recovery,
        ]
        .into_iter()
        .find(|k| *k as i16 == code)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StayDates {
    pub arrival: NaiveDate,
    pub departure: NaiveDate,
}

impl StayDates {
    /// The departure day, when the guest is still in house in the morning (the arrival day for
    /// a day use).
    pub fn last_day(&self) -> NaiveDate {
        self.departure.max(self.arrival)
    }

    pub fn is_active_on(&self, date: NaiveDate) -> bool {
        self.arrival <= date && date <= self.last_day()
    }
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub occurred: NaiveDate,
    pub category: String,
    pub recovered: bool,
    /// 1–5, 0 when not rated.
    pub csat: i16,
}

impl Failure {
    /// Resolved and not rated poorly.
    pub fn is_recovered(&self) -> bool {
        self.recovered && !(1..=2).contains(&self.csat)
    }
}

#[derive(Debug, Clone)]
pub struct GuestFacts {
    pub birthday: Option<NaiveDate>,
    pub anniversary: Option<NaiveDate>,
    pub tier: Option<Tier>,
    pub strategic_manual: bool,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTask {
    pub kind: CareKind,
    pub due: NaiveDate,
    pub reason: String,
}

/// The day `date`'s month and day fall on in `year` (29 February → 28 February off leap years).
fn in_year(date: NaiveDate, year: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, date.month(), date.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, date.month(), date.day().saturating_sub(1)))
}

/// The first occurrence of `date`'s month and day within `from..=to`.
pub fn next_occurrence(date: NaiveDate, from: NaiveDate, to: NaiveDate) -> Option<NaiveDate> {
    (from.year()..=to.year())
        .filter_map(|year| in_year(date, year))
        .find(|d| from <= *d && *d <= to)
}

/// Whether an open task generated earlier for the same stay, guest and kind, due on `due` with
/// `reason`, still says what the stay calls for now (`wanted`). A recovery task due on an earlier
/// day of the stay is still owed as it is: it keeps its day rather than moving to each later day
/// it is generated for. Every other kind falls on one day of the stay, so it must match.
pub fn open_task_stands(due: NaiveDate, reason: &str, wanted: &DueTask, stay: StayDates) -> bool {
    match wanted.kind {
        CareKind::Recovery => stay.arrival <= due && due <= wanted.due,
        _ => due == wanted.due && reason == wanted.reason,
    }
}

/// The tasks `stay` calls for when generated on `date` (none when the stay is not active then).
pub fn due_tasks(date: NaiveDate, stay: StayDates, guest: &GuestFacts) -> Vec<DueTask> {
    let mut tasks = Vec::new();
    if !stay.is_active_on(date) {
        return tasks;
    }
    let last = stay.last_day();
    for (kind, day, label) in [
        (CareKind::Birthday, guest.birthday, "birthday"),
        (CareKind::Anniversary, guest.anniversary, "anniversary"),
    ] {
        if let Some(due) = day.and_then(|d| next_occurrence(d, date, last)) {
            tasks.push(DueTask {
                kind,
                due,
                reason: format!("{label} on {due}"),
            });
        }
    }
    let high_value =
        guest.strategic_manual || matches!(guest.tier, Some(Tier::Vip | Tier::Strategic));
    if stay.arrival == date && high_value {
        let tier = guest.tier.map_or("vip", Tier::as_str);
        let tier = if guest.strategic_manual {
            "strategic"
        } else {
            tier
        };
        tasks.push(DueTask {
            kind: CareKind::VipArrival,
            due: date,
            reason: format!("{tier} guest arriving"),
        });
    }
    let window_start = date - Duration::days(RECOVERY_WINDOW_DAYS);
    let unrecovered = guest
        .failures
        .iter()
        .filter(|f| window_start <= f.occurred && f.occurred <= date && !f.is_recovered())
        .max_by_key(|f| f.occurred);
    if let Some(failure) = unrecovered {
        let what = if failure.recovered {
            format!("rated {}/5", failure.csat)
        } else {
            "not resolved".to_string()
        };
        tasks.push(DueTask {
            kind: CareKind::Recovery,
            due: date,
            reason: format!(
                "{} complaint on {} {what}",
                failure.category, failure.occurred
            ),
        });
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    fn guest() -> GuestFacts {
        GuestFacts {
            birthday: None,
            anniversary: None,
            tier: Some(Tier::Regular),
            strategic_manual: false,
            failures: Vec::new(),
        }
    }

    fn stay(a: NaiveDate, nights: i64) -> StayDates {
        StayDates {
            arrival: a,
            departure: a + Duration::days(nights),
        }
    }

    #[test]
    fn birthday_during_the_stay_is_due_on_the_day() {
        let g = GuestFacts {
            birthday: Some(d(1980, 12, 3)),
            ..guest()
        };
        let tasks = due_tasks(d(2026, 12, 1), stay(d(2026, 12, 1), 4), &g);
        assert_eq!(
            tasks,
            vec![DueTask {
                kind: CareKind::Birthday,
                due: d(2026, 12, 3),
                reason: "birthday on 2026-12-03".into()
            }]
        );
        // The guest is still in house on the departure morning.
        let tasks = due_tasks(d(2026, 11, 30), stay(d(2026, 11, 30), 3), &g);
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0].due, d(2026, 12, 3));
        let tasks = due_tasks(d(2026, 12, 3), stay(d(2026, 11, 30), 3), &g);
        assert_eq!(
            tasks.len(),
            1,
            "generated on the departure day itself: {tasks:?}"
        );
        let tasks = due_tasks(d(2026, 11, 29), stay(d(2026, 11, 29), 3), &g);
        assert!(tasks.is_empty(), "the day after departure: {tasks:?}");
    }

    #[test]
    fn a_stay_over_new_year_finds_a_january_birthday() {
        let g = GuestFacts {
            birthday: Some(d(1975, 1, 2)),
            ..guest()
        };
        let tasks = due_tasks(d(2026, 12, 30), stay(d(2026, 12, 30), 5), &g);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].due, d(2027, 1, 2));
    }

    #[test]
    fn leap_day_birthdays_are_kept_on_28_february() {
        let g = GuestFacts {
            birthday: Some(d(1992, 2, 29)),
            ..guest()
        };
        let tasks = due_tasks(d(2027, 2, 27), stay(d(2027, 2, 27), 3), &g);
        assert_eq!(tasks[0].due, d(2027, 2, 28));
        let tasks = due_tasks(d(2028, 2, 28), stay(d(2028, 2, 28), 3), &g);
        assert_eq!(tasks[0].due, d(2028, 2, 29));
    }

    #[test]
    fn vip_and_strategic_arrivals_only_on_the_arrival_day() {
        let vip = GuestFacts {
            tier: Some(Tier::Vip),
            ..guest()
        };
        let arrival = d(2026, 12, 1);
        let tasks = due_tasks(arrival, stay(arrival, 2), &vip);
        assert_eq!(tasks[0].kind, CareKind::VipArrival);
        assert_eq!(tasks[0].reason, "vip guest arriving");
        assert!(due_tasks(arrival + Duration::days(1), stay(arrival, 2), &vip).is_empty());
        let manual = GuestFacts {
            strategic_manual: true,
            ..guest()
        };
        assert_eq!(
            due_tasks(arrival, stay(arrival, 2), &manual)[0].reason,
            "strategic guest arriving"
        );
        assert!(due_tasks(arrival, stay(arrival, 2), &guest()).is_empty());
    }

    #[test]
    fn only_recent_unrecovered_failures_call_for_recovery() {
        let date = d(2026, 12, 1);
        let failure = |days_ago: i64, recovered: bool, csat: i16| Failure {
            occurred: date - Duration::days(days_ago),
            category: "noise".into(),
            recovered,
            csat,
        };
        let with = |f: Failure| GuestFacts {
            failures: vec![f],
            ..guest()
        };
        let kinds = |g: &GuestFacts| -> Vec<CareKind> {
            due_tasks(date, stay(date, 1), g)
                .into_iter()
                .map(|t| t.kind)
                .collect()
        };
        assert_eq!(
            kinds(&with(failure(10, false, 0))),
            vec![CareKind::Recovery]
        );
        assert_eq!(kinds(&with(failure(10, true, 2))), vec![CareKind::Recovery]);
        assert!(kinds(&with(failure(10, true, 4))).is_empty());
        assert!(kinds(&with(failure(10, true, 0))).is_empty());
        assert!(kinds(&with(failure(91, false, 0))).is_empty());
        let reason = &due_tasks(date, stay(date, 1), &with(failure(10, true, 1)))[0].reason;
        assert_eq!(reason, "noise complaint on 2026-11-21 rated 1/5");
    }

    #[test]
    fn inactive_stays_call_for_nothing() {
        let g = GuestFacts {
            birthday: Some(d(1980, 12, 1)),
            tier: Some(Tier::Vip),
            ..guest()
        };
        let date = d(2026, 12, 1);
        assert!(due_tasks(date, stay(date + Duration::days(1), 2), &g).is_empty());
        assert!(due_tasks(date, stay(date - Duration::days(3), 2), &g).is_empty());
        // The departure day is the guest's last day in house.
        let departing = due_tasks(date, stay(date - Duration::days(2), 2), &g);
        assert_eq!(departing.len(), 1, "{departing:?}");
        assert_eq!(departing[0].kind, CareKind::Birthday);
        // A day use (no night) is active on its day.
        assert_eq!(due_tasks(date, stay(date, 0), &g).len(), 2);
    }

    #[test]
    fn an_open_task_stands_only_while_it_says_what_the_stay_calls_for() {
        let arrival = d(2026, 12, 1);
        let s = stay(arrival, 4);
        let birthday = DueTask {
            kind: CareKind::Birthday,
            due: d(2026, 12, 3),
            reason: "birthday on 2026-12-03".into(),
        };
        assert!(open_task_stands(
            birthday.due,
            &birthday.reason,
            &birthday,
            s
        ));
        assert!(!open_task_stands(
            d(2026, 12, 2),
            "birthday on 2026-12-02",
            &birthday,
            s
        ));
        let vip = DueTask {
            kind: CareKind::VipArrival,
            due: arrival,
            reason: "strategic guest arriving".into(),
        };
        assert!(!open_task_stands(arrival, "vip guest arriving", &vip, s));
        // A recovery task owed since an earlier day of the stay keeps its day.
        let recovery = DueTask {
            kind: CareKind::Recovery,
            due: d(2026, 12, 3),
            reason: "noise complaint on 2026-11-20 not resolved".into(),
        };
        assert!(open_task_stands(arrival, "anything", &recovery, s));
        assert!(open_task_stands(recovery.due, "anything", &recovery, s));
        assert!(
            !open_task_stands(arrival - Duration::days(1), "x", &recovery, s),
            "before the stay (its dates moved)"
        );
        assert!(
            !open_task_stands(d(2026, 12, 4), "x", &recovery, s),
            "after the day it is wanted"
        );
    }

    proptest! {
        #[test]
        fn tasks_fall_inside_the_stay_and_each_kind_once(
            arrival_offset in 0i64..3000,
            nights in 0i64..40,
            day_in in 0i64..45,
            birthday_offset in 0i64..20000,
            anniversary_offset in 0i64..20000,
            tier in 0u8..4,
        ) {
            let arrival = d(2020, 1, 1) + Duration::days(arrival_offset);
            let s = stay(arrival, nights);
            let date = arrival + Duration::days(day_in);
            let g = GuestFacts {
                birthday: Some(d(1940, 1, 1) + Duration::days(birthday_offset)),
                anniversary: Some(d(1940, 1, 1) + Duration::days(anniversary_offset)),
                tier: Tier::parse(["new", "regular", "vip", "strategic"][usize::from(tier)]),
                strategic_manual: false,
                failures: Vec::new(),
            };
            let tasks = due_tasks(date, s, &g);
            if !s.is_active_on(date) {
                prop_assert!(tasks.is_empty());
            }
            let mut kinds: Vec<CareKind> = tasks.iter().map(|t| t.kind).collect();
            kinds.dedup();
            prop_assert_eq!(kinds.len(), tasks.len());
            for t in &tasks {
                prop_assert!(date <= t.due && t.due <= s.last_day(), "{:?} outside {:?}", t, s);
                if t.kind == CareKind::Birthday {
                    let b = g.birthday.unwrap_or_default();
                    prop_assert_eq!(t.due.month(), b.month());
                }
            }
        }
    }
}
