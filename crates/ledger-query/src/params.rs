//! Query-string parsing, the same for every endpoint (public so `ledger-fuzz` can fuzz it),
//! with one rule: a parameter that is unknown, repeated, malformed or out of its limits is a
//! 400 naming it. Every value is checked here, before any reaches SQL: valid UTF-8 after
//! percent-decoding, no control characters (NUL included: PostgreSQL text cannot hold it), at
//! most [`PARAMETER_BYTES_MAX`] bytes.

use percent_encoding::percent_decode_str;
use time::Date;
use time::macros::format_description;
use uuid::Uuid;

use crate::error::ApiError;

/// Parameters every endpoint accepts.
const COMMON_PARAMETERS: &[&str] = &["min_position"];
/// Longest parameter value accepted, in bytes of UTF-8 after decoding.
const PARAMETER_BYTES_MAX: usize = 256;
/// Most parameters in one query string (no endpoint takes more than 7).
const PARAMETERS_MAX: usize = 16;
/// The longest piece of an unknown parameter's name echoed in an error.
const ECHO_CHARS_MAX: usize = 64;

/// A request's query parameters, checked against the endpoint's list.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `query` (the raw query string, `application/x-www-form-urlencoded`), refusing
    /// parameters not in `allowed` (nor common), repeated ones, and values that are not UTF-8,
    /// hold control characters or are longer than [`PARAMETER_BYTES_MAX`].
    pub fn parse(query: &str, allowed: &[&'static str]) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            if pairs.len() == PARAMETERS_MAX {
                return Err(ApiError::bad(
                    "query",
                    format!("more than {PARAMETERS_MAX} parameters"),
                ));
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).map_err(|reason| ApiError::bad("query", reason))?;
            let Some(known) = allowed
                .iter()
                .chain(COMMON_PARAMETERS)
                .find(|known| **known == name.as_str())
                .copied()
            else {
                return Err(ApiError::UnknownParameter {
                    parameter: name
                        .chars()
                        .filter(|char| !char.is_control())
                        .take(ECHO_CHARS_MAX)
                        .collect(),
                });
            };
            if pairs.iter().any(|(earlier, _)| earlier == known) {
                return Err(ApiError::bad(known, "given more than once"));
            }
            let value = decode(value).map_err(|reason| ApiError::bad(known, reason))?;
            if value.len() > PARAMETER_BYTES_MAX {
                return Err(ApiError::bad(
                    known,
                    format!("longer than {PARAMETER_BYTES_MAX} bytes"),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(ApiError::bad(
                    known,
                    "contains a control character (NUL, newline, tab, ...)",
                ));
            }
            pairs.push((known.to_owned(), value));
        }
        Ok(Params { pairs })
    }

    /// The value of `name`, if given and not empty.
    pub fn text(&self, name: &'static str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// `name` as an ISO date (`2026-01-31`).
    pub fn date(&self, name: &'static str) -> Result<Option<Date>, ApiError> {
        self.text(name)
            .map(|text| {
                Date::parse(text, format_description!("[year]-[month]-[day]"))
                    .map_err(|_| ApiError::bad(name, format!("`{text}` is not a date YYYY-MM-DD")))
            })
            .transpose()
    }

    /// `name` as an integer in `1..=max`, `default` when absent.
    pub fn limit(&self, name: &'static str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.text(name) {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(value) if (1..=max).contains(&value) => Ok(value),
                _ => Err(ApiError::bad(
                    name,
                    format!("`{text}` is not an integer from 1 to {max}"),
                )),
            },
        }
    }

    /// `name` as a non-negative integer.
    pub fn unsigned(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|text| {
                text.parse::<u64>()
                    .ok()
                    .filter(|value| i64::try_from(*value).is_ok())
                    .ok_or_else(|| {
                        ApiError::bad(name, format!("`{text}` is not a non-negative integer"))
                    })
            })
            .transpose()
    }

    /// `name` as a UUID.
    pub fn uuid(&self, name: &'static str) -> Result<Option<Uuid>, ApiError> {
        self.text(name)
            .map(|text| {
                Uuid::parse_str(text)
                    .map_err(|_| ApiError::bad(name, format!("`{text}` is not a valid cursor")))
            })
            .transpose()
    }

    /// `name` as an ISO 4217 currency known to the ledger.
    pub fn currency(
        &self,
        name: &'static str,
    ) -> Result<Option<ledger_domain::Currency>, ApiError> {
        self.text(name)
            .map(|text| {
                ledger_domain::Currency::parse(text).map_err(|_| {
                    ApiError::bad(
                        name,
                        format!("`{text}` is not an upper-case ISO 4217 currency code"),
                    )
                })
            })
            .transpose()
    }

    /// `name` as one of `choices`.
    pub fn choice(
        &self,
        name: &'static str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        self.text(name)
            .map(|text| {
                choices
                    .iter()
                    .find(|choice| **choice == text)
                    .copied()
                    .ok_or_else(|| {
                        ApiError::bad(
                            name,
                            format!("`{text}` is not one of {}", choices.join(", ")),
                        )
                    })
            })
            .transpose()
    }

    /// `?min_position=`.
    pub fn min_position(&self) -> Result<Option<u64>, ApiError> {
        self.unsigned("min_position")
    }

    /// The normalised query: the `name=value` pairs sorted, without `min_position` (it changes
    /// when an answer may be given, not what it is) and without empty values, each
    /// form-encoded again (`a=x%26b%3Dy`): the cache key of the answer. Encoding keeps the key
    /// faithful: a value holding `&`, `=`, `+` or `%` cannot read as other pairs, so
    /// `?q=ada%26status%3Dactive` (a search for "ada&status=active") and
    /// `?q=ada&status=active` never share a cached answer. Parsed again, the key gives the
    /// same values.
    pub fn normalised(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(name, value)| name != "min_position" && !value.is_empty())
            .collect();
        pairs.sort();
        let mut key = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            key.append_pair(name, value);
        }
        key.finish()
    }
}

/// One form-encoded name or value: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode(encoded: &str) -> Result<String, &'static str> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "not UTF-8 after percent-decoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(error: ApiError) -> String {
        match error {
            ApiError::BadParameter { parameter, .. } => parameter.to_owned(),
            ApiError::UnknownParameter { parameter } => parameter,
            other => panic!("not a parameter error: {other:?}"),
        }
    }

    #[test]
    fn refuses_unknown_repeated_and_malformed_parameters_by_name() {
        assert_eq!(
            parameter(Params::parse("limit=1&bogus=2", &["limit"]).unwrap_err()),
            "bogus"
        );
        assert_eq!(
            parameter(Params::parse("limit=1&limit=2", &["limit"]).unwrap_err()),
            "limit"
        );
        let params = Params::parse(
            "limit=0&at=2026-13-01&currency=usd",
            &["limit", "at", "currency"],
        )
        .unwrap();
        assert_eq!(
            parameter(params.limit("limit", 50, 500).unwrap_err()),
            "limit"
        );
        assert_eq!(parameter(params.date("at").unwrap_err()), "at");
        assert_eq!(
            parameter(params.currency("currency").unwrap_err()),
            "currency"
        );
    }

    #[test]
    fn refuses_values_postgresql_would_choke_on_before_any_query() {
        let allowed = &["q", "plan"];
        for (query, name) in [
            ("q=%00", "q"),
            ("plan=pro%00", "plan"),
            ("q=a%0Ab", "q"),
            ("q=%09", "q"),
            ("q=%1B%5B31m", "q"),
            ("plan=%7F", "plan"),
            ("q=%C2%85", "q"),
            ("q=%FF", "q"),
            ("plan=%C3", "plan"),
            ("q=%ED%A0%80", "q"),
        ] {
            let error = Params::parse(query, allowed).unwrap_err();
            assert_eq!(error.code(), "bad_parameter", "{query}");
            assert_eq!(parameter(error), name, "{query}");
        }
        let overlong = format!("q={}", "a".repeat(PARAMETER_BYTES_MAX + 1));
        assert_eq!(
            parameter(Params::parse(&overlong, allowed).unwrap_err()),
            "q"
        );
        let multibyte = format!("q={}", "%C3%A9".repeat(PARAMETER_BYTES_MAX / 2 + 1));
        assert_eq!(
            parameter(Params::parse(&multibyte, allowed).unwrap_err()),
            "q"
        );
        let names = [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q",
        ];
        assert_eq!(names.len(), PARAMETERS_MAX + 1);
        let many: Vec<String> = names.iter().map(|name| format!("{name}=1")).collect();
        assert_eq!(
            parameter(Params::parse(&many.join("&"), &names).unwrap_err()),
            "query"
        );
        assert!(Params::parse(&many[..PARAMETERS_MAX].join("&"), &names).is_ok());
        assert_eq!(
            parameter(Params::parse("%FF=1", allowed).unwrap_err()),
            "query"
        );
        // A NUL in an unknown parameter's name is not echoed.
        assert_eq!(
            parameter(Params::parse("a%00b=1", allowed).unwrap_err()),
            "ab"
        );
    }

    #[test]
    fn decodes_form_encoding() {
        let params = Params::parse(
            "q=ada+lovelace%40example.com&plan=pro%2Bplus",
            &["q", "plan"],
        )
        .unwrap();
        assert_eq!(params.text("q"), Some("ada lovelace@example.com"));
        assert_eq!(params.text("plan"), Some("pro+plus"));
        let exact = format!("q={}", "%C3%A9".repeat(PARAMETER_BYTES_MAX / 2));
        assert_eq!(
            Params::parse(&exact, &["q"]).unwrap().text("q"),
            Some("é".repeat(PARAMETER_BYTES_MAX / 2).as_str())
        );
        assert_eq!(Params::parse("", &["q"]).unwrap().text("q"), None);
        assert_eq!(Params::parse("q=&", &["q"]).unwrap().text("q"), None);
    }

    #[test]
    fn normalises_order_and_ignores_min_position() {
        let one = Params::parse("b=2&a=1&min_position=7", &["a", "b"]).unwrap();
        let two = Params::parse("a=1&b=2", &["a", "b"]).unwrap();
        assert_eq!(one.normalised(), two.normalised());
        assert_eq!(one.normalised(), "a=1&b=2");
    }

    /// Found by `ledger-fuzz` (corpus/query/regression-cache-key-*.txt): the key joined the
    /// decoded values as they were, so a value holding `&` and `=` read as two parameters and
    /// shared the cached answer of a query that has them.
    #[test]
    fn different_queries_never_share_a_cache_key() {
        let allowed = &["q", "status", "plan"];
        let key = |query: &str| Params::parse(query, allowed).unwrap().normalised();
        assert_ne!(key("q=ada%26status%3Dactive"), key("q=ada&status=active"));
        assert_ne!(key("plan=pro%2Bplus"), key("plan=pro+plus"));
        assert_eq!(key("q=ada%26status%3Dactive"), "q=ada%26status%3Dactive");
        assert_eq!(key("plan=pro+plus&q=%25"), "plan=pro+plus&q=%25");
    }
}
