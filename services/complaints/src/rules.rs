//! The complaint rules the handlers apply, expressed over wire enums: the lifecycle transition
//! table, the shape a remedy of each kind must have, and authority limits.

use std::collections::BTreeMap;

use guestloop_kit::auth::Role;
use guestloop_kit::FieldViolation;
use guestloop_proto::complaints::v1::{Action, RemedyKind, Status};

/// What closing, reopening and cancelling need besides the current state.
#[derive(Debug)]
pub struct Readiness<'a> {
    pub has_cause: bool,
    pub root_cause_summary: &'a str,
    pub reason: &'a str,
}

/// The one transition table: (from, action, to). `WaitingOnGuest` + `GuestResponded` returns
/// to the state the complaint was waiting from (handled in [`next_status`]).
pub const TRANSITIONS: &[(Status, Action, Status)] = {
    use Action as A;
    use Status as S;
    &[
        (S::Received, A::Acknowledge, S::Acknowledged),
        (S::Received, A::StartInvestigation, S::Investigating),
        (S::Received, A::WaitForGuest, S::WaitingOnGuest),
        (S::Received, A::Resolve, S::Resolved),
        (S::Received, A::Cancel, S::Cancelled),
        (S::Acknowledged, A::StartInvestigation, S::Investigating),
        (S::Acknowledged, A::PlanRemedy, S::RemedyPlanned),
        (S::Acknowledged, A::WaitForGuest, S::WaitingOnGuest),
        (S::Acknowledged, A::Resolve, S::Resolved),
        (S::Acknowledged, A::Cancel, S::Cancelled),
        (S::Investigating, A::PlanRemedy, S::RemedyPlanned),
        (S::Investigating, A::WaitForGuest, S::WaitingOnGuest),
        (S::Investigating, A::Resolve, S::Resolved),
        (S::Investigating, A::Cancel, S::Cancelled),
        (S::RemedyPlanned, A::StartRemedy, S::RemedyInProgress),
        (S::RemedyPlanned, A::WaitForGuest, S::WaitingOnGuest),
        (S::RemedyPlanned, A::Resolve, S::Resolved),
        (S::RemedyPlanned, A::Cancel, S::Cancelled),
        (S::RemedyInProgress, A::WaitForGuest, S::WaitingOnGuest),
        (S::RemedyInProgress, A::Resolve, S::Resolved),
        (S::RemedyInProgress, A::Cancel, S::Cancelled),
        (S::WaitingOnGuest, A::Resolve, S::Resolved),
        (S::WaitingOnGuest, A::Cancel, S::Cancelled),
        (S::Resolved, A::Close, S::Closed),
        (S::Resolved, A::Reopen, S::Reopened),
        (S::Reopened, A::Acknowledge, S::Acknowledged),
        (S::Reopened, A::StartInvestigation, S::Investigating),
        (S::Reopened, A::PlanRemedy, S::RemedyPlanned),
        (S::Reopened, A::StartRemedy, S::RemedyInProgress),
        (S::Reopened, A::WaitForGuest, S::WaitingOnGuest),
        (S::Reopened, A::Resolve, S::Resolved),
        (S::Reopened, A::Cancel, S::Cancelled),
        (S::Closed, A::Reopen, S::Reopened),
    ]
};

/// The state `action` leads to from `from`, or why it is not allowed.
pub fn next_status(
    from: Status,
    action: Action,
    resume: Option<Status>,
    ready: &Readiness<'_>,
) -> Result<Status, String> {
    let to = if from == Status::WaitingOnGuest && action == Action::GuestResponded {
        resume
            .filter(|s| *s != Status::WaitingOnGuest)
            .unwrap_or(Status::Acknowledged)
    } else {
        TRANSITIONS
            .iter()
            .find(|(f, a, _)| *f == from && *a == action)
            .map(|(_, _, to)| *to)
            .ok_or_else(|| {
                format!(
                    "cannot {} a complaint that is {}",
                    action.as_str_name(),
                    from.as_str_name()
                )
            })?
    };
    if to == Status::Closed {
        if !ready.has_cause {
            return Err("closing needs a cause; classify the complaint first".into());
        }
        if ready.root_cause_summary.trim().is_empty() {
            return Err("closing needs a root-cause summary".into());
        }
    }
    if matches!(action, Action::Reopen | Action::Cancel) && ready.reason.trim().is_empty() {
        return Err(format!("{} needs a reason", action.as_str_name()));
    }
    Ok(to)
}

/// Most codes one list may hold (standards broken, staff named).
pub const MAX_CODES: usize = 20;

/// A list of identifiers (standard codes, staff ids): each 1–64 characters of letters, digits,
/// `.`, `_`, `-` or `:`; at most [`MAX_CODES`]; duplicates folded. Violations name the entry.
pub fn codes(values: &[String], field: &str, violations: &mut Vec<FieldViolation>) -> Vec<String> {
    if values.len() > MAX_CODES {
        violations.push(FieldViolation::new(
            field,
            format!("at most {MAX_CODES} entries, not {}", values.len()),
        ));
        return Vec::new();
    }
    let mut kept: Vec<String> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let value = value.trim();
        let valid = (1..=64).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if !valid {
            violations.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "must be 1–64 letters, digits, '.', '_', '-' or ':'",
            ));
        } else if !kept.iter().any(|k| k == value) {
            kept.push(value.to_string());
        }
    }
    kept
}

/// The most money one remedy may carry, in minor units (1,000,000.00 in a two-decimal currency):
/// far above any goodwill gesture, and far below where sums of remedies could overflow.
pub const MAX_REMEDY_MINOR_UNITS: i64 = 100_000_000;
/// The most points one remedy may carry.
pub const MAX_REMEDY_POINTS: i64 = 10_000_000;

/// What each kind of remedy must carry.
pub fn check_remedy_shape(kind: RemedyKind, amount: i64, points: i64) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    match kind {
        RemedyKind::Refund | RemedyKind::Discount | RemedyKind::Voucher => {
            if amount <= 0 {
                v.push(FieldViolation::new(
                    "remedy.amount",
                    "a money remedy needs a positive amount",
                ));
            }
            if points != 0 {
                v.push(FieldViolation::new(
                    "remedy.points",
                    "a money remedy carries no points",
                ));
            }
        }
        RemedyKind::Points => {
            if points <= 0 {
                v.push(FieldViolation::new(
                    "remedy.points",
                    "a points remedy needs positive points",
                ));
            }
            if amount != 0 {
                v.push(FieldViolation::new(
                    "remedy.amount",
                    "a points remedy carries no money",
                ));
            }
        }
        RemedyKind::Apology | RemedyKind::FixOrRedo => {
            if amount != 0 || points != 0 {
                v.push(FieldViolation::new(
                    "remedy",
                    "an apology or a fix carries no money or points",
                ));
            }
        }
        RemedyKind::RoomChange | RemedyKind::Upgrade | RemedyKind::ComplimentaryItem => {
            if points != 0 {
                v.push(FieldViolation::new(
                    "remedy.points",
                    "this remedy carries no points; its value goes in amount",
                ));
            }
        }
        RemedyKind::Unspecified => v.push(FieldViolation::new("remedy.kind", "is required")),
    }
    v
}

/// Authority limits per role (money minor units, points; None = unlimited) and the ladder.
#[derive(Debug)]
pub struct Authority<'a> {
    pub limits: &'a BTreeMap<Role, (Option<i64>, Option<i64>)>,
    pub ladder: &'a [Role],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approved,
    /// The lowest role whose limit covers the total.
    NeedsApproval(Role),
}

impl Authority<'_> {
    fn covers(&self, role: Role, (money, points): (i64, i64)) -> bool {
        match self.limits.get(&role) {
            Some((money_limit, points_limit)) => {
                money_limit.is_none_or(|limit| money <= limit)
                    && points_limit.is_none_or(|limit| points <= limit)
            }
            None => false,
        }
    }

    /// Whether `role` may grant a complaint total of `total` on its own.
    pub fn decide(&self, role: Role, total: (i64, i64)) -> Decision {
        if self.covers(role, total) {
            return Decision::Approved;
        }
        let candidates = self.ladder.iter().chain(
            [
                Role::Supervisor,
                Role::DutyManager,
                Role::GeneralManager,
                Role::ChainQualityManager,
                Role::ChainAdmin,
            ]
            .iter(),
        );
        let required = candidates
            .copied()
            .find(|r| self.covers(*r, total))
            .unwrap_or(Role::ChainAdmin);
        Decision::NeedsApproval(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const READY: Readiness<'static> = Readiness {
        has_cause: true,
        root_cause_summary: "worn seal",
        reason: "guest called back",
    };

    #[test]
    fn close_needs_cause_and_summary() {
        let missing_summary = Readiness {
            root_cause_summary: " ",
            ..READY
        };
        assert!(next_status(Status::Resolved, Action::Close, None, &missing_summary).is_err());
        let missing_cause = Readiness {
            has_cause: false,
            ..READY
        };
        assert!(next_status(Status::Resolved, Action::Close, None, &missing_cause).is_err());
        assert_eq!(
            next_status(Status::Resolved, Action::Close, None, &READY),
            Ok(Status::Closed)
        );
    }

    #[test]
    fn waiting_returns_to_where_it_left() {
        assert_eq!(
            next_status(
                Status::WaitingOnGuest,
                Action::GuestResponded,
                Some(Status::RemedyPlanned),
                &READY
            ),
            Ok(Status::RemedyPlanned)
        );
    }

    #[test]
    fn reopen_needs_a_reason() {
        let no_reason = Readiness {
            reason: "",
            ..READY
        };
        assert!(next_status(Status::Resolved, Action::Reopen, None, &no_reason).is_err());
        assert_eq!(
            next_status(Status::Closed, Action::Reopen, None, &READY),
            Ok(Status::Reopened)
        );
    }

    const ALL_STATUSES: [Status; 10] = [
        Status::Received,
        Status::Acknowledged,
        Status::Investigating,
        Status::RemedyPlanned,
        Status::RemedyInProgress,
        Status::WaitingOnGuest,
        Status::Resolved,
        Status::Reopened,
        Status::Closed,
        Status::Cancelled,
    ];

    #[test]
    fn nothing_leaves_cancelled_and_every_state_can_finish() {
        assert!(TRANSITIONS
            .iter()
            .all(|(from, _, _)| *from != Status::Cancelled));
        for start in ALL_STATUSES {
            // Breadth-first search over the table: Closed or Cancelled must be reachable.
            let mut seen = vec![start];
            let mut frontier = vec![start];
            while let Some(state) = frontier.pop() {
                for (_, _, to) in TRANSITIONS.iter().filter(|(f, _, _)| *f == state) {
                    if !seen.contains(to) {
                        seen.push(*to);
                        frontier.push(*to);
                    }
                }
            }
            assert!(
                start == Status::Cancelled
                    || seen.contains(&Status::Closed)
                    || seen.contains(&Status::Cancelled),
                "{start:?} cannot finish"
            );
        }
    }

    fn limits() -> BTreeMap<Role, (Option<i64>, Option<i64>)> {
        crate::settings::default_limits()
    }

    #[test]
    fn authority_defaults_follow_the_domain() {
        let limits = limits();
        let ladder = crate::settings::default_ladder();
        let authority = Authority {
            limits: &limits,
            ladder: &ladder,
        };
        assert_eq!(
            authority.decide(Role::Agent, (3_000, 0)),
            Decision::Approved
        );
        assert_eq!(
            authority.decide(Role::Agent, (3_001, 0)),
            Decision::NeedsApproval(Role::Supervisor)
        );
        assert_eq!(
            authority.decide(Role::Agent, (20_000, 0)),
            Decision::NeedsApproval(Role::DutyManager)
        );
        assert_eq!(
            authority.decide(Role::Agent, (70_000, 0)),
            Decision::NeedsApproval(Role::GeneralManager)
        );
        assert_eq!(
            authority.decide(Role::GeneralManager, (10_000_000, 1_000_000)),
            Decision::Approved
        );
    }

    proptest! {
        #[test]
        fn authority_is_monotone_in_the_amount(money in 0i64..200_000, extra in 0i64..200_000, points in 0i64..100_000) {
            let limits = limits();
            let ladder = crate::settings::default_ladder();
            let authority = Authority { limits: &limits, ladder: &ladder };
            for role in Role::STAFF {
                // If a larger total is within a role's authority, every smaller one is too.
                if authority.decide(role, (money + extra, points)) == Decision::Approved {
                    prop_assert_eq!(authority.decide(role, (money, points)), Decision::Approved);
                }
            }
        }

        #[test]
        fn unknown_pairs_are_refused(from in 0usize..10, action in 1i32..=10) {
            let from = ALL_STATUSES[from];
            let action = Action::try_from(action).unwrap_or(Action::Unspecified);
            let listed = TRANSITIONS.iter().any(|(f, a, _)| *f == from && *a == action)
                || (from == Status::WaitingOnGuest && action == Action::GuestResponded);
            let result = next_status(from, action, Some(Status::Acknowledged), &READY);
            prop_assert_eq!(result.is_ok(), listed);
        }
    }

    #[test]
    fn code_lists_fold_duplicates_and_name_bad_entries() {
        let mut v = Vec::new();
        let kept = codes(
            &["FO-GREET".into(), " FO-GREET ".into(), "HK.CLEAN_1".into()],
            "complaint.standard_codes",
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(kept, ["FO-GREET", "HK.CLEAN_1"]);
        let kept = codes(
            &["ok".into(), "".into(), "bad code".into()],
            "complaint.staff_involved",
            &mut v,
        );
        assert_eq!(kept, ["ok"]);
        let fields: Vec<&str> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(
            fields,
            ["complaint.staff_involved[1]", "complaint.staff_involved[2]"]
        );
        let mut v = Vec::new();
        codes(&vec!["a".to_string(); MAX_CODES + 1], "f", &mut v);
        assert_eq!(v.len(), 1);
    }
}
