//! The points ledger's rules: credits and debits, a balance that never goes negative, and
//! expiry — either after inactivity (all points expire after a configurable period, 24 months by
//! default as at Bonvoy and Honors) or per credit (each credit expires a set time after it was
//! posted, debits having used the oldest credits first, so only what is left of a credit expires
//! and the balance never falls below what later debits left).

use std::collections::VecDeque;

use chrono::{DateTime, Months, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Earn,
    Bonus,
    Goodwill,
    Redeem,
    Expire,
    Adjust,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earn => "earn",
            EntryKind::Bonus => "bonus",
            EntryKind::Goodwill => "goodwill",
            EntryKind::Redeem => "redeem",
            EntryKind::Expire => "expire",
            EntryKind::Adjust => "adjust",
        }
    }

    /// Whether a posting of this kind is activity that keeps the points from expiring: what
    /// the guest earns, is given or redeems. Expiry is not, and neither is a staff adjustment
    /// (a correction must not keep points alive, nor revive them).
    pub fn is_activity(self) -> bool {
        !matches!(self, EntryKind::Expire | EntryKind::Adjust)
    }

    pub fn parse(text: &str) -> Option<EntryKind> {
        use EntryKind::*;
        [Earn, Bonus, Goodwill, Redeem, Expire, Adjust]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("points: the balance is {balance}, {requested} cannot be debited")]
    InsufficientPoints { balance: i64, requested: i64 },
    #[error("points: must be greater than zero")]
    NotPositive,
    #[error("points: the balance would exceed the most an account can hold")]
    TooLarge,
}

/// The balance after posting `delta` (positive credit, negative debit).
pub fn apply(balance: i64, delta: i64) -> Result<i64, LedgerError> {
    if delta == 0 {
        return Err(LedgerError::NotPositive);
    }
    let after = balance.checked_add(delta).ok_or(LedgerError::TooLarge)?;
    if after < 0 {
        return Err(LedgerError::InsufficientPoints {
            balance,
            requested: -delta,
        });
    }
    Ok(after)
}

/// Whether an account inactive since `last_activity` expires at `as_of`.
pub fn inactivity_expired(last_activity: DateTime<Utc>, as_of: DateTime<Utc>, months: u32) -> bool {
    last_activity
        .checked_add_months(Months::new(months))
        .is_some_and(|limit| limit <= as_of)
}

/// How a chain's points expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryMode {
    /// The whole balance, after `months` without activity.
    Inactivity,
    /// Each credit, `months` after it was posted (FIFO).
    PerCredit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    pub mode: ExpiryMode,
    pub months: u32,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            mode: ExpiryMode::Inactivity,
            months: 24,
        }
    }
}

/// One ledger posting: when, how many points (positive credit, negative debit), and the stay
/// it belongs to, if any (see [`super::stay_points::stay_of_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting<'a> {
    pub at: DateTime<Utc>,
    pub points: i64,
    pub stay: Option<&'a str>,
}

impl Posting<'_> {
    /// A posting of no stay.
    pub fn new(at: DateTime<Utc>, points: i64) -> Self {
        Self {
            at,
            points,
            stay: None,
        }
    }
}

/// Per-credit (FIFO) expiry: the points to expire at `as_of`, given the account's postings in
/// order. Credits are lots; a debit of a stay (the PMS correcting or calling off a stay that
/// earned) takes back that stay's own lots first, oldest first, as the points it reverses are
/// those; every other debit (redemptions, earlier expiries, negative adjustments), and what a
/// stay's debit finds no lot of its own for, uses the oldest lots first. What remains of lots
/// posted `months` or more before `as_of` expires. Never more than the balance, and 0 when
/// rerun after the expiry is posted.
pub fn fifo_expiring(postings: &[Posting<'_>], as_of: DateTime<Utc>, months: u32) -> i64 {
    let mut lots: VecDeque<(DateTime<Utc>, i64, Option<&str>)> = VecDeque::new();
    for posting in postings {
        if posting.points > 0 {
            lots.push_back((posting.at, posting.points, posting.stay));
            continue;
        }
        let mut debit = -posting.points;
        if let Some(stay) = posting.stay {
            for lot in lots.iter_mut().filter(|lot| lot.2 == Some(stay)) {
                let used = lot.1.min(debit);
                lot.1 -= used;
                debit -= used;
                if debit == 0 {
                    break;
                }
            }
            lots.retain(|lot| lot.1 > 0);
        }
        while debit > 0 {
            let Some(front) = lots.front_mut() else {
                break;
            };
            let used = front.1.min(debit);
            front.1 -= used;
            debit -= used;
            if front.1 == 0 {
                lots.pop_front();
            }
        }
    }
    lots.iter()
        .filter(|(at, _, _)| {
            at.checked_add_months(Months::new(months))
                .is_some_and(|limit| limit <= as_of)
        })
        .map(|(_, remaining, _)| remaining)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Credit(i64),
        Debit(i64),
        ExpireAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..5000).prop_map(Op::Credit),
            (1i64..5000).prop_map(Op::Debit),
            Just(Op::ExpireAll)
        ]
    }

    proptest! {
        /// Random histories against a reference model of individual points.
        #[test]
        fn balance_never_negative_and_equals_the_sum(ops in proptest::collection::vec(op(), 0..60)) {
            let mut balance = 0i64;
            let mut entries: Vec<i64> = Vec::new();
            let mut reference_points = 0usize;
            for op in ops {
                let delta = match op {
                    Op::Credit(n) => n,
                    Op::Debit(n) => -n,
                    Op::ExpireAll => -balance,
                };
                match apply(balance, delta) {
                    Ok(after) => {
                        balance = after;
                        entries.push(delta);
                        if delta > 0 { reference_points += delta as usize } else { reference_points -= (-delta) as usize }
                    }
                    Err(LedgerError::InsufficientPoints { balance: b, requested }) => {
                        prop_assert_eq!(b, balance);
                        prop_assert!(requested > balance);
                    }
                    Err(LedgerError::NotPositive) => prop_assert_eq!(delta, 0),
                    Err(LedgerError::TooLarge) => prop_assert!(balance.checked_add(delta).is_none()),
                }
                prop_assert!(balance >= 0);
                prop_assert_eq!(entries.iter().sum::<i64>(), balance);
                prop_assert_eq!(reference_points as i64, balance);
            }
        }
    }

    #[test]
    fn only_the_guests_own_postings_are_activity() {
        use EntryKind::*;
        let active: Vec<EntryKind> = [Earn, Bonus, Goodwill, Redeem, Expire, Adjust]
            .into_iter()
            .filter(|k| k.is_activity())
            .collect();
        assert_eq!(active, [Earn, Bonus, Goodwill, Redeem]);
    }

    #[test]
    fn a_balance_that_would_overflow_is_refused_as_too_large() {
        assert_eq!(apply(i64::MAX - 1, 2), Err(LedgerError::TooLarge));
        assert_eq!(apply(i64::MAX - 1, 1), Ok(i64::MAX));
    }

    #[test]
    fn expiry_after_24_months_of_inactivity() {
        let last = DateTime::parse_from_rfc3339("2024-11-24T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let before = DateTime::parse_from_rfc3339("2026-11-24T09:59:59Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let after = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        assert!(!inactivity_expired(last, before, 24));
        assert!(inactivity_expired(last, after, 24));
    }

    #[test]
    fn only_what_is_left_of_an_old_credit_expires() {
        let t = |month: u32| {
            DateTime::parse_from_rfc3339(&format!("2024-{month:02}-01T00:00:00Z"))
                .map(|t| t.with_timezone(&Utc))
                .expect("time")
        };
        let postings = [
            Posting::new(t(1), 1000),
            Posting::new(t(6), 500),
            // Redeeming 800 uses 800 of January's 1000.
            Posting::new(t(9), -800),
        ];
        let january_expires = t(1) + chrono::Duration::days(2 * 366);
        // The naive rule would expire all 1000 and leave -300; FIFO expires the 200 left.
        assert_eq!(fifo_expiring(&postings, january_expires, 24), 200);
        let mut after = postings.to_vec();
        after.push(Posting::new(january_expires, -200));
        assert_eq!(
            fifo_expiring(&after, january_expires, 24),
            0,
            "a rerun expires nothing"
        );
        assert_eq!(
            fifo_expiring(&postings, t(12), 24),
            0,
            "nothing is 24 months old yet"
        );
    }

    #[test]
    fn a_stay_called_off_takes_back_its_own_credit() {
        let t = |year: i32, month: u32| {
            DateTime::parse_from_rfc3339(&format!("{year}-{month:02}-01T00:00:00Z"))
                .map(|t| t.with_timezone(&Utc))
                .expect("time")
        };
        let postings = [
            Posting {
                stay: Some("stay:lisbon/A"),
                ..Posting::new(t(2024, 1), 300)
            },
            Posting {
                stay: Some("stay:lisbon/B"),
                ..Posting::new(t(2025, 12), 500)
            },
            // The PMS cancels B: its 500 go back, not A's older 300.
            Posting {
                stay: Some("stay:lisbon/B"),
                ..Posting::new(t(2026, 1), -500)
            },
        ];
        assert_eq!(fifo_expiring(&postings, t(2026, 1), 24), 300);
        // A redemption still uses the oldest credit first.
        let redeemed = [postings[0], postings[1], Posting::new(t(2026, 1), -500)];
        assert_eq!(fifo_expiring(&redeemed, t(2026, 1), 24), 0);
        // A give-back larger than what its stay holds takes the rest from the oldest lots.
        let more = [
            postings[0],
            postings[1],
            Posting {
                stay: Some("stay:lisbon/B"),
                ..Posting::new(t(2026, 1), -600)
            },
        ];
        assert_eq!(fifo_expiring(&more, t(2026, 1), 24), 200);
    }

    proptest! {
        /// With stays: against a reference of individual points, each tagged with its stay, where
        /// a stay's debit takes that stay's oldest points first and then the oldest of all.
        #[test]
        fn stay_debits_match_individual_points(
            ops in proptest::collection::vec((0i64..40, -300i64..500, proptest::option::of(0usize..3)), 1..40),
            as_of_months in 0i64..60,
            months in 1u32..30,
        ) {
            const STAYS: [&str; 3] = ["stay:p/A", "stay:p/B", "stay:p/C"];
            let start = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .expect("time");
            let mut postings = Vec::new();
            let mut points: VecDeque<(DateTime<Utc>, Option<usize>)> = VecDeque::new();
            let mut at = start;
            for (gap_days, delta, stay) in ops {
                at += chrono::Duration::days(gap_days);
                if delta == 0 {
                    continue;
                }
                if delta > 0 {
                    points.extend(std::iter::repeat_n((at, stay), delta as usize));
                } else {
                    let debit = (-delta).min(points.len() as i64);
                    if debit == 0 {
                        continue;
                    }
                    let mut left = debit as usize;
                    if stay.is_some() {
                        let mut kept = VecDeque::new();
                        for point in points.drain(..) {
                            if left > 0 && point.1 == stay {
                                left -= 1;
                            } else {
                                kept.push_back(point);
                            }
                        }
                        points = kept;
                    }
                    points.drain(..left);
                    postings.push(Posting { stay: stay.map(|i| STAYS[i]), ..Posting::new(at, -debit) });
                    continue;
                }
                postings.push(Posting { stay: stay.map(|i| STAYS[i]), ..Posting::new(at, delta) });
            }
            let as_of = start + chrono::Duration::days(30 * as_of_months);
            let reference = points
                .iter()
                .filter(|p| p.0.checked_add_months(Months::new(months)).is_some_and(|l| l <= as_of))
                .count() as i64;
            let expiring = fifo_expiring(&postings, as_of, months);
            prop_assert_eq!(expiring, reference);
            if expiring > 0 {
                postings.push(Posting::new(as_of, -expiring));
                prop_assert_eq!(fifo_expiring(&postings, as_of, months), 0);
            }
        }

        /// Against a reference of individual points (oldest used first): the same amount
        /// expires, never more than the balance, and a rerun after posting it expires nothing.
        #[test]
        fn fifo_expiry_matches_individual_points(
            ops in proptest::collection::vec((0i64..40, -300i64..500), 1..40),
            as_of_months in 0i64..60,
            months in 1u32..30,
        ) {
            let start = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .expect("time");
            let mut postings = Vec::new();
            let mut points: VecDeque<DateTime<Utc>> = VecDeque::new();
            let mut at = start;
            for (gap_days, delta) in ops {
                at += chrono::Duration::days(gap_days);
                if delta == 0 {
                    continue;
                }
                if delta > 0 {
                    points.extend(std::iter::repeat_n(at, delta as usize));
                } else {
                    let debit = (-delta).min(points.len() as i64);
                    if debit == 0 {
                        continue;
                    }
                    points.drain(..debit as usize);
                    postings.push(Posting::new(at, -debit));
                    continue;
                }
                postings.push(Posting::new(at, delta));
            }
            let as_of = start + chrono::Duration::days(30 * as_of_months);
            let reference = points
                .iter()
                .filter(|p| p.checked_add_months(Months::new(months)).is_some_and(|l| l <= as_of))
                .count() as i64;
            let balance: i64 = postings.iter().map(|p| p.points).sum();
            let expiring = fifo_expiring(&postings, as_of, months);
            prop_assert_eq!(expiring, reference);
            prop_assert!(expiring <= balance && expiring >= 0);
            if expiring > 0 {
                postings.push(Posting::new(as_of, -expiring));
                prop_assert_eq!(fifo_expiring(&postings, as_of, months), 0);
            }
        }
    }
}
