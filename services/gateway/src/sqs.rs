//! The composite service-quality score: SQS = Σ Wᵢ·Qᵢ with Σ Wᵢ = 1 and each Qᵢ the KPI mapped
//! onto 0–100 between a floor (0) and a target (100). Inputs are additive counts, so a region or
//! the whole chain is scored from summed numerators and denominators, never by averaging
//! averages. A KPI with nothing to measure (or whose source is missing) leaves the score, and the
//! remaining weights are re-scaled; the response says which.

use std::collections::BTreeMap;

/// Numerators and denominators of every KPI in the score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub complaints: i64,
    pub rated: i64,
    pub csat_sum: i64,
    pub clocks_met: i64,
    pub clocks_decided: i64,
    pub resolved: i64,
    pub resolved_first_contact: i64,
    pub nps_answers: i64,
    pub nps_promoters: i64,
    pub nps_detractors: i64,
    pub repeat_issues: i64,
    pub work_orders_done: i64,
    pub work_orders_on_time: i64,
    /// Submitted audits and the sum of their overall scores (0–100).
    pub audits: i64,
    pub audit_score_sum: f64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.complaints += other.complaints;
        self.rated += other.rated;
        self.csat_sum += other.csat_sum;
        self.clocks_met += other.clocks_met;
        self.clocks_decided += other.clocks_decided;
        self.resolved += other.resolved;
        self.resolved_first_contact += other.resolved_first_contact;
        self.nps_answers += other.nps_answers;
        self.nps_promoters += other.nps_promoters;
        self.nps_detractors += other.nps_detractors;
        self.repeat_issues += other.repeat_issues;
        self.work_orders_done += other.work_orders_done;
        self.work_orders_on_time += other.work_orders_on_time;
        self.audits += other.audits;
        self.audit_score_sum += other.audit_score_sum;
    }

    fn ratio(n: i64, d: i64) -> Option<f64> {
        (d > 0).then(|| n as f64 / d as f64)
    }

    /// Each KPI's value, absent when its denominator is zero.
    pub fn value(&self, kpi: &str) -> Option<f64> {
        match kpi {
            "csat_mean" => Self::ratio(self.csat_sum, self.rated),
            "sla_attainment" => Self::ratio(self.clocks_met, self.clocks_decided),
            "fcr_rate" => Self::ratio(self.resolved_first_contact, self.resolved),
            "nps" => Self::ratio(
                100 * (self.nps_promoters - self.nps_detractors),
                self.nps_answers,
            ),
            "repeat_rate" => Self::ratio(self.repeat_issues, self.complaints),
            "work_order_attainment" => Self::ratio(self.work_orders_on_time, self.work_orders_done),
            "audit_score" => (self.audits > 0).then(|| self.audit_score_sum / self.audits as f64),
            _ => None,
        }
    }
}

/// How one KPI enters the score.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub kpi: String,
    pub weight: f64,
    pub target: f64,
    pub floor: f64,
}

/// The chain defaults (DOMAIN §3 weights are configuration; these are a sensible start).
pub fn default_weights() -> Vec<Weight> {
    let w = |kpi: &str, weight: f64, target: f64, floor: f64| Weight {
        kpi: kpi.into(),
        weight,
        target,
        floor,
    };
    vec![
        w("csat_mean", 0.20, 4.5, 3.0),
        w("sla_attainment", 0.20, 0.95, 0.6),
        w("fcr_rate", 0.15, 0.8, 0.4),
        w("nps", 0.15, 50.0, -20.0),
        // Lower is better: the target sits below the floor.
        w("repeat_rate", 0.10, 0.02, 0.15),
        w("work_order_attainment", 0.10, 0.95, 0.5),
        w("audit_score", 0.10, 90.0, 60.0),
    ]
}

/// Checks a weight set: known KPIs, each once, weights in [0, 1] summing to 1, target ≠ floor.
pub fn validate(weights: &[Weight]) -> Result<(), String> {
    let known: Vec<String> = default_weights().into_iter().map(|w| w.kpi).collect();
    let mut seen = BTreeMap::new();
    for w in weights {
        if !known.contains(&w.kpi) {
            return Err(format!(
                "weights: unknown KPI `{}`; expected one of {}",
                w.kpi,
                known.join(", ")
            ));
        }
        if seen.insert(w.kpi.clone(), ()).is_some() {
            return Err(format!("weights: `{}` is listed twice", w.kpi));
        }
        if !w.target.is_finite() || !w.floor.is_finite() {
            return Err(format!(
                "weights: `{}` needs a finite target and floor (got {} and {})",
                w.kpi, w.target, w.floor
            ));
        }
        if !(0.0..=1.0).contains(&w.weight) || (w.target - w.floor).abs() < f64::EPSILON {
            return Err(format!(
                "weights: `{}` needs a weight in [0, 1] and a target different from its floor",
                w.kpi
            ));
        }
    }
    let total: f64 = weights.iter().map(|w| w.weight).sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(format!("weights: must sum to 1 (they sum to {total:.4})"));
    }
    Ok(())
}

/// One KPI's part in a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub kpi: String,
    pub value: Option<f64>,
    pub normalized: Option<f64>,
    pub weight: f64,
    pub contribution: Option<f64>,
    pub target: f64,
    pub floor: f64,
}

/// The score of one unit and how it was made.
pub fn score(
    counts: &Counts,
    weights: &[Weight],
    unavailable: &[&str],
) -> (Option<f64>, Vec<Component>) {
    let mut components: Vec<Component> = weights
        .iter()
        .map(|w| {
            let value = if unavailable.contains(&w.kpi.as_str()) {
                None
            } else {
                counts.value(&w.kpi)
            };
            let normalized =
                value.map(|v| (100.0 * (v - w.floor) / (w.target - w.floor)).clamp(0.0, 100.0));
            Component {
                kpi: w.kpi.clone(),
                value,
                normalized,
                weight: w.weight,
                contribution: None,
                target: w.target,
                floor: w.floor,
            }
        })
        .collect();
    let present: f64 = components
        .iter()
        .filter(|c| c.normalized.is_some())
        .map(|c| c.weight)
        .sum();
    if present <= 0.0 {
        return (None, components);
    }
    for c in &mut components {
        c.contribution = c.normalized.map(|n| n * c.weight / present);
    }
    // Each part is within 0-100 and the re-scaled weights sum to one, so the sum is too, but
    // for rounding: 100 points in three parts can add up to 100.00000000000001.
    let sqs: f64 = components.iter().filter_map(|c| c.contribution).sum();
    (Some(sqs.clamp(0.0, 100.0)), components)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalisation_and_explanation() {
        let counts = Counts {
            rated: 10,
            csat_sum: 45,
            clocks_met: 6,
            clocks_decided: 10,
            ..Default::default()
        };
        let weights = vec![
            Weight {
                kpi: "csat_mean".into(),
                weight: 0.5,
                target: 4.5,
                floor: 3.0,
            },
            Weight {
                kpi: "sla_attainment".into(),
                weight: 0.5,
                target: 1.0,
                floor: 0.5,
            },
        ];
        let (sqs, parts) = score(&counts, &weights, &[]);
        assert_eq!(parts[0].normalized, Some(100.0));
        assert!((parts[1].normalized.unwrap_or_default() - 20.0).abs() < 1e-9);
        assert!((sqs.unwrap_or_default() - 60.0).abs() < 1e-9);
        // A missing source re-scales the rest and is visible in the components.
        let (partial, parts) = score(&counts, &weights, &["sla_attainment"]);
        assert_eq!(partial, Some(100.0));
        assert_eq!(parts[1].contribution, None);
        assert!(validate(&default_weights()).is_ok());
        assert!(validate(&weights[..1]).is_err(), "must sum to 1");
    }

    #[test]
    fn non_finite_targets_and_floors_are_refused() {
        for (target, floor) in [
            (f64::NAN, 0.6),
            (0.95, f64::NAN),
            (f64::INFINITY, 0.6),
            (0.95, f64::NEG_INFINITY),
        ] {
            let mut weights = default_weights();
            weights[1].target = target;
            weights[1].floor = floor;
            let error = validate(&weights).expect_err("non-finite value accepted");
            assert!(error.contains(&weights[1].kpi), "{error}");
            assert!(error.contains("finite"), "{error}");
        }
    }

    fn counts() -> impl Strategy<Value = Counts> {
        (0i64..50, 0i64..50, 0i64..50, 0i64..50, 0i64..50).prop_map(
            |(rated, met, missed, promoters, detractors)| Counts {
                complaints: rated + 3,
                rated,
                csat_sum: rated * 4,
                clocks_met: met,
                clocks_decided: met + missed,
                nps_answers: promoters + detractors,
                nps_promoters: promoters,
                nps_detractors: detractors,
                ..Default::default()
            },
        )
    }

    proptest! {
        /// Rolling up from sums is not averaging averages: the chain's CSAT equals the mean over
        /// all ratings, whatever the split into properties.
        #[test]
        fn roll_ups_use_numerators(parts in proptest::collection::vec(counts(), 1..6)) {
            let mut total = Counts::default();
            for p in &parts { total.add(p); }
            let ratings: i64 = parts.iter().map(|p| p.rated).sum();
            let sum: i64 = parts.iter().map(|p| p.csat_sum).sum();
            prop_assert_eq!(total.value("csat_mean"), (ratings > 0).then(|| sum as f64 / ratings as f64));
            let (sqs, _) = score(&total, &default_weights(), &[]);
            if let Some(sqs) = sqs { prop_assert!((0.0..=100.0).contains(&sqs)); }
        }
    }
}
