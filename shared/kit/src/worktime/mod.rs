//! Working time: property and department calendars (IANA zone, several working intervals per
//! day, holidays, or 24/7), and SLA clocks measured in working time with pauses recomputed from
//! the whole state history. Complaints and facilities use this one implementation.

mod calendar;
mod clock;
#[cfg(test)]
mod tests;

pub use calendar::{
    start_of_day, CalendarError, CalendarSpec, DaySpec, IntervalSpec, WorkingCalendar,
};
pub use clock::{
    evaluate, instant_at_fraction, pauses_from_history, ClockHistory, ClockOutcome, ClockStatus,
    PauseInterval, SlaTarget,
};
