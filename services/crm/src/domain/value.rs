//! Customer value (DOMAIN §4) and the segments built on it:
//!
//! CV = (spend_weight × recent spend × recent stays + satisfaction_weight × Σ ratings)
//!      / max(relationship years, min_relationship_years)
//!
//! Recent spend is the spend of checked-out stays that departed within the window, in major
//! currency units (amounts are not converted between currencies: a chain reporting in several
//! currencies sets weights accordingly). Ratings are the guest's follow-up CSAT scores (1–5).
//! The relationship runs from the first stay (or the profile's creation, if earlier) to the
//! evaluation date. A guest belongs to the first segment, highest first, whose minimum the value
//! reaches.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub name: String,
    pub min_value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValuePolicy {
    pub window_months: u32,
    pub spend_weight: f64,
    pub satisfaction_weight: f64,
    pub min_relationship_years: f64,
    /// Highest first, minimums strictly decreasing.
    pub segments: Vec<Segment>,
}

impl Default for ValuePolicy {
    fn default() -> Self {
        let segment = |name: &str, min_value: f64| Segment {
            name: name.into(),
            min_value,
        };
        Self {
            window_months: 12,
            spend_weight: 1.0,
            satisfaction_weight: 50.0,
            min_relationship_years: 1.0,
            segments: vec![
                segment("top", 20_000.0),
                segment("core", 2_000.0),
                segment("occasional", 1.0),
                segment("dormant", 0.0),
            ],
        }
    }
}

/// Bounds of the policy's numbers: wide enough for any currency's amounts, narrow enough that a
/// value cannot overflow (a huge weight or a tiny relationship length would).
const MAX_WEIGHT: f64 = 1_000_000.0;
const MIN_RELATIONSHIP_YEARS: f64 = 0.01;
const MAX_SEGMENT_MINIMUM: f64 = 1e15;

/// The policy's faults as (field, description), empty when it is usable.
pub fn validate(policy: &ValuePolicy) -> Vec<(String, String)> {
    let mut faults = Vec::new();
    let mut fault = |field: &str, text: &str| faults.push((field.to_string(), text.to_string()));
    if !(1..=60).contains(&policy.window_months) {
        fault("policy.window_months", "must be between 1 and 60");
    }
    for (field, weight) in [
        ("policy.spend_weight", policy.spend_weight),
        ("policy.satisfaction_weight", policy.satisfaction_weight),
    ] {
        if !(0.0..=MAX_WEIGHT).contains(&weight) {
            fault(field, "must be a number from 0 to 1,000,000");
        }
    }
    if !(MIN_RELATIONSHIP_YEARS..=100.0).contains(&policy.min_relationship_years) {
        fault(
            "policy.min_relationship_years",
            "must be a number from 0.01 (about four days) to 100",
        );
    }
    if policy.segments.is_empty() || policy.segments.len() > 10 {
        fault("policy.segments", "give between 1 and 10 segments");
    }
    let mut names = std::collections::HashSet::new();
    for (i, s) in policy.segments.iter().enumerate() {
        let name = s.name.trim();
        if name.is_empty() || name.chars().count() > 40 {
            fault(
                &format!("policy.segments[{i}].name"),
                "must be 1–40 characters",
            );
        } else if !names.insert(name.to_string()) {
            fault(&format!("policy.segments[{i}].name"), "is used twice");
        }
        if !(0.0..=MAX_SEGMENT_MINIMUM).contains(&s.min_value) {
            fault(
                &format!("policy.segments[{i}].min_value"),
                "must be a number from 0 to 10^15",
            );
        }
        if i > 0 && s.min_value >= policy.segments[i - 1].min_value {
            fault(
                &format!("policy.segments[{i}].min_value"),
                "segments go highest first: each minimum must be below the one before",
            );
        }
    }
    faults
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValueInputs {
    /// Major currency units.
    pub recent_spend: f64,
    pub recent_stays: i64,
    pub satisfaction_sum: i64,
    pub relationship_years: f64,
}

pub fn customer_value(policy: &ValuePolicy, inputs: &ValueInputs) -> f64 {
    let numerator = policy.spend_weight * inputs.recent_spend * inputs.recent_stays as f64
        + policy.satisfaction_weight * inputs.satisfaction_sum as f64;
    let years = inputs.relationship_years.max(policy.min_relationship_years);
    let value = numerator / years;
    // Past f64's range the guest is still the most valuable, not the least.
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, f64::MAX)
    }
}

/// The segment `value` falls in (empty when it is below every minimum).
pub fn segment(policy: &ValuePolicy, value: f64) -> &str {
    policy
        .segments
        .iter()
        .find(|s| value >= s.min_value)
        .map_or("", |s| s.name.as_str())
}

/// Digits after the decimal point in an ISO 4217 currency's minor unit.
pub fn minor_unit_digits(currency: &str) -> i32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Minor units as major units of `currency`.
pub fn to_major(currency: &str, minor: i64) -> f64 {
    minor as f64 / 10f64.powi(minor_unit_digits(currency))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs(spend: f64, stays: i64, sat: i64, years: f64) -> ValueInputs {
        ValueInputs {
            recent_spend: spend,
            recent_stays: stays,
            satisfaction_sum: sat,
            relationship_years: years,
        }
    }

    #[test]
    fn the_formula_with_default_parameters() {
        let p = ValuePolicy::default();
        // 3 stays, 2,100 spent, two ratings of 5 and 4, a guest for 3 years: 2,250.
        let v = customer_value(&p, &inputs(2_100.0, 3, 9, 3.0));
        assert!((v - 2_250.0).abs() < 1e-9);
        assert_eq!(segment(&p, v), "core");
        // A new guest's relationship counts as one year, not a few days.
        let new = customer_value(&p, &inputs(600.0, 1, 0, 0.02));
        assert!((new - 600.0).abs() < 1e-9);
        assert_eq!(segment(&p, new), "occasional");
        assert_eq!(segment(&p, 0.0), "dormant");
        assert_eq!(segment(&p, 25_000.0), "top");
    }

    #[test]
    fn currencies_scale_by_their_minor_units() {
        assert!((to_major("EUR", 12_345) - 123.45).abs() < 1e-9);
        assert!((to_major("JPY", 12_345) - 12_345.0).abs() < 1e-9);
        assert!((to_major("KWD", 12_345) - 12.345).abs() < 1e-9);
    }

    #[test]
    fn bad_policies_name_the_field() {
        let mut p = ValuePolicy {
            window_months: 0,
            spend_weight: f64::NAN,
            ..ValuePolicy::default()
        };
        p.segments[1].min_value = 30_000.0;
        p.segments[2].name = "top".into();
        let fields: Vec<String> = validate(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "policy.window_months",
                "policy.spend_weight",
                "policy.segments[1].min_value",
                "policy.segments[2].name"
            ]
        );
        assert!(validate(&ValuePolicy::default()).is_empty());
    }

    #[test]
    fn weights_and_lengths_that_would_overflow_are_refused() {
        let policy = ValuePolicy {
            spend_weight: 1e308,
            satisfaction_weight: 2e6,
            min_relationship_years: 1e-320,
            ..ValuePolicy::default()
        };
        let fields: Vec<String> = validate(&policy).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "policy.spend_weight",
                "policy.satisfaction_weight",
                "policy.min_relationship_years"
            ]
        );
        let mut policy = ValuePolicy::default();
        policy.segments[0].min_value = 1e16;
        assert_eq!(validate(&policy).len(), 1);
        // At the bounds a big spender stays finite and in the top segment.
        let policy = ValuePolicy {
            spend_weight: MAX_WEIGHT,
            min_relationship_years: MIN_RELATIONSHIP_YEARS,
            ..ValuePolicy::default()
        };
        assert!(validate(&policy).is_empty());
        let value = customer_value(&policy, &inputs(1e15, 1_000, 10_000, 0.0));
        assert!(value.is_finite() && value > 1e20, "{value}");
        assert_eq!(segment(&policy, value), "top");
        // Past f64's range the value saturates instead of falling to nothing.
        let unbounded = ValuePolicy {
            spend_weight: f64::MAX,
            ..ValuePolicy::default()
        };
        let value = customer_value(&unbounded, &inputs(1e300, 10, 0, 1.0));
        assert_eq!(value, f64::MAX);
    }

    proptest! {
        #[test]
        fn value_never_falls_when_a_guest_spends_or_rates_more(
            spend in 0.0f64..1e6, extra in 0.0f64..1e5, stays in 0i64..100,
            sat in 0i64..500, more_sat in 0i64..50, years in 0.0f64..40.0,
        ) {
            let p = ValuePolicy::default();
            let base = customer_value(&p, &inputs(spend, stays, sat, years));
            prop_assert!(base >= 0.0 && base.is_finite());
            prop_assert!(customer_value(&p, &inputs(spend + extra, stays, sat, years)) >= base);
            prop_assert!(customer_value(&p, &inputs(spend, stays, sat + more_sat, years)) >= base);
            // A longer relationship with the same recent activity never raises the value.
            prop_assert!(customer_value(&p, &inputs(spend, stays, sat, years + 1.0)) <= base + 1e-9);
            // Segments are ordered like values.
            let rank = |v: f64| p.segments.iter().position(|s| v >= s.min_value);
            prop_assert!(rank(customer_value(&p, &inputs(spend + extra, stays, sat, years))) <= rank(base));
        }
    }
}
