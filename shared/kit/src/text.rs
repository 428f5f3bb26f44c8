//! Free text from clients: trimmed, bounded, free of NUL characters, and never holding a payment
//! card number (DESIGN: no payment card data is stored). Every service checks its free-text
//! fields (descriptions, notes, reasons, comments, evidence) with [`free_text`].

use crate::FieldViolation;

/// What a guest's words read after the guest was erased, where a text may not be empty (a
/// complaint's description and the work order copied from it).
pub const ERASED: &str = "[erased]";

/// `value` trimmed; each problem is pushed as a violation of `field`: blank when `required`,
/// longer than `max` characters, a NUL character (PostgreSQL's text cannot hold one), or
/// something that looks like a payment card number.
pub fn free_text(
    value: &str,
    field: &str,
    max: usize,
    required: bool,
    violations: &mut Vec<FieldViolation>,
) -> String {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    }
    if trimmed.contains('\0') {
        violations.push(FieldViolation::new(
            field,
            "must not contain NUL characters",
        ));
    }
    if trimmed.chars().count() > max {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if contains_card_number(trimmed) {
        violations.push(FieldViolation::new(
            field,
            "must not contain a payment card number",
        ));
    }
    trimmed.to_string()
}

/// Whether the digits pass the Luhn check.
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

/// `c`, or the ASCII character a full-width form (U+FF01–U+FF5E) stands for: an East Asian input
/// method types commas, dashes and slashes that way (`４１１１－１１１１`).
fn narrowed(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// The zero of every run of decimal digits Unicode has (general category Nd, Unicode 18.0),
/// in order. Each run holds the digits 0 to 9 in ten consecutive code points, and together the
/// runs are the whole category: ASCII, Arabic-Indic (`٤١١١`), Extended Arabic-Indic as Persian
/// and Urdu write (`۴۱۱۱`), Devanagari, Bengali, Thai, full-width, mathematical and the rest.
const DECIMAL_ZEROS: [u32; 77] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11DE0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of `c` when it is a decimal digit of any script: a guest typing in Arabic or Hindi
/// writes a card number in that script's digits, and it is as much a card number.
fn decimal_digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let code = u32::from(c);
    let run = DECIMAL_ZEROS.partition_point(|zero| *zero <= code);
    let zero = DECIMAL_ZEROS[run.checked_sub(1)?];
    u8::try_from(code - zero).ok().filter(|d| *d < 10)
}

/// Whether `c` may stand between the digit groups of one number as people write card numbers,
/// alone or several together: any whitespace (non-breaking spaces and line breaks included),
/// dashes, dots and slashes.
fn is_group_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '/' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

/// Whether `c` joins two digit groups when it alone stands between them (`4111,1111`,
/// `4111_1111`, `4111*1111`). With a space next to it, it separates items of a list
/// (`rooms 1204, 1206`), not the groups of one number.
fn is_tight_separator(c: char) -> bool {
    // U+060C and U+066C: the Arabic comma and thousands separator.
    matches!(c, ',' | '_' | '*' | '\u{060C}' | '\u{066C}')
}

/// What stands between the last digit group and the next digit.
#[derive(Default)]
struct Gap {
    separators: usize,
    tight: usize,
}

impl Gap {
    /// Whether the groups on either side belong to one number.
    fn joins(&self) -> bool {
        self.tight == 0 || (self.tight == 1 && self.separators == 1)
    }
}

/// The runs of digit groups in `text`: groups joined by separators form one run, and anything
/// else (a letter, a comma followed by a space) ends it.
fn digit_runs(text: &str) -> Vec<Vec<Vec<u8>>> {
    let mut runs: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut run: Vec<Vec<u8>> = Vec::new();
    let mut group: Vec<u8> = Vec::new();
    let mut gap = Gap::default();
    for c in text.chars() {
        if let Some(digit) = decimal_digit(c) {
            if group.is_empty() && !gap.joins() && !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            gap = Gap::default();
            group.push(digit);
            continue;
        }
        let c = narrowed(c);
        if !group.is_empty() {
            run.push(std::mem::take(&mut group));
        }
        if is_group_separator(c) || is_tight_separator(c) {
            gap.separators += 1;
            gap.tight += usize::from(is_tight_separator(c));
        } else {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            gap = Gap::default();
        }
    }
    if !group.is_empty() {
        run.push(group);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The lengths a payment card number has.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// The fewest digits a group of a written card number has (4-4-4-4, 4-6-5, 4-3-3-3, 4-4-4-4-3).
/// Groups of one or two digits are dates, times and country codes, never part of a card.
const MIN_CARD_GROUP: usize = 3;

/// Whether `digits` could be a payment card number: 13–19 digits, an issuer's first digit (any
/// but 0, which ISO/IEC 7812 gives no card issuer: UATP starts with 1, RuPay with 8, Troy with
/// 9), and the Luhn check.
fn card_like(digits: &[u8]) -> bool {
    CARD_DIGITS.contains(&digits.len())
        && digits.first().is_some_and(|d| *d != 0)
        && luhn_valid(digits)
}

/// Whether a run of digit groups holds a card number: whole consecutive groups of at least
/// [`MIN_CARD_GROUP`] digits that together make a card-like number, or a group written unbroken
/// that is one, or that is longer than any card and starts with one (an expiry date stuck after
/// a 16-digit card). Shorter windows of a 13–19-digit group, and digits stuck in front of a
/// card, are not looked through: a reference number would otherwise hold a Luhn-valid window
/// more often than not.
fn run_holds_card(groups: &[Vec<u8>]) -> bool {
    for group in groups {
        // Longer than any card: a card with an expiry date or a code stuck after it.
        let glued = group.len() > *CARD_DIGITS.end();
        if card_like(group) || glued && CARD_DIGITS.clone().any(|len| card_like(&group[..len])) {
            return true;
        }
    }
    for first in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::new();
        for group in &groups[first..] {
            if group.len() < MIN_CARD_GROUP {
                break;
            }
            digits.extend_from_slice(group);
            if digits.len() > *CARD_DIGITS.end() {
                break;
            }
            if card_like(&digits) {
                return true;
            }
        }
    }
    false
}

/// Whether text contains something that looks like a payment card number: 13–19 digits not
/// starting with 0 and passing the Luhn check, written unbroken or in groups separated by
/// whitespace, dashes, dots or slashes, or by one comma, underscore or asterisk, possibly with
/// more digits around it (an expiry date, a security code). The digits of every script count
/// (Arabic-Indic, Devanagari, full-width, ...), and full-width separators as their ASCII forms.
pub fn contains_card_number(text: &str) -> bool {
    digit_runs(text).iter().any(|run| run_holds_card(run))
}

/// Whether `text` holds what reads as an email address (`name@domain.tld`) or a phone number
/// (a `+` and seven or more digits, or nine or more digits, in runs broken only by single
/// spaces): for texts that must not name a person, such as the reason an erasure is logged
/// with. Dates and ticket numbers (`2031-05-02`, `DSR-17`) are neither.
pub fn contains_contact_details(text: &str) -> bool {
    let email = text.split_whitespace().any(|word| {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        word.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain
                    .rsplit_once('.')
                    .is_some_and(|(host, tld)| !host.is_empty() && tld.len() >= 2)
        })
    });
    if email {
        return true;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let plus = chars[i] == '+';
        let start = if plus { i + 1 } else { i };
        let mut digits = 0;
        let mut j = start;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                digits += 1;
                j += 1;
            } else if chars[j] == ' ' && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        if digits >= 9 || (plus && digits >= 7) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contact_details_are_told_from_dates_and_tickets() {
        for named in [
            "request from lena.vogel@example.com",
            "called +49 151 2345 6789",
            "phone 0151 23456789",
            "(ana@mail.pt)",
        ] {
            assert!(contains_contact_details(named), "{named}");
        }
        for plain in [
            "request of 2031-05-02, ticket DSR-17",
            "data subject request",
            "art. 17 GDPR, case 1234567",
            "email on file",
            "user@localhost",
        ] {
            assert!(!contains_contact_details(plain), "{plain}");
        }
    }

    #[test]
    fn free_text_is_trimmed_bounded_and_free_of_card_numbers() {
        let mut v = Vec::new();
        assert_eq!(
            free_text("  late check-out  ", "note", 20, true, &mut v),
            "late check-out"
        );
        assert!(v.is_empty());
        free_text(" ", "note", 20, true, &mut v);
        free_text("a\0b", "note", 20, false, &mut v);
        free_text(&"é".repeat(21), "note", 20, false, &mut v);
        free_text("paid with 4111 1111 1111 1111", "note", 100, false, &mut v);
        let problems: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                ("note", "must not be empty"),
                ("note", "must not contain NUL characters"),
                ("note", "must be at most 20 characters"),
                ("note", "must not contain a payment card number"),
            ]
        );
        let mut v = Vec::new();
        assert_eq!(
            free_text(&"é".repeat(20), "note", 20, false, &mut v)
                .chars()
                .count(),
            20
        );
        assert!(v.is_empty(), "characters are counted, not bytes");
    }

    #[test]
    fn card_numbers_are_spotted() {
        assert!(contains_card_number("card 4111 1111 1111 1111 exp 12/29"));
        assert!(contains_card_number("4111-1111-1111-1111"));
        assert!(!contains_card_number("room 1204, reservation 123456789"));
        assert!(!contains_card_number("4111 1111 1111 1112"), "fails Luhn");
    }

    #[test]
    fn card_numbers_are_spotted_with_more_digits_around_them() {
        for text in [
            "4111 1111 1111 1111 12/29",
            "4111 1111 1111 1111 123",
            "cvv 123 4111 1111 1111 1111",
            "41111111111111111234",
            "4111 1111 1111 1111 1234",
            "3782 822463 10005 exp 04/27",
            "troy 9792 0000 0000 0003",
        ] {
            assert!(contains_card_number(text), "{text:?}");
        }
    }

    #[test]
    fn card_numbers_are_spotted_whatever_separates_their_groups() {
        for text in [
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "4111\n1111\n1111\n1111",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111\t1111 - 1111 - 1111",
            "4111\u{2013}1111\u{2013}1111\u{2013}1111",
            "card 4111,1111,1111,1111",
            "card 4111_1111_1111_1111",
            "card 4111*1111*1111*1111",
            "4111,1111 1111-1111",
            "card 4111 1111 1111 1111,123",
        ] {
            assert!(contains_card_number(text), "{text:?}");
        }
    }

    #[test]
    fn card_numbers_in_full_width_digits_are_spotted() {
        for text in [
            "カード ４１１１ １１１１ １１１１ １１１１",
            "カード ４１１１\u{3000}１１１１\u{3000}１１１１\u{3000}１１１１",
            "４１１１１１１１１１１１１１１１",
            "４１１１－１１１１－１１１１－１１１１",
            "４１１１，１１１１，１１１１，１１１１",
            "4111 １１１１ 1111 １１１１",
        ] {
            assert!(contains_card_number(text), "{text:?}");
        }
        assert!(
            !contains_card_number("４１１１ １１１１ １１１１ １１１２"),
            "fails Luhn"
        );
        assert!(!contains_card_number("部屋 １２０４、２泊"));
    }

    #[test]
    fn card_numbers_in_any_scripts_digits_are_spotted() {
        for text in [
            "رقم البطاقة ٤١١١ ١١١١ ١١١١ ١١١١",
            "٤١١١-١١١١-١١١١-١١١١",
            "٤١١١٬١١١١٬١١١١٬١١١١",
            "شماره کارت ۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱",
            "कार्ड ४१११ ११११ ११११ ११११",
            "বাংলা ৪১১১ ১১১১ ১১১১ ১১১১",
            "บัตร ๔๑๑๑ ๑๑๑๑ ๑๑๑๑ ๑๑๑๑",
            "4111 ١١١١ 1111 ۱۱۱۱",
            "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏",
        ] {
            assert!(contains_card_number(text), "{text:?}");
        }
        for text in [
            "٤١١١ ١١١١ ١١١١ ١١١٢",
            "الغرف ١٢٠٤، ١٢٠٦، ١٢٠٨، ١٢١٠",
            "कमरा १२०४, २ रातें",
            "Ⅳ ⅩⅠ ½ ² ①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯",
        ] {
            assert!(!contains_card_number(text), "{text:?}");
        }
    }

    #[test]
    fn every_run_of_decimal_digits_reads_zero_to_nine() {
        for pair in DECIMAL_ZEROS.windows(2) {
            assert!(pair[1] >= pair[0] + 10, "runs overlap: {pair:X?}");
        }
        for zero in DECIMAL_ZEROS {
            for value in 0..10u8 {
                let c = char::from_u32(zero + u32::from(value)).unwrap_or_default();
                assert_eq!(decimal_digit(c), Some(value), "U+{:X}", u32::from(c));
                // Where this compiler's Unicode tables know the script, the digit is numeric.
                if char::from_u32(zero).is_some_and(char::is_numeric) {
                    assert!(c.is_numeric(), "U+{:X}", u32::from(c));
                }
            }
        }
        for c in [
            '/', ':', 'a', '\u{65F}', '\u{66A}', '\u{2160}', '\u{B2}', '\u{2460}', '\u{FF1A}',
        ] {
            assert_eq!(decimal_digit(c), None, "U+{:X}", u32::from(c));
        }
    }

    #[test]
    fn lists_prices_and_names_with_commas_underscores_or_asterisks_are_not_card_numbers() {
        for text in [
            "rooms 12, 14, 16",
            "rooms 12,14,16",
            "1,234,567",
            "paid EUR 1,234,567.89 for the wedding, 120 guests",
            "rooms 1204, 1206, 1208, 1210",
            "rooms 1204; 1206; 1208; 1210",
            "calls at 0100, 0200, 0300, 0400 and 0500",
            "file guest_2031_05_17_1204.pdf",
            "rated *****, 4111 stars",
            "card **** **** **** 1111",
            "4111 **** **** 1111",
            "2*3*4 towels",
        ] {
            assert!(!contains_card_number(text), "{text:?}");
        }
    }

    #[test]
    fn dates_times_and_phone_numbers_in_notes_are_not_card_numbers() {
        for text in [
            "stays 12/03/2031 - 15/03/2031, arrives 14.30",
            "12.03.2031 12.03.2031 12.03.2031",
            "call +86 138 0013 8002 or +1 212 555 0100",
            "room 1204, reservation 123456789, 2 adults 1 child",
            "booking 0992739871300000017 from the PMS",
            "",
        ] {
            assert!(!contains_card_number(text), "{text:?}");
        }
    }

    /// A Luhn-valid number of `body.len() + 1` digits: `body` and its check digit.
    fn with_check_digit(body: &[u8]) -> Vec<u8> {
        let mut digits = body.to_vec();
        digits.push(0);
        let wrong = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| {
                let d = u32::from(*d);
                if i % 2 == 1 {
                    if d * 2 > 9 {
                        d * 2 - 9
                    } else {
                        d * 2
                    }
                } else {
                    d
                }
            })
            .sum::<u32>()
            % 10;
        if let Some(last) = digits.last_mut() {
            *last = ((10 - wrong) % 10) as u8;
        }
        digits
    }

    /// `text` with its ASCII digits written in the script whose zero is `zero`; for the
    /// full-width zero, its punctuation too, as an East Asian input method types it.
    fn in_script(text: &str, zero: u32) -> String {
        text.chars()
            .map(|c| match c {
                '0'..='9' => char::from_u32(zero + u32::from(c) - 0x30).unwrap_or(c),
                '!'..='~' if zero == 0xFF10 => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
                _ => c,
            })
            .collect()
    }

    /// `digits` written in groups of the given sizes, the last taking the rest (never fewer than
    /// three digits, as no card is written with a shorter group).
    fn grouped(digits: &[u8], sizes: &[usize], separator: &str) -> String {
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let mut groups = Vec::new();
        let mut rest = text.as_str();
        for size in sizes {
            if rest.len() < size + MIN_CARD_GROUP {
                break;
            }
            let (group, tail) = rest.split_at(*size);
            groups.push(group);
            rest = tail;
        }
        groups.push(rest);
        groups.join(separator)
    }

    proptest! {
        #[test]
        fn every_written_card_number_is_spotted(
            issuer in 1u8..=9,
            rest in proptest::collection::vec(0u8..10, 11..=17),
            sizes in proptest::collection::vec(3usize..=6, 0..6),
            separator in prop::sample::select(vec![
                " ", "-", ".", "/", "\n", "\u{a0}", " - ", "", ",", "_", "*", "\u{3000}",
            ]),
            before in prop::sample::select(vec!["", "card ", "cvv 123 ", "ref 55 "]),
            after in prop::sample::select(vec!["", " 12/29", " 123", " exp 01.30"]),
            glued in any::<bool>(),
            script in prop::sample::select(vec![0x30u32, 0x660, 0x6F0, 0x966, 0xE50, 0xFF10, 0x1D7CE]),
        ) {
            let body: Vec<u8> = std::iter::once(issuer).chain(rest).collect();
            let card = with_check_digit(&body);
            prop_assert!(luhn_valid(&card));
            // Digits stuck after a card number written unbroken (an expiry date).
            let glued_after = if glued && separator.is_empty() && card.len() >= 16 { "1229" } else { "" };
            let written = format!("{}{glued_after}", grouped(&card, &sizes, separator));
            let written = in_script(&written, script);
            let text = format!("{before}{written}{after}");
            prop_assert!(contains_card_number(&text), "{:?}", text);
        }

        /// References starting with 0 (no issuer's digit) are never taken for cards, whatever
        /// digits follow.
        #[test]
        fn references_without_an_issuers_digit_are_never_card_numbers(
            rest in "[0-9]{12,30}",
        ) {
            let reference = format!("ref 0{rest} ok");
            prop_assert!(!contains_card_number(&reference), "{:?}", reference);
        }

        #[test]
        fn short_groups_and_short_numbers_are_never_card_numbers(
            groups in proptest::collection::vec("[0-9]{1,2}", 0..20),
            separator in prop::sample::select(vec![" ", "-", ".", "/", "\n"]),
            short in "[0-9]{0,12}",
            script in prop::sample::select(vec![0x30u32, 0x660, 0x6F0, 0x966, 0xFF10]),
        ) {
            let dates = in_script(&groups.join(separator), script);
            prop_assert!(!contains_card_number(&dates), "{:?}", dates);
            let short = in_script(&short, script);
            prop_assert!(!contains_card_number(&short), "{:?}", short);
        }

        /// Items of a list (a comma or semicolon and a space between them) are never read as
        /// the groups of one number, nor are the thousands of an amount below a trillion.
        #[test]
        fn lists_and_amounts_are_never_card_numbers(
            items in proptest::collection::vec("[1-9][0-9]{0,11}", 0..12),
            separator in prop::sample::select(vec![", ", "; ", " ,", " , ", "、", "\u{060C} "]),
            amount in "[1-9][0-9]{0,2}(,[0-9]{3}){0,3}(\\.[0-9]{2})?",
        ) {
            let list = items.join(separator);
            prop_assert!(!contains_card_number(&list), "{:?}", list);
            let price = format!("EUR {amount}, paid");
            prop_assert!(!contains_card_number(&price), "{:?}", price);
        }

    }
}
