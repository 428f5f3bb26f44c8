//! The complaint KPIs of DOMAIN §3 over the additive counts of [`KpiCounts`]: the one definition
//! the complaints service and the gateway both use. Counts add up (a region's or the chain's are
//! the sums of its properties'), and every value is computed from summed numerators and
//! denominators, never by averaging averages; a value is absent when its denominator is zero.

use crate::common::v1::Money;
use crate::complaints::v1::{ClockAttainment, KpiCounts, KpiValues, Stage};

fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl KpiCounts {
    /// Adds `other`'s counts: clocks per stage and compensation per currency.
    pub fn add(&mut self, other: &KpiCounts) {
        self.complaints += other.complaints;
        self.responded += other.responded;
        self.first_response_seconds_sum += other.first_response_seconds_sum;
        self.resolved += other.resolved;
        self.first_resolution_seconds_sum += other.first_resolution_seconds_sum;
        self.total_resolution_seconds_sum += other.total_resolution_seconds_sum;
        self.resolved_first_contact += other.resolved_first_contact;
        self.rated += other.rated;
        self.csat_sum += other.csat_sum;
        self.csat_top_two += other.csat_top_two;
        self.nps_answers += other.nps_answers;
        self.nps_promoters += other.nps_promoters;
        self.nps_detractors += other.nps_detractors;
        self.escalated += other.escalated;
        self.escalation_seconds_sum += other.escalation_seconds_sum;
        self.reopened += other.reopened;
        self.repeat_issues += other.repeat_issues;
        self.compensation_points += other.compensation_points;
        self.currently_resolved += other.currently_resolved;
        for money in &other.compensation {
            match self
                .compensation
                .iter_mut()
                .find(|m| m.currency_code == money.currency_code)
            {
                Some(sum) => sum.minor_units += money.minor_units,
                None => self.compensation.push(Money {
                    currency_code: money.currency_code.clone(),
                    minor_units: money.minor_units,
                }),
            }
        }
        for clock in &other.clocks {
            match self.clocks.iter_mut().find(|c| c.stage == clock.stage) {
                Some(sum) => {
                    sum.met += clock.met;
                    sum.missed += clock.missed;
                }
                None => self.clocks.push(ClockAttainment {
                    stage: clock.stage,
                    met: clock.met,
                    missed: clock.missed,
                }),
            }
        }
    }

    /// The derived values: means of the time sums, rates of the counts.
    pub fn values(&self) -> KpiValues {
        let met: i64 = self.clocks.iter().map(|c| c.met).sum();
        let missed: i64 = self.clocks.iter().map(|c| c.missed).sum();
        let resolution = self
            .clocks
            .iter()
            .find(|c| c.stage == Stage::Resolution as i32);
        KpiValues {
            first_response_mean_seconds: ratio(self.first_response_seconds_sum, self.responded),
            first_resolution_mean_seconds: ratio(self.first_resolution_seconds_sum, self.resolved),
            total_resolution_mean_seconds: ratio(
                self.total_resolution_seconds_sum,
                self.currently_resolved,
            ),
            fcr_rate: ratio(self.resolved_first_contact, self.resolved),
            csat_mean: ratio(self.csat_sum, self.rated),
            csat_top_two_rate: ratio(self.csat_top_two, self.rated),
            nps: ratio(
                100 * (self.nps_promoters - self.nps_detractors),
                self.nps_answers,
            ),
            escalation_rate: ratio(self.escalated, self.complaints),
            escalation_mean_seconds: ratio(self.escalation_seconds_sum, self.escalated),
            reopen_rate: ratio(self.reopened, self.resolved),
            repeat_rate: ratio(self.repeat_issues, self.complaints),
            sla_attainment: ratio(met, met + missed),
            on_time_handling: resolution.and_then(|c| ratio(c.met, c.met + c.missed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property(complaints: i64, responded: i64, response_seconds: i64, met: i64) -> KpiCounts {
        KpiCounts {
            complaints,
            responded,
            first_response_seconds_sum: response_seconds,
            escalated: complaints / 2,
            escalation_seconds_sum: 600 * (complaints / 2),
            rated: complaints,
            csat_sum: 4 * complaints,
            csat_top_two: complaints - 1,
            compensation: vec![Money {
                currency_code: "EUR".into(),
                minor_units: 1_000,
            }],
            clocks: vec![ClockAttainment {
                stage: Stage::Resolution as i32,
                met,
                missed: complaints - met,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn sums_give_weighted_means_not_means_of_means() {
        let (a, b) = (property(2, 2, 120, 2), property(8, 8, 8 * 600, 4));
        let mut both = a.clone();
        both.add(&b);
        let values = both.values();
        // (120 + 4800) / 10 answers, not (60 + 600) / 2.
        assert_eq!(values.first_response_mean_seconds, Some(492.0));
        assert_eq!(values.escalation_rate, Some(5.0 / 10.0));
        assert_eq!(values.escalation_mean_seconds, Some(600.0));
        assert_eq!(values.csat_top_two_rate, Some(8.0 / 10.0));
        assert_eq!(values.on_time_handling, Some(6.0 / 10.0));
        assert_eq!(values.sla_attainment, Some(6.0 / 10.0));
        assert_eq!(both.compensation.len(), 1, "one sum per currency");
        assert_eq!(both.compensation[0].minor_units, 2_000);
        assert_eq!(both.clocks.len(), 1, "one sum per stage");
    }

    #[test]
    fn nothing_to_measure_leaves_values_absent() {
        let values = KpiCounts::default().values();
        assert_eq!(values, KpiValues::default());
        assert!(values.first_response_mean_seconds.is_none());
        assert!(values.escalation_rate.is_none());
    }
}
