//! The public API as other crates use it.

use ledger_domain::proto;
use ledger_domain::{
    Currency, CustomerId, Event, EventStatus, Issuer, Money, MoneyError, Provider, event_status,
    event_type,
};

#[test]
fn storage_names_and_proto_conversions() {
    assert_eq!(EventStatus::Processing.as_str(), "processing");
    assert_eq!(Issuer::PaymentProvider.as_str(), "payment_provider");
    assert_eq!("xendit".parse::<Provider>(), Ok(Provider::Xendit));
    assert_eq!(
        Provider::try_from(proto::PaymentProvider::Paypal),
        Ok(Provider::Paypal)
    );
    assert!(Issuer::try_from(proto::Issuer::Unspecified).is_err());
    let error = "Stripe".parse::<Provider>().unwrap_err();
    assert!(error.to_string().contains("\"Stripe\""), "{error}");
}

#[test]
fn money_in_major_units() {
    let jpy = Currency::parse("JPY").unwrap();
    let kwd: Currency = "KWD".parse().unwrap();
    assert_eq!(Money::new(1200, jpy).to_string(), "1200 JPY");
    assert_eq!(Money::new(1005, kwd).to_string(), "1.005 KWD");
    assert_eq!(
        Money::new(1, jpy).checked_add(Money::new(1, kwd)),
        Err(MoneyError::CurrencyMismatch {
            left: jpy,
            right: kwd
        })
    );
    assert!(Currency::parse("usd").is_err());
}

#[test]
fn customer_id_and_event_columns() {
    let id: CustomerId = "0190f3c2-6a4e-7cc0-9a8e-3f6d2b1c0d4e".parse().unwrap();
    assert_eq!(id.to_string(), "0190f3c2-6a4e-7cc0-9a8e-3f6d2b1c0d4e");
    let event = Event::CancellationRequested(proto::CancellationRequested::default());
    assert_eq!(event_type(&event), "cancellation_requested");
    assert_eq!(event_status(&event), EventStatus::Processing);
}
