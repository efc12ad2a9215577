//! `/v1/metrics/*` over the revenue fixture (`revenue_fixture.sql`), exact figures.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::{Query, Setup, app, get};

/// Currency, month, customer churn rate, net MRR churn rate, LTV.
type ChurnRow = (String, String, Option<String>, Option<String>, Option<i64>);

#[actix_web::test]
async fn summary_has_exact_headline_figures() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let summary = get!(app, "/v1/metrics/summary?currency=USD");
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.json);
    assert_eq!(summary.position(), 42);
    assert_eq!(
        summary.json,
        json!({
            "currency": "USD",
            "exponent": 2,
            "at": "2026-01-20",
            "has_data": true,
            "mrr_minor": 16_000,
            "arr_minor": 192_000,
            "arpa_minor": 8_000,
            "paying_customers": 2,
            "month": "2026-01-01",
            "this_month": {
                "partial": true,
                "new_minor": 0, "expansion_minor": 0, "contraction_minor": -1_000,
                "churn_minor": 0, "reactivation_minor": 5_000, "net_new_minor": 4_000
            },
            "last_month": {
                "currency": "USD",
                "exponent": 2,
                "month": "2025-12-01",
                "partial": false,
                "paying_customers_start": 2,
                "churned_customers": 1,
                "mrr_start_minor": 15_000,
                "new_minor": 0, "expansion_minor": 2_000, "contraction_minor": 0,
                "churn_minor": -5_000, "reactivation_minor": 0, "net_new_minor": -3_000,
                "customer_churn_rate": "0.500000",
                "gross_mrr_churn_rate": "0.333333",
                "net_mrr_churn_rate": "0.200000",
                "arpa_start_minor": 7_500,
                "ltv_minor": 15_000
            },
            "settings": {
                "churn_recognition": "effective",
                "past_due_churn_days": null,
                "discounts": "recurring",
                "unpaid_subscriptions": "excluded"
            },
            "reporting": null
        })
    );

    // A day inside December: MRR after the churn, December's movements so far.
    let december = get!(app, "/v1/metrics/summary?currency=USD&at=2025-12-20");
    assert_eq!(
        (
            &december.json["mrr_minor"],
            &december.json["paying_customers"],
            &december.json["arpa_minor"],
            &december.json["this_month"]["net_new_minor"],
            &december.json["last_month"]["month"],
            &december.json["last_month"]["customer_churn_rate"],
        ),
        (
            &json!(12_000),
            &json!(1),
            &json!(12_000),
            &json!(-3_000),
            &json!("2025-11-01"),
            &json!(null)
        )
    );
    // Before the first day and after the last one.
    let before = get!(app, "/v1/metrics/summary?currency=USD&at=2025-01-01");
    assert_eq!(
        (
            &before.json["mrr_minor"],
            &before.json["arpa_minor"],
            &before.json["last_month"]
        ),
        (&json!(0), &json!(null), &json!(null))
    );
    let after = get!(app, "/v1/metrics/summary?currency=USD&at=2026-03-05");
    assert_eq!(
        (
            &after.json["mrr_minor"],
            &after.json["this_month"]["net_new_minor"]
        ),
        (&json!(16_000), &json!(0))
    );
    // No data in EUR: zeros, said plainly.
    let euro = get!(app, "/v1/metrics/summary?currency=EUR&at=2026-01-01");
    assert_eq!(
        (
            &euro.json["has_data"],
            &euro.json["mrr_minor"],
            &euro.json["exponent"]
        ),
        (&json!(false), &json!(0), &json!(2))
    );
    let yen = get!(app, "/v1/metrics/summary?currency=JPY");
    assert_eq!(
        (
            &yen.json["at"],
            &yen.json["mrr_minor"],
            &yen.json["exponent"]
        ),
        (&json!("2026-01-06"), &json!(3_000), &json!(0))
    );
}

#[actix_web::test]
async fn summary_converts_to_a_reporting_currency_with_the_latest_rate() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let euro = get!(
        app,
        "/v1/metrics/summary?currency=USD&reporting_currency=EUR"
    );
    assert_eq!(
        euro.json["reporting"],
        json!({
            "currency": "EUR", "exponent": 2, "rate": "0.85", "rate_day": "2026-01-15",
            "mrr_minor": 13_600, "arr_minor": 163_200
        })
    );
    let earlier = get!(
        app,
        "/v1/metrics/summary?currency=USD&reporting_currency=EUR&at=2026-01-14"
    );
    assert_eq!(
        (
            &earlier.json["reporting"]["rate"],
            &earlier.json["reporting"]["mrr_minor"]
        ),
        (&json!("0.9"), &json!(14_400))
    );
    // Into a currency without minor units: 160.00 USD x 150.5 = 24,080 JPY.
    let yen = get!(
        app,
        "/v1/metrics/summary?currency=USD&reporting_currency=JPY"
    );
    assert_eq!(
        (
            &yen.json["reporting"]["mrr_minor"],
            &yen.json["reporting"]["arr_minor"],
            &yen.json["reporting"]["exponent"]
        ),
        (&json!(24_080), &json!(288_960), &json!(0))
    );
    let none = get!(
        app,
        "/v1/metrics/summary?currency=USD&reporting_currency=EUR&at=2025-12-31"
    );
    assert_eq!(
        none.json["reporting"],
        json!(null),
        "no rate on or before the day"
    );
}

/// Start, end, MRR, paying customers, net new MRR, partial.
type PointRow = (String, String, i64, i64, i64, bool);

fn points(answer: &crate::Answer) -> Vec<PointRow> {
    answer.json["points"]
        .as_array()
        .unwrap_or_else(|| panic!("points in {}", answer.json))
        .iter()
        .map(|point| {
            (
                point["period_start"].as_str().expect("start").to_owned(),
                point["period_end"].as_str().expect("end").to_owned(),
                point["mrr_minor"].as_i64().expect("mrr"),
                point["paying_customers"].as_i64().expect("paying"),
                point["net_new_minor"].as_i64().expect("net"),
                point["partial"].as_bool().expect("partial"),
            )
        })
        .collect()
}

#[actix_web::test]
async fn mrr_series_buckets_movements_and_carries_mrr() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let monthly = get!(
        app,
        "/v1/metrics/mrr?currency=USD&from=2025-10-15&to=2026-02-10&interval=month"
    );
    assert_eq!(monthly.status, StatusCode::OK, "{}", monthly.json);
    assert_eq!(
        points(&monthly),
        vec![
            // Clipped by the range.
            ("2025-10-15".into(), "2025-10-31".into(), 0, 0, 0, true),
            // The first month with data starts on the 10th.
            (
                "2025-11-01".into(),
                "2025-11-30".into(),
                15_000,
                2,
                15_000,
                true
            ),
            (
                "2025-12-01".into(),
                "2025-12-31".into(),
                12_000,
                1,
                -3_000,
                false
            ),
            // The read model's last day is 2026-01-20.
            (
                "2026-01-01".into(),
                "2026-01-31".into(),
                16_000,
                2,
                4_000,
                true
            ),
            ("2026-02-01".into(), "2026-02-10".into(), 16_000, 2, 0, true),
        ]
    );
    assert_eq!(
        monthly.json["points"][2],
        json!({
            "period_start": "2025-12-01", "period_end": "2025-12-31", "partial": false,
            "mrr_minor": 12_000, "arr_minor": 144_000, "paying_customers": 1,
            "new_minor": 0, "expansion_minor": 2_000, "contraction_minor": 0,
            "churn_minor": -5_000, "reactivation_minor": 0, "net_new_minor": -3_000
        })
    );
    let daily = get!(
        app,
        "/v1/metrics/mrr?currency=USD&from=2025-11-09&to=2025-11-11&interval=day"
    );
    assert_eq!(
        points(&daily),
        vec![
            ("2025-11-09".into(), "2025-11-09".into(), 0, 0, 0, false),
            (
                "2025-11-10".into(),
                "2025-11-10".into(),
                10_000,
                1,
                10_000,
                false
            ),
            (
                "2025-11-11".into(),
                "2025-11-11".into(),
                10_000,
                1,
                0,
                false
            ),
        ]
    );
    // ISO weeks from Monday: 2026-01-05 and 2026-01-12 are Mondays.
    let weekly = get!(
        app,
        "/v1/metrics/mrr?currency=USD&from=2026-01-01&to=2026-01-12&interval=week"
    );
    assert_eq!(
        points(&weekly),
        vec![
            (
                "2026-01-01".into(),
                "2026-01-04".into(),
                17_000,
                2,
                5_000,
                true
            ),
            (
                "2026-01-05".into(),
                "2026-01-11".into(),
                16_000,
                2,
                -1_000,
                false
            ),
            ("2026-01-12".into(), "2026-01-12".into(), 16_000, 2, 0, true),
        ]
    );
    // Defaults: to the last day with data, 365 days back, monthly.
    let default = get!(app, "/v1/metrics/mrr?currency=USD");
    assert_eq!(
        (
            &default.json["from"],
            &default.json["to"],
            &default.json["interval"]
        ),
        (&json!("2025-01-20"), &json!("2026-01-20"), &json!("month"))
    );
}

#[actix_web::test]
async fn churn_and_cohorts_have_exact_rows() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let churn = get!(app, "/v1/metrics/churn?from=2025-12-10&to=2026-01-31");
    assert_eq!(churn.status, StatusCode::OK, "{}", churn.json);
    let rows: Vec<ChurnRow> = churn.json["months"]
        .as_array()
        .expect("months")
        .iter()
        .map(|row| {
            (
                row["currency"].as_str().expect("currency").to_owned(),
                row["month"].as_str().expect("month").to_owned(),
                row["customer_churn_rate"].as_str().map(str::to_owned),
                row["net_mrr_churn_rate"].as_str().map(str::to_owned),
                row["ltv_minor"].as_i64(),
            )
        })
        .collect();
    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        rows,
        vec![
            ("JPY".into(), "2026-01-01".into(), None, None, None),
            (
                "USD".into(),
                "2025-12-01".into(),
                some("0.500000"),
                some("0.200000"),
                Some(15_000)
            ),
            (
                "USD".into(),
                "2026-01-01".into(),
                some("0.000000"),
                some("-0.333333"),
                None
            ),
        ]
    );
    assert_eq!(
        (&churn.json["from"], &churn.json["to"]),
        (&json!("2025-12-01"), &json!("2026-01-01"))
    );
    let usd = get!(
        app,
        "/v1/metrics/churn?from=2025-11-01&to=2026-01-01&currency=USD"
    );
    // November starts with data on the 10th; January ends after the read model's last day.
    let partial: Vec<(&str, bool)> = usd.json["months"]
        .as_array()
        .expect("months")
        .iter()
        .map(|month| {
            (
                month["month"].as_str().expect("month"),
                month["partial"].as_bool().expect("partial"),
            )
        })
        .collect();
    assert_eq!(
        partial,
        vec![
            ("2025-11-01", true),
            ("2025-12-01", false),
            ("2026-01-01", true)
        ]
    );

    let cohorts = get!(
        app,
        "/v1/metrics/cohorts?currency=USD&from=2025-01-01&to=2026-01-31"
    );
    assert_eq!(cohorts.status, StatusCode::OK, "{}", cohorts.json);
    assert_eq!(
        cohorts.json,
        json!({
            "currency": "USD", "exponent": 2, "from": "2025-01-01", "to": "2026-01-01",
            "cohorts": [{
                "cohort_month": "2025-11-01",
                "months": [
                    {"month": "2025-11-01", "month_index": 0, "partial": true, "customers": 2, "mrr_minor": 15_000},
                    {"month": "2025-12-01", "month_index": 1, "partial": false, "customers": 1, "mrr_minor": 12_000},
                    {"month": "2026-01-01", "month_index": 2, "partial": true, "customers": 2, "mrr_minor": 16_000}
                ]
            }]
        })
    );

    let currencies = get!(app, "/v1/metrics/currencies");
    assert_eq!(
        currencies.json,
        json!({"currencies": [
            {"currency": "JPY", "exponent": 0, "first_day": "2026-01-05", "last_day": "2026-01-06"},
            {"currency": "USD", "exponent": 2, "first_day": "2025-11-10", "last_day": "2026-01-20"}
        ]})
    );
}

#[actix_web::test]
async fn a_missing_read_model_is_a_clear_503() {
    let query = Query::start(Setup {
        revenue: false,
        ..Setup::default()
    })
    .await;
    let app = app!(query);
    let answer = get!(app, "/v1/metrics/summary?currency=USD");
    assert_eq!(
        answer.error(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "read_model_unavailable".into(),
            None
        )
    );
}

/// The real revenue projector from the commands of `TestLedger::send_known_history`: Ada's 2 seats at
/// 49.00 USD from 2026-01-01, Bob's 120,000 JPY a year (cancelling at the period end, so
/// counted until the period ends on 2027-01-01). The read model's data reaches 2027-01-01, so
/// USD's January 2026 is a whole month, not a partial one.
#[actix_web::test]
async fn figures_from_the_real_revenue_projector() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        revenue_projector: true,
        ..Setup::default()
    })
    .await;
    query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    query.revenue_caught_up().await;
    let app = app!(query);
    let usd = get!(app, "/v1/metrics/summary?currency=USD&min_position=8");
    assert_eq!(usd.status, StatusCode::OK, "{}", usd.json);
    assert_eq!(usd.position(), 8);
    assert_eq!(
        (
            &usd.json["at"],
            &usd.json["mrr_minor"],
            &usd.json["arr_minor"],
            &usd.json["arpa_minor"],
            &usd.json["paying_customers"],
            &usd.json["this_month"]["new_minor"],
            &usd.json["last_month"],
        ),
        (
            &json!("2026-01-01"),
            &json!(9_800),
            &json!(117_600),
            &json!(9_800),
            &json!(1),
            &json!(9_800),
            &json!(null)
        )
    );
    assert_eq!(
        usd.json["settings"],
        json!({"churn_recognition": "effective", "past_due_churn_days": null, "discounts": "recurring", "unpaid_subscriptions": "excluded"})
    );
    let yen = get!(app, "/v1/metrics/summary?currency=JPY&at=2026-12-31");
    assert_eq!(
        (
            &yen.json["mrr_minor"],
            &yen.json["arr_minor"],
            &yen.json["exponent"]
        ),
        (&json!(10_000), &json!(120_000), &json!(0))
    );
    let yen = get!(app, "/v1/metrics/summary?currency=JPY");
    assert_eq!(
        (
            &yen.json["at"],
            &yen.json["mrr_minor"],
            &yen.json["this_month"]["churn_minor"]
        ),
        (&json!("2027-01-01"), &json!(0), &json!(-10_000))
    );
    let currencies = get!(app, "/v1/metrics/currencies");
    assert_eq!(
        currencies.json,
        json!({"currencies": [
            {"currency": "JPY", "exponent": 0, "first_day": "2026-01-01", "last_day": "2027-01-01"},
            {"currency": "USD", "exponent": 2, "first_day": "2026-01-01", "last_day": "2026-01-01"}
        ]})
    );
    let cohorts = get!(
        app,
        "/v1/metrics/cohorts?currency=USD&from=2026-01-01&to=2026-01-01"
    );
    assert_eq!(
        cohorts.json["cohorts"],
        json!([{"cohort_month": "2026-01-01", "months": [
            {"month": "2026-01-01", "month_index": 0, "partial": false, "customers": 1, "mrr_minor": 9_800}
        ]}])
    );
    let series = get!(
        app,
        "/v1/metrics/mrr?currency=USD&from=2025-12-31&to=2026-01-02&interval=day"
    );
    assert_eq!(
        points(&series),
        vec![
            ("2025-12-31".into(), "2025-12-31".into(), 0, 0, 0, false),
            (
                "2026-01-01".into(),
                "2026-01-01".into(),
                9_800,
                1,
                9_800,
                false
            ),
            // USD has no event after 01-01, but the read model's data (JPY) runs to 2027-01-01.
            ("2026-01-02".into(), "2026-01-02".into(), 9_800, 1, 0, false),
        ]
    );
}
