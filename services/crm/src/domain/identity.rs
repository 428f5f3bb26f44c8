//! Normalising contact details for duplicate detection, and the shape of a guest id.

use guestloop_kit::text::contains_card_number;

/// Lower-cased, trimmed email; `None` when it is not an email address.
pub fn email_key(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    if local.is_empty()
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
    {
        return None;
    }
    Some(email)
}

/// Digits only, with a leading `+`; `None` for fewer than 6 digits. An international number
/// loses the trunk prefix written in parentheses after its country code (`+33 (0)6 …` is
/// `+336…`), as it is dialled.
pub fn phone_key(phone: &str) -> Option<String> {
    let trimmed = phone.trim_start();
    let international = trimmed.starts_with('+') || trimmed.starts_with("00");
    let dialled = if international {
        phone.replace("(0)", "")
    } else {
        phone.to_string()
    };
    let digits: String = dialled.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() < 6 {
        return None;
    }
    let digits = digits.trim_start_matches("00").to_string();
    Some(format!("+{digits}"))
}

/// The most digits a phone number has (ITU-T E.164, country code included), not counting an
/// international `00` prefix.
pub const MAX_PHONE_DIGITS: usize = 15;

/// Whether `phone` is written as a phone number: digits, the usual separators (spaces, `-`, `.`,
/// `/`, parentheses) and an optional leading `+`, with at most [`MAX_PHONE_DIGITS`] digits after
/// an international `00` prefix. No payment card number of 16 to 19 digits fits.
pub fn phone_shape(phone: &str) -> Result<(), &'static str> {
    let body = phone.trim().strip_prefix('+').unwrap_or(phone.trim());
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '/' | '(' | ')'))
    {
        return Err("may hold only digits, spaces, - . / ( ) and a leading +");
    }
    let digits: String = body.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.trim_start_matches("00").len() > MAX_PHONE_DIGITS {
        return Err("has more digits than a phone number (at most 15)");
    }
    Ok(())
}

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
    use proptest::prelude::*;

    #[test]
    fn emails_and_phones_normalise() {
        assert_eq!(
            email_key("  Anna.Meyer@Example.COM "),
            Some("anna.meyer@example.com".into())
        );
        assert_eq!(email_key("no-at-sign"), None);
        assert_eq!(
            phone_key("+33 (0)6 12-34-56-78"),
            Some("+33612345678".into()),
            "the trunk prefix is not dialled from abroad"
        );
        assert_eq!(phone_key("0033 6 12 34 56 78"), Some("+33612345678".into()));
        assert_eq!(
            phone_key("(030) 1234567"),
            Some("+0301234567".into()),
            "a national number keeps its zero"
        );
        assert_eq!(phone_key("12"), None);
    }

    #[test]
    fn phone_numbers_keep_a_phone_shape() {
        for phone in [
            "+86 138 0013 8002",
            "+33 (0)6 12-34-56-78",
            "0033 6 12 34 56 78",
            "+1 212.555.0100",
            "030/1234567",
        ] {
            assert_eq!(phone_shape(phone), Ok(()), "{phone}");
        }
        assert!(
            contains_card_number("2086 138 0013 8000"),
            "a phone-shaped number that could be a card"
        );
        assert!(phone_shape("4111 1111 1111 1111").is_err(), "16 digits");
        assert!(phone_shape("call 555 0100").is_err());
        assert!(phone_shape("+49 30 1234+567").is_err());
    }

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

    proptest! {
        #[test]
        fn phone_key_ignores_formatting(digits in "[1-9][0-9]{7,12}", sep in "[ .()-]{0,2}") {
            let formatted: String = digits.chars().flat_map(|c| std::iter::once(c).chain(sep.chars())).collect();
            prop_assert_eq!(phone_key(&formatted), phone_key(&digits));
        }
    }
}
