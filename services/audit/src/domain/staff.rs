//! Complaint-based staff scores, fair to frontline staff: a complaint counts against a staff
//! member only when its cause is their behaviour; a complaint with a system cause (facility,
//! process, billing, another department, …) counts only when they recovered it, and then in
//! their favour. Unrecovered system failures are the organisation's, not theirs.

use guestloop_proto::complaints::v1::Cause;

/// Share of the combined score that comes from audit observations when both parts exist.
pub const AUDIT_SHARE: f64 = 0.7;

/// One complaint naming a staff member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedComplaint {
    pub cause: i32,
    pub resolved: bool,
    /// 1–5 when rated.
    pub csat: Option<i16>,
}

impl NamedComplaint {
    /// Resolved and not rated 1–2 (the same test as CRM's recovery paradox).
    pub fn recovered(&self) -> bool {
        self.resolved && self.csat.is_none_or(|c| c >= 3)
    }

    pub fn attributable(&self) -> bool {
        self.cause == Cause::StaffBehaviour as i32
    }

    /// The complaint's value for the staff member (0–1), or `None` when it does not count.
    pub fn value(&self) -> Option<f64> {
        match (self.attributable(), self.recovered()) {
            // Their own failure: a recovery halves the damage.
            (true, false) => Some(0.0),
            (true, true) => Some(0.5),
            // A system failure they recovered: credit.
            (false, true) => Some(1.0),
            (false, false) => None,
        }
    }
}

/// 0–100 over the complaints that count, or `None` when none does.
pub fn complaint_score(complaints: &[NamedComplaint]) -> Option<f64> {
    let values: Vec<f64> = complaints
        .iter()
        .filter_map(NamedComplaint::value)
        .collect();
    (!values.is_empty()).then(|| 100.0 * values.iter().sum::<f64>() / values.len() as f64)
}

/// The combined score (0–100): [`AUDIT_SHARE`] audit, the rest complaints, or the part present.
pub fn combined(audit: Option<f64>, complaints: Option<f64>) -> Option<f64> {
    match (audit, complaints) {
        (Some(a), Some(c)) => Some(AUDIT_SHARE * a + (1.0 - AUDIT_SHARE) * c),
        (Some(a), None) => Some(a),
        (None, Some(c)) => Some(c),
        (None, None) => None,
    }
}

/// What is known about one staff member in a period: their audit score and observation count,
/// and the complaints naming them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaffRecord {
    pub audit: Option<(f64, i64)>,
    pub complaints: Vec<NamedComplaint>,
}

impl StaffRecord {
    pub fn audit_score(&self) -> Option<f64> {
        self.audit.map(|(score, _)| score)
    }

    pub fn observations(&self) -> i64 {
        self.audit.map_or(0, |(_, n)| n)
    }

    pub fn complaint_score(&self) -> Option<f64> {
        complaint_score(&self.complaints)
    }

    pub fn attributable(&self) -> i64 {
        self.complaints.iter().filter(|c| c.attributable()).count() as i64
    }

    /// The combined score, or `None` when nothing counts.
    pub fn score(&self) -> Option<f64> {
        combined(self.audit_score(), self.complaint_score())
    }
}

/// Upper bounds of the staff-score bands of KPI distributions: [0, 20), [20, 40), [40, 60),
/// [60, 80), [80, 100].
pub const BANDS: [f64; 5] = [20.0, 40.0, 60.0, 80.0, 100.0];

/// The band (0–4) a score falls in.
pub fn band(score: f64) -> usize {
    BANDS
        .iter()
        .position(|upper| score < *upper)
        .unwrap_or(BANDS.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complaint(cause: Cause, resolved: bool, csat: Option<i16>) -> NamedComplaint {
        NamedComplaint {
            cause: cause as i32,
            resolved,
            csat,
        }
    }

    #[test]
    fn system_failures_never_count_against_staff() {
        let broken_ac = complaint(Cause::Facility, false, None);
        assert_eq!(broken_ac.value(), None);
        assert_eq!(complaint_score(&[broken_ac, broken_ac]), None);
        let recovered = complaint(Cause::Process, true, Some(5));
        assert_eq!(complaint_score(&[broken_ac, recovered]), Some(100.0));
    }

    #[test]
    fn own_behaviour_counts_and_recovery_halves_it() {
        let rude = complaint(Cause::StaffBehaviour, true, Some(2));
        let rude_recovered = complaint(Cause::StaffBehaviour, true, Some(4));
        assert_eq!(complaint_score(&[rude]), Some(0.0));
        assert_eq!(complaint_score(&[rude_recovered]), Some(50.0));
        assert_eq!(complaint_score(&[rude, rude_recovered]), Some(25.0));
        // Resolved without a rating counts as recovered.
        assert!(complaint(Cause::StaffBehaviour, true, None).recovered());
        assert!(!complaint(Cause::StaffBehaviour, false, Some(5)).recovered());
    }

    #[test]
    fn bands_split_scores_in_fifths() {
        assert_eq!(band(0.0), 0);
        assert_eq!(band(19.99), 0);
        assert_eq!(band(20.0), 1);
        assert_eq!(band(79.9), 3);
        assert_eq!(band(100.0), 4);
    }

    #[test]
    fn combined_weights_audits_seventy_percent() {
        assert_eq!(combined(Some(80.0), Some(50.0)), Some(71.0));
        assert_eq!(combined(None, Some(50.0)), Some(50.0));
        assert_eq!(combined(Some(80.0), None), Some(80.0));
        assert_eq!(combined(None, None), None);
    }

    fn any_complaint() -> impl Strategy<Value = NamedComplaint> {
        (0i32..=9, any::<bool>(), proptest::option::of(1i16..=5)).prop_map(
            |(cause, resolved, csat)| NamedComplaint {
                cause,
                resolved,
                csat,
            },
        )
    }

    proptest! {
        /// Adding a system-cause complaint never lowers a staff member's score.
        #[test]
        fn a_system_failure_never_lowers_the_score(
            history in proptest::collection::vec(any_complaint(), 0..20),
            resolved in any::<bool>(),
            csat in proptest::option::of(1i16..=5),
            cause in prop_oneof![Just(Cause::Facility), Just(Cause::Process), Just(Cause::PriceBilling), Just(Cause::SupportSystem)],
        ) {
            let before = complaint_score(&history);
            let mut after_history = history.clone();
            after_history.push(complaint(cause, resolved, csat));
            let after = complaint_score(&after_history);
            match (before, after) {
                (Some(b), Some(a)) => prop_assert!(a >= b - 1e-9),
                (Some(_), None) => prop_assert!(false, "a score cannot disappear"),
                _ => {}
            }
        }

        /// Scores stay within 0–100.
        #[test]
        fn scores_are_percentages(history in proptest::collection::vec(any_complaint(), 0..30), audit in proptest::option::of(0.0f64..=100.0)) {
            let score = complaint_score(&history);
            if let Some(s) = score {
                prop_assert!((0.0..=100.0).contains(&s));
            }
            if let Some(c) = combined(audit, score) {
                prop_assert!((0.0..=100.0 + 1e-9).contains(&c));
            }
        }
    }
}
