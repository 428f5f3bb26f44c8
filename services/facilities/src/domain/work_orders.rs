//! Work orders: one transition table, repair targets by priority, and repeat-fix rules.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Assigned,
    InProgress,
    OnHold,
    Done,
    Verified,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Assigned => "assigned",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Done => "done",
            Status::Verified => "verified",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        use Status::*;
        [
            Open, Assigned, InProgress, OnHold, Done, Verified, Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Status::Done | Status::Verified | Status::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Assign,
    Start,
    Hold,
    Resume,
    Complete,
    Verify,
    Cancel,
}

/// The one transition table.
pub const TRANSITIONS: &[(Status, Action, Status)] = {
    use Action as A;
    use Status as S;
    &[
        (S::Open, A::Assign, S::Assigned),
        (S::Open, A::Start, S::InProgress),
        (S::Open, A::Cancel, S::Cancelled),
        (S::Assigned, A::Assign, S::Assigned),
        (S::Assigned, A::Start, S::InProgress),
        (S::Assigned, A::Cancel, S::Cancelled),
        (S::InProgress, A::Hold, S::OnHold),
        (S::InProgress, A::Complete, S::Done),
        (S::InProgress, A::Cancel, S::Cancelled),
        (S::OnHold, A::Resume, S::InProgress),
        (S::OnHold, A::Cancel, S::Cancelled),
        (S::Done, A::Verify, S::Verified),
    ]
};

pub fn transition(from: Status, action: Action) -> Result<Status, String> {
    TRANSITIONS
        .iter()
        .find(|(f, a, _)| *f == from && *a == action)
        .map(|(_, _, to)| *to)
        .ok_or_else(|| format!("cannot {action:?} a work order that is {}", from.as_str()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    LifeSafety,
    GuestImpacting,
    Normal,
    Low,
}

/// Default respond and fix targets (working time on the engineering calendar).
pub fn targets(priority: Priority) -> (Duration, Duration) {
    match priority {
        Priority::LifeSafety => (Duration::minutes(15), Duration::hours(2)),
        Priority::GuestImpacting => (Duration::minutes(30), Duration::hours(4)),
        Priority::Normal => (Duration::hours(24), Duration::hours(72)),
        Priority::Low => (Duration::hours(72), Duration::days(14)),
    }
}

/// What earlier fixes of the same asset mean for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepeatFix {
    /// A second fix within 30 days: escalate.
    pub escalate: bool,
    /// A fix recurring within 90 days: flag the asset for a replacement project.
    pub flag_replacement: bool,
}

pub fn repeat_fix(previous_fixes: &[DateTime<Utc>], now: DateTime<Utc>) -> RepeatFix {
    RepeatFix {
        escalate: previous_fixes
            .iter()
            .any(|t| now - *t <= Duration::days(30)),
        flag_replacement: previous_fixes
            .iter()
            .any(|t| now - *t <= Duration::days(90)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_pauses_and_returns_and_done_cannot_restart() {
        assert_eq!(
            transition(Status::InProgress, Action::Hold),
            Ok(Status::OnHold)
        );
        assert_eq!(
            transition(Status::OnHold, Action::Resume),
            Ok(Status::InProgress)
        );
        assert!(transition(Status::Done, Action::Start).is_err());
        assert!(TRANSITIONS
            .iter()
            .all(|(from, _, _)| *from != Status::Cancelled && *from != Status::Verified));
    }

    #[test]
    fn repeat_fix_windows() {
        let now = Utc::now();
        assert_eq!(
            repeat_fix(&[now - Duration::days(10)], now),
            RepeatFix {
                escalate: true,
                flag_replacement: true
            }
        );
        assert_eq!(
            repeat_fix(&[now - Duration::days(60)], now),
            RepeatFix {
                escalate: false,
                flag_replacement: true
            }
        );
        assert_eq!(
            repeat_fix(&[now - Duration::days(120)], now),
            RepeatFix::default()
        );
    }
}
