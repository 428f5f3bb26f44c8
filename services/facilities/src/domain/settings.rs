//! Engineering settings of a property: the engineering calendar and the respond/fix targets per
//! priority, with the defaults for everything left unset, validated field by field.
//!
//! Urgent priorities (life-safety, guest-impacting) run around the clock by default: a broken
//! lift or a guest without heating is fixed at night. Normal and low work is measured in
//! engineering hours. Without stored settings the calendar is always open (UTC), so every clock
//! is elapsed time.

use std::collections::BTreeMap;

use chrono::Duration;
use chrono_tz::Tz;
use guestloop_kit::worktime::{CalendarSpec, WorkingCalendar};
use guestloop_kit::FieldViolation;
use guestloop_proto::facilities::v1 as pb;

use super::work_orders::{targets as default_targets, Priority};

pub const PRIORITIES: [Priority; 4] = [
    Priority::LifeSafety,
    Priority::GuestImpacting,
    Priority::Normal,
    Priority::Low,
];

/// Longest target accepted (one year), so working-time arithmetic stays within its horizon.
const MAX_TARGET_MINUTES: i32 = 366 * 24 * 60;

pub fn priority_from_wire(value: i32) -> Option<Priority> {
    match pb::Priority::try_from(value).ok()? {
        pb::Priority::LifeSafety => Some(Priority::LifeSafety),
        pb::Priority::GuestImpacting => Some(Priority::GuestImpacting),
        pb::Priority::Normal => Some(Priority::Normal),
        pb::Priority::Low => Some(Priority::Low),
        pb::Priority::Unspecified => None,
    }
}

pub fn priority_to_wire(priority: Priority) -> pb::Priority {
    match priority {
        Priority::LifeSafety => pb::Priority::LifeSafety,
        Priority::GuestImpacting => pb::Priority::GuestImpacting,
        Priority::Normal => pb::Priority::Normal,
        Priority::Low => pb::Priority::Low,
    }
}

/// The respond and fix targets of one priority, and which clock measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub respond: Duration,
    pub fix: Duration,
    pub around_the_clock: bool,
}

pub fn default_target(priority: Priority) -> Target {
    let (respond, fix) = default_targets(priority);
    Target {
        respond,
        fix,
        around_the_clock: matches!(priority, Priority::LifeSafety | Priority::GuestImpacting),
    }
}

/// Validated settings with every default applied.
#[derive(Debug, Clone)]
pub struct Engineering {
    calendar: WorkingCalendar,
    around_the_clock: WorkingCalendar,
    targets: BTreeMap<u8, Target>,
}

fn key(priority: Priority) -> u8 {
    priority_to_wire(priority) as u8
}

impl Engineering {
    /// Settings of a property that stored none: around the clock in UTC, default targets.
    pub fn around_the_clock_utc() -> Self {
        Self {
            calendar: WorkingCalendar::always_open(chrono_tz::UTC),
            around_the_clock: WorkingCalendar::always_open(chrono_tz::UTC),
            targets: PRIORITIES
                .iter()
                .map(|p| (key(*p), default_target(*p)))
                .collect(),
        }
    }

    /// Validates stored or submitted settings; every violation names its field.
    pub fn from_wire(settings: &pb::EngineeringSettings) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let zone_text = if settings.time_zone.is_empty() {
            "UTC"
        } else {
            settings.time_zone.as_str()
        };
        let zone: Tz = match zone_text.parse() {
            Ok(zone) => zone,
            Err(_) => {
                violations.push(FieldViolation::new(
                    "settings.time_zone",
                    format!("unknown IANA time zone `{zone_text}`"),
                ));
                chrono_tz::UTC
            }
        };
        let calendar = match WorkingCalendar::try_from(CalendarSpec::from_wire(
            zone.name(),
            settings.always_open,
            &settings.days,
            &settings.holidays,
            0,
        )) {
            Ok(calendar) => Some(calendar),
            Err(error) => {
                violations.push(FieldViolation::new("settings.days", error.to_string()));
                None
            }
        };
        let mut targets: BTreeMap<u8, Target> = PRIORITIES
            .iter()
            .map(|p| (key(*p), default_target(*p)))
            .collect();
        let mut seen = Vec::new();
        for (i, target) in settings.targets.iter().enumerate() {
            let field = |name: &str| format!("settings.targets[{i}].{name}");
            let Some(priority) = priority_from_wire(target.priority) else {
                violations.push(FieldViolation::new(
                    field("priority"),
                    format!("must be a known priority, not {}", target.priority),
                ));
                continue;
            };
            if seen.contains(&target.priority) {
                violations.push(FieldViolation::new(
                    field("priority"),
                    "appears twice; give one target per priority",
                ));
                continue;
            }
            seen.push(target.priority);
            let mut ok = true;
            for (name, minutes) in [
                ("respond_minutes", target.respond_minutes),
                ("fix_minutes", target.fix_minutes),
            ] {
                if !(1..=MAX_TARGET_MINUTES).contains(&minutes) {
                    violations.push(FieldViolation::new(
                        field(name),
                        format!("must be between 1 and {MAX_TARGET_MINUTES} minutes"),
                    ));
                    ok = false;
                }
            }
            if ok && target.respond_minutes > target.fix_minutes {
                violations.push(FieldViolation::new(
                    field("respond_minutes"),
                    "must not exceed fix_minutes (a repair starts with the response)",
                ));
                ok = false;
            }
            if ok {
                targets.insert(
                    key(priority),
                    Target {
                        respond: Duration::minutes(i64::from(target.respond_minutes)),
                        fix: Duration::minutes(i64::from(target.fix_minutes)),
                        around_the_clock: target.around_the_clock,
                    },
                );
            }
        }
        match calendar {
            Some(calendar) if violations.is_empty() => Ok(Self {
                calendar,
                around_the_clock: WorkingCalendar::always_open(zone),
                targets,
            }),
            _ => Err(violations),
        }
    }

    pub fn target(&self, priority: Priority) -> Target {
        self.targets
            .get(&key(priority))
            .copied()
            .unwrap_or_else(|| default_target(priority))
    }

    /// The calendar that measures this priority's clocks.
    pub fn calendar(&self, priority: Priority) -> &WorkingCalendar {
        if self.target(priority).around_the_clock {
            &self.around_the_clock
        } else {
            &self.calendar
        }
    }

    /// The targets of all four priorities, as answered on the wire.
    pub fn targets_to_wire(&self) -> Vec<pb::RepairTarget> {
        PRIORITIES
            .iter()
            .map(|p| {
                let target = self.target(*p);
                pb::RepairTarget {
                    priority: priority_to_wire(*p) as i32,
                    respond_minutes: i32::try_from(target.respond.num_minutes())
                        .unwrap_or(i32::MAX),
                    fix_minutes: i32::try_from(target.fix.num_minutes()).unwrap_or(i32::MAX),
                    around_the_clock: target.around_the_clock,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use guestloop_proto::common::v1::{WorkingDay, WorkingInterval};

    fn weekdays_nine_to_five() -> pb::EngineeringSettings {
        pb::EngineeringSettings {
            property_id: "p".into(),
            time_zone: "Europe/Paris".into(),
            days: ["mon", "tue", "wed", "thu", "fri"]
                .into_iter()
                .map(|d| WorkingDay {
                    weekday: d.into(),
                    intervals: vec![WorkingInterval {
                        start: "09:00".into(),
                        end: "17:00".into(),
                    }],
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_match_the_issue_and_urgent_work_runs_around_the_clock() {
        let settings = Engineering::from_wire(&weekdays_nine_to_five()).expect("valid");
        let life = settings.target(Priority::LifeSafety);
        assert_eq!(
            (life.respond, life.fix),
            (Duration::minutes(15), Duration::hours(2))
        );
        assert!(life.around_the_clock);
        assert!(settings.target(Priority::GuestImpacting).around_the_clock);
        let low = settings.target(Priority::Low);
        assert_eq!(
            (low.respond, low.fix),
            (Duration::hours(72), Duration::days(14))
        );
        assert!(!low.around_the_clock);
        assert!(settings.calendar(Priority::LifeSafety).is_always_open());
        assert!(!settings.calendar(Priority::Normal).is_always_open());
    }

    #[test]
    fn normal_work_reported_friday_evening_is_due_in_engineering_hours() {
        let mut wire = weekdays_nine_to_five();
        wire.targets.push(pb::RepairTarget {
            priority: pb::Priority::Normal as i32,
            respond_minutes: 60,
            fix_minutes: 4 * 60,
            around_the_clock: false,
        });
        let settings = Engineering::from_wire(&wire).expect("valid");
        // Friday 2026-11-27 18:00 Paris = 17:00 UTC: the next engineering hour is Monday 09:00.
        let reported = Utc.with_ymd_and_hms(2026, 11, 27, 17, 0, 0).unwrap();
        let calendar = settings.calendar(Priority::Normal);
        let target = settings.target(Priority::Normal);
        assert_eq!(
            calendar.add_working_time(reported, target.respond),
            Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
        );
        // The same report as life-safety is due two hours later, at night.
        let life = settings.target(Priority::LifeSafety);
        assert_eq!(
            settings
                .calendar(Priority::LifeSafety)
                .add_working_time(reported, life.fix),
            Utc.with_ymd_and_hms(2026, 11, 27, 19, 0, 0).unwrap()
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut wire = weekdays_nine_to_five();
        wire.time_zone = "Mars/Olympus".into();
        wire.targets = vec![
            pb::RepairTarget {
                priority: 0,
                respond_minutes: 10,
                fix_minutes: 20,
                around_the_clock: true,
            },
            pb::RepairTarget {
                priority: pb::Priority::Low as i32,
                respond_minutes: 600,
                fix_minutes: 60,
                around_the_clock: false,
            },
            pb::RepairTarget {
                priority: pb::Priority::Low as i32,
                respond_minutes: 1,
                fix_minutes: 2,
                around_the_clock: false,
            },
            pb::RepairTarget {
                priority: pb::Priority::Normal as i32,
                respond_minutes: 0,
                fix_minutes: 60,
                around_the_clock: false,
            },
        ];
        let fields: Vec<String> = Engineering::from_wire(&wire)
            .expect_err("invalid")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "settings.time_zone",
                "settings.targets[0].priority",
                "settings.targets[1].respond_minutes",
                "settings.targets[2].priority",
                "settings.targets[3].respond_minutes",
            ]
        );
    }

    #[test]
    fn a_calendar_without_hours_is_refused() {
        let mut wire = weekdays_nine_to_five();
        wire.days.clear();
        let violations = Engineering::from_wire(&wire).expect_err("no working time");
        assert_eq!(violations[0].field, "settings.days");
        wire.always_open = true;
        assert!(Engineering::from_wire(&wire).is_ok());
    }

    #[test]
    fn answers_list_all_four_priorities() {
        let listed = Engineering::around_the_clock_utc().targets_to_wire();
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[0].respond_minutes, 15);
        assert_eq!(listed[3].fix_minutes, 14 * 24 * 60);
    }
}
