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

/// Parses a wire timestamp, naming `field` when it is out of range.
pub fn from_timestamp(field: &str, timestamp: &Timestamp) -> Result<DateTime<Utc>, ApiError> {
    let nanos = u32::try_from(timestamp.nanos)
        .map_err(|_| ApiError::invalid(field, "nanos must not be negative"))?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
        .ok_or_else(|| ApiError::invalid(field, "timestamp is out of range"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
