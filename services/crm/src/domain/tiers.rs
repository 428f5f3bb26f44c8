//! Loyalty tiers: `new` → `regular` → `vip` on qualifying nights, stays or spend over the
//! evaluation window (rolling 12 months, or the calendar year so far or the whole previous one);
//! `strategic` only by hand. A guest whose activity stops earning their tier keeps it through a
//! grace period counted from the first evaluation that found them short, then falls at most
//! `max_downgrade_steps`; a guest still short after that step starts a new grace period, so
//! each further step waits a whole grace period too (as Bonvoy and Honors soften downgrades).
//! Each chain configures names, thresholds, window, grace and the step limit.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};

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

/// Nights, stays or spend that qualify for a tier (any one suffices; 0 leaves a measure out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Threshold {
    pub nights: i64,
    pub stays: i64,
    /// Minor units of the policy's spend currency.
    pub spend: i64,
}

impl Threshold {
    pub fn is_empty(&self) -> bool {
        self.nights <= 0 && self.stays <= 0 && self.spend <= 0
    }
}

/// Which activity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The 12 calendar months up to the evaluation.
    Rolling12Months,
    /// The calendar year so far, or the whole previous year, whichever earns more.
    CalendarYear,
}

impl Window {
    /// Half-open date ranges `(after, through]` of departure dates whose stays count, one per
    /// period that can earn a tier on its own.
    pub fn periods(self, as_of: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
        match self {
            Window::Rolling12Months => vec![(
                as_of
                    .checked_sub_months(Months::new(12))
                    .unwrap_or(as_of - Duration::days(365)),
                as_of,
            )],
            Window::CalendarYear => {
                let end_of_last_year =
                    NaiveDate::from_ymd_opt(as_of.year() - 1, 12, 31).unwrap_or(as_of);
                let end_of_year_before =
                    NaiveDate::from_ymd_opt(as_of.year() - 2, 12, 31).unwrap_or(as_of);
                vec![
                    (end_of_last_year, as_of),
                    (end_of_year_before, end_of_last_year),
                ]
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierPolicy {
    /// Display names of new, regular, vip and strategic.
    pub names: [String; 4],
    pub regular: Threshold,
    pub vip: Threshold,
    pub spend_currency: String,
    pub window: Window,
    pub grace: Duration,
    pub max_downgrade_steps: u8,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            names: ["New", "Regular", "VIP", "Strategic"].map(String::from),
            regular: Threshold {
                nights: 5,
                stays: 3,
                spend: 0,
            },
            vip: Threshold {
                nights: 25,
                stays: 10,
                spend: 0,
            },
            spend_currency: String::new(),
            window: Window::Rolling12Months,
            grace: Duration::days(90),
            max_downgrade_steps: 1,
        }
    }
}

impl TierPolicy {
    pub fn name(&self, tier: Tier) -> &str {
        &self.names[tier.step() as usize]
    }

    /// Field-by-field faults: (field, why).
    pub fn faults(&self) -> Vec<(String, String)> {
        let mut faults = Vec::new();
        let fields = ["new_name", "regular_name", "vip_name", "strategic_name"];
        for (field, name) in fields.iter().zip(&self.names) {
            if name.trim().is_empty() || name.chars().count() > 40 {
                faults.push((format!("program.{field}"), "must be 1–40 characters".into()));
            }
        }
        let mut seen: Vec<String> = Vec::new();
        for (field, name) in fields.iter().zip(&self.names) {
            let key = name.trim().to_lowercase();
            if !key.is_empty() && seen.contains(&key) {
                faults.push((
                    format!("program.{field}"),
                    format!("`{}` names two tiers", name.trim()),
                ));
            }
            seen.push(key);
        }
        for (field, t) in [("regular", self.regular), ("vip", self.vip)] {
            if t.nights < 0 || t.stays < 0 || t.spend < 0 {
                faults.push((
                    format!("program.{field}"),
                    "measures cannot be negative".into(),
                ));
            } else if t.is_empty() {
                faults.push((
                    format!("program.{field}"),
                    "set at least one of nights, stays or spend_minor_units".into(),
                ));
            }
        }
        // VIP must not be easier than regular on any measure both use.
        for (measure, r, v) in [
            ("nights", self.regular.nights, self.vip.nights),
            ("stays", self.regular.stays, self.vip.stays),
            ("spend_minor_units", self.regular.spend, self.vip.spend),
        ] {
            if r > 0 && v > 0 && v < r {
                faults.push((
                    format!("program.vip.{measure}"),
                    format!("must be at least the regular threshold ({r})"),
                ));
            }
        }
        let uses_spend = self.regular.spend > 0 || self.vip.spend > 0;
        let currency_ok = self.spend_currency.len() == 3
            && self.spend_currency.chars().all(|c| c.is_ascii_uppercase());
        if uses_spend && !currency_ok {
            faults.push((
                "program.spend_currency".into(),
                "a three-letter ISO 4217 code is needed for spend thresholds".into(),
            ));
        }
        if !(0..=730).contains(&self.grace.num_days()) {
            faults.push((
                "program.grace_days".into(),
                "must be between 0 and 730".into(),
            ));
        }
        if !(1..=3).contains(&self.max_downgrade_steps) {
            faults.push((
                "program.max_downgrade_steps".into(),
                "must be between 1 and 3".into(),
            ));
        }
        faults
    }
}

/// Activity within one qualifying period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qualifying {
    pub nights: i64,
    pub stays: i64,
    /// Minor units of the policy's spend currency.
    pub spend: i64,
}

fn meets(q: Qualifying, t: Threshold) -> bool {
    (t.nights > 0 && q.nights >= t.nights)
        || (t.stays > 0 && q.stays >= t.stays)
        || (t.spend > 0 && q.spend >= t.spend)
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
    /// Since when the guest's activity has earned less than their tier (the first evaluation
    /// that found it, or the last step down); none while they qualify.
    pub short_since: Option<DateTime<Utc>>,
    pub strategic_manual: bool,
}

/// What an evaluation decides: the tier, and the standing's new `short_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub tier: Tier,
    pub short_since: Option<DateTime<Utc>>,
}

/// The tier after an evaluation at `as_of`, given the activity of each of the window's periods
/// (the best period counts).
pub fn evaluate(
    policy: &TierPolicy,
    standing: Standing,
    periods: &[Qualifying],
    as_of: DateTime<Utc>,
) -> Decision {
    if standing.strategic_manual {
        return Decision {
            tier: Tier::Strategic,
            short_since: None,
        };
    }
    // Strategic is never automatic: without the manual flag it counts as VIP.
    let current = standing.tier.min(Tier::Vip);
    let earned = periods
        .iter()
        .map(|q| qualified(policy, *q))
        .max()
        .unwrap_or(Tier::New);
    if earned >= current {
        return Decision {
            tier: earned,
            short_since: None,
        };
    }
    let short_since = standing.short_since.unwrap_or(as_of);
    if as_of < short_since + policy.grace {
        return Decision {
            tier: current,
            short_since: Some(short_since),
        };
    }
    let floor = current.step().saturating_sub(policy.max_downgrade_steps);
    let tier = Tier::from_step(floor.max(earned.step()));
    Decision {
        tier,
        // Still short after the step: the next one waits a grace period of its own.
        short_since: (tier > earned).then_some(as_of),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tier(i: u8) -> Tier {
        Tier::from_step(i % 4)
    }

    fn standing(tier: Tier, short_since: Option<DateTime<Utc>>) -> Standing {
        Standing {
            tier,
            short_since,
            strategic_manual: false,
        }
    }

    #[test]
    fn thresholds_and_grace() {
        let policy = TierPolicy::default();
        let now = Utc::now();
        let idle = [Qualifying::default()];
        // The first evaluation that finds a VIP short starts the grace period.
        let first = evaluate(&policy, standing(Tier::Vip, None), &idle, now);
        assert_eq!(
            first,
            Decision {
                tier: Tier::Vip,
                short_since: Some(now)
            }
        );
        let in_grace = evaluate(
            &policy,
            standing(Tier::Vip, Some(now - Duration::days(89))),
            &idle,
            now,
        );
        assert_eq!(in_grace.tier, Tier::Vip, "in grace");
        let after = evaluate(
            &policy,
            standing(Tier::Vip, Some(now - Duration::days(90))),
            &idle,
            now,
        );
        assert_eq!(
            after,
            Decision {
                tier: Tier::Regular,
                short_since: Some(now)
            },
            "one step down, and the next step waits a grace period of its own"
        );
        let back = evaluate(
            &policy,
            standing(Tier::Vip, Some(now - Duration::days(60))),
            &[Qualifying {
                nights: 30,
                ..Default::default()
            }],
            now,
        );
        assert_eq!(
            back,
            Decision {
                tier: Tier::Vip,
                short_since: None
            },
            "qualifying again ends the grace period"
        );
        let new = standing(Tier::New, None);
        let thirty_nights = [Qualifying {
            nights: 30,
            ..Default::default()
        }];
        assert_eq!(evaluate(&policy, new, &thirty_nights, now).tier, Tier::Vip);
        let three_stays = [Qualifying {
            stays: 3,
            ..Default::default()
        }];
        assert_eq!(
            evaluate(&policy, new, &three_stays, now).tier,
            Tier::Regular
        );
    }

    /// A guest's life under a policy, one evaluation per step: (days since the previous
    /// evaluation, nights in the window at this one).
    fn steps_strategy() -> impl Strategy<Value = Vec<(i64, i64)>> {
        proptest::collection::vec((0i64..120, 0i64..40), 1..40)
    }

    proptest! {
        /// Random histories against a reference that keeps the dates the long way round: when
        /// the guest first fell short of the tier they hold, and when they last stepped down.
        #[test]
        fn histories_match_the_reference(
            history in steps_strategy(),
            grace_days in 0i64..200,
            steps in 1u8..=3,
            manual_at in proptest::option::of(0usize..40),
        ) {
            let policy = TierPolicy {
                grace: Duration::days(grace_days),
                max_downgrade_steps: steps,
                ..TierPolicy::default()
            };
            let start = Utc::now();
            let mut at = start;
            let mut state = standing(Tier::New, None);
            // The reference's own bookkeeping.
            let mut held_step: u8 = 0;
            let mut falling_since: Option<DateTime<Utc>> = None;
            for (i, (gap, nights)) in history.iter().enumerate() {
                at += Duration::days(*gap);
                let manual = manual_at.is_some_and(|m| i >= m);
                state.strategic_manual = manual;
                let q = Qualifying { nights: *nights, ..Default::default() };
                let decision = evaluate(&policy, state, &[q], at);

                let earned: u8 = if *nights >= 25 { 2 } else if *nights >= 5 { 1 } else { 0 };
                let expected = if manual {
                    falling_since = None;
                    3
                } else {
                    let held = held_step.min(2);
                    if earned >= held {
                        falling_since = None;
                        earned
                    } else {
                        let since = *falling_since.get_or_insert(at);
                        if (at - since).num_days() < grace_days {
                            held
                        } else {
                            let next = held.saturating_sub(steps).max(earned);
                            falling_since = (next > earned).then_some(at);
                            next
                        }
                    }
                };
                prop_assert_eq!(decision.tier, tier(expected), "step {}", i);
                prop_assert_eq!(decision.short_since, falling_since, "step {}", i);
                if !manual {
                    let before = held_step.min(2);
                    prop_assert!(decision.tier != Tier::Strategic, "strategic is never automatic");
                    prop_assert!(decision.tier >= tier(earned), "never below what was earned");
                    prop_assert!(before.saturating_sub(expected) <= steps, "at most {} steps down", steps);
                }
                held_step = expected;
                state = Standing { tier: decision.tier, short_since: decision.short_since, strategic_manual: manual };
            }
        }
    }

    #[test]
    fn each_step_down_waits_a_whole_grace_period() {
        let policy = TierPolicy::default();
        let t0 = Utc::now();
        let idle = [Qualifying::default()];
        let mut state = standing(Tier::Vip, None);
        let mut tiers = Vec::new();
        // Evaluated every 6 hours for a year without activity.
        for quarter_day in 0..(4 * 365) {
            let at = t0 + Duration::hours(6 * quarter_day);
            let d = evaluate(&policy, state, &idle, at);
            if d.tier != state.tier {
                tiers.push(((at - t0).num_days(), d.tier));
            }
            state = standing(d.tier, d.short_since);
        }
        assert_eq!(tiers, vec![(90, Tier::Regular), (180, Tier::New)]);
    }

    proptest! {
        /// Any chain's thresholds, over one or two periods, against a reference: a measure set
        /// to 0 never qualifies, any other reached measure does, and the better period counts.
        #[test]
        fn chain_thresholds_match_the_reference(
            regular in (0i64..10, 0i64..5, 0i64..1000),
            vip_extra in (0i64..20, 0i64..10, 0i64..2000),
            a in (0i64..40, 0i64..15, 0i64..4000),
            b in (0i64..40, 0i64..15, 0i64..4000),
        ) {
            let regular_t = Threshold { nights: regular.0, stays: regular.1, spend: regular.2 };
            let vip_t = Threshold {
                nights: if regular.0 > 0 { regular.0 + vip_extra.0 } else { vip_extra.0 },
                stays: if regular.1 > 0 { regular.1 + vip_extra.1 } else { vip_extra.1 },
                spend: if regular.2 > 0 { regular.2 + vip_extra.2 } else { vip_extra.2 },
            };
            prop_assume!(!regular_t.is_empty() && !vip_t.is_empty());
            let policy = TierPolicy { regular: regular_t, vip: vip_t, spend_currency: "EUR".into(), ..TierPolicy::default() };
            prop_assert!(policy.faults().is_empty(), "{:?}", policy.faults());
            let reference = |q: (i64, i64, i64)| {
                let reach = |t: (i64, i64, i64)| (t.0 > 0 && q.0 >= t.0) || (t.1 > 0 && q.1 >= t.1) || (t.2 > 0 && q.2 >= t.2);
                if reach((vip_t.nights, vip_t.stays, vip_t.spend)) { 2 }
                else if reach((regular_t.nights, regular_t.stays, regular_t.spend)) { 1 }
                else { 0 }
            };
            let new_guest = standing(Tier::New, None);
            let qa = Qualifying { nights: a.0, stays: a.1, spend: a.2 };
            let qb = Qualifying { nights: b.0, stays: b.1, spend: b.2 };
            let got = evaluate(&policy, new_guest, &[qa, qb], Utc::now()).tier;
            prop_assert_eq!(got, tier(reference(a).max(reference(b))));
        }
    }

    #[test]
    fn spend_qualifies_when_the_chain_counts_it() {
        let policy = TierPolicy {
            vip: Threshold {
                nights: 25,
                stays: 0,
                spend: 500_000,
            },
            spend_currency: "EUR".into(),
            ..TierPolicy::default()
        };
        let big_spender = Qualifying {
            nights: 2,
            stays: 1,
            spend: 600_000,
        };
        assert_eq!(qualified(&policy, big_spender), Tier::Vip);
        assert_eq!(
            qualified(&TierPolicy::default(), big_spender),
            Tier::New,
            "the default programme does not count spend"
        );
        let no_stays = TierPolicy {
            regular: Threshold {
                nights: 5,
                stays: 0,
                spend: 0,
            },
            ..TierPolicy::default()
        };
        assert_eq!(
            qualified(
                &no_stays,
                Qualifying {
                    stays: 0,
                    ..Default::default()
                }
            ),
            Tier::New,
            "a measure set to 0 is left out, not met by zero activity"
        );
    }

    #[test]
    fn calendar_years_keep_last_years_tier_through_this_year() {
        let as_of = NaiveDate::from_ymd_opt(2026, 3, 15).expect("date");
        let periods = Window::CalendarYear.periods(as_of);
        assert_eq!(
            periods,
            vec![
                (NaiveDate::from_ymd_opt(2025, 12, 31).expect("d"), as_of),
                (
                    NaiveDate::from_ymd_opt(2024, 12, 31).expect("d"),
                    NaiveDate::from_ymd_opt(2025, 12, 31).expect("d")
                ),
            ]
        );
        let policy = TierPolicy {
            window: Window::CalendarYear,
            ..TierPolicy::default()
        };
        let vip_last_year = Qualifying {
            nights: 30,
            ..Default::default()
        };
        let vip = standing(Tier::Vip, Some(Utc::now() - Duration::days(400)));
        assert_eq!(
            evaluate(
                &policy,
                vip,
                &[Qualifying::default(), vip_last_year],
                Utc::now()
            )
            .tier,
            Tier::Vip
        );
        assert_eq!(
            evaluate(
                &policy,
                vip,
                &[Qualifying::default(), Qualifying::default()],
                Utc::now()
            )
            .tier,
            Tier::Regular
        );
        assert_eq!(
            Window::Rolling12Months.periods(as_of),
            vec![(NaiveDate::from_ymd_opt(2025, 3, 15).expect("d"), as_of)]
        );
        // Twelve months, not 365 days, across a 29 February.
        let leap = NaiveDate::from_ymd_opt(2028, 3, 1).expect("d");
        assert_eq!(
            Window::Rolling12Months.periods(leap),
            vec![(NaiveDate::from_ymd_opt(2027, 3, 1).expect("d"), leap)]
        );
    }

    #[test]
    fn policy_faults_name_the_field() {
        let policy = TierPolicy {
            names: ["Member", "Silver", "silver", ""].map(String::from),
            regular: Threshold {
                nights: 10,
                stays: 0,
                spend: 100,
            },
            vip: Threshold {
                nights: 5,
                stays: 0,
                spend: 0,
            },
            spend_currency: "euro".into(),
            grace: Duration::days(1000),
            max_downgrade_steps: 0,
            ..TierPolicy::default()
        };
        let fields: Vec<String> = policy.faults().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "program.strategic_name",
                "program.vip_name",
                "program.vip.nights",
                "program.spend_currency",
                "program.grace_days",
                "program.max_downgrade_steps"
            ]
        );
        assert!(TierPolicy::default().faults().is_empty());
    }
}
