//! The points ledger's rules: credits and debits, a balance that never goes negative, and
//! inactivity expiry (all points expire after a configurable inactivity period, 24 months by
//! default as at Bonvoy and Honors).

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
}

/// The balance after posting `delta` (positive credit, negative debit).
pub fn apply(balance: i64, delta: i64) -> Result<i64, LedgerError> {
    if delta == 0 {
        return Err(LedgerError::NotPositive);
    }
    let after = balance.checked_add(delta).ok_or(LedgerError::NotPositive)?;
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
                }
                prop_assert!(balance >= 0);
                prop_assert_eq!(entries.iter().sum::<i64>(), balance);
                prop_assert_eq!(reference_points as i64, balance);
            }
        }
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
}
