//! Property settings: what each property configures (time zone, calendars, SLA targets,
//! escalation ladder, authority limits, follow-up and detection windows), with the chain
//! defaults from DOMAIN §2 for everything left unset, validated into [`EffectiveSettings`].

use std::collections::BTreeMap;

use chrono::Duration;
use guestloop_kit::auth::Role;
use guestloop_kit::worktime::{CalendarSpec, SlaTarget, WorkingCalendar};
use guestloop_kit::{ApiError, FieldViolation};
use guestloop_proto::complaints::v1 as pb;

/// Settings with every default applied, ready for the rules.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    pub currency_code: String,
    /// Property default calendar (service centre) and per-department calendars.
    pub default_calendar: WorkingCalendar,
    /// Every hour of every day in the property's zone: the resolution limits given as a
    /// duration (DOMAIN §2: 30 min, 2 h, 24 h) run on it; only those in working days follow a
    /// calendar.
    pub around_the_clock: WorkingCalendar,
    pub department_calendars: BTreeMap<String, WorkingCalendar>,
    pub stage_targets: BTreeMap<i32, SlaTarget>,
    pub urgency_targets: BTreeMap<i32, SlaTarget>,
    pub escalation_ladder: Vec<Role>,
    /// Per role: (money minor units, points); None = unlimited.
    pub authority_limits: BTreeMap<Role, (Option<i64>, Option<i64>)>,
    pub at_risk_ratio: f64,
    pub follow_up_delay: Duration,
    pub reopen_csat_threshold: i32,
    pub repeat_window: Duration,
    pub hotspot_window: Duration,
    pub hotspot_threshold: i64,
    pub categories: Vec<String>,
}

/// DOMAIN §2 stage limits in minutes.
const DEFAULT_STAGE_MINUTES: [(pb::Stage, u32); 4] = [
    (pb::Stage::Acknowledge, 30),
    (pb::Stage::FirstInvestigation, 120),
    (pb::Stage::RemedyPlan, 240),
    (pb::Stage::AnswerToGuest, 24 * 60),
];

pub fn default_ladder() -> Vec<Role> {
    vec![
        Role::Agent,
        Role::Supervisor,
        Role::DutyManager,
        Role::GeneralManager,
        Role::ChainQualityManager,
    ]
}

/// Default authority per complaint, in property-currency minor units and points.
pub fn default_limits() -> BTreeMap<Role, (Option<i64>, Option<i64>)> {
    BTreeMap::from([
        (Role::Agent, (Some(3_000), Some(3_000))),
        (Role::Supervisor, (Some(15_000), Some(15_000))),
        (Role::DutyManager, (Some(60_000), Some(60_000))),
        (Role::DepartmentHead, (Some(60_000), Some(60_000))),
        (Role::GeneralManager, (None, None)),
        (Role::ChainQualityManager, (None, None)),
        (Role::ChainAdmin, (None, None)),
    ])
}

/// The longest SLA target a setting may name: a year, in minutes or in working days. Beyond it
/// a deadline leaves the range of dates the clocks compute with.
const MAX_TARGET_MINUTES: i32 = 525_600;
const MAX_TARGET_WORKING_DAYS: i32 = 365;

fn target(minutes: i32, working_days: i32, field: &str) -> Result<SlaTarget, FieldViolation> {
    match (minutes, working_days) {
        (m, 0) if !(0..=MAX_TARGET_MINUTES).contains(&m) => Err(FieldViolation::new(
            field,
            format!("minutes must be between 1 and {MAX_TARGET_MINUTES} (a year)"),
        )),
        (0, d) if !(0..=MAX_TARGET_WORKING_DAYS).contains(&d) => Err(FieldViolation::new(
            field,
            format!("working_days must be between 1 and {MAX_TARGET_WORKING_DAYS}"),
        )),
        (m, 0) if m > 0 => Ok(SlaTarget::WorkingTime(Duration::minutes(i64::from(m)))),
        (0, d) if d > 0 => Ok(SlaTarget::WorkingDays(d as u32)),
        _ => Err(FieldViolation::new(
            field,
            "exactly one of minutes or working_days must be positive",
        )),
    }
}

fn calendar_spec(time_zone: &str, calendar: &pb::WorkingCalendar) -> CalendarSpec {
    CalendarSpec::from_wire(
        time_zone,
        calendar.always_open,
        &calendar.days,
        &calendar.holidays,
        calendar.working_day_hours,
    )
}

fn always_open(time_zone: &str) -> Result<WorkingCalendar, String> {
    WorkingCalendar::try_from(CalendarSpec {
        time_zone: time_zone.to_string(),
        always_open: true,
        weekly: Vec::new(),
        holidays: Vec::new(),
        working_day_hours: None,
    })
    .map_err(|e| e.to_string())
}

/// The currency of a property's authority limits and compensation (EUR when unset).
pub fn currency_of(settings: &pb::PropertySettings) -> String {
    if settings.currency_code.is_empty() {
        "EUR".to_string()
    } else {
        settings.currency_code.clone()
    }
}

/// A category or department name as complaints carry it: trimmed and lowercased.
pub fn normal_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Category names normalised like a complaint's category, blanks dropped, duplicates folded
/// (first occurrence kept).
pub fn normal_categories(categories: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for name in categories.iter().map(|c| normal_name(c)) {
        if !name.is_empty() && !kept.contains(&name) {
            kept.push(name);
        }
    }
    kept
}

/// Brings submitted settings into the form complaints are matched against (category and
/// calendar department names trimmed and lowercased, categories deduplicated), so what is
/// stored and read back is what intake compares with.
pub fn normalise(settings: &mut pb::PropertySettings) {
    settings.categories = normal_categories(&settings.categories);
    for calendar in &mut settings.calendars {
        calendar.department = normal_name(&calendar.department);
    }
}

/// The most categories a property's (or chain's) taxonomy holds, and the longest name: a
/// complaint's category is at most that long, so a longer one could never match.
pub const MAX_CATEGORIES: usize = 200;
pub const MAX_CATEGORY_CHARS: usize = 100;

/// What settings must also meet to be saved (stored ones are read as they are): every stage,
/// urgency, department calendar and role at most once, where a second one silently won before,
/// and a bounded taxonomy. Run on normalised settings ([`normalise`]).
pub fn check_for_write(settings: &pb::PropertySettings) -> Result<(), ApiError> {
    fn once<K: Ord + std::fmt::Display>(
        keys: impl Iterator<Item = K>,
        field: &str,
        what: &str,
        violations: &mut Vec<FieldViolation>,
    ) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, key) in keys.enumerate() {
            let shown = key.to_string();
            if !seen.insert(key) {
                violations.push(FieldViolation::new(
                    format!("settings.{field}[{i}].{what}"),
                    format!("`{shown}` is given twice"),
                ));
            }
        }
    }
    let mut violations = Vec::new();
    once(
        settings.stage_targets.iter().map(|t| t.stage),
        "stage_targets",
        "stage",
        &mut violations,
    );
    once(
        settings.urgency_targets.iter().map(|t| t.urgency),
        "urgency_targets",
        "urgency",
        &mut violations,
    );
    once(
        settings
            .calendars
            .iter()
            .map(|c| normal_name(&c.department)),
        "calendars",
        "department",
        &mut violations,
    );
    once(
        settings
            .authority_limits
            .iter()
            .map(|l| l.role.trim().to_string()),
        "authority_limits",
        "role",
        &mut violations,
    );
    if settings.categories.len() > MAX_CATEGORIES {
        violations.push(FieldViolation::new(
            "settings.categories",
            format!("at most {MAX_CATEGORIES} categories"),
        ));
    }
    if let Some(long) = settings
        .categories
        .iter()
        .find(|c| c.chars().count() > MAX_CATEGORY_CHARS)
    {
        violations.push(FieldViolation::new(
            "settings.categories",
            format!(
                "`{}…` is longer than {MAX_CATEGORY_CHARS} characters, which no complaint's category can match",
                long.chars().take(20).collect::<String>()
            ),
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(violations))
    }
}

/// Validates stored or submitted settings and fills the defaults; errors name the field.
/// Category and department names are normalised (see [`normalise`]), also for settings stored
/// before that was done on write.
pub fn effective(settings: &pb::PropertySettings) -> Result<EffectiveSettings, ApiError> {
    let mut violations = Vec::new();
    let zone_text = if settings.time_zone.is_empty() {
        "UTC"
    } else {
        settings.time_zone.as_str()
    };
    if zone_text.parse::<chrono_tz::Tz>().is_err() {
        violations.push(FieldViolation::new(
            "settings.time_zone",
            format!("unknown IANA time zone `{zone_text}`"),
        ));
    }
    let currency_code = currency_of(settings);
    if currency_code.len() != 3 || !currency_code.chars().all(|c| c.is_ascii_uppercase()) {
        violations.push(FieldViolation::new(
            "settings.currency_code",
            "must be a three-letter ISO 4217 code",
        ));
    }

    let mut default_calendar = None;
    let mut department_calendars = BTreeMap::new();
    for (i, calendar) in settings.calendars.iter().enumerate() {
        let department = normal_name(&calendar.department);
        match WorkingCalendar::try_from(calendar_spec(zone_text, calendar)) {
            Ok(built) if department.is_empty() => default_calendar = Some(built),
            Ok(built) => {
                department_calendars.insert(department, built);
            }
            Err(error) => violations.push(FieldViolation::new(
                format!("settings.calendars[{i}]"),
                error.to_string(),
            )),
        }
    }

    let mut stage_targets: BTreeMap<i32, SlaTarget> = DEFAULT_STAGE_MINUTES
        .iter()
        .map(|(stage, minutes)| {
            (
                *stage as i32,
                SlaTarget::WorkingTime(Duration::minutes(i64::from(*minutes))),
            )
        })
        .collect();
    for (i, stage_target) in settings.stage_targets.iter().enumerate() {
        let field = format!("settings.stage_targets[{i}]");
        match pb::Stage::try_from(stage_target.stage) {
            Ok(stage) if stage != pb::Stage::Unspecified && stage != pb::Stage::Resolution => {
                match target(stage_target.minutes, stage_target.working_days, &field) {
                    Ok(t) => {
                        stage_targets.insert(stage as i32, t);
                    }
                    Err(v) => violations.push(v),
                }
            }
            _ => violations.push(FieldViolation::new(
                format!("{field}.stage"),
                "must be a stage other than RESOLUTION (set urgency_targets)",
            )),
        }
    }
    let mut urgency_targets: BTreeMap<i32, SlaTarget> = BTreeMap::from([
        (
            pb::Urgency::Critical as i32,
            SlaTarget::WorkingTime(Duration::minutes(30)),
        ),
        (
            pb::Urgency::High as i32,
            SlaTarget::WorkingTime(Duration::hours(2)),
        ),
        (
            pb::Urgency::Medium as i32,
            SlaTarget::WorkingTime(Duration::hours(24)),
        ),
        (pb::Urgency::Low as i32, SlaTarget::WorkingDays(3)),
    ]);
    for (i, urgency_target) in settings.urgency_targets.iter().enumerate() {
        let field = format!("settings.urgency_targets[{i}]");
        match pb::Urgency::try_from(urgency_target.urgency) {
            Ok(urgency) if urgency != pb::Urgency::Unspecified => {
                match target(urgency_target.minutes, urgency_target.working_days, &field) {
                    Ok(t) => {
                        urgency_targets.insert(urgency as i32, t);
                    }
                    Err(v) => violations.push(v),
                }
            }
            _ => violations.push(FieldViolation::new(
                format!("{field}.urgency"),
                "must be a known urgency",
            )),
        }
    }

    let escalation_ladder = if settings.escalation_ladder.is_empty() {
        default_ladder()
    } else {
        let mut ladder = Vec::new();
        for (i, name) in settings.escalation_ladder.iter().enumerate() {
            match name.parse::<Role>() {
                Ok(role) if role.is_staff() && !ladder.contains(&role) => ladder.push(role),
                Ok(_) => violations.push(FieldViolation::new(
                    format!("settings.escalation_ladder[{i}]"),
                    "must be a staff role listed once",
                )),
                Err(e) => violations.push(FieldViolation::new(
                    format!("settings.escalation_ladder[{i}]"),
                    e,
                )),
            }
        }
        ladder
    };

    let mut authority_limits = default_limits();
    for (i, limit) in settings.authority_limits.iter().enumerate() {
        let field = format!("settings.authority_limits[{i}]");
        let role = match limit.role.parse::<Role>() {
            Ok(role) if role.is_staff() => role,
            _ => {
                violations.push(FieldViolation::new(
                    format!("{field}.role"),
                    "must be a staff role",
                ));
                continue;
            }
        };
        let parse = |value: i64, name: &str, violations: &mut Vec<FieldViolation>| match value {
            -1 => None,
            v if v >= 0 => Some(v),
            _ => {
                violations.push(FieldViolation::new(
                    format!("{field}.{name}"),
                    "must be 0 or more, or -1 for unlimited",
                ));
                None
            }
        };
        let money = parse(
            limit.money_minor_units,
            "money_minor_units",
            &mut violations,
        );
        let points = parse(limit.points, "points", &mut violations);
        authority_limits.insert(role, (money, points));
    }

    let at_risk_ratio = if settings.at_risk_ratio == 0.0 {
        0.75
    } else {
        settings.at_risk_ratio
    };
    if !(0.0..1.0).contains(&at_risk_ratio) || at_risk_ratio <= 0.0 {
        violations.push(FieldViolation::new(
            "settings.at_risk_ratio",
            "must be between 0 and 1 (exclusive)",
        ));
    }
    let positive_or_default =
        |value: i32, default: i64, max: i32, field: &str, violations: &mut Vec<FieldViolation>| {
            if value < 0 {
                violations.push(FieldViolation::new(field, "must not be negative"));
            }
            if value > max {
                violations.push(FieldViolation::new(field, format!("must be at most {max}")));
            }
            if value <= 0 || value > max {
                default
            } else {
                i64::from(value)
            }
        };
    let follow_up_hours = positive_or_default(
        settings.follow_up_delay_hours,
        24,
        8_760,
        "settings.follow_up_delay_hours",
        &mut violations,
    );
    let repeat_days = positive_or_default(
        settings.repeat_window_days,
        30,
        3_650,
        "settings.repeat_window_days",
        &mut violations,
    );
    let hotspot_days = positive_or_default(
        settings.hotspot_window_days,
        30,
        3_650,
        "settings.hotspot_window_days",
        &mut violations,
    );
    let hotspot_threshold = positive_or_default(
        settings.hotspot_threshold,
        3,
        100_000,
        "settings.hotspot_threshold",
        &mut violations,
    );
    // Absent: the default; 0 switches automatic reopening off.
    let reopen_csat_threshold = settings
        .reopen_csat_threshold
        .unwrap_or(DEFAULT_REOPEN_CSAT_THRESHOLD);
    if !(0..=5).contains(&reopen_csat_threshold) {
        violations.push(FieldViolation::new(
            "settings.reopen_csat_threshold",
            "must be between 0 (never) and 5",
        ));
    }

    let around_the_clock =
        always_open(zone_text).map_err(|e| ApiError::invalid("settings.time_zone", e))?;
    let default_calendar = default_calendar.unwrap_or_else(|| around_the_clock.clone());
    if !violations.is_empty() {
        return Err(ApiError::InvalidArgument(violations));
    }
    Ok(EffectiveSettings {
        currency_code,
        default_calendar,
        around_the_clock,
        department_calendars,
        stage_targets,
        urgency_targets,
        escalation_ladder,
        authority_limits,
        at_risk_ratio,
        follow_up_delay: Duration::hours(follow_up_hours),
        reopen_csat_threshold,
        repeat_window: Duration::days(repeat_days),
        hotspot_window: Duration::days(hotspot_days),
        hotspot_threshold,
        categories: normal_categories(&settings.categories),
    })
}

impl EffectiveSettings {
    /// The calendar a stage clock runs on: acknowledging and answering the guest belong to the
    /// service centre (property default); the rest to the responsible department. A resolution
    /// limit given as a duration (critical 30 minutes, high 2 hours, medium 24 hours) runs
    /// around the clock: a critical complaint filed on Friday evening is not due on Monday
    /// morning. Only a limit in working days (low: 3) follows the department's calendar.
    pub fn calendar_for(
        &self,
        stage: pb::Stage,
        department: &str,
        target: &SlaTarget,
    ) -> &WorkingCalendar {
        match (stage, target) {
            (pb::Stage::Resolution, SlaTarget::WorkingTime(_)) => &self.around_the_clock,
            (pb::Stage::Acknowledge | pb::Stage::AnswerToGuest, _) => &self.default_calendar,
            _ => self
                .department_calendars
                .get(department)
                .unwrap_or(&self.default_calendar),
        }
    }

    /// The target of a stage clock for a complaint of `urgency`.
    pub fn target_for(&self, stage: pb::Stage, urgency: pb::Urgency) -> Option<SlaTarget> {
        match stage {
            pb::Stage::Resolution => self.urgency_targets.get(&(urgency as i32)).cloned(),
            other => self.stage_targets.get(&(other as i32)).cloned(),
        }
    }
}

/// A rating at or below which a complaint reopens, unless the settings say otherwise.
pub const DEFAULT_REOPEN_CSAT_THRESHOLD: i32 = 2;

/// The settings a property starts with before anyone configures it.
pub fn default_settings(property_id: &str) -> pb::PropertySettings {
    pb::PropertySettings {
        property_id: property_id.to_string(),
        time_zone: "UTC".into(),
        currency_code: "EUR".into(),
        at_risk_ratio: 0.75,
        follow_up_delay_hours: 24,
        reopen_csat_threshold: Some(DEFAULT_REOPEN_CSAT_THRESHOLD),
        repeat_window_days: 30,
        hotspot_window_days: 30,
        hotspot_threshold: 3,
        escalation_ladder: default_ladder()
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(department: &str) -> pb::WorkingCalendar {
        pb::WorkingCalendar {
            department: department.into(),
            always_open: true,
            ..Default::default()
        }
    }

    fn violated(settings: &pb::PropertySettings) -> Vec<String> {
        match effective(settings) {
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected INVALID_ARGUMENT, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn targets_and_windows_beyond_what_clocks_can_count_are_refused() {
        let defaults = default_settings("paris");
        let year = pb::UrgencyTarget {
            urgency: pb::Urgency::Low as i32,
            minutes: 0,
            working_days: 365,
        };
        let within = pb::PropertySettings {
            urgency_targets: vec![year],
            stage_targets: vec![pb::StageTarget {
                stage: pb::Stage::Acknowledge as i32,
                minutes: 525_600,
                working_days: 0,
            }],
            repeat_window_days: 3_650,
            hotspot_window_days: 3_650,
            follow_up_delay_hours: 8_760,
            ..defaults.clone()
        };
        assert!(effective(&within).is_ok());
        let cases: Vec<(pb::PropertySettings, &str)> = vec![
            (
                pb::PropertySettings {
                    urgency_targets: vec![pb::UrgencyTarget {
                        working_days: 100_000_000,
                        ..year
                    }],
                    ..defaults.clone()
                },
                "settings.urgency_targets[0]",
            ),
            (
                pb::PropertySettings {
                    stage_targets: vec![pb::StageTarget {
                        stage: pb::Stage::Acknowledge as i32,
                        minutes: i32::MAX,
                        working_days: 0,
                    }],
                    ..defaults.clone()
                },
                "settings.stage_targets[0]",
            ),
            (
                pb::PropertySettings {
                    repeat_window_days: 100_000_000,
                    ..defaults.clone()
                },
                "settings.repeat_window_days",
            ),
            (
                pb::PropertySettings {
                    hotspot_window_days: 3_651,
                    ..defaults.clone()
                },
                "settings.hotspot_window_days",
            ),
            (
                pb::PropertySettings {
                    follow_up_delay_hours: i32::MAX,
                    ..defaults.clone()
                },
                "settings.follow_up_delay_hours",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(violated(&settings), vec![field.to_string()], "{field}");
        }
    }

    #[test]
    fn settings_to_save_give_each_key_once_and_a_bounded_taxonomy() {
        let mut settings = default_settings("paris");
        assert!(check_for_write(&settings).is_ok());
        settings.calendars = vec![
            pb::WorkingCalendar {
                department: "Engineering".into(),
                ..Default::default()
            },
            pb::WorkingCalendar {
                department: "engineering ".into(),
                ..Default::default()
            },
        ];
        settings.urgency_targets = vec![
            pb::UrgencyTarget {
                urgency: pb::Urgency::High as i32,
                minutes: 60,
                ..Default::default()
            },
            pb::UrgencyTarget {
                urgency: pb::Urgency::High as i32,
                minutes: 90,
                ..Default::default()
            },
        ];
        settings.categories = vec!["x".repeat(101)];
        let fields: Vec<String> = match check_for_write(&settings) {
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fields,
            vec![
                "settings.urgency_targets[1].urgency",
                "settings.calendars[1].department",
                "settings.categories"
            ]
        );
    }

    #[test]
    fn settings_saved_without_a_reopen_threshold_keep_the_default() {
        let threshold = |value: Option<i32>| {
            effective(&pb::PropertySettings {
                reopen_csat_threshold: value,
                ..default_settings("paris")
            })
            .map(|e| e.reopen_csat_threshold)
        };
        assert_eq!(threshold(None).ok(), Some(DEFAULT_REOPEN_CSAT_THRESHOLD));
        assert_eq!(threshold(Some(0)).ok(), Some(0), "0 switches reopening off");
        assert_eq!(threshold(Some(4)).ok(), Some(4));
        assert!(threshold(Some(6)).is_err());
        assert!(threshold(Some(-1)).is_err());
    }

    #[test]
    fn category_and_department_names_match_what_complaints_carry() {
        let mut settings = pb::PropertySettings {
            categories: vec![" Noise".into(), "Wi-Fi".into(), "noise".into(), "  ".into()],
            calendars: vec![calendar(" Engineering "), calendar("")],
            ..default_settings("paris")
        };
        // Settings stored before names were normalised on write work all the same.
        let built = effective(&settings).expect("valid settings");
        assert_eq!(built.categories, ["noise", "wi-fi"]);
        assert_eq!(
            built.department_calendars.keys().collect::<Vec<_>>(),
            ["engineering"]
        );
        assert!(!std::ptr::eq(
            built.calendar_for(
                pb::Stage::FirstInvestigation,
                "engineering",
                &SlaTarget::WorkingTime(Duration::hours(2))
            ),
            &built.default_calendar
        ));

        normalise(&mut settings);
        assert_eq!(settings.categories, ["noise", "wi-fi"]);
        let departments: Vec<&str> = settings
            .calendars
            .iter()
            .map(|c| c.department.as_str())
            .collect();
        assert_eq!(departments, ["engineering", ""]);
    }
}
