//! Stripe amounts to ISO 4217 minor units.
//!
//! Stripe gives every amount as an integer in the currency's "smallest unit"
//! (<https://docs.stripe.com/currencies#minor-units>), which is ISO 4217's minor unit for most
//! currencies but not all:
//! - zero-decimal currencies (`BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF`)
//!   are given in whole units; of these only `MGA` has a minor unit in ISO 4217 (2 decimals), so
//!   a Stripe `MGA` amount is multiplied by 100;
//! - special cases: `ISK` moved to zero decimals but Stripe keeps it two-decimal for backward
//!   compatibility (the decimals always `00`), while ISO 4217 gives ISK no minor unit, so the
//!   amount is divided by 100; `HUF` and `TWD` are two-decimal for charges at Stripe (zero-decimal
//!   only for payouts) as in ISO 4217, so nothing changes;
//! - three-decimal currencies (`BHD JOD KWD OMR TND`) are given in thousandths, as in ISO 4217.
//!
//! Every other currency Stripe supports has two decimals at Stripe; its ISO exponent is used as
//! is (for all of them 2).

use ledger_domain::{Currency, proto};

/// How a Stripe amount in `currency` becomes ISO 4217 minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Same unit.
    Same,
    /// Stripe's unit is 100 ISO minor units (zero-decimal at Stripe, two decimals in ISO).
    Multiply100,
    /// Stripe's unit is 1/100 of ISO's (two-decimal at Stripe, none in ISO): must divide evenly.
    Divide100,
}

/// Currencies whose Stripe unit differs from their ISO 4217 minor unit.
const SCALES: &[(&str, Scale)] = &[("ISK", Scale::Divide100), ("MGA", Scale::Multiply100)];

/// Converts a Stripe `amount` in `currency` (Stripe's lower-case code, e.g. `"usd"`) into ledger
/// money: ISO 4217 upper-case code and minor units.
///
/// # Errors
/// A sentence saying why, when the currency is not an ISO 4217 currency the ledger knows, the
/// conversion overflows, or an ISK amount is not a whole number of krónur.
pub(crate) fn money(amount: i64, currency: &str) -> Result<proto::Money, String> {
    let code = currency.to_ascii_uppercase();
    let parsed = Currency::parse(&code).map_err(|error| error.to_string())?;
    let scale = SCALES
        .iter()
        .find(|(candidate, _)| *candidate == parsed.code())
        .map_or(Scale::Same, |(_, scale)| *scale);
    let amount_minor = match scale {
        Scale::Same => Some(amount),
        Scale::Multiply100 => amount.checked_mul(100),
        Scale::Divide100 if amount % 100 == 0 => Some(amount / 100),
        Scale::Divide100 => {
            return Err(format!(
                "Stripe amount {amount} {code} is not a whole number of units (Stripe gives {code} \
                 with two decimals that are always 00)"
            ));
        }
    }
    .ok_or_else(|| format!("Stripe amount {amount} {code} overflows 64-bit minor units"))?;
    Ok(proto::Money {
        amount_minor,
        currency: parsed.code().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minor(amount: i64, currency: &str) -> (i64, String) {
        let money = money(amount, currency).expect("convertible");
        (money.amount_minor, money.currency)
    }

    #[test]
    fn two_decimal_currencies_are_unchanged() {
        assert_eq!(minor(1999, "usd"), (1999, "USD".to_owned()));
        assert_eq!(minor(500, "eur"), (500, "EUR".to_owned()));
    }

    #[test]
    fn zero_decimal_currencies_without_iso_minor_unit_are_unchanged() {
        assert_eq!(minor(500, "jpy"), (500, "JPY".to_owned()));
        assert_eq!(minor(1500, "krw"), (1500, "KRW".to_owned()));
        assert_eq!(minor(7000, "ugx"), (7000, "UGX".to_owned()));
    }

    #[test]
    fn mga_is_zero_decimal_at_stripe_and_two_decimal_in_iso() {
        assert_eq!(minor(5000, "mga"), (500_000, "MGA".to_owned()));
        assert!(money(i64::MAX / 10, "mga").is_err());
    }

    #[test]
    fn isk_is_two_decimal_at_stripe_and_zero_decimal_in_iso() {
        assert_eq!(minor(50_000, "isk"), (500, "ISK".to_owned()));
        let error = money(50_050, "isk").expect_err("fraction of a króna");
        assert!(error.contains("whole number"), "{error}");
    }

    #[test]
    fn huf_and_twd_charges_are_two_decimal_at_stripe_as_in_iso() {
        assert_eq!(minor(150_000, "huf"), (150_000, "HUF".to_owned()));
        assert_eq!(minor(30_000, "twd"), (30_000, "TWD".to_owned()));
    }

    #[test]
    fn three_decimal_currencies_are_unchanged() {
        assert_eq!(minor(1_230, "kwd"), (1_230, "KWD".to_owned()));
        assert_eq!(minor(5_000, "bhd"), (5_000, "BHD".to_owned()));
    }

    #[test]
    fn unknown_currencies_are_refused_with_the_code() {
        let error = money(100, "currency").expect_err("not ISO 4217");
        assert!(error.contains("CURRENCY"), "{error}");
    }
}
