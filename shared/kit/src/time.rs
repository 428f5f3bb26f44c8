//! Conversions between wire timestamps (`google.protobuf.Timestamp`, always UTC) and chrono.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::error::ApiError;

pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The range `google.protobuf.Timestamp` defines: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z, in seconds since the epoch. PostgreSQL holds all of it.
const FIRST_SECOND: i64 = -62_135_596_800;
const LAST_SECOND: i64 = 253_402_300_799;

/// Parses a wire timestamp, naming `field` when it is outside the range the type defines
/// (years 1 to 9999, nanos 0 to 999,999,999).
pub fn from_timestamp(field: &str, timestamp: &Timestamp) -> Result<DateTime<Utc>, ApiError> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ApiError::invalid(field, "nanos must be from 0 to 999,999,999"))?;
    if !(FIRST_SECOND..=LAST_SECOND).contains(&timestamp.seconds) {
        return Err(ApiError::invalid(
            field,
            "timestamp is out of range: years 1 to 9999",
        ));
    }
    DateTime::from_timestamp(timestamp.seconds, nanos)
        .ok_or_else(|| ApiError::invalid(field, "timestamp is out of range: years 1 to 9999"))
}

/// Like [`from_timestamp`] for an optional field that is required.
pub fn required_timestamp(
    field: &str,
    timestamp: Option<&Timestamp>,
) -> Result<DateTime<Utc>, ApiError> {
    match timestamp {
        Some(ts) => from_timestamp(field, ts),
        None => Err(ApiError::invalid(field, "is required")),
    }
}

/// A required instant at most `max_days` ahead of now, naming the field: how far one call may
/// look ahead (a schedule), so a far date (a typo, or 9999) cannot create years of work in one
/// transaction.
pub fn required_horizon(
    field: &str,
    timestamp: Option<&Timestamp>,
    max_days: i64,
) -> Result<DateTime<Utc>, ApiError> {
    let until = required_timestamp(field, timestamp)?;
    if until > Utc::now() + chrono::Duration::days(max_days) {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_days} days ahead"),
        ));
    }
    Ok(until)
}

/// A required half-open period `[start, end)` with `end` after `start`, naming the faulty field.
pub fn required_period(
    period: Option<&guestloop_proto::common::v1::TimeRange>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let period = period.ok_or_else(|| ApiError::invalid("period", "is required"))?;
    let start = required_timestamp("period.start_time", period.start_time.as_ref())?;
    let end = required_timestamp("period.end_time", period.end_time.as_ref())?;
    if end <= start {
        return Err(ApiError::invalid(
            "period.end_time",
            "must be after period.start_time",
        ));
    }
    Ok((start, end))
}

/// A calendar date written `YYYY-MM-DD` (four-digit year, no sign), from `first` to `last`
/// inclusive, or a violation naming `field`. chrono alone also reads `+12345-01-01` and
/// `-5000-01-01`, which PostgreSQL refuses or which no hotel means.
pub fn calendar_date(
    value: &str,
    field: &str,
    first: chrono::NaiveDate,
    last: chrono::NaiveDate,
) -> Result<chrono::NaiveDate, crate::error::FieldViolation> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let date = shaped
        .then(|| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| crate::error::FieldViolation::new(field, "must be a date YYYY-MM-DD"))?;
    if date < first || date > last {
        return Err(crate::error::FieldViolation::new(
            field,
            format!("must be from {first} to {last}"),
        ));
    }
    Ok(date)
}

/// A period widened to whole UTC days: from the start of its first day to the end of its last
/// (an end at midnight stays; any later instant of a day takes the whole day). Daily figures
/// count a partial day whole, so everything that is compared with them covers the same days.
pub fn whole_utc_days(
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |t: DateTime<Utc>| t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let last = midnight(end);
    let end = if last == end {
        end
    } else {
        last.checked_add_signed(chrono::Duration::days(1))
            .unwrap_or(end)
    };
    (midnight(start), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_are_shaped_and_bounded() {
        let first = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default();
        let last = chrono::NaiveDate::from_ymd_opt(2100, 12, 31).unwrap_or_default();
        let date = |v: &str| calendar_date(v, "d", first, last).map_err(|e| e.description);
        assert_eq!(
            date("2026-12-08"),
            Ok(chrono::NaiveDate::from_ymd_opt(2026, 12, 8).unwrap_or_default())
        );
        for bad in [
            "-5000-01-01",
            "+2026-01-01",
            "2026-1-08",
            "2026-02-30",
            "2026/12/08",
            "",
            " 2026-12-08",
        ] {
            assert_eq!(
                date(bad),
                Err("must be a date YYYY-MM-DD".to_string()),
                "{bad}"
            );
        }
        assert_eq!(
            date("1899-12-31"),
            Err("must be from 1900-01-01 to 2100-12-31".to_string())
        );
        assert!(date("2101-01-01").is_err());
    }

    #[test]
    fn a_period_widens_to_the_whole_utc_days_it_touches() {
        use chrono::TimeZone;
        let at = |d: u32, h: u32, m: u32| {
            Utc.with_ymd_and_hms(2026, 12, d, h, m, 0)
                .single()
                .unwrap_or_default()
        };
        assert_eq!(
            whole_utc_days((at(7, 14, 23), at(9, 14, 23))),
            (at(7, 0, 0), at(10, 0, 0))
        );
        assert_eq!(
            whole_utc_days((at(7, 0, 0), at(9, 0, 0))),
            (at(7, 0, 0), at(9, 0, 0)),
            "whole days stay as they are"
        );
        let just_after = at(9, 0, 0) + chrono::Duration::nanoseconds(1);
        assert_eq!(whole_utc_days((at(7, 0, 0), just_after)).1, at(10, 0, 0));
    }

    #[test]
    fn a_horizon_is_required_and_bounded() {
        let at = |days: i64| to_timestamp(Utc::now() + chrono::Duration::days(days));
        assert!(required_horizon("until", Some(&at(30)), 366).is_ok());
        assert!(required_horizon("until", Some(&at(-30)), 366).is_ok());
        let far = required_horizon("until", Some(&at(400)), 366).expect_err("too far");
        assert!(far.to_string().contains("until"), "{far}");
        assert!(required_horizon("until", None, 366).is_err());
    }

    #[test]
    fn round_trip() {
        let now = Utc::now();
        let back = from_timestamp("t", &to_timestamp(now)).expect("valid");
        assert_eq!(back, now);
        assert!(from_timestamp(
            "t",
            &Timestamp {
                seconds: 0,
                nanos: -1
            }
        )
        .is_err());
    }

    #[test]
    fn only_the_years_the_wire_type_defines_are_read() {
        let at = |seconds: i64, nanos: i32| from_timestamp("as_of", &Timestamp { seconds, nanos });
        let first = at(FIRST_SECOND, 0).expect("first instant");
        assert_eq!(first.to_rfc3339(), "0001-01-01T00:00:00+00:00");
        let last = at(LAST_SECOND, 999_999_999).expect("last instant");
        assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999999+00:00");
        for (seconds, nanos) in [
            (FIRST_SECOND - 1, 0),
            (LAST_SECOND + 1, 0),
            (-300_000_000_000, 0),
            (0, 1_000_000_000),
            (0, -1),
        ] {
            let error = at(seconds, nanos).expect_err("out of range");
            assert!(error.to_string().contains("as_of"), "{error}");
        }
    }
}
