//! Tests of the working-time calculator: concrete cases from the domain, and properties over
//! random calendars, zones with DST, holidays and pause sequences, checked against a slow
//! minute-by-minute reference that reads local wall time directly.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .expect("valid instant")
}

fn weekdays(zone: &str, start: &str, end: &str, holidays: &[&str]) -> WorkingCalendar {
    let day = |d: &str| DaySpec {
        weekday: d.into(),
        intervals: vec![IntervalSpec {
            start: start.into(),
            end: end.into(),
        }],
    };
    WorkingCalendar::try_from(CalendarSpec {
        time_zone: zone.into(),
        always_open: false,
        weekly: ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| day(d))
            .collect(),
        holidays: holidays.iter().map(|h| h.to_string()).collect(),
        working_day_hours: Some(8),
    })
    .expect("valid calendar")
}

#[test]
fn acknowledge_on_a_24_7_desk_is_plain_time() {
    let desk = WorkingCalendar::always_open(chrono_tz::Europe::Paris);
    let start = utc("2026-03-29T00:40:00Z"); // across the Paris spring-forward night
    assert_eq!(
        desk.add_working_time(start, Duration::minutes(30)),
        utc("2026-03-29T01:10:00Z")
    );
}

#[test]
fn an_amount_beyond_every_date_ends_at_the_last_one() {
    let start = utc("2026-03-29T00:40:00Z");
    let huge = Duration::days(1_000_000_000);
    let desk = WorkingCalendar::always_open(chrono_tz::Europe::Paris);
    assert_eq!(desk.add_working_time(start, huge), DateTime::<Utc>::MAX_UTC);
    let office = weekdays("America/New_York", "09:00", "17:00", &[]);
    assert_eq!(
        office.add_working_time(start, huge),
        DateTime::<Utc>::MAX_UTC
    );
}

#[test]
fn three_working_days_from_friday_afternoon_skip_the_weekend_and_a_holiday() {
    // Mon–Fri 09–17 in New York; Monday 2026-11-30 is a holiday.
    let calendar = weekdays("America/New_York", "09:00", "17:00", &["2026-11-30"]);
    let friday_4pm = utc("2026-11-27T21:00:00Z"); // 16:00 EST
    let target = SlaTarget::WorkingDays(3);
    let history = ClockHistory {
        start: friday_4pm,
        pauses: vec![],
    };
    let due = instant_at_fraction(&calendar, &target, &history, 1.0).expect("due");
    // 1 h Friday, 8 h Tuesday, 8 h Wednesday, 7 h Thursday -> Thursday 16:00 EST.
    assert_eq!(due, utc("2026-12-03T21:00:00Z"));
    assert_eq!(
        calendar.working_time_between(friday_4pm, due),
        Duration::hours(24)
    );
}

#[test]
fn working_hours_across_the_paris_spring_forward_night() {
    // A night desk 22:00–06:00 loses an hour on the night of 2026-03-28/29.
    let night = WorkingCalendar::try_from(CalendarSpec {
        time_zone: "Europe/Paris".into(),
        weekly: ["sat", "sun"]
            .iter()
            .map(|d| DaySpec {
                weekday: d.to_string(),
                intervals: vec![
                    IntervalSpec {
                        start: "00:00".into(),
                        end: "06:00".into(),
                    },
                    IntervalSpec {
                        start: "22:00".into(),
                        end: "24:00".into(),
                    },
                ],
            })
            .collect(),
        ..Default::default()
    })
    .expect("valid");
    let saturday_10pm = utc("2026-03-28T21:00:00Z"); // 22:00 CET
    let sunday_6am = utc("2026-03-29T04:00:00Z"); // 06:00 CEST
    assert_eq!(
        night.working_time_between(saturday_10pm, sunday_6am),
        Duration::hours(7)
    );
    assert_eq!(
        night.add_working_time(saturday_10pm, Duration::hours(7)),
        sunday_6am
    );
}

#[test]
fn bad_calendars_are_refused_with_the_field_named() {
    let bad_zone = CalendarSpec {
        time_zone: "Mars/Olympus".into(),
        always_open: true,
        ..Default::default()
    };
    assert!(matches!(
        WorkingCalendar::try_from(bad_zone),
        Err(CalendarError::UnknownZone(_))
    ));
    let empty = CalendarSpec {
        time_zone: "UTC".into(),
        ..Default::default()
    };
    assert_eq!(
        WorkingCalendar::try_from(empty),
        Err(CalendarError::NoWorkingTime)
    );
    let backwards = CalendarSpec {
        time_zone: "UTC".into(),
        weekly: vec![DaySpec {
            weekday: "mon".into(),
            intervals: vec![IntervalSpec {
                start: "17:00".into(),
                end: "09:00".into(),
            }],
        }],
        ..Default::default()
    };
    let error = WorkingCalendar::try_from(backwards).expect_err("refused");
    assert!(
        error.to_string().contains("weekly[0].intervals[0]"),
        "{error}"
    );
}

#[test]
fn pauses_come_from_the_whole_history() {
    let t = |m: i64| utc("2026-06-01T10:00:00Z") + Duration::minutes(m);
    let history = [
        (t(0), false),
        (t(10), true),
        (t(20), false),
        (t(30), true),
        (t(45), false),
        (t(50), true),
    ];
    let pauses = pauses_from_history(&history);
    assert_eq!(
        pauses,
        vec![
            PauseInterval {
                start: t(10),
                end: Some(t(20))
            },
            PauseInterval {
                start: t(30),
                end: Some(t(45))
            },
            PauseInterval {
                start: t(50),
                end: None
            },
        ]
    );
    let desk = WorkingCalendar::always_open(chrono_tz::UTC);
    let clock = ClockHistory {
        start: t(0),
        pauses,
    };
    let status = evaluate(
        &desk,
        &SlaTarget::WorkingTime(Duration::minutes(60)),
        &clock,
        None,
        t(70),
        0.75,
    );
    // Ran 10 + 10 + 5 minutes; paused since minute 50; due as if resumed now: 70 + 35.
    assert!(status.paused);
    assert_eq!(status.elapsed, Duration::minutes(25));
    assert_eq!(status.due_at, t(105));
    assert_eq!(
        instant_at_fraction(
            &desk,
            &SlaTarget::WorkingTime(Duration::minutes(60)),
            &clock,
            0.5
        ),
        None
    );
}

#[test]
fn met_missed_at_risk_and_breached() {
    let desk = WorkingCalendar::always_open(chrono_tz::UTC);
    let start = utc("2026-06-01T10:00:00Z");
    let target = SlaTarget::WorkingTime(Duration::minutes(100));
    let history = ClockHistory {
        start,
        pauses: vec![],
    };
    let running = evaluate(
        &desk,
        &target,
        &history,
        None,
        start + Duration::minutes(80),
        0.75,
    );
    assert!(running.at_risk && !running.breached && running.outcome == ClockOutcome::Running);
    let late = evaluate(
        &desk,
        &target,
        &history,
        None,
        start + Duration::minutes(101),
        0.75,
    );
    assert!(late.breached && !late.at_risk && late.remaining < Duration::zero());
    let met = evaluate(
        &desk,
        &target,
        &history,
        Some(start + Duration::minutes(99)),
        start + Duration::hours(5),
        0.75,
    );
    assert_eq!(met.outcome, ClockOutcome::Met);
    let missed = evaluate(
        &desk,
        &target,
        &history,
        Some(start + Duration::minutes(101)),
        start + Duration::hours(5),
        0.75,
    );
    assert_eq!(missed.outcome, ClockOutcome::Missed);
}

// ---- properties ----

const ZONES: [&str; 5] = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Tokyo",
    "UTC",
];

fn arbitrary_calendar() -> impl Strategy<Value = CalendarSpec> {
    let interval =
        (0u32..23, 1u32..8).prop_map(|(start, length)| (start, (start + length).min(24)));
    let day = proptest::collection::vec(interval, 0..3);
    (
        0usize..ZONES.len(),
        proptest::collection::vec(day, 7),
        proptest::collection::vec(0i64..60, 0..4),
    )
        .prop_filter_map("needs working time", |(zone, days, holidays)| {
            let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let mut weekly = Vec::new();
            for (i, intervals) in days.into_iter().enumerate() {
                // Keep intervals disjoint: sort and drop overlaps.
                let mut sorted = intervals;
                sorted.sort();
                let mut kept: Vec<(u32, u32)> = Vec::new();
                for (s, e) in sorted {
                    if kept.last().is_none_or(|(_, last_end)| s >= *last_end) {
                        kept.push((s, e));
                    }
                }
                let fmt = |h: u32| format!("{h:02}:00");
                weekly.push(DaySpec {
                    weekday: names[i].into(),
                    intervals: kept
                        .into_iter()
                        .map(|(s, e)| IntervalSpec {
                            start: fmt(s),
                            end: fmt(e),
                        })
                        .collect(),
                });
            }
            if weekly.iter().all(|d| d.intervals.is_empty()) {
                return None;
            }
            let base = NaiveDate::from_ymd_opt(2026, 3, 1)?;
            Some(CalendarSpec {
                time_zone: ZONES[zone].into(),
                always_open: false,
                weekly,
                holidays: holidays
                    .iter()
                    .map(|d| (base + Duration::days(*d)).to_string())
                    .collect(),
                working_day_hours: Some(8),
            })
        })
}

/// Instants around the DST changes of 2026 (March/April and October/November).
fn arbitrary_instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        (0i64..40 * 24 * 60).prop_map(|m| utc("2026-03-01T00:00:00Z") + Duration::minutes(m)),
        (0i64..40 * 24 * 60).prop_map(|m| utc("2026-09-25T00:00:00Z") + Duration::minutes(m)),
    ]
}

/// Reference: is this minute working, judged from local wall time alone.
fn minute_is_working(spec: &CalendarSpec, zone: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&zone);
    let date = local.date_naive().to_string();
    if spec.holidays.contains(&date) {
        return false;
    }
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekday = names[local.weekday().num_days_from_monday() as usize];
    let minute = local.hour() * 60 + local.minute();
    spec.weekly
        .iter()
        .filter(|d| d.weekday == weekday)
        .flat_map(|d| d.intervals.iter())
        .any(|i| {
            let parse = |s: &str| s[..2].parse::<u32>().unwrap_or(0) * 60;
            minute >= parse(&i.start) && minute < parse(&i.end)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn deadline_minus_start_in_working_time_is_the_target(spec in arbitrary_calendar(), start in arbitrary_instant(), minutes in 0i64..(5 * 24 * 60)) {
        let calendar = WorkingCalendar::try_from(spec).expect("generated calendars are valid");
        let target = Duration::minutes(minutes);
        let due = calendar.add_working_time(start, target);
        prop_assert!(due >= start);
        prop_assert_eq!(calendar.working_time_between(start, due), target);
    }

    #[test]
    fn deadlines_grow_with_the_target(spec in arbitrary_calendar(), start in arbitrary_instant(), a in 0i64..3000, b in 0i64..3000) {
        let calendar = WorkingCalendar::try_from(spec).expect("valid");
        let (small, large) = (a.min(b), a.max(b));
        prop_assert!(calendar.add_working_time(start, Duration::minutes(small)) <= calendar.add_working_time(start, Duration::minutes(large)));
    }

    #[test]
    fn working_time_matches_the_minute_by_minute_reference(spec in arbitrary_calendar(), start in arbitrary_instant(), span in 0i64..(3 * 24 * 60)) {
        let zone: Tz = spec.time_zone.parse().expect("zone");
        let calendar = WorkingCalendar::try_from(spec.clone()).expect("valid");
        let expected = (0..span).filter(|m| minute_is_working(&spec, zone, start + Duration::minutes(*m))).count() as i64;
        prop_assert_eq!(calendar.working_time_between(start, start + Duration::minutes(span)), Duration::minutes(expected));
    }

    #[test]
    fn pausing_never_shortens_a_deadline(
        spec in arbitrary_calendar(),
        start in arbitrary_instant(),
        target in 1i64..3000,
        pauses in proptest::collection::vec((0i64..6000, 0i64..600), 0..4),
        extra in (0i64..6000, 1i64..600),
    ) {
        let calendar = WorkingCalendar::try_from(spec).expect("valid");
        let target = SlaTarget::WorkingTime(Duration::minutes(target));
        let to_pauses = |list: &[(i64, i64)]| -> Vec<PauseInterval> {
            list.iter().map(|(at, length)| PauseInterval {
                start: start + Duration::minutes(*at),
                end: Some(start + Duration::minutes(at + length)),
            }).collect()
        };
        let before = ClockHistory { start, pauses: to_pauses(&pauses) };
        let mut more = pauses.clone();
        more.push(extra);
        let after = ClockHistory { start, pauses: to_pauses(&more) };
        let due_before = instant_at_fraction(&calendar, &target, &before, 1.0).expect("closed pauses");
        let due_after = instant_at_fraction(&calendar, &target, &after, 1.0).expect("closed pauses");
        prop_assert!(due_after >= due_before);
        // And the deadline sits exactly `target` of unpaused working time after the start.
        let status = evaluate(&calendar, &target, &after, Some(due_after), due_after, 0.75);
        prop_assert_eq!(status.remaining, Duration::zero());
    }

    #[test]
    fn always_open_is_plain_utc_arithmetic(start in arbitrary_instant(), minutes in 0i64..100_000, zone in 0usize..ZONES.len()) {
        let zone: Tz = ZONES[zone].parse().expect("zone");
        let desk = WorkingCalendar::always_open(zone);
        prop_assert_eq!(desk.add_working_time(start, Duration::minutes(minutes)), start + Duration::minutes(minutes));
        prop_assert!(Utc.timestamp_opt(0, 0).single().is_some());
    }
}

#[test]
fn a_day_starts_at_local_midnight_or_at_the_jump_that_skips_it() {
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    assert_eq!(
        start_of_day(chrono_tz::Europe::Lisbon, day(2026, 7, 1)),
        utc("2026-06-30T23:00:00Z")
    );
    assert_eq!(
        start_of_day(chrono_tz::Pacific::Auckland, day(2026, 1, 1)),
        utc("2025-12-31T11:00:00Z")
    );
    assert_eq!(
        start_of_day(chrono_tz::UTC, day(2026, 1, 1)),
        utc("2026-01-01T00:00:00Z")
    );
    // Santiago moved its clocks from 00:00 to 01:00 on 8 September 2024: that day began at the
    // jump, 04:00 UTC, and the day before lasted 24 hours.
    assert_eq!(
        start_of_day(chrono_tz::America::Santiago, day(2024, 9, 8)),
        utc("2024-09-08T04:00:00Z")
    );
    assert_eq!(
        start_of_day(chrono_tz::America::Santiago, day(2024, 9, 7)),
        utc("2024-09-07T04:00:00Z")
    );
}
