//! Amounts on the wire (`common.v1.Money`): an ISO 4217 code and a whole number of minor units.

use guestloop_proto::common::v1::Money;

use crate::error::FieldViolation;

/// The most an amount may be, in minor units (ten billion in the currency's main unit): more
/// than any stay, repair or asset costs, and small enough that millions of them still sum
/// within a 64-bit total.
pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000;

/// An amount's currency: an ISO 4217 code (three letters, taken in either case and kept in
/// upper case), or none when the amount is zero.
pub fn currency_code(code: &str, minor_units: i64) -> Result<String, &'static str> {
    let code = code.trim();
    if code.is_empty() {
        return if minor_units == 0 {
            Ok(String::new())
        } else {
            Err("is required with an amount (an ISO 4217 code such as EUR)")
        };
    }
    if code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err("must be an ISO 4217 code of three letters, such as EUR")
    }
}

/// A non-negative amount of at most [`MAX_MINOR_UNITS`] with its currency (see
/// [`currency_code`]), as (currency, minor units); absent is zero with no currency. Violations
/// name `field.minor_units` or `field.currency_code`.
pub fn non_negative(
    money: Option<&Money>,
    field: &str,
    v: &mut Vec<FieldViolation>,
) -> (String, i64) {
    let Some(money) = money else {
        return (String::new(), 0);
    };
    if !(0..=MAX_MINOR_UNITS).contains(&money.minor_units) {
        v.push(FieldViolation::new(
            format!("{field}.minor_units"),
            format!("must be from 0 to {MAX_MINOR_UNITS}"),
        ));
    }
    match currency_code(&money.currency_code, money.minor_units) {
        Ok(code) => (code, money.minor_units),
        Err(why) => {
            v.push(FieldViolation::new(format!("{field}.currency_code"), why));
            (String::new(), money.minor_units)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(code: &str, minor_units: i64) -> Money {
        Money {
            currency_code: code.into(),
            minor_units,
        }
    }

    #[test]
    fn amounts_are_bounded_and_carry_a_currency() {
        let check = |m: Option<Money>| {
            let mut v = Vec::new();
            let out = non_negative(m.as_ref(), "cost", &mut v);
            (out, v.into_iter().map(|f| f.field).collect::<Vec<_>>())
        };
        assert_eq!(check(None), ((String::new(), 0), vec![]));
        assert_eq!(check(Some(money("", 0))), ((String::new(), 0), vec![]));
        assert_eq!(
            check(Some(money(" eur ", 1250))),
            (("EUR".to_string(), 1250), vec![])
        );
        assert_eq!(check(Some(money("", 5))).1, vec!["cost.currency_code"]);
        assert_eq!(check(Some(money("EURO", 5))).1, vec!["cost.currency_code"]);
        assert_eq!(check(Some(money("EUR", -1))).1, vec!["cost.minor_units"]);
        assert_eq!(
            check(Some(money("EUR", MAX_MINOR_UNITS + 1))).1,
            vec!["cost.minor_units"]
        );
        assert!(check(Some(money("EUR", MAX_MINOR_UNITS))).1.is_empty());
    }
}
