//! Amounts that providers write in major units as decimal text (PayPal `"4.99"`, Xendit
//! `2000000` or `150.5`), read exactly into integer minor units of the ISO 4217 currency. No
//! floats: the digits are read as text.

use ledger_domain::{Currency, Money};

/// Reads `text`, a non-negative decimal in major units (`"4.99"`, `"10"`, `"1.005"`), as an
/// amount of `currency` (ISO 4217 code, upper case) in minor units: `"4.99"` USD is 499 cents,
/// `"2000000"` IDR is 200000000 sen, `"500"` JPY is 500 yen.
///
/// # Errors
/// A sentence naming the problem when the currency is not an ISO 4217 code, the text is not
/// plain decimal digits with at most one `.` (signs, exponents, spaces and empty parts are
/// refused), it has more decimals than the currency's minor unit (`"4.999"` USD, `"1.5"` JPY),
/// or it does not fit in 64-bit minor units.
pub(crate) fn money_of_decimal(text: &str, currency: &str) -> Result<Money, String> {
    let currency = Currency::parse(currency).map_err(|error| error.to_string())?;
    let exponent = usize::from(currency.exponent());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || text.ends_with('.') {
        return Err(format!(
            "amount {text:?} is not a non-negative decimal such as \"4.99\""
        ));
    }
    if fraction.len() > exponent {
        return Err(format!(
            "amount {text:?} has {} decimals; {} has {exponent}",
            fraction.len(),
            currency.code()
        ));
    }
    let overflow = || format!("amount {text:?} does not fit in 64-bit minor units");
    let mut minor: i64 = 0;
    let padded = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(exponent);
    for byte in whole.bytes().chain(padded) {
        minor = minor
            .checked_mul(10)
            .and_then(|value| value.checked_add(i64::from(byte - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(Money::new(minor, currency))
}

/// Reads a JSON amount that is either a number (`2000000`, `150.5`) or decimal text
/// (`"4.99"`), in major units of `currency`, with [`money_of_decimal`]. A JSON number is read
/// through its shortest decimal form, which is exact for every amount with up to 15
/// significant digits.
///
/// # Errors
/// As [`money_of_decimal`], and for any other JSON value.
pub(crate) fn money_of_json(value: &serde_json::Value, currency: &str) -> Result<Money, String> {
    match value {
        serde_json::Value::String(text) => money_of_decimal(text, currency),
        serde_json::Value::Number(number) => money_of_decimal(&number.to_string(), currency),
        other => Err(format!("amount {other} is neither a number nor text")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minor(text: &str, currency: &str) -> Result<i64, String> {
        money_of_decimal(text, currency).map(|money| money.amount_minor)
    }

    #[test]
    fn reads_major_units_with_the_currency_exponent() {
        assert_eq!(minor("4.99", "USD"), Ok(499));
        assert_eq!(minor("10", "USD"), Ok(1000));
        assert_eq!(minor("0.5", "USD"), Ok(50));
        assert_eq!(minor("0.00", "USD"), Ok(0));
        assert_eq!(minor("500", "JPY"), Ok(500));
        assert_eq!(minor("1.005", "KWD"), Ok(1005));
        assert_eq!(minor("2000000", "IDR"), Ok(200_000_000));
    }

    #[test]
    fn refuses_more_decimals_than_the_currency_has() {
        let error = minor("4.999", "USD").unwrap_err();
        assert!(error.contains("3 decimals; USD has 2"), "{error}");
        assert!(minor("1.5", "JPY").is_err());
        assert!(minor("1.0", "JPY").is_err());
    }

    #[test]
    fn refuses_anything_but_plain_decimal_digits() {
        for text in [
            "", ".", "1.", ".5", "-1", "+1", "1e3", " 1", "1,00", "1.2.3", "٣",
        ] {
            assert!(minor(text, "USD").is_err(), "{text:?}");
        }
        assert!(minor("1", "usd").is_err());
        assert!(minor("99999999999999999999", "USD").is_err());
    }

    #[test]
    fn reads_json_numbers_and_text() {
        let read = |json: &str, currency: &str| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            money_of_json(&value, currency).map(|money| money.amount_minor)
        };
        assert_eq!(read("2000000", "IDR"), Ok(200_000_000));
        assert_eq!(read("150.5", "PHP"), Ok(15_050));
        assert_eq!(read("\"4.99\"", "USD"), Ok(499));
        assert_eq!(read("0.1", "USD"), Ok(10));
        assert!(read("-1", "USD").is_err());
        assert!(read("null", "USD").is_err());
        assert!(read("1.234", "USD").is_err());
    }
}
