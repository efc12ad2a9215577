//! Issue 11: amounts past `i64` are answered exactly, a data error is not an outage, and over a
//! generated multi-month history every endpoint reports the same monthly movements, whose net
//! is the change in MRR.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use ledger_devenv::history::{self, Rng, Shape};
use ledger_domain::proto::{self, command::Kind};
use ledger_projector::ProjectorConfig;
use ledger_testkit::commands::{command, money, register};
use projector_revenue::{RevenueProjector, RevenueSettings};
use serde::Deserialize;
use serde_json::json;
use time::{Date, Duration};

use crate::{Query, Setup, app, get};

/// The largest accepted period amount, `ledger_domain::limits::AMOUNT_MINOR_MAX`.
const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;

/// The headline figures, parsed as exact integers.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Headline {
    mrr_minor: i128,
    arr_minor: i128,
    arpa_minor: Option<i128>,
    paying_customers: i64,
}

/// 10 customers with 31 daily subscriptions each at the largest accepted price: 310 x 10^15 x
/// 365 / 12 minor units of MRR, past `i64::MAX` (9,223,372,036,854,775,807), and ARR past
/// `u64::MAX`.
#[actix_web::test]
async fn sums_past_i64_are_exact_on_every_endpoint() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        revenue_projector: true,
        ..Setup::default()
    })
    .await;
    let client = query.ledger.client();
    let mut last_customer = String::new();
    for customer in 0..10 {
        let accepted = client
            .send(&register(
                &format!("c{customer}"),
                &format!("c{customer}@example.com"),
            ))
            .await
            .expect("registered");
        last_customer = accepted.customer_id;
        for subscription in 0..31 {
            let start = command(
                &format!("c{customer}-s{subscription}"),
                &last_customer,
                Kind::StartSubscription(proto::SubscriptionStarted {
                    subscription_id: format!("sub_{subscription}"),
                    plan: Some(proto::Plan {
                        plan_id: "daily-max".to_owned(),
                        unit_price: Some(money(AMOUNT_MINOR_MAX, "USD")),
                        interval: proto::BillingInterval::Day as i32,
                        interval_count: 1,
                    }),
                    quantity: 1,
                    trial_end_unix_seconds: None,
                    current_period_end_unix_seconds: 1_767_312_000,
                    discount: None,
                }),
            );
            client.send(&start).await.expect("started");
        }
    }
    query.customers_caught_up().await;
    query.revenue_caught_up().await;
    let app = app!(query);
    // 310 x 10^15 x 365 / 12 = 9,429,166,666,666,666,666.67; ARR 12 x that, exactly.
    let expected = Headline {
        mrr_minor: 9_429_166_666_666_666_667,
        arr_minor: 113_150_000_000_000_000_000,
        arpa_minor: Some(942_916_666_666_666_667),
        paying_customers: 10,
    };
    let summary = get!(app, "/v1/metrics/summary?currency=USD");
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    let headline: Headline = serde_json::from_str(&summary.body).expect("summary");
    assert_eq!(headline, expected);
    #[derive(Deserialize)]
    struct Movements {
        new_minor: i128,
        net_new_minor: i128,
    }
    #[derive(Deserialize)]
    struct Summary {
        this_month: Movements,
    }
    let this_month = serde_json::from_str::<Summary>(&summary.body)
        .expect("summary")
        .this_month;
    assert_eq!(
        (this_month.new_minor, this_month.net_new_minor),
        (9_429_166_666_666_666_667, 9_429_166_666_666_666_667)
    );

    #[derive(Deserialize)]
    struct Point {
        mrr_minor: i128,
        arr_minor: i128,
        new_minor: i128,
    }
    #[derive(Deserialize)]
    struct Series {
        points: Vec<Point>,
    }
    let series = get!(
        app,
        "/v1/metrics/mrr?currency=USD&from=2026-01-01&to=2026-01-01&interval=day"
    );
    assert_eq!(series.status, StatusCode::OK, "{}", series.body);
    let points = serde_json::from_str::<Series>(&series.body)
        .expect("series")
        .points;
    assert_eq!(
        points
            .iter()
            .map(|point| (point.mrr_minor, point.arr_minor, point.new_minor))
            .collect::<Vec<_>>(),
        vec![(
            9_429_166_666_666_666_667,
            113_150_000_000_000_000_000,
            9_429_166_666_666_666_667
        )]
    );
    let cohorts = get!(app, "/v1/metrics/cohorts?currency=USD");
    assert_eq!(cohorts.status, StatusCode::OK, "{}", cohorts.body);
    assert!(
        cohorts.body.contains("\"mrr_minor\":9429166666666666667"),
        "{}",
        cohorts.body
    );
    // One customer's 31 subscriptions: a sum of MRR units, not of fractions whose
    // denominators multiply (12^31 overflows i128).
    let customer = get!(app, &format!("/v1/customers/{last_customer}"));
    assert_eq!(customer.status, StatusCode::OK, "{}", customer.body);
    assert_eq!(
        customer.json["mrr_minor"],
        json!(942_916_666_666_666_667_u64)
    );
}

#[actix_web::test]
async fn a_value_the_answer_cannot_hold_is_a_data_error_not_an_outage() {
    let query = Query::start(Setup::default()).await;
    query
        .ledger
        .database()
        .client()
        .await
        .batch_execute("UPDATE revenue.daily_mrr SET mrr_units = 1e40 WHERE currency = 'JPY'")
        .await
        .expect("an MRR beyond i128");
    let app = app!(query);
    let answer = get!(app, "/v1/metrics/summary?currency=JPY");
    assert_eq!(
        answer.error(),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "read_model_data_error".into(),
            None
        )
    );
    assert_eq!(
        answer.json["error"]["details"],
        json!({"projection": "revenue"})
    );
    // Other currencies are unaffected.
    let usd = get!(app, "/v1/metrics/summary?currency=USD");
    assert_eq!(usd.status, StatusCode::OK, "{}", usd.body);
}

/// A period's movements as every endpoint shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MonthFigures {
    partial: bool,
    movements: [i64; 6],
}

fn figures(value: &serde_json::Value) -> MonthFigures {
    let minor = |name: &str| {
        value[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} in {value}"))
    };
    MonthFigures {
        partial: value["partial"]
            .as_bool()
            .unwrap_or_else(|| panic!("partial in {value}")),
        movements: [
            minor("new_minor"),
            minor("expansion_minor"),
            minor("contraction_minor"),
            minor("churn_minor"),
            minor("reactivation_minor"),
            minor("net_new_minor"),
        ],
    }
}

fn date(text: &str) -> Date {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .expect("a date")
}

fn month_end(month: Date) -> Date {
    let next = if month.month() == time::Month::December {
        Date::from_calendar_date(month.year() + 1, time::Month::January, 1)
    } else {
        Date::from_calendar_date(month.year(), month.month().next(), 1)
    };
    next.expect("a month") - Duration::days(1)
}

/// For every currency and month of a generated 120-customer history (late events included):
/// `/v1/metrics/mrr`, the summary's `this_month` and `/v1/metrics/churn` report the same
/// movements and the same `partial`, and the net of each month is the change in MRR between
/// month ends (the MRR the series and the summary report).
#[actix_web::test]
async fn monthly_movements_agree_on_every_endpoint_and_add_up_to_the_mrr() {
    let query = Query::start(Setup {
        revenue: false,
        ..Setup::default()
    })
    .await;
    let mut rng = Rng::new(11);
    let generated = history::generate(
        &mut rng,
        Shape {
            customers: 120,
            steps: 140,
            late_percent: 10,
        },
    );
    let writer = query.ledger.store.writer().await.expect("writer lock");
    let requests: Vec<_> = generated.into_iter().map(|one| one.request).collect();
    for chunk in requests.chunks(500) {
        for outcome in writer.append(chunk.to_vec()).await.expect("append") {
            outcome.expect("appended");
        }
    }
    drop(writer);
    // Started after the appends: it replays them from the table.
    let _projector = query
        .ledger
        .start_projector(
            RevenueProjector::new(query.ledger.store.clone(), RevenueSettings::default()),
            ProjectorConfig::default(),
            false,
        )
        .await;
    query.revenue_caught_up().await;
    let app = app!(query);
    let currencies = get!(app, "/v1/metrics/currencies");
    let mut months_checked = 0;
    for range in currencies.json["currencies"]
        .as_array()
        .expect("currencies")
    {
        let currency = range["currency"].as_str().expect("currency");
        let first = date(range["first_day"].as_str().expect("first day"));
        let last = date(range["last_day"].as_str().expect("last day"));
        let from = first.replace_day(1).expect("first month");
        let to = month_end(last);
        let series = get!(
            app,
            &format!("/v1/metrics/mrr?currency={currency}&from={from}&to={to}&interval=month")
        );
        assert_eq!(series.status, StatusCode::OK, "{}", series.body);
        let churn = get!(
            app,
            &format!("/v1/metrics/churn?currency={currency}&from={from}&to={to}")
        );
        assert_eq!(churn.status, StatusCode::OK, "{}", churn.body);
        let churn_months: BTreeMap<String, &serde_json::Value> = churn.json["months"]
            .as_array()
            .expect("months")
            .iter()
            .map(|month| (month["month"].as_str().expect("month").to_owned(), month))
            .collect();
        let mut mrr_before = 0;
        for point in series.json["points"].as_array().expect("points") {
            let month = point["period_start"].as_str().expect("start").to_owned();
            let in_series = figures(point);
            let churn_month = churn_months
                .get(&month)
                .unwrap_or_else(|| panic!("{currency} {month} in the churn table"));
            let summary = get!(
                app,
                &format!(
                    "/v1/metrics/summary?currency={currency}&at={}",
                    point["period_end"].as_str().expect("end")
                )
            );
            assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
            assert_eq!(
                (figures(churn_month), figures(&summary.json["this_month"])),
                (in_series.clone(), in_series.clone()),
                "{currency} {month}: churn and summary against the series"
            );
            let mrr = point["mrr_minor"].as_i64().expect("mrr");
            assert_eq!(
                (
                    churn_month["mrr_start_minor"].as_i64(),
                    summary.json["mrr_minor"].as_i64()
                ),
                (Some(mrr_before), Some(mrr)),
                "{currency} {month}: MRR at the month's start and end"
            );
            assert_eq!(
                in_series.movements[5],
                mrr - mrr_before,
                "{currency} {month}: the net is the change in MRR"
            );
            mrr_before = mrr;
            months_checked += 1;
        }
    }
    // Five currencies over about eight months each.
    assert!(months_checked >= 30, "{months_checked} months checked");
}
