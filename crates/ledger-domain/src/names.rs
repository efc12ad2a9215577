//! Small closed vocabularies stored as lowercase text in the envelope columns of
//! `customer_payment_events`: [`EventStatus`], [`Issuer`] and [`Provider`].

use crate::proto;

/// Why a name or a protobuf enum value could not be turned into one of this crate's enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnumValueError {
    /// The text is not one of the storage names.
    #[error("unknown {type_name} {value:?}: expected one of {expected}")]
    Unknown {
        /// The enum that was being parsed, e.g. `"provider"`.
        type_name: &'static str,
        /// The rejected text (cut to 64 bytes).
        value: String,
        /// The accepted names, separated by spaces.
        expected: &'static str,
    },
    /// The protobuf value was `*_UNSPECIFIED` (0): the sender did not set the field.
    #[error("{type_name} is unspecified: set it to one of {expected}")]
    Unspecified {
        /// The enum that was being converted.
        type_name: &'static str,
        /// The accepted names, separated by spaces.
        expected: &'static str,
    },
}

/// Cuts `value` to at most `bytes_max` bytes on a character boundary, so error values stay small.
pub(crate) fn truncated(value: &str, bytes_max: usize) -> String {
    if value.len() <= bytes_max {
        return value.to_owned();
    }
    let mut end = bytes_max;
    while end > 0 && !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}

macro_rules! storage_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $type_name:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase name stored in the database and used in APIs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            const EXPECTED: &'static str = concat!($($text, " "),+);
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::names::EnumValueError;

            /// Parses the exact lowercase storage name.
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::names::EnumValueError::Unknown {
                        type_name: $type_name,
                        value: $crate::names::truncated(value, 64),
                        expected: $name::EXPECTED.trim_end(),
                    }),
                }
            }
        }
    };
}

pub(crate) use storage_enum;

storage_enum! {
    /// The `status` column of an event: whether the fact it records is settled.
    EventStatus, "event status" {
        /// Asked for but not yet confirmed (a cancellation request waiting for the provider).
        Processing => "processing",
        /// Settled.
        Complete => "complete",
        /// An attempt that did not succeed (a failed payment, a refused cancellation).
        Failed => "failed",
    }
}

storage_enum! {
    /// Who issued a command, stored in the `issuer` column of its events.
    Issuer, "issuer" {
        /// The ledger's owner: an internal service or an operator.
        Internal => "internal",
        /// A payment provider, through a verified webhook.
        PaymentProvider => "payment_provider",
    }
}

storage_enum! {
    /// A payment provider, stored in the `payment_provider_type` column.
    Provider, "provider" {
        /// Stripe.
        Stripe => "stripe",
        /// PayPal.
        Paypal => "paypal",
        /// Xendit.
        Xendit => "xendit",
        /// The company's own billing system.
        Internal => "internal",
    }
}

impl TryFrom<proto::PaymentProvider> for Provider {
    type Error = EnumValueError;

    fn try_from(value: proto::PaymentProvider) -> Result<Self, Self::Error> {
        match value {
            proto::PaymentProvider::Unspecified => Err(EnumValueError::Unspecified {
                type_name: "payment provider",
                expected: Provider::EXPECTED.trim_end(),
            }),
            proto::PaymentProvider::Stripe => Ok(Provider::Stripe),
            proto::PaymentProvider::Paypal => Ok(Provider::Paypal),
            proto::PaymentProvider::Xendit => Ok(Provider::Xendit),
            proto::PaymentProvider::Internal => Ok(Provider::Internal),
        }
    }
}

impl From<Provider> for proto::PaymentProvider {
    fn from(value: Provider) -> Self {
        match value {
            Provider::Stripe => proto::PaymentProvider::Stripe,
            Provider::Paypal => proto::PaymentProvider::Paypal,
            Provider::Xendit => proto::PaymentProvider::Xendit,
            Provider::Internal => proto::PaymentProvider::Internal,
        }
    }
}

impl TryFrom<proto::Issuer> for Issuer {
    type Error = EnumValueError;

    fn try_from(value: proto::Issuer) -> Result<Self, Self::Error> {
        match value {
            proto::Issuer::Unspecified => Err(EnumValueError::Unspecified {
                type_name: "issuer",
                expected: Issuer::EXPECTED.trim_end(),
            }),
            proto::Issuer::Internal => Ok(Issuer::Internal),
            proto::Issuer::PaymentProvider => Ok(Issuer::PaymentProvider),
        }
    }
}

impl From<Issuer> for proto::Issuer {
    fn from(value: Issuer) -> Self {
        match value {
            Issuer::Internal => proto::Issuer::Internal,
            Issuer::PaymentProvider => proto::Issuer::PaymentProvider,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_round_trip() {
        for status in EventStatus::ALL {
            assert_eq!(status.as_str().parse::<EventStatus>(), Ok(*status));
        }
        for issuer in Issuer::ALL {
            assert_eq!(issuer.as_str().parse::<Issuer>(), Ok(*issuer));
        }
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(*provider));
            let wire = proto::PaymentProvider::from(*provider);
            assert_eq!(Provider::try_from(wire), Ok(*provider));
        }
        assert_eq!(Issuer::PaymentProvider.as_str(), "payment_provider");
    }

    #[test]
    fn unknown_names_are_typed_errors_naming_the_value() {
        let error = "Stripe".parse::<Provider>().unwrap_err();
        assert_eq!(
            error,
            EnumValueError::Unknown {
                type_name: "provider",
                value: "Stripe".to_owned(),
                expected: "stripe paypal xendit internal",
            }
        );
        assert!(matches!(
            Provider::try_from(proto::PaymentProvider::Unspecified),
            Err(EnumValueError::Unspecified { .. })
        ));
        assert!(matches!(
            Issuer::try_from(proto::Issuer::Unspecified),
            Err(EnumValueError::Unspecified { .. })
        ));
        assert!("".parse::<EventStatus>().is_err());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncated("ééé", 3), "é");
        assert_eq!(truncated("abc", 64), "abc");
    }
}
