//! Normalising contact details for duplicate detection; the shape of a guest id is the kit's
//! ([`guestloop_kit::guest_id`]), as every service takes guest ids alike.

pub use guestloop_kit::guest_id::{assigned_guest_id, guest_id_shape, MAX_GUEST_ID_CHARS};
#[cfg(test)]
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

    proptest! {
        #[test]
        fn phone_key_ignores_formatting(digits in "[1-9][0-9]{7,12}", sep in "[ .()-]{0,2}") {
            let formatted: String = digits.chars().flat_map(|c| std::iter::once(c).chain(sep.chars())).collect();
            prop_assert_eq!(phone_key(&formatted), phone_key(&digits));
        }
    }
}
