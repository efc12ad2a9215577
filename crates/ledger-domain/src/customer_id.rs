//! The customer id: the stream id of a customer's events.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::names::truncated;

/// A customer, and the id of its event stream (`stream_id`). Assigned by the writer (UUID v7)
/// when a customer registers without one; this crate never generates ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(pub Uuid);

/// The text is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid customer id {value:?}: expected a UUID such as \"0190f3c2-6a4e-7cc0-9a8e-3f6d2b1c0d4e\""
)]
pub struct CustomerIdError {
    /// The rejected text (cut to 64 bytes).
    pub value: String,
}

impl fmt::Display for CustomerId {
    /// The hyphenated lower-case form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for CustomerId {
    type Err = CustomerIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(value)
            .map(CustomerId)
            .map_err(|_| CustomerIdError {
                value: truncated(value, 64),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_hyphenated() {
        let text = "0190f3c2-6a4e-7cc0-9a8e-3f6d2b1c0d4e";
        let id: CustomerId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(
            "not-a-uuid".parse::<CustomerId>(),
            Err(CustomerIdError {
                value: "not-a-uuid".to_owned()
            })
        );
    }
}
