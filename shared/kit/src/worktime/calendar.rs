//! Working calendars and working-time arithmetic.
//!
//! An instant is working time when its local wall time, in the calendar's zone, falls inside a
//! working interval of its local date (and that date is no holiday). Local intervals become UTC
//! intervals day by day, split where the UTC offset changes, so DST is exact: a working hour
//! skipped in spring does not exist, and a working hour repeated in autumn counts twice — it was
//! worked twice.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Longest stretch searched for working time (a calendar with almost none still terminates).
const HORIZON_DAYS: i64 = 3 * 366;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("time_zone: unknown IANA time zone `{0}`")]
    UnknownZone(String),
    #[error("{field}: `{value}` is not a time HH:MM (end may be 24:00)")]
    BadTime { field: String, value: String },
    #[error("{field}: `{value}` is not a weekday (mon … sun)")]
    BadWeekday { field: String, value: String },
    #[error("{field}: start must be before end")]
    EmptyInterval { field: String },
    #[error("{field}: intervals overlap")]
    Overlap { field: String },
    #[error("{field}: `{value}` is not a date YYYY-MM-DD")]
    BadDate { field: String, value: String },
    #[error("weekly: a calendar that is not always open needs at least one working interval")]
    NoWorkingTime,
    #[error("working_day_hours: must be between 1 and 24")]
    BadDayLength,
}

/// Serialisable calendar description (stored as JSON, carried on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSpec {
    pub time_zone: String,
    #[serde(default)]
    pub always_open: bool,
    #[serde(default)]
    pub weekly: Vec<DaySpec>,
    /// Local dates, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Length of one working day for "N working days" targets (default 8; 24 when always open).
    #[serde(default)]
    pub working_day_hours: Option<u32>,
}

impl CalendarSpec {
    /// A calendar described on the wire (`guestloop.common.v1.WorkingDay` weeks), in `time_zone`.
    /// `working_day_hours` ≤ 0 means the default.
    pub fn from_wire(
        time_zone: &str,
        always_open: bool,
        days: &[guestloop_proto::common::v1::WorkingDay],
        holidays: &[String],
        working_day_hours: i32,
    ) -> Self {
        CalendarSpec {
            time_zone: time_zone.to_string(),
            always_open,
            weekly: days
                .iter()
                .map(|day| DaySpec {
                    weekday: day.weekday.clone(),
                    intervals: day
                        .intervals
                        .iter()
                        .map(|i| IntervalSpec {
                            start: i.start.clone(),
                            end: i.end.clone(),
                        })
                        .collect(),
                })
                .collect(),
            holidays: holidays.to_vec(),
            working_day_hours: u32::try_from(working_day_hours).ok().filter(|h| *h > 0),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySpec {
    /// `mon` … `sun`.
    pub weekday: String,
    pub intervals: Vec<IntervalSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalSpec {
    /// `HH:MM`, local.
    pub start: String,
    /// `HH:MM`, local; `24:00` for midnight at the end of the day.
    pub end: String,
}

/// A local working interval; `end == None` means midnight at the end of the day.
type LocalInterval = (NaiveTime, Option<NaiveTime>);

/// A validated calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingCalendar {
    zone: Tz,
    always_open: bool,
    /// Indexed by `Weekday::num_days_from_monday`.
    weekly: [Vec<LocalInterval>; 7],
    holidays: BTreeSet<NaiveDate>,
    day_length: Duration,
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

fn parse_time(
    text: &str,
    field: &str,
    allow_midnight_end: bool,
) -> Result<Option<NaiveTime>, CalendarError> {
    if allow_midnight_end && text == "24:00" {
        return Ok(None);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map(Some)
        .map_err(|_| CalendarError::BadTime {
            field: field.to_string(),
            value: text.to_string(),
        })
}

impl TryFrom<CalendarSpec> for WorkingCalendar {
    type Error = CalendarError;

    fn try_from(spec: CalendarSpec) -> Result<Self, Self::Error> {
        let zone: Tz = spec
            .time_zone
            .parse()
            .map_err(|_| CalendarError::UnknownZone(spec.time_zone.clone()))?;
        let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
        for (d, day) in spec.weekly.iter().enumerate() {
            let field = format!("weekly[{d}]");
            let weekday = parse_weekday(&day.weekday).ok_or_else(|| CalendarError::BadWeekday {
                field: format!("{field}.weekday"),
                value: day.weekday.clone(),
            })?;
            let slot = &mut weekly[weekday.num_days_from_monday() as usize];
            for (i, interval) in day.intervals.iter().enumerate() {
                let field = format!("{field}.intervals[{i}]");
                let start = parse_time(&interval.start, &format!("{field}.start"), false)?
                    .unwrap_or(NaiveTime::MIN);
                let end = parse_time(&interval.end, &format!("{field}.end"), true)?;
                if end.is_some_and(|e| e <= start) {
                    return Err(CalendarError::EmptyInterval { field });
                }
                slot.push((start, end));
            }
            slot.sort_by_key(|(start, _)| *start);
            let overlaps = slot.windows(2).any(|w| match w[0].1 {
                None => true,
                Some(end) => end > w[1].0,
            });
            if overlaps {
                return Err(CalendarError::Overlap {
                    field: format!("{field}.intervals"),
                });
            }
        }
        if !spec.always_open && weekly.iter().all(Vec::is_empty) {
            return Err(CalendarError::NoWorkingTime);
        }
        let mut holidays = BTreeSet::new();
        for (i, text) in spec.holidays.iter().enumerate() {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                CalendarError::BadDate {
                    field: format!("holidays[{i}]"),
                    value: text.clone(),
                }
            })?;
            holidays.insert(date);
        }
        let hours = spec
            .working_day_hours
            .unwrap_or(if spec.always_open { 24 } else { 8 });
        if !(1..=24).contains(&hours) {
            return Err(CalendarError::BadDayLength);
        }
        Ok(Self {
            zone,
            always_open: spec.always_open,
            weekly,
            holidays: if spec.always_open {
                BTreeSet::new()
            } else {
                holidays
            },
            day_length: Duration::hours(i64::from(hours)),
        })
    }
}

/// The instant `date` begins in `zone`: its local midnight, or where a DST jump skips midnight,
/// the jump.
pub fn start_of_day(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    resolve(&zone, date.and_time(NaiveTime::MIN), false)
}

/// The UTC instant of a local wall-clock time; `end` picks the later of two ambiguous instants.
fn resolve(zone: &Tz, local: NaiveDateTime, end: bool) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => {
            if end { second } else { first }.with_timezone(&Utc)
        }
        LocalResult::None => {
            // In a spring-forward gap: read with the offset in force just before the jump.
            let before = zone
                .from_local_datetime(&(local - Duration::hours(3)))
                .earliest()
                .map(|t| chrono::Offset::fix(t.offset()));
            match before {
                Some(offset) => Utc.from_utc_datetime(
                    &(local - Duration::seconds(i64::from(offset.local_minus_utc()))),
                ),
                None => Utc.from_utc_datetime(&local),
            }
        }
    }
}

impl WorkingCalendar {
    /// A 24/7 calendar in `zone`.
    pub fn always_open(zone: Tz) -> Self {
        Self {
            zone,
            always_open: true,
            weekly: Default::default(),
            holidays: BTreeSet::new(),
            day_length: Duration::hours(24),
        }
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn is_always_open(&self) -> bool {
        self.always_open
    }

    /// Length of one working day, for "N working days" targets.
    pub fn working_day_length(&self) -> Duration {
        self.day_length
    }

    /// The working intervals of one local date, as UTC instants in order: exactly the instants
    /// whose local wall time on that date lies inside a working interval.
    fn intervals_on(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let local_intervals = &self.weekly[date.weekday().num_days_from_monday() as usize];
        if local_intervals.is_empty() {
            return Vec::new();
        }
        let next = date + Duration::days(1);
        let day_start = resolve(&self.zone, date.and_time(NaiveTime::MIN), false);
        let day_end = resolve(&self.zone, next.and_time(NaiveTime::MIN), false);
        let mut out = Vec::new();
        for (chunk_start, chunk_end, offset) in self.constant_offset_chunks(day_start, day_end) {
            for (start, end) in local_intervals {
                let local_start = date.and_time(*start);
                let local_end = match end {
                    Some(end) => date.and_time(*end),
                    None => next.and_time(NaiveTime::MIN),
                };
                let from = Utc
                    .from_utc_datetime(&(local_start - offset))
                    .max(chunk_start);
                let to = Utc.from_utc_datetime(&(local_end - offset)).min(chunk_end);
                if from < to {
                    out.push((from, to));
                }
            }
        }
        out.sort();
        out
    }

    /// Splits `[from, to)` into pieces with one UTC offset each (at most a DST change or two).
    fn constant_offset_chunks(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>, Duration)> {
        let offset_at = |t: DateTime<Utc>| {
            Duration::seconds(i64::from(
                chrono::Offset::fix(&self.zone.offset_from_utc_datetime(&t.naive_utc()))
                    .local_minus_utc(),
            ))
        };
        let last = to - Duration::seconds(1);
        if from >= to {
            return Vec::new();
        }
        if offset_at(from) == offset_at(last) {
            return vec![(from, to, offset_at(from))];
        }
        // Changes happen on quarter hours (UTC); scan for them.
        let mut chunks = Vec::new();
        let mut chunk_start = from;
        let mut current = offset_at(from);
        let quarter = 15 * 60;
        let mut t = DateTime::<Utc>::from_timestamp(
            from.timestamp() - from.timestamp().rem_euclid(quarter) + quarter,
            0,
        )
        .unwrap_or(to);
        while t < to {
            let here = offset_at(t);
            if here != current {
                chunks.push((chunk_start, t, current));
                chunk_start = t;
                current = here;
            }
            t += Duration::seconds(quarter);
        }
        chunks.push((chunk_start, to, current));
        chunks
    }

    /// Working intervals that end after `from`, clipped to start no earlier than `from`, in order.
    fn intervals_from(
        &self,
        from: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let first = from.with_timezone(&self.zone).date_naive() - Duration::days(1);
        (0..HORIZON_DAYS).flat_map(move |offset| {
            self.intervals_on(first + Duration::days(offset))
                .into_iter()
                .filter(move |(_, end)| *end > from)
                .map(move |(start, end)| (start.max(from), end))
        })
    }

    /// The instant at which `amount` of working time has passed since `start`; the last instant
    /// a date can hold when that is beyond it (never a panic on an amount no target reaches).
    pub fn add_working_time(&self, start: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
        if amount <= Duration::zero() {
            return start;
        }
        let plus = |at: DateTime<Utc>, amount: Duration| {
            at.checked_add_signed(amount)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        if self.always_open {
            return plus(start, amount);
        }
        let mut remaining = amount;
        let mut last = start;
        for (from, to) in self.intervals_from(start) {
            let available = to - from;
            if remaining <= available {
                return from + remaining;
            }
            remaining -= available;
            last = to;
        }
        plus(last, remaining)
    }

    /// Working time within `[a, b)`.
    pub fn working_time_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
        if b <= a {
            return Duration::zero();
        }
        if self.always_open {
            return b - a;
        }
        let mut total = Duration::zero();
        for (from, to) in self.intervals_from(a) {
            if from >= b {
                break;
            }
            total += to.min(b) - from;
        }
        total
    }

    pub fn is_working_at(&self, t: DateTime<Utc>) -> bool {
        self.always_open
            || self
                .intervals_from(t)
                .next()
                .is_some_and(|(from, _)| from <= t)
    }
}
