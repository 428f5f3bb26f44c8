//! Touchpoint importance: guests rate how much each touchpoint matters (1–5); touchpoints with
//! enough ratings get a weight factor, their mean importance over the mean of all qualifying
//! touchpoints' means, so factors average 1 and a template's overall scale is kept while the
//! standards guests care about weigh more.

use std::collections::BTreeMap;

/// Ratings a touchpoint needs before its factor differs from 1.
pub const MIN_RATINGS: i64 = 10;

/// Count and sum of one touchpoint's ratings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub ratings: i64,
    pub importance_sum: i64,
}

impl Tally {
    pub fn mean(&self) -> Option<f64> {
        (self.ratings > 0).then(|| self.importance_sum as f64 / self.ratings as f64)
    }
}

/// Weight factor and rank (1 = most important; 0 when not qualifying) per touchpoint.
pub fn factors(tallies: &BTreeMap<String, Tally>) -> BTreeMap<String, (f64, i32)> {
    let qualifying: Vec<(&String, f64)> = tallies
        .iter()
        .filter(|(_, t)| t.ratings >= MIN_RATINGS)
        .filter_map(|(name, t)| t.mean().map(|m| (name, m)))
        .collect();
    let overall = if qualifying.is_empty() {
        None
    } else {
        Some(qualifying.iter().map(|(_, m)| m).sum::<f64>() / qualifying.len() as f64)
    };
    let mut ranked = qualifying.clone();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut out: BTreeMap<String, (f64, i32)> =
        tallies.keys().map(|k| (k.clone(), (1.0, 0))).collect();
    if let Some(overall) = overall {
        for (rank, (name, mean)) in ranked.into_iter().enumerate() {
            out.insert(
                name.clone(),
                (mean / overall, i32::try_from(rank + 1).unwrap_or(i32::MAX)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tally(ratings: i64, mean: i64) -> Tally {
        Tally {
            ratings,
            importance_sum: ratings * mean,
        }
    }

    #[test]
    fn arrival_matters_twice_as_much_as_the_minibar() {
        let tallies = BTreeMap::from([
            ("arrival".to_string(), tally(20, 4)),
            ("minibar".to_string(), tally(20, 2)),
            ("spa".to_string(), tally(3, 5)),
        ]);
        let f = factors(&tallies);
        assert_eq!(f["arrival"], (4.0 / 3.0, 1));
        assert_eq!(f["minibar"], (2.0 / 3.0, 2));
        assert_eq!(f["spa"], (1.0, 0), "too few ratings: no change");
    }

    proptest! {
        /// Qualifying factors average 1, and a more important touchpoint never weighs less.
        #[test]
        fn factors_average_one_and_keep_the_order(
            raw in proptest::collection::btree_map("[a-z]{1,6}", (0i64..40, 1i64..=5), 1..8)
        ) {
            let tallies: BTreeMap<String, Tally> = raw
                .iter()
                .map(|(k, (n, mean))| (k.clone(), tally(*n, *mean)))
                .collect();
            let f = factors(&tallies);
            let qualifying: Vec<(&String, &(f64, i32))> =
                f.iter().filter(|(k, _)| tallies[*k].ratings >= MIN_RATINGS).collect();
            if !qualifying.is_empty() {
                let mean = qualifying.iter().map(|(_, (x, _))| x).sum::<f64>() / qualifying.len() as f64;
                prop_assert!((mean - 1.0).abs() < 1e-9);
            }
            for (a, (fa, _)) in &qualifying {
                for (b, (fb, _)) in &qualifying {
                    if tallies[*a].mean() > tallies[*b].mean() {
                        prop_assert!(fa > fb);
                    }
                }
            }
            for (k, (factor, rank)) in &f {
                if tallies[k].ratings < MIN_RATINGS {
                    prop_assert_eq!((*factor, *rank), (1.0, 0));
                }
            }
        }
    }
}
