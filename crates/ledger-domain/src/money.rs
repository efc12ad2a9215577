//! Money: integer minor units of an ISO 4217 currency. Never floats.

use std::fmt;
use std::str::FromStr;

use crate::names::truncated;
use crate::proto;

/// An active ISO 4217 currency with a minor unit, e.g. `USD` (2 decimals) or `JPY` (none).
///
/// Only codes from the crate's ISO 4217 table can be constructed, so a `Currency` is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// Errors of [`Currency`] parsing and [`Money`] arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not the upper-case alphabetic code of an active ISO 4217 currency with a
    /// minor unit (`"usd"`, `"US"`, `"XXX"` and `"XAU"` are all rejected).
    #[error(
        "invalid currency {code:?}: expected an active ISO 4217 code in upper case, e.g. \"USD\""
    )]
    InvalidCurrency {
        /// The rejected text (cut to 32 bytes).
        code: String,
    },
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// The currency of the left operand.
        left: Currency,
        /// The currency of the right operand.
        right: Currency,
    },
    /// The result does not fit in an `i64` of minor units.
    #[error("amount overflow: the result does not fit in 64-bit minor units")]
    Overflow,
}

impl Currency {
    /// Parses an upper-case ISO 4217 alphabetic code such as `"USD"`.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let well_formed = code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase());
        let found = if well_formed {
            CURRENCIES
                .binary_search_by(|(candidate, _)| (*candidate).cmp(code))
                .ok()
                .and_then(|index| CURRENCIES.get(index))
        } else {
            None
        };
        match found {
            Some(&(code, exponent)) => Ok(Currency { code, exponent }),
            None => Err(MoneyError::InvalidCurrency {
                code: truncated(code, 32),
            }),
        }
    }

    /// The three-letter code, e.g. `"USD"`.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The number of decimal places of the minor unit: 0 for JPY, 2 for USD, 3 for KWD.
    pub fn exponent(self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
    }
}

/// An amount in integer minor units (cents, yen, fils) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// The amount in minor units; negative amounts are representable (balances, adjustments).
    pub amount_minor: i64,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// `amount_minor` minor units of `currency`.
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    /// `self + other`; both must be in the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount_minor| Money::new(amount_minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`; both must be in the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_sub(other.amount_minor)
            .map(|amount_minor| Money::new(amount_minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

/// Major units with the currency's exponent, integer arithmetic only: `12.34 USD`, `1200 JPY`,
/// `1.005 KWD`, `-0.05 USD`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let magnitude = self.amount_minor.unsigned_abs();
        let exponent = u32::from(self.currency.exponent);
        let code = self.currency.code;
        match 10u64.checked_pow(exponent) {
            Some(divisor) if exponent > 0 => write!(
                f,
                "{sign}{}.{:0width$} {code}",
                magnitude / divisor,
                magnitude % divisor,
                width = usize::from(self.currency.exponent),
            ),
            _ => write!(f, "{sign}{magnitude} {code}"),
        }
    }
}

impl TryFrom<&proto::Money> for Money {
    type Error = MoneyError;

    fn try_from(value: &proto::Money) -> Result<Self, Self::Error> {
        Ok(Money::new(
            value.amount_minor,
            Currency::parse(&value.currency)?,
        ))
    }
}

impl From<Money> for proto::Money {
    fn from(value: Money) -> Self {
        proto::Money {
            amount_minor: value.amount_minor,
            currency: value.currency.code.to_owned(),
        }
    }
}

/// Every active ISO 4217 currency that has a minor unit, with its exponent, sorted by code
/// (ISO 4217 list one; funds codes such as `CLF` and `USN` are included, codes without a minor
/// unit such as `XAU`, `XDR` and `XXX` are not).
///
/// Codes are only ever added: a withdrawn code stays here so that stored events in it stay
/// readable (`ANG` and `BGN` are being withdrawn in 2025/2026 and are kept for that reason).
pub(crate) const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (code, exponent) in CURRENCIES {
            assert_eq!(code.len(), 3);
            assert!(code.bytes().all(|byte| byte.is_ascii_uppercase()));
            assert!(*exponent <= 4);
            assert_eq!(currency(code).code(), *code);
        }
    }

    #[test]
    fn exponents_follow_iso_4217() {
        for (code, exponent) in [
            ("JPY", 0),
            ("KRW", 0),
            ("USD", 2),
            ("EUR", 2),
            ("KWD", 3),
            ("BHD", 3),
            ("CLF", 4),
        ] {
            assert_eq!(currency(code).exponent(), exponent, "{code}");
        }
    }

    #[test]
    fn parse_rejects_non_codes() {
        for bad in [
            "usd", "Usd", "US", "USDD", "XXX", "XAU", "XDR", "ABC", "", " USD", "ÜSD",
        ] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::InvalidCurrency {
                    code: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        assert_eq!("EUR".parse::<Currency>(), Ok(currency("EUR")));
    }

    #[test]
    fn display_is_exponent_aware() {
        let cases = [
            (1234, "USD", "12.34 USD"),
            (5, "USD", "0.05 USD"),
            (-5, "USD", "-0.05 USD"),
            (-1234, "USD", "-12.34 USD"),
            (0, "USD", "0.00 USD"),
            (1200, "JPY", "1200 JPY"),
            (-1200, "JPY", "-1200 JPY"),
            (1005, "KWD", "1.005 KWD"),
            (1, "CLF", "0.0001 CLF"),
            (i64::MIN, "USD", "-92233720368547758.08 USD"),
            (i64::MAX, "JPY", "9223372036854775807 JPY"),
        ];
        for (amount_minor, code, expected) in cases {
            assert_eq!(
                Money::new(amount_minor, currency(code)).to_string(),
                expected
            );
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let usd = currency("USD");
        let eur = currency("EUR");
        assert_eq!(
            Money::new(150, usd).checked_add(Money::new(50, usd)),
            Ok(Money::new(200, usd))
        );
        assert_eq!(
            Money::new(150, usd).checked_sub(Money::new(200, usd)),
            Ok(Money::new(-50, usd))
        );
        assert_eq!(
            Money::new(i64::MAX, usd).checked_add(Money::new(1, usd)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MIN, usd).checked_sub(Money::new(1, usd)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(1, usd).checked_add(Money::new(1, eur)),
            Err(MoneyError::CurrencyMismatch {
                left: usd,
                right: eur
            })
        );
        assert_eq!(
            Money::new(1, eur).checked_sub(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch {
                left: eur,
                right: usd
            })
        );
    }

    #[test]
    fn proto_round_trip() {
        let money = Money::new(-42, currency("KWD"));
        let wire = proto::Money::from(money);
        assert_eq!(wire.currency, "KWD");
        assert_eq!(Money::try_from(&wire), Ok(money));
        let bad = proto::Money {
            amount_minor: 1,
            currency: "usd".to_owned(),
        };
        assert!(matches!(
            Money::try_from(&bad),
            Err(MoneyError::InvalidCurrency { .. })
        ));
    }
}
