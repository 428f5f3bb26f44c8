//! When inspections fall due. Calendar plans count in the property's local dates and anchor to
//! the start date (monthly from 31 January gives 28/29 February, then 31 March — no drift); the
//! local due time becomes UTC through the zone database (a time skipped by DST moves to the
//! first valid instant after it, a repeated one takes the first). Every occurrence has a
//! deterministic key, so a scheduler can insert idempotently.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
    EveryNDays(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPlan {
    pub frequency: Frequency,
    pub start: NaiveDate,
    pub due_time: NaiveTime,
    pub zone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// The n-th occurrence (0 = the start date): the idempotency key.
    pub index: u32,
    pub local_date: NaiveDate,
    pub due_at: DateTime<Utc>,
}

/// The local date of occurrence `n`, anchored to the start.
pub fn nth_date(plan: &CalendarPlan, n: u32) -> Option<NaiveDate> {
    let months = |k: u32| plan.start.checked_add_months(Months::new(k));
    match plan.frequency {
        Frequency::Daily => plan.start.checked_add_signed(Duration::days(i64::from(n))),
        Frequency::Weekly => plan.start.checked_add_signed(Duration::weeks(i64::from(n))),
        Frequency::EveryNDays(days) => plan
            .start
            .checked_add_signed(Duration::days(i64::from(n) * i64::from(days.max(1)))),
        Frequency::Monthly => months(n),
        Frequency::Quarterly => months(n.checked_mul(3)?),
        Frequency::Yearly => months(n.checked_mul(12)?),
    }
}

/// The UTC instant of a local date and time.
pub fn local_instant(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Skipped by DST: the first valid minute after it.
            let mut probe = local;
            for _ in 0..240 {
                probe += Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Occurrences due in `(after, until]`, in order.
pub fn occurrences(
    plan: &CalendarPlan,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for n in 0..100_000u32 {
        let Some(date) = nth_date(plan, n) else { break };
        let due_at = local_instant(plan.zone, date, plan.due_time);
        if due_at > until {
            break;
        }
        if due_at > after {
            out.push(Occurrence {
                index: n,
                local_date: date,
                due_at,
            });
        }
    }
    out
}

/// Whether a meter plan is due: `interval` hours or cycles since the reading at the last
/// completed inspection.
pub fn meter_due(reading_at_last_done: i64, interval: i64, current: i64) -> bool {
    interval > 0 && current - reading_at_last_done >= interval
}

/// The day of the month a monthly plan from `start` lands on in a month with `days` days.
pub fn clamped_day(start: NaiveDate, days_in_month: u32) -> u32 {
    start.day().min(days_in_month)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .expect("instant")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn monthly_from_the_31st_clamps_without_drifting() {
        let plan = CalendarPlan {
            frequency: Frequency::Monthly,
            start: date(2027, 1, 31),
            due_time: NaiveTime::MIN,
            zone: chrono_tz::UTC,
        };
        let dates: Vec<NaiveDate> = (0..4).filter_map(|n| nth_date(&plan, n)).collect();
        assert_eq!(
            dates,
            vec![
                date(2027, 1, 31),
                date(2027, 2, 28),
                date(2027, 3, 31),
                date(2027, 4, 30)
            ]
        );
    }

    #[test]
    fn a_due_time_skipped_by_dst_moves_to_the_first_valid_minute() {
        // 02:30 does not exist in Paris on 2026-03-29.
        let due = local_instant(
            chrono_tz::Europe::Paris,
            date(2026, 3, 29),
            NaiveTime::from_hms_opt(2, 30, 0).expect("time"),
        );
        assert_eq!(due, utc("2026-03-29T01:00:00Z"));
        // 02:30 happens twice on 2026-10-25: the first one.
        let due = local_instant(
            chrono_tz::Europe::Paris,
            date(2026, 10, 25),
            NaiveTime::from_hms_opt(2, 30, 0).expect("time"),
        );
        assert_eq!(due, utc("2026-10-25T00:30:00Z"));
    }

    fn frequency() -> impl Strategy<Value = Frequency> {
        prop_oneof![
            Just(Frequency::Daily),
            Just(Frequency::Weekly),
            Just(Frequency::Monthly),
            Just(Frequency::Quarterly),
            Just(Frequency::Yearly),
            (1u32..45).prop_map(Frequency::EveryNDays),
        ]
    }

    fn plan() -> impl Strategy<Value = CalendarPlan> {
        let zones = [
            chrono_tz::Europe::Paris,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Sydney,
            chrono_tz::UTC,
        ];
        (frequency(), 0i64..800, 0u32..24, 0u32..60, 0usize..4).prop_map(
            move |(frequency, offset, h, m, z)| CalendarPlan {
                frequency,
                start: date(2026, 1, 1) + Duration::days(offset),
                due_time: NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN),
                zone: zones[z],
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn no_duplicates_no_gaps_and_windows_compose(plan in plan(), split in 1i64..1500) {
            let from = utc("2025-12-01T00:00:00Z");
            let to = utc("2030-01-01T00:00:00Z");
            let middle = (from + Duration::days(split)).min(to);
            let all = occurrences(&plan, from, to);
            let mut pieces = occurrences(&plan, from, middle);
            pieces.extend(occurrences(&plan, middle, to));
            prop_assert_eq!(&all, &pieces, "two windows give what one window gives");
            for pair in all.windows(2) {
                prop_assert_eq!(pair[1].index, pair[0].index + 1, "no gaps");
                prop_assert!(pair[1].due_at > pair[0].due_at, "strictly increasing, no duplicates");
                // Consecutive local dates are one period apart in calendar terms.
                let expected = nth_date(&plan, pair[1].index);
                prop_assert_eq!(Some(pair[1].local_date), expected);
                match plan.frequency {
                    Frequency::Daily => prop_assert_eq!((pair[1].local_date - pair[0].local_date).num_days(), 1),
                    Frequency::Weekly => prop_assert_eq!((pair[1].local_date - pair[0].local_date).num_days(), 7),
                    Frequency::EveryNDays(n) => prop_assert_eq!((pair[1].local_date - pair[0].local_date).num_days(), i64::from(n)),
                    Frequency::Monthly | Frequency::Quarterly | Frequency::Yearly => {
                        let day = pair[1].local_date.day();
                        prop_assert!(day == plan.start.day() || day < plan.start.day(), "anchored to the start day, clamped at month end");
                    }
                }
            }
            for occurrence in &all {
                // The due instant shows the planned local date and (unless skipped by DST) time.
                let local = occurrence.due_at.with_timezone(&plan.zone);
                prop_assert_eq!(local.date_naive(), occurrence.local_date);
                prop_assert!(local.time() >= plan.due_time || local.time() < NaiveTime::from_hms_opt(1, 0, 0).unwrap_or(NaiveTime::MIN));
            }
        }
    }

    #[test]
    fn meter_plans_reset_on_completion() {
        assert!(!meter_due(1_000, 500, 1_499));
        assert!(meter_due(1_000, 500, 1_500));
        assert!(
            !meter_due(1_500, 500, 1_600),
            "the last completion resets the count"
        );
    }
}
