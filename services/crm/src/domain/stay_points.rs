//! The points a PMS stay earns, and how they follow the PMS's corrections.
//!
//! A checked-out stay earns when it first reaches CRM checked out: its nights and its spend at
//! the rate of its guest's tier under the chain's earn rule, and the stay records that rate.
//! The PMS may correct it afterwards: other nights or spend, cancelled or no-show after all, or
//! another guest's profile. The points the stay credited then move to what the corrected stay
//! earns: the guest it names keeps the rate first credited, for the corrected nights and spend;
//! a guest it no longer names gives back what it credited them; a stay that no longer earns
//! gives everything back. What a stay holds is read from the ledger entries it posted, so merges
//! and erasure (which move or pseudonymise those entries) are followed. Stays credited before
//! rates were recorded earn their per-night rate read back from those entries.

use std::collections::BTreeMap;

use super::tiers::Tier;

/// Ledger source of a stay's `n`th posting (0 for the first, as every stay has always used):
/// `stay:<property>/<reservation>`, then `#1`, `#2`, ... The ids are written with `%`, `/` and
/// `#` percent-encoded, so no two stays' postings share a source (reservation `R#1` and the
/// second posting of `R`; property `a/b` with reservation `c` and `a` with `b/c`); ids without
/// those characters read as they are.
pub fn source(property_id: &str, reservation: &str, n: i32) -> String {
    let (property, reservation) = (escaped(property_id), escaped(reservation));
    if n == 0 {
        format!("stay:{property}/{reservation}")
    } else {
        format!("stay:{property}/{reservation}#{n}")
    }
}

/// The stay a ledger source belongs to, the same for each of its postings: the source without
/// its `#n`, for a stay's source; `None` for any other.
pub fn stay_of_source(source: &str) -> Option<&str> {
    if !source.starts_with("stay:") {
        return None;
    }
    Some(match source.rsplit_once('#') {
        Some((stay, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => stay,
        _ => source,
    })
}

/// An id with the characters a stay's source uses as separators percent-encoded.
fn escaped(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains(['%', '/', '#']) {
        id.replace('%', "%25")
            .replace('/', "%2F")
            .replace('#', "%23")
            .into()
    } else {
        id.into()
    }
}

/// What a stay earns now: its nights when checked out, else none.
pub fn earning_nights(status: &str, nights: i64) -> i64 {
    if status == "checked_out" && nights > 0 {
        nights
    } else {
        0
    }
}

/// Points per night and per whole unit of the program's spend currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub per_night: i64,
    pub per_spend_unit: i64,
}

/// Highest points per night and per spend unit a chain may set.
pub const MAX_PER_NIGHT: i64 = 100_000;
pub const MAX_PER_SPEND_UNIT: i64 = 1_000;

impl Rate {
    pub const fn nightly(per_night: i64) -> Rate {
        Rate {
            per_night,
            per_spend_unit: 0,
        }
    }

    /// The points `earning` is worth at this rate: the spend's product rounded down to whole
    /// points (123.45 at 10 a unit is 1,234).
    pub fn points(self, earning: &Earning) -> i64 {
        if earning.nights <= 0 {
            return 0;
        }
        let nights = i128::from(self.per_night) * i128::from(earning.nights);
        let scale = 10i128.pow(earning.spend_digits.min(6));
        let spend =
            i128::from(self.per_spend_unit) * i128::from(earning.spend_minor.max(0)) / scale;
        i64::try_from(nights + spend).unwrap_or(i64::MAX)
    }
}

/// What a corrected stay offers to earn: its earning nights (0 when it no longer earns) and its
/// spend in the program's currency (0 when in another currency), in minor units with that
/// currency's digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Earning {
    pub nights: i64,
    pub spend_minor: i64,
    pub spend_digits: u32,
}

/// A chain's earn rule: the rate of each tier (new, regular, vip, strategic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarnRule {
    pub rates: [Rate; 4],
}

impl Default for EarnRule {
    fn default() -> Self {
        Self {
            rates: [100, 120, 150, 150].map(Rate::nightly),
        }
    }
}

impl EarnRule {
    /// The rate of a tier key; unknown keys earn as new.
    pub fn rate(&self, tier: &str) -> Rate {
        self.rates[Tier::parse(tier).map_or(0, |t| t as usize)]
    }

    /// Whether a tier earns on spend (and so the program needs a spend currency).
    pub fn uses_spend(&self) -> bool {
        self.rates.iter().any(|r| r.per_spend_unit > 0)
    }

    /// Field-by-field faults: (field, why).
    pub fn faults(&self) -> Vec<(String, String)> {
        let mut faults = Vec::new();
        for (tier, rate) in ["new", "regular", "vip", "strategic"]
            .iter()
            .zip(&self.rates)
        {
            if !(0..=MAX_PER_NIGHT).contains(&rate.per_night) {
                faults.push((
                    format!("program.earn.{tier}.points_per_night"),
                    format!(
                        "must be between 0 and {MAX_PER_NIGHT}, not {}",
                        rate.per_night
                    ),
                ));
            }
            if !(0..=MAX_PER_SPEND_UNIT).contains(&rate.per_spend_unit) {
                faults.push((
                    format!("program.earn.{tier}.points_per_spend_unit"),
                    format!(
                        "must be between 0 and {MAX_PER_SPEND_UNIT}, not {}",
                        rate.per_spend_unit
                    ),
                ));
            }
        }
        faults
    }
}

/// What a stay has credited so far: the nights and (when recorded) the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credited {
    pub nights: i64,
    pub rate: Option<Rate>,
}

/// The postings that bring a stay to what it earns now, and the rate the stay records after.
/// A stay that holds no points holds no rate: if it earns again, it earns at its guest's tier
/// rate then, as a cancelled stay checked out again does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// (guest, points), never 0.
    pub postings: Vec<(String, i64)>,
    /// The rate the stay's guest now holds it at; none when it holds nothing, or when it holds
    /// points of a stay credited before rates were recorded.
    pub rate: Option<Rate>,
}

/// Brings what a stay holds to what it earns now.
///
/// `held` is what the stay's postings credited so far, per guest; `credited` the nights they
/// were for and the rate recorded; `guest` and `earning` the stay as corrected;
/// `tier_rate` the rate of `guest`'s tier, for a guest who holds nothing of this stay yet. A
/// guest who keeps the stay keeps its recorded rate. A stay credited before rates were recorded
/// keeps what it holds for the same nights, and earns its per-night rate read back from the
/// ledger (rounded half up, at least a point a night) for other nights.
pub fn corrections(
    held: &[(String, i64)],
    credited: Credited,
    guest: &str,
    earning: &Earning,
    tier_rate: Rate,
) -> Settlement {
    let held_by_guest: i64 = held
        .iter()
        .filter(|(g, _)| g == guest)
        .map(|(_, p)| *p)
        .sum::<i64>()
        .max(0);
    let (due, rate) = if earning.nights <= 0 {
        (0, None)
    } else if let Some(rate) = credited.rate.filter(|_| held_by_guest > 0) {
        (rate.points(earning), Some(rate))
    } else if held_by_guest > 0 && credited.nights > 0 {
        if earning.nights == credited.nights {
            (held_by_guest, None)
        } else {
            let per_night =
                (held_by_guest.saturating_mul(2) + credited.nights) / (2 * credited.nights);
            (per_night.max(1).saturating_mul(earning.nights), None)
        }
    } else {
        (tier_rate.points(earning), Some(tier_rate))
    };
    let rate = if due > 0 { rate } else { None };
    let mut others: BTreeMap<&str, i64> = BTreeMap::new();
    for (g, p) in held.iter().filter(|(g, _)| g != guest) {
        *others.entry(g.as_str()).or_default() += p;
    }
    let mut postings: Vec<(String, i64)> = others
        .into_iter()
        .filter(|(_, p)| *p > 0)
        .map(|(g, p)| (g.to_string(), -p))
        .collect();
    if due != held_by_guest {
        postings.push((guest.to_string(), due - held_by_guest));
    }
    Settlement { postings, rate }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_posting_of_a_stay_names_the_same_stay() {
        for n in 0..4 {
            assert_eq!(
                stay_of_source(&source("lisbon", "R-1", n)),
                Some("stay:lisbon/R-1")
            );
            assert_eq!(
                stay_of_source(&source("a/b", "R#1", n)),
                Some("stay:a%2Fb/R%231")
            );
        }
        assert_ne!(
            stay_of_source(&source("lisbon", "R", 1)),
            stay_of_source(&source("lisbon", "R1", 0))
        );
        assert_eq!(stay_of_source("remedy:0191/points"), None);
        assert_eq!(stay_of_source("expiry-credits:g-1:42"), None);
    }

    fn held(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
        entries.iter().map(|(g, p)| (g.to_string(), *p)).collect()
    }

    fn nights(n: i64) -> Earning {
        Earning {
            nights: n,
            ..Earning::default()
        }
    }

    /// A stay of `n` nights that spent `minor` units of a two-digit currency.
    fn spent(n: i64, minor: i64) -> Earning {
        Earning {
            nights: n,
            spend_minor: minor,
            spend_digits: 2,
        }
    }

    /// A stay credited `n` nights before rates were recorded.
    fn legacy(n: i64) -> Credited {
        Credited {
            nights: n,
            rate: None,
        }
    }

    fn postings(s: Settlement) -> Vec<(String, i64)> {
        s.postings
    }

    #[test]
    fn sources_keep_the_first_postings_name() {
        assert_eq!(source("p1", "R7", 0), "stay:p1/R7");
        assert_eq!(source("p1", "R7", 2), "stay:p1/R7#2");
    }

    #[test]
    fn no_two_stays_share_a_source() {
        assert_ne!(source("p", "R#1", 0), source("p", "R", 1));
        assert_ne!(source("a/b", "c", 0), source("a", "b/c", 0));
        assert_ne!(source("p", "R%23", 0), source("p", "R#", 0));
        assert_eq!(source("p", "R#1", 2), "stay:p/R%231#2");
        assert_eq!(source("a/b", "50%", 0), "stay:a%2Fb/50%25");
    }

    proptest! {
        /// Distinct (property, reservation, posting) triples never share a source.
        #[test]
        fn sources_are_one_to_one(
            a in ("[a/#%1]{1,4}", "[R/#%1]{1,4}", 0i32..3),
            b in ("[a/#%1]{1,4}", "[R/#%1]{1,4}", 0i32..3),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(source(&a.0, &a.1, a.2), source(&b.0, &b.1, b.2));
        }
    }

    #[test]
    fn only_checked_out_nights_earn() {
        assert_eq!(earning_nights("checked_out", 3), 3);
        assert_eq!(earning_nights("checked_out", 0), 0);
        for status in ["booked", "in_house", "cancelled", "no_show"] {
            assert_eq!(earning_nights(status, 3), 0, "{status}");
        }
    }

    #[test]
    fn the_default_rule_is_a_rate_a_night_by_tier() {
        let rule = EarnRule::default();
        assert_eq!(rule.rate("new"), Rate::nightly(100));
        assert_eq!(rule.rate("regular"), Rate::nightly(120));
        assert_eq!(rule.rate("vip"), Rate::nightly(150));
        assert_eq!(rule.rate("strategic"), Rate::nightly(150));
        assert_eq!(rule.rate("unknown"), Rate::nightly(100));
        assert!(!rule.uses_spend());
        assert!(rule.faults().is_empty());
    }

    #[test]
    fn spend_earns_its_product_rounded_down_in_the_currencys_digits() {
        let rate = Rate {
            per_night: 50,
            per_spend_unit: 10,
        };
        // 2 nights and 345.67 spent: 100 + 3,456.
        assert_eq!(rate.points(&spent(2, 34_567)), 3_556);
        // A currency without minor units (JPY): 12,345 yen at 1 point a yen.
        let yen = Earning {
            nights: 1,
            spend_minor: 12_345,
            spend_digits: 0,
        };
        assert_eq!(Rate::nightly(0).points(&yen), 0);
        assert_eq!(
            Rate {
                per_night: 0,
                per_spend_unit: 1
            }
            .points(&yen),
            12_345
        );
        // Three digits (KWD): 12.345 dinar at 10 a dinar.
        let dinar = Earning {
            nights: 1,
            spend_minor: 12_345,
            spend_digits: 3,
        };
        assert_eq!(
            Rate {
                per_night: 0,
                per_spend_unit: 10
            }
            .points(&dinar),
            123
        );
        // A stay that no longer earns earns nothing for its spend either.
        assert_eq!(rate.points(&spent(0, 34_567)), 0);
        // Enormous spend saturates instead of wrapping.
        assert_eq!(
            Rate {
                per_night: MAX_PER_NIGHT,
                per_spend_unit: MAX_PER_SPEND_UNIT
            }
            .points(&spent(i64::MAX, i64::MAX)),
            i64::MAX
        );
    }

    #[test]
    fn rule_faults_name_the_tier_and_the_rate() {
        let mut rule = EarnRule::default();
        rule.rates[2].per_night = -1;
        rule.rates[3].per_spend_unit = MAX_PER_SPEND_UNIT + 1;
        let fields: Vec<String> = rule.faults().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "program.earn.vip.points_per_night",
                "program.earn.strategic.points_per_spend_unit"
            ]
        );
        rule.rates[2].per_night = 0;
        rule.rates[3].per_spend_unit = 5;
        assert!(rule.faults().is_empty());
        assert!(rule.uses_spend());
    }

    #[test]
    fn a_first_earning_is_the_tier_rate() {
        let s = corrections(
            &[],
            Credited::default(),
            "g",
            &nights(3),
            Rate::nightly(120),
        );
        assert_eq!(s.postings, vec![("g".into(), 360)]);
        assert_eq!(s.rate, Some(Rate::nightly(120)));
        let s = corrections(
            &[],
            Credited::default(),
            "g",
            &nights(0),
            Rate::nightly(120),
        );
        assert!(s.postings.is_empty());
        assert_eq!(s.rate, None);
    }

    #[test]
    fn a_corrected_stay_keeps_the_rate_it_recorded() {
        let first = Rate {
            per_night: 100,
            per_spend_unit: 10,
        };
        let credited = Credited {
            nights: 3,
            rate: Some(first),
        };
        // Credited 3 nights and 200.00 (300 + 2,000); the guest is VIP now.
        let vip = Rate {
            per_night: 150,
            per_spend_unit: 20,
        };
        let h = held(&[("g", 2_300)]);
        // The PMS adds 50.00 of spend: 500 more at the rate first credited.
        let s = corrections(&h, credited, "g", &spent(3, 25_000), vip);
        assert_eq!(s.postings, vec![("g".into(), 500)]);
        assert_eq!(s.rate, Some(first));
        // Two nights after all, same spend: a night's points back.
        let s = corrections(&h, credited, "g", &spent(2, 20_000), vip);
        assert_eq!(s.postings, vec![("g".into(), -100)]);
        // Unchanged: nothing.
        assert!(corrections(&h, credited, "g", &spent(3, 20_000), vip)
            .postings
            .is_empty());
        // Cancelled: everything back, and the stay holds no rate.
        let s = corrections(&h, credited, "g", &spent(0, 20_000), vip);
        assert_eq!(s.postings, vec![("g".into(), -2_300)]);
        assert_eq!(s.rate, None);
    }

    #[test]
    fn stays_credited_before_rates_were_recorded_read_their_rate_back() {
        // Credited 3 nights at 100; the guest is VIP now (150), the stay is 2 nights after all.
        let p = postings(corrections(
            &held(&[("g", 300)]),
            legacy(3),
            "g",
            &nights(2),
            Rate::nightly(150),
        ));
        assert_eq!(p, vec![("g".into(), -100)]);
        // More nights earn more at the same rate.
        let p = postings(corrections(
            &held(&[("g", 300)]),
            legacy(3),
            "g",
            &nights(5),
            Rate::nightly(150),
        ));
        assert_eq!(p, vec![("g".into(), 200)]);
        // The same nights keep what they hold, whatever the rounding.
        let s = corrections(
            &held(&[("g", 250)]),
            legacy(3),
            "g",
            &nights(3),
            Rate::nightly(150),
        );
        assert!(s.postings.is_empty());
        assert_eq!(s.rate, None);
    }

    #[test]
    fn a_cancelled_stay_gives_everything_back() {
        let p = postings(corrections(
            &held(&[("g", 300)]),
            legacy(3),
            "g",
            &nights(0),
            Rate::nightly(100),
        ));
        assert_eq!(p, vec![("g".into(), -300)]);
    }

    #[test]
    fn another_guest_takes_the_stay_at_their_own_rate() {
        let credited = Credited {
            nights: 3,
            rate: Some(Rate::nightly(100)),
        };
        let s = corrections(
            &held(&[("old", 300)]),
            credited,
            "new",
            &nights(3),
            Rate::nightly(150),
        );
        assert_eq!(s.postings, vec![("old".into(), -300), ("new".into(), 450)]);
        assert_eq!(s.rate, Some(Rate::nightly(150)));
    }

    fn rates() -> impl Strategy<Value = Rate> {
        (0i64..500, 0i64..30).prop_map(|(per_night, per_spend_unit)| Rate {
            per_night,
            per_spend_unit,
        })
    }

    proptest! {
        /// After the postings, the named guest holds what the stay earns and every other guest
        /// nothing; run again on the result, nothing is posted (a replayed feed changes nothing).
        #[test]
        fn postings_settle_and_a_replay_posts_nothing(
            entries in prop::collection::vec((0usize..3, 1i64..5_000), 0..4),
            credited_nights in 0i64..30,
            recorded in prop::option::of(rates()),
            guest in 0usize..3,
            nights in 0i64..30,
            spend in 0i64..1_000_000,
            tier_rate in rates(),
        ) {
            let names = ["a", "b", "c"];
            let held: Vec<(String, i64)> =
                entries.iter().map(|(g, p)| (names[*g].to_string(), *p)).collect();
            let guest = names[guest];
            let credited = Credited { nights: credited_nights, rate: recorded };
            let earning = spent(nights, spend);
            let settlement = corrections(&held, credited, guest, &earning, tier_rate);
            prop_assert!(settlement.postings.iter().all(|(_, p)| *p != 0));
            let mut after: BTreeMap<String, i64> = BTreeMap::new();
            for (g, p) in held.iter().chain(settlement.postings.iter()) {
                *after.entry(g.clone()).or_default() += p;
            }
            for (g, p) in &after {
                if g != guest {
                    prop_assert_eq!(*p, 0, "{} keeps points of a stay not theirs", g);
                }
            }
            let holds = after.get(guest).copied().unwrap_or(0);
            let held_by_guest: i64 =
                held.iter().filter(|(g, _)| g == guest).map(|(_, p)| *p).sum();
            if nights == 0 {
                prop_assert_eq!(holds, 0);
            } else if held_by_guest > 0 {
                match recorded {
                    // A guest who keeps the stay keeps its recorded rate.
                    Some(rate) => prop_assert_eq!(holds, rate.points(&earning)),
                    // Same nights keep what they were credited; others earn a point a night
                    // at least.
                    None if credited_nights == nights => prop_assert_eq!(holds, held_by_guest),
                    None if credited_nights > 0 => prop_assert!(holds >= nights),
                    None => prop_assert_eq!(holds, tier_rate.points(&earning)),
                }
            } else {
                prop_assert_eq!(holds, tier_rate.points(&earning));
            }
            // A stay that holds nothing holds no rate.
            if holds == 0 {
                prop_assert_eq!(settlement.rate, None);
            }
            // Settled again as recorded: a stay that holds points posts nothing; one that holds
            // none earns afresh at its guest's tier rate (as a cancelled stay checked out again).
            let settled: Vec<(String, i64)> = after.into_iter().collect();
            let again = Credited { nights, rate: settlement.rate };
            let replay = corrections(&settled, again, guest, &earning, tier_rate).postings;
            if holds > 0 {
                prop_assert!(replay.is_empty(), "{:?}", replay);
            } else {
                let fresh = tier_rate.points(&earning);
                let expected = if fresh > 0 { vec![(guest.to_string(), fresh)] } else { vec![] };
                prop_assert_eq!(replay, expected);
            }
        }
    }
}
