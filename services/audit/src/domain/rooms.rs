//! Room-inspection programs: a share of the property's rooms each period, rotating so that every
//! room is inspected before any room is inspected a second time.

/// Most rooms one program may cover.
pub const MAX_ROOMS: usize = 5_000;

/// Inspections per period for `percent` % of `rooms` rooms, rounded up (25 % of 180 = 45).
pub fn audits_per_period(rooms: usize, percent: u32) -> usize {
    (rooms * percent as usize).div_ceil(100)
}

/// The room of inspection `slot` (1-based) in period `period_index` (0 for the program's first
/// period): the rooms are walked in order, continuing where the previous period stopped.
pub fn room_for(
    rooms: &[String],
    period_index: usize,
    slot: usize,
    per_period: usize,
) -> Option<&str> {
    if rooms.is_empty() || slot == 0 {
        return None;
    }
    let position = (period_index * per_period + slot - 1) % rooms.len();
    rooms.get(position).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn rooms(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{}", 100 + i)).collect()
    }

    #[test]
    fn a_quarter_of_180_rooms_is_45_a_month() {
        assert_eq!(audits_per_period(180, 25), 45);
        assert_eq!(audits_per_period(10, 25), 3, "rounded up");
        assert_eq!(audits_per_period(7, 100), 7);
        let all = rooms(180);
        let first: Vec<&str> = (1..=45).filter_map(|s| room_for(&all, 0, s, 45)).collect();
        let second: Vec<&str> = (1..=45).filter_map(|s| room_for(&all, 1, s, 45)).collect();
        assert_eq!(first.first(), Some(&"100"));
        assert_eq!(second.first(), Some(&"145"), "the next month continues");
    }

    proptest! {
        /// Within a period no room is inspected twice, and after ⌈100 / percent⌉ periods every
        /// room has been inspected.
        #[test]
        fn rotation_covers_every_room_without_repeats(n in 1usize..400, percent in 1u32..=100) {
            let all = rooms(n);
            let per_period = audits_per_period(n, percent);
            prop_assert!(per_period >= 1 && per_period <= n);
            let periods = (100 / percent as usize) + usize::from(100 % percent as usize != 0);
            let mut seen = BTreeSet::new();
            for period in 0..periods {
                let mut this_period = BTreeSet::new();
                for slot in 1..=per_period {
                    let room = room_for(&all, period, slot, per_period).expect("a room");
                    prop_assert!(this_period.insert(room), "room {} twice in one period", room);
                    seen.insert(room);
                }
            }
            prop_assert_eq!(seen.len(), n);
        }
    }
}
