//! The shape of a guest id. Guest ids come from outside (a PMS, CreateGuest) or are assigned by
//! CRM; every service that takes one (a complaint's guest, a stay) checks it alike, since guest
//! ids are logged, exported and sent in events to every service.

use crate::text::contains_card_number;

/// The most characters a guest id given from outside has: CreateGuest's, or a PMS stay's.
pub const MAX_GUEST_ID_CHARS: usize = 128;

/// The id of a profile created without one: `g-` and a version 7 UUID in hex.
pub fn assigned_guest_id() -> String {
    format!("g-{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the form [`assigned_guest_id`] gives. Its digits are random hex: about one
/// such id in 350 holds a run of 13 to 19 digits that passes the Luhn check, which is no card.
fn is_assigned(id: &str) -> bool {
    let Some(hex) = id.strip_prefix("g-") else {
        return false;
    };
    let hex = hex.as_bytes();
    hex.len() == 32
        && hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && hex[12] == b'7'
        && matches!(hex[16], b'8' | b'9' | b'a' | b'b')
}

/// Whether `id` can be a guest id another system gave (an empty one is the caller's to judge):
/// at most [`MAX_GUEST_ID_CHARS`] characters of printable ASCII, without spaces or control
/// characters, and never a payment card number (guest ids are logged, exported and sent in
/// events to every service) unless it is one this service assigned. A profile and the stays
/// the PMS feeds for it name it alike.
pub fn guest_id_shape(id: &str) -> Result<(), String> {
    if !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(
            "may hold only printable ASCII characters, without spaces or control characters".into(),
        );
    }
    // All ASCII now: one byte a character.
    if id.len() > MAX_GUEST_ID_CHARS {
        return Err(format!("must be at most {MAX_GUEST_ID_CHARS} characters"));
    }
    if contains_card_number(id) && !is_assigned(id) {
        return Err("must not be a payment card number".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_id_is_bounded_printable_ascii_and_no_card_number() {
        for id in [
            "g-0192f3a4".to_string(),
            "pms:HX-0042/7".to_string(),
            "G".repeat(MAX_GUEST_ID_CHARS),
            "4111111111111112".to_string(),
        ] {
            assert_eq!(guest_id_shape(&id), Ok(()), "{id}");
        }
        for id in [
            "G".repeat(MAX_GUEST_ID_CHARS + 1),
            "é".repeat(MAX_GUEST_ID_CHARS / 2 + 1),
            "g 1".to_string(),
            "g-1\nDROP".to_string(),
            "g-\u{7f}".to_string(),
            "g-\u{a0}1".to_string(),
            "gäst".to_string(),
            "4111111111111111".to_string(),
            "pms-4111-1111-1111-1111".to_string(),
        ] {
            assert!(guest_id_shape(&id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn assigned_guest_ids_are_taken_back_whatever_digits_they_hold() {
        // A version 7 UUID whose random part holds a Luhn-valid run of 16 digits, as about one
        // in 350 holds some.
        let card_like = "g-0193a1b2c3de7abc8299560471583068";
        assert!(contains_card_number(card_like));
        assert_eq!(guest_id_shape(card_like), Ok(()));
        for _ in 0..1000 {
            let id = assigned_guest_id();
            assert!(is_assigned(&id), "{id}");
            assert_eq!(guest_id_shape(&id), Ok(()), "{id}");
        }
        for id in [
            "g-4111111111111111",
            "g-0193a1b2c3de1abc8299560471583068",
            "G-0193a1b2c3de7abc8299560471583068",
            "g-0193A1B2C3DE7ABC8299560471583068",
        ] {
            assert!(!is_assigned(id), "{id}");
            assert!(guest_id_shape(id).is_err(), "{id}");
        }
    }
}
