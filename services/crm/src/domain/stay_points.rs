//! The points a PMS stay earns, and how they follow the PMS's corrections.
//!
//! A checked-out stay earns its nights at its guest's tier rate when it first reaches CRM checked
//! out. The PMS may correct it afterwards: fewer or more nights, cancelled or no-show after all,
//! or another guest's profile. The points the stay credited then move to what the corrected stay
//! earns: the guest it names keeps the rate it was first credited at, for the corrected nights;
//! a guest it no longer names gives back what it credited them; a stay that no longer earns
//! gives everything back. What a stay holds is read from the ledger entries it posted, so merges
//! and erasure (which move or pseudonymise those entries) are followed.

use std::collections::BTreeMap;

/// Ledger source of a stay's `n`th posting (0 for the first, as every stay has always used).
pub fn source(property_id: &str, reservation: &str, n: i32) -> String {
    if n == 0 {
        format!("stay:{property_id}/{reservation}")
    } else {
        format!("stay:{property_id}/{reservation}#{n}")
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

/// The postings (guest, points; never 0) that bring what a stay holds to what it earns now.
///
/// `held` is what the stay's postings credited so far, per guest; `credited_nights` the nights
/// they were for; `guest` and `nights` the stay as corrected (`nights` 0 when it no longer
/// earns); `tier_rate` the points per night at `guest`'s tier, for a guest who holds nothing of
/// this stay yet. A guest who keeps the stay keeps its rate: the same nights keep what they
/// hold, other nights earn the rate first credited (at least a point a night).
pub fn corrections(
    held: &[(String, i64)],
    credited_nights: i64,
    guest: &str,
    nights: i64,
    tier_rate: i64,
) -> Vec<(String, i64)> {
    let held_by_guest: i64 = held
        .iter()
        .filter(|(g, _)| g == guest)
        .map(|(_, p)| *p)
        .sum::<i64>()
        .max(0);
    let due = if nights <= 0 {
        0
    } else if held_by_guest > 0 && credited_nights > 0 {
        if nights == credited_nights {
            held_by_guest
        } else {
            // The rate first credited, rounded half up.
            let rate = (held_by_guest.saturating_mul(2) + credited_nights) / (2 * credited_nights);
            rate.max(1).saturating_mul(nights)
        }
    } else {
        tier_rate.max(1).saturating_mul(nights)
    };
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
    postings
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn held(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
        entries.iter().map(|(g, p)| (g.to_string(), *p)).collect()
    }

    #[test]
    fn sources_keep_the_first_postings_name() {
        assert_eq!(source("p1", "R7", 0), "stay:p1/R7");
        assert_eq!(source("p1", "R7", 2), "stay:p1/R7#2");
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
    fn a_first_earning_is_the_tier_rate_per_night() {
        assert_eq!(corrections(&[], 0, "g", 3, 120), vec![("g".into(), 360)]);
        assert!(corrections(&[], 0, "g", 0, 120).is_empty());
    }

    #[test]
    fn fewer_nights_give_back_at_the_rate_first_credited() {
        // Credited 3 nights at 100; the guest is VIP now (150), the stay is 2 nights after all.
        let postings = corrections(&held(&[("g", 300)]), 3, "g", 2, 150);
        assert_eq!(postings, vec![("g".into(), -100)]);
        // More nights earn more at the same rate.
        assert_eq!(
            corrections(&held(&[("g", 300)]), 3, "g", 5, 150),
            vec![("g".into(), 200)]
        );
        // The same nights keep what they hold, whatever the rounding.
        assert!(corrections(&held(&[("g", 250)]), 3, "g", 3, 150).is_empty());
        // Unchanged: nothing.
        assert!(corrections(&held(&[("g", 300)]), 3, "g", 3, 150).is_empty());
    }

    #[test]
    fn a_cancelled_stay_gives_everything_back() {
        let postings = corrections(&held(&[("g", 300)]), 3, "g", 0, 100);
        assert_eq!(postings, vec![("g".into(), -300)]);
    }

    #[test]
    fn another_guest_takes_the_stay_at_their_own_rate() {
        let postings = corrections(&held(&[("old", 300)]), 3, "new", 3, 150);
        assert_eq!(postings, vec![("old".into(), -300), ("new".into(), 450)]);
    }

    proptest! {
        /// After the postings, the named guest holds what the stay earns and every other guest
        /// nothing; run again on the result, nothing is posted (a replayed feed changes nothing).
        #[test]
        fn postings_settle_and_a_replay_posts_nothing(
            entries in prop::collection::vec((0usize..3, 1i64..5_000), 0..4),
            credited in 0i64..30,
            guest in 0usize..3,
            nights in 0i64..30,
            rate in 1i64..500,
        ) {
            let names = ["a", "b", "c"];
            let held: Vec<(String, i64)> =
                entries.iter().map(|(g, p)| (names[*g].to_string(), *p)).collect();
            let guest = names[guest];
            let postings = corrections(&held, credited, guest, nights, rate);
            prop_assert!(postings.iter().all(|(_, p)| *p != 0));
            let mut after: BTreeMap<String, i64> = BTreeMap::new();
            for (g, p) in held.iter().chain(postings.iter()) {
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
            } else if held_by_guest > 0 && credited == nights {
                // The same nights keep what they were credited, whatever it was.
                prop_assert_eq!(holds, held_by_guest);
            } else {
                prop_assert!(holds >= nights, "at least a point a night");
            }
            let settled: Vec<(String, i64)> = after.into_iter().collect();
            prop_assert!(corrections(&settled, nights, guest, nights, rate).is_empty());
        }
    }
}
