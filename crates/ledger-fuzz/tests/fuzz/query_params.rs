//! The query service's parameters: `ledger_query::params::Params::parse` on any query string,
//! for the parameter sets of its endpoints, then every typed reading of every value, then the
//! cache key (`normalised`).
//!
//! Properties: no panic; every refusal is a 400 (`bad_parameter` / `unknown_parameter`);
//! every value read is short, free of control characters and read back as given; the cache
//! key is a faithful encoding of the parameters that change an answer: parsed again it gives
//! the same values (so two queries asking different things never share a cached answer).

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use ledger_fuzz::{cases, corpus, mutated_bytes};
use ledger_query::ApiError;
use ledger_query::params::Params;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const TARGET: &str = "query";

/// Parameter sets as the endpoints declare them: the customers list, a customer's timeline,
/// the MRR summary, the MRR series, churn and cohorts, and the endpoints without parameters.
const ENDPOINTS: &[&[&str]] = &[
    &[
        "status", "provider", "plan", "q", "currency", "cursor", "limit",
    ],
    &["cursor", "limit"],
    &["currency", "at", "reporting_currency"],
    &["currency", "from", "to", "interval"],
    &["from", "to", "currency"],
    &[],
];

fn refusal(error: &ApiError) -> Result<(), TestCaseError> {
    prop_assert_eq!(error.status_code(), StatusCode::BAD_REQUEST, "{:?}", error);
    prop_assert!(
        ["bad_parameter", "unknown_parameter"].contains(&error.code()),
        "{:?}",
        error
    );
    Ok(())
}

fn check(query: &str) -> Result<(), TestCaseError> {
    for allowed in ENDPOINTS {
        let params = match Params::parse(query, allowed) {
            Ok(params) => params,
            Err(error) => {
                refusal(&error)?;
                continue;
            }
        };
        for name in allowed.iter().chain(&["min_position"]) {
            if let Some(value) = params.text(name) {
                prop_assert!(value.len() <= 256, "{name} is {} bytes", value.len());
                prop_assert!(!value.chars().any(char::is_control), "{name}: {value:?}");
            }
            let readings = [
                params.date(name).err(),
                params.limit(name, 50, 500).err(),
                params.unsigned(name).err(),
                params.uuid(name).err(),
                params.currency(name).err(),
                params.choice(name, &["day", "week", "month"]).err(),
            ];
            for error in readings.iter().flatten() {
                refusal(error)?;
            }
        }
        if let Ok(Some(position)) = params.min_position() {
            prop_assert!(i64::try_from(position).is_ok());
        }
        let key = params.normalised();
        let again = Params::parse(&key, allowed).map_err(|error| {
            TestCaseError::fail(format!("the cache key {key:?} does not parse: {error}"))
        })?;
        for name in allowed.iter() {
            prop_assert_eq!(
                again.text(name),
                params.text(name),
                "parameter {} through the cache key {:?}",
                name,
                key
            );
        }
        prop_assert_eq!(again.text("min_position"), None);
        prop_assert_eq!(again.normalised(), key);
    }
    Ok(())
}

/// Query strings built from parameter names (known, common, unknown) and values (plain,
/// percent-encoded, with the characters that separate pairs), joined with `&`.
fn built_query() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(vec![
        "status",
        "provider",
        "plan",
        "q",
        "currency",
        "cursor",
        "limit",
        "at",
        "from",
        "to",
        "interval",
        "reporting_currency",
        "min_position",
        "bogus",
        "q%00",
        "",
    ]);
    let value = prop_oneof![
        proptest::sample::select(vec![
            "active",
            "USD",
            "usd",
            "2026-01-31",
            "2026-02-30",
            "50",
            "0",
            "501",
            "-1",
            "18446744073709551615",
            "9223372036854775808",
            "week",
            "0191c6a8-6f0e-7a3c-9d2b-5e4f3a2b1c0d",
            "a%26b%3Dc",
            "a+b",
            "%2B",
            "%25",
            "%00",
            "%0A",
            "%C3%A9",
            "%C3",
            "%E2%80%8B",
            "%FF",
            "=",
            "==",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9&=%+ ]{0,12}",
        "\\PC{0,8}",
    ];
    proptest::collection::vec((name, proptest::option::weighted(0.9, value)), 0..8).prop_map(
        |pairs| {
            pairs
                .into_iter()
                .map(|(name, value)| match value {
                    Some(value) => format!("{name}={value}"),
                    None => name.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&")
        },
    )
}

#[test]
fn query_corpus_replays() {
    for entry in corpus(TARGET) {
        check(&String::from_utf8_lossy(&entry.bytes))
            .unwrap_or_else(|error| panic!("{TARGET}/{}: {error}", entry.name));
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn fuzz_built_queries(query in built_query()) {
        check(&query)?;
    }

    #[test]
    fn fuzz_mutated_queries(
        query in mutated_bytes(corpus(TARGET).into_iter().map(|entry| entry.bytes).collect()),
    ) {
        check(&String::from_utf8_lossy(&query))?;
    }
}
