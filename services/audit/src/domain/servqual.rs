//! SERVQUAL: guests rate expectation and perception (1–7) on 22 items; the gap is perception −
//! expectation, per item and per dimension (tangibles 1–4, reliability 5–9, responsiveness
//! 10–13, assurance 14–17, empathy 18–22).

/// The dimension (0..5) of a SERVQUAL item (1..=22).
pub fn dimension_of(item: i32) -> Option<usize> {
    match item {
        1..=4 => Some(0),
        5..=9 => Some(1),
        10..=13 => Some(2),
        14..=17 => Some(3),
        18..=22 => Some(4),
        _ => None,
    }
}

pub fn valid_rating(rating: i32) -> bool {
    (1..=7).contains(&rating)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_map_onto_the_five_dimensions() {
        let counts = (1..=22).filter_map(dimension_of).fold([0; 5], |mut c, d| {
            c[d] += 1;
            c
        });
        assert_eq!(counts, [4, 5, 4, 4, 5]);
        assert_eq!(dimension_of(0), None);
        assert_eq!(dimension_of(23), None);
        assert!(valid_rating(7) && !valid_rating(8) && !valid_rating(0));
    }
}
