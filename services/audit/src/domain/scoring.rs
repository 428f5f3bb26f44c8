//! Weighted audit scoring. Each answered item scores 0–1 (pass 1, fail 0, a value inside the
//! standard's range 1 else 0, a 1–5 rating (r − 1) / 4); not-applicable items leave the
//! denominator. Section, dimension and overall scores are weighted percentages (0–100). A failed
//! critical item scores its whole section 0, or — with the audit-wide rule — the whole audit
//! ("100 − 1 = 0"). An audit passes when it has no audit-failing critical miss and reaches the
//! template's threshold.

/// The five service-quality dimensions, in the order scores are reported.
pub const DIMENSIONS: [&str; 5] = [
    "tangibles",
    "reliability",
    "responsiveness",
    "assurance",
    "empathy",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticalRule {
    FailSection,
    FailAudit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Score(f64),
    NotApplicable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item {
    pub section: usize,
    /// 0..5: tangibles, reliability, responsiveness, assurance, empathy.
    pub dimension: usize,
    pub weight: f64,
    pub critical: bool,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub overall: Option<f64>,
    pub sections: Vec<Option<f64>>,
    pub dimensions: [Option<f64>; 5],
    pub critical_failed: bool,
    pub passed: bool,
}

fn is_critical_miss(item: &Item) -> bool {
    item.critical && matches!(item.outcome, Outcome::Score(s) if s < 1.0)
}

/// Whether an item raises a finding (and so gets a corrective action): any score under half, and
/// every critical miss — a miss that zeroes a section or fails the audit is always explained.
pub fn raises_finding(item: &Item) -> bool {
    is_critical_miss(item) || matches!(item.outcome, Outcome::Score(s) if s < 0.5)
}

fn weighted(items: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (num, den) = items.fold((0.0, 0.0), |(n, d), (w, s)| (n + w * s, d + w));
    (den > 0.0).then(|| 100.0 * num / den)
}

pub fn score(items: &[Item], sections: usize, rule: CriticalRule, pass_threshold: f64) -> Scores {
    let failed_sections: Vec<bool> = (0..sections)
        .map(|s| items.iter().any(|i| i.section == s && is_critical_miss(i)))
        .collect();
    let critical_failed = failed_sections.iter().any(|f| *f);
    let applicable = |i: &&Item| matches!(i.outcome, Outcome::Score(_)) && i.weight > 0.0;
    let value = |i: &Item| match i.outcome {
        Outcome::Score(s) => s.clamp(0.0, 1.0),
        Outcome::NotApplicable => 0.0,
    };
    let section_scores: Vec<Option<f64>> = (0..sections)
        .map(|s| {
            let raw = weighted(
                items
                    .iter()
                    .filter(|i| i.section == s)
                    .filter(applicable)
                    .map(|i| (i.weight, value(i))),
            );
            if failed_sections[s] {
                raw.map(|_| 0.0)
            } else {
                raw
            }
        })
        .collect();
    // Items of a critically failed section count as zero in the overall score.
    let overall = weighted(items.iter().filter(applicable).map(|i| {
        let zeroed = i.section < sections && failed_sections[i.section];
        (i.weight, if zeroed { 0.0 } else { value(i) })
    }));
    let overall = if rule == CriticalRule::FailAudit && critical_failed {
        overall.map(|_| 0.0).or(Some(0.0))
    } else {
        overall
    };
    let mut dimensions = [None; 5];
    for (d, slot) in dimensions.iter_mut().enumerate() {
        *slot = weighted(
            items
                .iter()
                .filter(|i| i.dimension == d)
                .filter(applicable)
                .map(|i| (i.weight, value(i))),
        );
    }
    let passed = !(rule == CriticalRule::FailAudit && critical_failed)
        && overall.is_some_and(|o| o + 1e-9 >= pass_threshold);
    Scores {
        overall,
        sections: section_scores,
        dimensions,
        critical_failed,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(section: usize, weight: f64, critical: bool, outcome: Outcome) -> Item {
        Item {
            section,
            dimension: section % 5,
            weight,
            critical,
            outcome,
        }
    }

    #[test]
    fn one_failed_detail_spoils_the_whole() {
        let items = [
            item(0, 1.0, false, Outcome::Score(1.0)),
            item(1, 1.0, true, Outcome::Score(0.0)),
            item(1, 3.0, false, Outcome::Score(1.0)),
        ];
        let audit_rule = score(&items, 2, CriticalRule::FailAudit, 80.0);
        assert_eq!(audit_rule.overall, Some(0.0));
        assert!(!audit_rule.passed && audit_rule.critical_failed);
        let section_rule = score(&items, 2, CriticalRule::FailSection, 20.0);
        assert_eq!(section_rule.sections, vec![Some(100.0), Some(0.0)]);
        assert_eq!(
            section_rule.overall,
            Some(20.0),
            "section 1 counts as zero: 1 / 5"
        );
        assert!(section_rule.passed);
    }

    #[test]
    fn not_applicable_leaves_the_denominator() {
        let items = [
            item(0, 2.0, false, Outcome::Score(1.0)),
            item(0, 2.0, false, Outcome::NotApplicable),
            item(0, 2.0, false, Outcome::Score(0.5)),
        ];
        assert_eq!(
            score(&items, 1, CriticalRule::FailSection, 0.0).overall,
            Some(75.0)
        );
        let none = [item(0, 1.0, false, Outcome::NotApplicable)];
        let scores = score(&none, 1, CriticalRule::FailSection, 50.0);
        assert_eq!(
            (scores.overall, scores.sections.clone(), scores.passed),
            (None, vec![None], false)
        );
    }

    #[test]
    fn every_critical_miss_raises_a_finding() {
        let rated = |critical: bool, score: f64| {
            raises_finding(&item(0, 1.0, critical, Outcome::Score(score)))
        };
        assert!(
            rated(true, 0.75),
            "a critical 4 of 5 fails the audit: a finding explains it"
        );
        assert!(rated(true, 0.0));
        assert!(!rated(true, 1.0));
        assert!(!rated(false, 0.75));
        assert!(!rated(false, 0.5));
        assert!(rated(false, 0.25));
        assert!(!raises_finding(&item(0, 1.0, true, Outcome::NotApplicable)));
    }

    fn arbitrary_item() -> impl Strategy<Value = Item> {
        (
            0usize..3,
            0usize..5,
            0u32..5,
            any::<bool>(),
            prop_oneof![Just(None), (0u32..=4).prop_map(Some)],
        )
            .prop_map(|(section, dimension, weight, critical, outcome)| Item {
                section,
                dimension,
                weight: f64::from(weight),
                critical,
                outcome: outcome.map_or(Outcome::NotApplicable, |q| {
                    Outcome::Score(f64::from(q) / 4.0)
                }),
            })
    }

    proptest! {
        /// Against a reference that counts in integer quarter-points.
        #[test]
        fn matches_the_reference(items in proptest::collection::vec(arbitrary_item(), 0..25), audit_rule: bool, threshold in 0u32..=100) {
            let rule = if audit_rule { CriticalRule::FailAudit } else { CriticalRule::FailSection };
            let got = score(&items, 3, rule, f64::from(threshold));
            let quarters = |i: &Item| match i.outcome { Outcome::Score(s) => Some((s * 4.0).round() as u64), Outcome::NotApplicable => None };
            let failed = |s: usize| items.iter().any(|i| i.section == s && i.critical && quarters(i).is_some_and(|q| q < 4));
            let mut num = 0u64;
            let mut den = 0u64;
            for i in &items {
                if let Some(q) = quarters(i) {
                    let w = i.weight as u64;
                    den += 4 * w;
                    if !failed(i.section) { num += q * w; }
                }
            }
            let any_failed = (0..3).any(failed);
            let expected = if den == 0 {
                if audit_rule && any_failed { Some(0.0) } else { None }
            } else if audit_rule && any_failed {
                Some(0.0)
            } else {
                Some(100.0 * num as f64 / den as f64)
            };
            match (got.overall, expected) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-6, "{} vs {}", a, b),
                (a, b) => prop_assert_eq!(a, b),
            }
            prop_assert_eq!(got.critical_failed, any_failed);
            // Every critically failed section has a finding to explain it.
            for s in (0..3).filter(|s| failed(*s)) {
                prop_assert!(items.iter().any(|i| i.section == s && raises_finding(i)));
            }
            let passes = !(audit_rule && any_failed) && expected.is_some_and(|e| e + 1e-9 >= f64::from(threshold));
            prop_assert_eq!(got.passed, passes);
            for score in got.sections.iter().flatten().chain(got.dimensions.iter().flatten()) {
                prop_assert!((0.0..=100.0).contains(score));
            }
        }
    }
}
