//! Query-string parsing with one rule: a parameter that is unknown, repeated, malformed or
//! out of its limits is a 400 naming it.

use time::Date;
use time::macros::format_description;
use uuid::Uuid;

use crate::error::ApiError;

/// Parameters every endpoint accepts.
const COMMON_PARAMETERS: &[&str] = &["min_position"];
/// Longest parameter value accepted.
const PARAMETER_CHARS_MAX: usize = 256;

/// A request's query parameters, checked against the endpoint's list.
#[derive(Debug)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `query` (the raw query string), refusing parameters not in `allowed` (nor
    /// common), repeated ones and overlong values.
    pub(crate) fn parse(query: &str, allowed: &[&'static str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::bad("query", "the query string is not URL-encoded"))?;
        for (index, (name, value)) in pairs.iter().enumerate() {
            let Some(known) = allowed
                .iter()
                .chain(COMMON_PARAMETERS)
                .find(|known| **known == name.as_str())
            else {
                return Err(ApiError::UnknownParameter {
                    parameter: name.chars().take(64).collect(),
                });
            };
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad(known, "given more than once"));
            }
            if value.len() > PARAMETER_CHARS_MAX {
                return Err(ApiError::bad(
                    known,
                    format!("longer than {PARAMETER_CHARS_MAX} characters"),
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// The value of `name`, if given and not empty.
    pub(crate) fn text(&self, name: &'static str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// `name` as an ISO date (`2026-01-31`).
    pub(crate) fn date(&self, name: &'static str) -> Result<Option<Date>, ApiError> {
        self.text(name)
            .map(|text| {
                Date::parse(text, format_description!("[year]-[month]-[day]"))
                    .map_err(|_| ApiError::bad(name, format!("`{text}` is not a date YYYY-MM-DD")))
            })
            .transpose()
    }

    /// `name` as an integer in `1..=max`, `default` when absent.
    pub(crate) fn limit(
        &self,
        name: &'static str,
        default: u32,
        max: u32,
    ) -> Result<u32, ApiError> {
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
    pub(crate) fn unsigned(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
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
    pub(crate) fn uuid(&self, name: &'static str) -> Result<Option<Uuid>, ApiError> {
        self.text(name)
            .map(|text| {
                Uuid::parse_str(text)
                    .map_err(|_| ApiError::bad(name, format!("`{text}` is not a valid cursor")))
            })
            .transpose()
    }

    /// `name` as an ISO 4217 currency known to the ledger.
    pub(crate) fn currency(
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
    pub(crate) fn choice(
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
    pub(crate) fn min_position(&self) -> Result<Option<u64>, ApiError> {
        self.unsigned("min_position")
    }

    /// The normalised query: sorted `name=value` pairs without `min_position` (it changes
    /// when an answer may be given, not what it is), for cache keys.
    pub(crate) fn normalised(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(name, value)| name != "min_position" && !value.is_empty())
            .collect();
        pairs.sort();
        let mut key = String::new();
        for (name, value) in pairs {
            key.push('&');
            key.push_str(name);
            key.push('=');
            key.push_str(value);
        }
        key
    }
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
    fn normalises_order_and_ignores_min_position() {
        let one = Params::parse("b=2&a=1&min_position=7", &["a", "b"]).unwrap();
        let two = Params::parse("a=1&b=2", &["a", "b"]).unwrap();
        assert_eq!(one.normalised(), two.normalised());
        assert_eq!(one.normalised(), "&a=1&b=2");
    }
}
