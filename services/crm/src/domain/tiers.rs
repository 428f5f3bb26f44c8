//! Loyalty tiers: `new` → `regular` → `vip` on qualifying nights or stays over the evaluation
//! window; `strategic` only by hand. A guest keeps a tier through a grace period after reaching
//! it, and then falls at most `max_downgrade_steps` per evaluation (as Bonvoy and Honors soften
//! downgrades).

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    New,
    Regular,
    Vip,
    Strategic,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::New => "new",
            Tier::Regular => "regular",
            Tier::Vip => "vip",
            Tier::Strategic => "strategic",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        [Tier::New, Tier::Regular, Tier::Vip, Tier::Strategic]
            .into_iter()
            .find(|t| t.as_str() == text)
    }

    fn step(self) -> u8 {
        self as u8
    }

    fn from_step(step: u8) -> Tier {
        match step {
            0 => Tier::New,
            1 => Tier::Regular,
            2 => Tier::Vip,
            _ => Tier::Strategic,
        }
    }
}

/// Nights or stays that qualify for a tier (either suffices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub nights: i64,
    pub stays: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierPolicy {
    pub regular: Threshold,
    pub vip: Threshold,
    /// Length of the qualifying window (rolling).
    pub window: Duration,
    pub grace: Duration,
    pub max_downgrade_steps: u8,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            regular: Threshold {
                nights: 5,
                stays: 3,
            },
            vip: Threshold {
                nights: 25,
                stays: 10,
            },
            window: Duration::days(365),
            grace: Duration::days(90),
            max_downgrade_steps: 1,
        }
    }
}

/// Activity within the qualifying window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qualifying {
    pub nights: i64,
    pub stays: i64,
}

fn meets(q: Qualifying, t: Threshold) -> bool {
    q.nights >= t.nights || q.stays >= t.stays
}

/// The tier the activity alone earns.
pub fn qualified(policy: &TierPolicy, q: Qualifying) -> Tier {
    if meets(q, policy.vip) {
        Tier::Vip
    } else if meets(q, policy.regular) {
        Tier::Regular
    } else {
        Tier::New
    }
}

/// The guest's current standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub tier: Tier,
    pub since: DateTime<Utc>,
    pub strategic_manual: bool,
}

/// The tier after an evaluation at `as_of`.
pub fn evaluate(
    policy: &TierPolicy,
    standing: Standing,
    q: Qualifying,
    as_of: DateTime<Utc>,
) -> Tier {
    if standing.strategic_manual {
        return Tier::Strategic;
    }
    // Strategic is never automatic: without the manual flag it counts as VIP.
    let current = standing.tier.min(Tier::Vip);
    let earned = qualified(policy, q);
    if earned >= current {
        return earned;
    }
    if as_of < standing.since + policy.grace {
        return current;
    }
    let floor = current.step().saturating_sub(policy.max_downgrade_steps);
    Tier::from_step(floor.max(earned.step()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tier(i: u8) -> Tier {
        Tier::from_step(i % 4)
    }

    #[test]
    fn thresholds_and_grace() {
        let policy = TierPolicy::default();
        let now = Utc::now();
        let fresh = Standing {
            tier: Tier::Vip,
            since: now - Duration::days(10),
            strategic_manual: false,
        };
        assert_eq!(
            evaluate(&policy, fresh, Qualifying::default(), now),
            Tier::Vip,
            "in grace"
        );
        let old = Standing {
            since: now - Duration::days(400),
            ..fresh
        };
        assert_eq!(
            evaluate(&policy, old, Qualifying::default(), now),
            Tier::Regular,
            "one step down"
        );
        let new = Standing {
            tier: Tier::New,
            ..old
        };
        assert_eq!(
            evaluate(
                &policy,
                new,
                Qualifying {
                    nights: 30,
                    stays: 0
                },
                now
            ),
            Tier::Vip
        );
        assert_eq!(
            evaluate(
                &policy,
                new,
                Qualifying {
                    nights: 0,
                    stays: 3
                },
                now
            ),
            Tier::Regular
        );
    }

    proptest! {
        /// Against a reference written the long way round.
        #[test]
        fn matches_the_reference(current in 0u8..4, manual: bool, nights in 0i64..60, stays in 0i64..20, age in 0i64..800, steps in 1u8..3) {
            let policy = TierPolicy { max_downgrade_steps: steps, ..TierPolicy::default() };
            let now = Utc::now();
            let standing = Standing { tier: tier(current), since: now - Duration::days(age), strategic_manual: manual };
            let q = Qualifying { nights, stays };
            let got = evaluate(&policy, standing, q, now);

            let reference = if manual {
                Tier::Strategic
            } else {
                let earned = if nights >= 25 || stays >= 10 { 2 } else if nights >= 5 || stays >= 3 { 1 } else { 0 };
                let cur = current.min(2);
                if earned >= cur { tier(earned) }
                else if age < 90 { tier(cur) }
                else { tier(std::cmp::max(earned, cur.saturating_sub(steps))) }
            };
            prop_assert_eq!(got, reference);
            if !manual {
                prop_assert!(got != Tier::Strategic, "strategic is never automatic");
                prop_assert!(got >= qualified(&policy, q), "never below what was earned");
                prop_assert!(tier(current).min(Tier::Vip).step() - got.step().min(tier(current).min(Tier::Vip).step()) <= steps);
            }
        }
    }
}
