//! Normalising contact details for duplicate detection, and refusing payment card numbers.

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

/// Digits only, with a leading `+`; `None` for fewer than 6 digits.
pub fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
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

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether text contains something that looks like a payment card number (13–19 digits,
/// possibly separated by spaces or dashes, passing the Luhn check).
pub fn contains_card_number(text: &str) -> bool {
    let mut digits: Vec<u8> = Vec::new();
    let flush = |digits: &mut Vec<u8>| -> bool {
        let found = (13..=19).contains(&digits.len()) && luhn_valid(digits);
        digits.clear();
        found
    };
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c as u8 - b'0'),
            ' ' | '-' if !digits.is_empty() => {}
            _ => {
                if flush(&mut digits) {
                    return true;
                }
            }
        }
    }
    flush(&mut digits)
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
            Some("+330612345678".into())
        );
        assert_eq!(phone_key("0033 6 12 34 56 78"), Some("+33612345678".into()));
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
            contains_card_number("+86 138 0013 8002"),
            "a real phone number that passes the Luhn check"
        );
        assert!(phone_shape("4111 1111 1111 1111").is_err(), "16 digits");
        assert!(phone_shape("call 555 0100").is_err());
        assert!(phone_shape("+49 30 1234+567").is_err());
    }

    #[test]
    fn card_numbers_are_spotted() {
        assert!(contains_card_number("card 4111 1111 1111 1111 exp 12/29"));
        assert!(contains_card_number("4111-1111-1111-1111"));
        assert!(!contains_card_number("room 1204, reservation 123456789"));
        assert!(!contains_card_number("4111 1111 1111 1112"), "fails Luhn");
    }

    proptest! {
        #[test]
        fn phone_key_ignores_formatting(digits in "[1-9][0-9]{7,12}", sep in "[ .()-]{0,2}") {
            let formatted: String = digits.chars().flat_map(|c| std::iter::once(c).chain(sep.chars())).collect();
            prop_assert_eq!(phone_key(&formatted), phone_key(&digits));
        }
    }
}
