//! `/v1/metrics/*`: read model `revenue` (its views are the contract: `settings`,
//! `daily_mrr`, `monthly_churn`, `cohorts`) and `reference.fx_rates`.
//!
//! Each answer reads in one repeatable-read, read-only transaction, so the figures and the
//! checkpoint reported with them come from one snapshot. Amounts are integer minor units of
//! the currency (`exponent` says how many decimals); rates are decimal strings (fractions,
//! `0.05` = 5 %), never floats.

use actix_web::{HttpRequest, HttpResponse, web};
use deadpool_postgres::Transaction;
use serde::Serialize;
use time::{Date, Duration, Month, OffsetDateTime};
use tokio_postgres::IsolationLevel;
use utoipa::ToSchema;

use crate::State;
use crate::error::ApiError;
use crate::handlers::{answer, authorise};
use crate::params::Params;
use crate::positions::Projection;
use ledger_access::Scope;

/// Longest date range an MRR series covers, in days.
const RANGE_DAYS_MAX: i64 = 3_660;
/// Points an MRR series has at most (a daily series covers at most this many days).
const SERIES_POINTS_MAX: usize = 1_000;
/// Months a churn table or a cohort grid covers at most.
const RANGE_MONTHS_MAX: i32 = 120;
/// Default span of an MRR series ending at `to`, in days.
const SERIES_DEFAULT_DAYS: i64 = 365;
/// Default months of a churn table or cohort grid ending at `to`.
const MONTHS_DEFAULT: i32 = 24;

const PROJECTION: &str = "revenue";

fn db(error: tokio_postgres::Error) -> ApiError {
    ApiError::database(&error, PROJECTION)
}

/// A currency with revenue data.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CurrencyRange {
    currency: String,
    /// Decimal places of the minor unit (2 for USD and EUR, 0 for JPY).
    exponent: u8,
    first_day: String,
    last_day: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Currencies {
    currencies: Vec<CurrencyRange>,
}

/// How the revenue read model counts (its settings).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevenueSettings {
    /// `effective` (churn counts when the subscription ends) or `requested`.
    churn_recognition: String,
    /// Days past due after which a subscription counts as churned; null: never.
    past_due_churn_days: Option<i32>,
    /// Discounts subtracted from MRR: none, recurring or all.
    discounts: String,
    /// `excluded` (a subscription never paid counts no MRR while past due) or `counted`.
    unpaid_subscriptions: String,
}

/// MRR movements over a period, in minor units (contraction and churn negative).
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Movements {
    new_minor: i64,
    expansion_minor: i64,
    contraction_minor: i64,
    churn_minor: i64,
    reactivation_minor: i64,
    /// The sum of the five.
    net_new_minor: i64,
}

impl Movements {
    fn add(&mut self, row: &DailyRow) {
        self.new_minor += row.new;
        self.expansion_minor += row.expansion;
        self.contraction_minor += row.contraction;
        self.churn_minor += row.churn;
        self.reactivation_minor += row.reactivation;
        self.net_new_minor +=
            row.new + row.expansion + row.contraction + row.churn + row.reactivation;
    }
}

/// One month of churn figures (`revenue.monthly_churn`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChurnMonth {
    currency: String,
    exponent: u8,
    /// First day of the month.
    month: String,
    paying_customers_start: i64,
    churned_customers: i64,
    mrr_start_minor: i64,
    #[serde(flatten)]
    movements: Movements,
    /// Churned customers / paying customers at the start (decimal string, 6 places).
    customer_churn_rate: Option<String>,
    /// -(churn + contraction) / MRR at the start.
    gross_mrr_churn_rate: Option<String>,
    /// -(churn + contraction - expansion - reactivation) / MRR at the start.
    net_mrr_churn_rate: Option<String>,
    arpa_start_minor: Option<i64>,
    /// Customer lifetime value: ARPA / customer churn rate.
    ltv_minor: Option<i64>,
}

/// Exchange of the headline figures into a reporting currency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Reporting {
    currency: String,
    exponent: u8,
    /// Reporting-currency units per unit of the currency (decimal string).
    rate: String,
    /// The day of the rate used (the latest on or before `at`).
    rate_day: String,
    mrr_minor: i64,
    arr_minor: i64,
}

/// Headline figures of one currency on one day.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Summary {
    currency: String,
    exponent: u8,
    /// The day the figures are for (ISO date): `?at=`, else the last day with data.
    at: String,
    /// False when the read model has no revenue in this currency (every figure is 0).
    has_data: bool,
    mrr_minor: i64,
    arr_minor: i64,
    /// MRR per paying customer; null without paying customers.
    arpa_minor: Option<i64>,
    paying_customers: i64,
    /// First day of `at`'s month: `this_month` covers it through `at`.
    month: String,
    this_month: Movements,
    /// The last complete month before `at`'s month (churn rates, LTV); null when none.
    last_month: Option<ChurnMonth>,
    settings: Option<RevenueSettings>,
    /// With `?reporting_currency=` and a rate on or before `at`.
    reporting: Option<Reporting>,
}

/// One period of an MRR series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MrrPoint {
    period_start: String,
    /// The last day of the period inside the range.
    period_end: String,
    /// MRR at the end of the period.
    mrr_minor: i64,
    arr_minor: i64,
    paying_customers: i64,
    #[serde(flatten)]
    movements: Movements,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MrrSeries {
    currency: String,
    exponent: u8,
    /// day, week (ISO weeks, from Monday) or month.
    interval: String,
    from: String,
    to: String,
    points: Vec<MrrPoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChurnTable {
    from: String,
    to: String,
    /// By currency, then month.
    months: Vec<ChurnMonth>,
}

/// One cell of the cohort grid.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohortMonth {
    month: String,
    /// Months since the cohort month (0 for the cohort month itself).
    month_index: i32,
    /// Cohort customers still paying at the end of the month.
    customers: i64,
    mrr_minor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Cohort {
    /// Month of the customers' first MRR.
    cohort_month: String,
    months: Vec<CohortMonth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohortGrid {
    currency: String,
    exponent: u8,
    from: String,
    to: String,
    cohorts: Vec<Cohort>,
}

/// One row of `revenue.daily_mrr`, amounts in minor units.
#[derive(Debug, Clone, Default)]
struct DailyRow {
    day: Option<Date>,
    mrr: i64,
    arr: i64,
    new: i64,
    expansion: i64,
    contraction: i64,
    churn: i64,
    reactivation: i64,
    paying_customers: i64,
    arpa: Option<i64>,
}

const DAILY_COLUMNS: &str = "d.day, d.mrr::bigint, d.arr::bigint, d.new::bigint, \
    d.expansion::bigint, d.contraction::bigint, d.churn::bigint, d.reactivation::bigint, \
    d.paying_customers::bigint, round(d.arpa)::bigint";

fn daily_row(row: &tokio_postgres::Row) -> Result<DailyRow, ApiError> {
    Ok(DailyRow {
        day: Some(row.try_get(0).map_err(db)?),
        mrr: row.try_get(1).map_err(db)?,
        arr: row.try_get(2).map_err(db)?,
        new: row.try_get(3).map_err(db)?,
        expansion: row.try_get(4).map_err(db)?,
        contraction: row.try_get(5).map_err(db)?,
        churn: row.try_get(6).map_err(db)?,
        reactivation: row.try_get(7).map_err(db)?,
        paying_customers: row.try_get(8).map_err(db)?,
        arpa: row.try_get(9).map_err(db)?,
    })
}

const CHURN_COLUMNS: &str = "c.currency, c.month, c.paying_customers_start::bigint, \
    c.churned_customers::bigint, c.mrr_start::bigint, c.new::bigint, c.expansion::bigint, \
    c.contraction::bigint, c.churn::bigint, c.reactivation::bigint, \
    round(c.customer_churn_rate, 6)::text, round(c.gross_mrr_churn_rate, 6)::text, \
    round(c.net_mrr_churn_rate, 6)::text, round(c.arpa_start)::bigint, round(c.ltv)::bigint";

fn churn_month(row: &tokio_postgres::Row) -> Result<ChurnMonth, ApiError> {
    let currency: String = row.try_get(0).map_err(db)?;
    let new: i64 = row.try_get(5).map_err(db)?;
    let expansion: i64 = row.try_get(6).map_err(db)?;
    let contraction: i64 = row.try_get(7).map_err(db)?;
    let churn: i64 = row.try_get(8).map_err(db)?;
    let reactivation: i64 = row.try_get(9).map_err(db)?;
    Ok(ChurnMonth {
        exponent: exponent(&currency),
        currency,
        month: iso(row.try_get(1).map_err(db)?),
        paying_customers_start: row.try_get(2).map_err(db)?,
        churned_customers: row.try_get(3).map_err(db)?,
        mrr_start_minor: row.try_get(4).map_err(db)?,
        movements: Movements {
            new_minor: new,
            expansion_minor: expansion,
            contraction_minor: contraction,
            churn_minor: churn,
            reactivation_minor: reactivation,
            net_new_minor: new + expansion + contraction + churn + reactivation,
        },
        customer_churn_rate: row.try_get(10).map_err(db)?,
        gross_mrr_churn_rate: row.try_get(11).map_err(db)?,
        net_mrr_churn_rate: row.try_get(12).map_err(db)?,
        arpa_start_minor: row.try_get(13).map_err(db)?,
        ltv_minor: row.try_get(14).map_err(db)?,
    })
}

fn exponent(currency: &str) -> u8 {
    ledger_domain::Currency::parse(currency.trim()).map_or(2, ledger_domain::Currency::exponent)
}

fn iso(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn month_start(date: Date) -> Date {
    date.replace_day(1).unwrap_or(date)
}

/// The first day of the month `months` months after `date`'s month (negative: before).
fn add_months(date: Date, months: i32) -> Date {
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let year = index.div_euclid(12);
    let month = u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1);
    Month::try_from(month)
        .ok()
        .and_then(|month| Date::from_calendar_date(year, month, 1).ok())
        .unwrap_or(date)
}

fn months_between(from: Date, to: Date) -> i32 {
    (to.year() - from.year()) * 12 + i32::from(u8::from(to.month()))
        - i32::from(u8::from(from.month()))
}

/// Starts the snapshot and reads the checkpoint.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<(Transaction<'_>, u64), ApiError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)?;
    let position: Option<i64> = transaction
        .query_opt(
            "SELECT global_position FROM revenue.projector_checkpoint",
            &[],
        )
        .await
        .map_err(db)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(db)?;
    Ok((
        transaction,
        position.map_or(0, |position| u64::try_from(position).unwrap_or(0)),
    ))
}

/// The currency's last day with data, if any.
async fn last_day(transaction: &Transaction<'_>, currency: &str) -> Result<Option<Date>, ApiError> {
    let row = transaction
        .query_one(
            "SELECT max(day) FROM revenue.daily_mrr WHERE currency = $1",
            &[&currency],
        )
        .await
        .map_err(db)?;
    row.try_get(0).map_err(db)
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn required_currency(params: &Params) -> Result<ledger_domain::Currency, ApiError> {
    params
        .currency("currency")?
        .ok_or_else(|| ApiError::bad("currency", "required, e.g. `USD`"))
}

/// The currencies with revenue data and their date ranges (for pickers).
#[utoipa::path(get, path = "/v1/metrics/currencies", tag = "metrics",
    params(("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = Currencies,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn currencies(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(&state, &request, Scope::MetricsRead, &[])?;
    answer(
        &state,
        &request,
        Projection::Revenue,
        &params,
        |mut client| async move {
            let (transaction, position) = snapshot(&mut client).await?;
            let rows = transaction
                .query(
                    "SELECT currency::text, min(day), max(day) FROM revenue.daily_mrr \
                 GROUP BY currency ORDER BY currency",
                    &[],
                )
                .await
                .map_err(db)?;
            let mut currencies = Vec::new();
            for row in rows {
                let currency: String = row.try_get(0).map_err(db)?;
                currencies.push(CurrencyRange {
                    exponent: exponent(&currency),
                    currency,
                    first_day: iso(row.try_get(1).map_err(db)?),
                    last_day: iso(row.try_get(2).map_err(db)?),
                });
            }
            Ok((position, Currencies { currencies }))
        },
    )
    .await
}

/// Headline figures: MRR, ARR, ARPA, paying customers, this month's movements, last month's
/// churn rates and LTV.
#[utoipa::path(get, path = "/v1/metrics/summary", tag = "metrics",
    params(
        ("currency" = String, Query, description = "ISO 4217 code, e.g. USD"),
        ("at" = Option<String>, Query, description = "Day (YYYY-MM-DD); default: the currency's last day with data"),
        ("reporting_currency" = Option<String>, Query, description = "Also convert MRR and ARR with reference.fx_rates"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = Summary,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn summary(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(
        &state,
        &request,
        Scope::MetricsRead,
        &["currency", "at", "reporting_currency"],
    )?;
    let currency = required_currency(&params)?;
    let at = params.date("at")?;
    let reporting_currency = params.currency("reporting_currency")?;
    answer(
        &state,
        &request,
        Projection::Revenue,
        &params,
        |mut client| async move {
            let (transaction, position) = snapshot(&mut client).await?;
            let code = currency.code();
            let last = last_day(&transaction, code).await?;
            let at = at.or(last).unwrap_or_else(today);
            let on_or_before = transaction
                .query_opt(
                    &format!(
                        "SELECT {DAILY_COLUMNS} FROM revenue.daily_mrr d \
                     WHERE d.currency = $1 AND d.day <= $2 ORDER BY d.day DESC LIMIT 1"
                    ),
                    &[&code, &at],
                )
                .await
                .map_err(db)?
                .as_ref()
                .map(daily_row)
                .transpose()?
                .unwrap_or_default();
            let month = month_start(at);
            let mut this_month = Movements::default();
            for row in transaction
                .query(
                    &format!(
                        "SELECT {DAILY_COLUMNS} FROM revenue.daily_mrr d \
                     WHERE d.currency = $1 AND d.day >= $2 AND d.day <= $3 ORDER BY d.day"
                    ),
                    &[&code, &month, &at],
                )
                .await
                .map_err(db)?
            {
                this_month.add(&daily_row(&row)?);
            }
            let last_month = transaction
                .query_opt(
                    &format!(
                        "SELECT {CHURN_COLUMNS} FROM revenue.monthly_churn c \
                     WHERE c.currency = $1 AND c.month = $2"
                    ),
                    &[&code, &add_months(month, -1)],
                )
                .await
                .map_err(db)?
                .as_ref()
                .map(churn_month)
                .transpose()?;
            let settings = transaction
                .query_opt(
                    "SELECT churn_recognition::text, past_due_churn_days::integer, discounts::text, \
                     unpaid_subscriptions::text FROM revenue.settings LIMIT 1",
                    &[],
                )
                .await
                .map_err(db)?
                .map(|row| -> Result<RevenueSettings, ApiError> {
                    Ok(RevenueSettings {
                        churn_recognition: row.try_get(0).map_err(db)?,
                        past_due_churn_days: row.try_get(1).map_err(db)?,
                        discounts: row.try_get(2).map_err(db)?,
                        unpaid_subscriptions: row.try_get(3).map_err(db)?,
                    })
                })
                .transpose()?;
            let reporting = match reporting_currency {
                None => None,
                Some(reporting) => {
                    let shift = i32::from(reporting.exponent()) - i32::from(currency.exponent());
                    transaction
                        .query_opt(
                            "SELECT r.day, r.rate::text, \
                         round($3::bigint * r.rate * power(10::numeric, $4::integer))::bigint, \
                         round($5::bigint * r.rate * power(10::numeric, $4::integer))::bigint \
                         FROM reference.fx_rates r \
                         WHERE r.currency = $1 AND r.reporting_currency = $2 AND r.day <= $6 \
                         ORDER BY r.day DESC LIMIT 1",
                            &[
                                &code,
                                &reporting.code(),
                                &on_or_before.mrr,
                                &shift,
                                &on_or_before.arr,
                                &at,
                            ],
                        )
                        .await
                        .map_err(|error| ApiError::database(&error, "reference"))?
                        .map(|row| -> Result<Reporting, ApiError> {
                            Ok(Reporting {
                                currency: reporting.code().to_owned(),
                                exponent: reporting.exponent(),
                                rate_day: iso(row.try_get(0).map_err(db)?),
                                rate: row.try_get(1).map_err(db)?,
                                mrr_minor: row.try_get(2).map_err(db)?,
                                arr_minor: row.try_get(3).map_err(db)?,
                            })
                        })
                        .transpose()?
                }
            };
            Ok((
                position,
                Summary {
                    currency: code.to_owned(),
                    exponent: currency.exponent(),
                    at: iso(at),
                    has_data: last.is_some(),
                    mrr_minor: on_or_before.mrr,
                    arr_minor: on_or_before.arr,
                    arpa_minor: on_or_before.arpa,
                    paying_customers: on_or_before.paying_customers,
                    month: iso(month),
                    this_month,
                    last_month,
                    settings,
                    reporting,
                },
            ))
        },
    )
    .await
}

/// MRR over time with its movements, by day, ISO week or month.
#[utoipa::path(get, path = "/v1/metrics/mrr", tag = "metrics",
    params(
        ("currency" = String, Query, description = "ISO 4217 code, e.g. USD"),
        ("from" = Option<String>, Query, description = "First day (YYYY-MM-DD); default: 365 days before `to`"),
        ("to" = Option<String>, Query, description = "Last day; default: the currency's last day with data"),
        ("interval" = Option<String>, Query, description = "day, week or month (default month); at most 1000 points and 3660 days"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = MrrSeries,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn mrr(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(
        &state,
        &request,
        Scope::MetricsRead,
        &["currency", "from", "to", "interval"],
    )?;
    let currency = required_currency(&params)?;
    let interval = params
        .choice("interval", &["day", "week", "month"])?
        .unwrap_or("month");
    // Checked before the database is asked, with the defaults resolved afterwards.
    let given_from = params.date("from")?;
    let given_to = params.date("to")?;
    if let (Some(from), Some(to)) = (given_from, given_to) {
        check_series_range(from, to, interval)?;
    }
    answer(
        &state,
        &request,
        Projection::Revenue,
        &params,
        |mut client| async move {
            let (transaction, position) = snapshot(&mut client).await?;
            let code = currency.code();
            let last = last_day(&transaction, code).await?.unwrap_or_else(today);
            let to = given_to.unwrap_or(last);
            let from = given_from.unwrap_or(to - Duration::days(SERIES_DEFAULT_DAYS));
            check_series_range(from, to, interval)?;
            let before = transaction
                .query_opt(
                    &format!(
                        "SELECT {DAILY_COLUMNS} FROM revenue.daily_mrr d \
                     WHERE d.currency = $1 AND d.day < $2 ORDER BY d.day DESC LIMIT 1"
                    ),
                    &[&code, &from],
                )
                .await
                .map_err(db)?
                .as_ref()
                .map(daily_row)
                .transpose()?
                .unwrap_or_default();
            let rows = transaction
                .query(
                    &format!(
                        "SELECT {DAILY_COLUMNS} FROM revenue.daily_mrr d \
                     WHERE d.currency = $1 AND d.day >= $2 AND d.day <= $3 ORDER BY d.day"
                    ),
                    &[&code, &from, &to],
                )
                .await
                .map_err(db)?
                .iter()
                .map(daily_row)
                .collect::<Result<Vec<_>, _>>()?;
            let points = series(&before, &rows, from, to, interval);
            Ok((
                position,
                MrrSeries {
                    currency: code.to_owned(),
                    exponent: currency.exponent(),
                    interval: interval.to_owned(),
                    from: iso(from),
                    to: iso(to),
                    points,
                },
            ))
        },
    )
    .await
}

fn check_series_range(from: Date, to: Date, interval: &str) -> Result<(), ApiError> {
    if from > to {
        return Err(ApiError::bad("from", "must not be after `to`"));
    }
    let days = (to - from).whole_days() + 1;
    if days > RANGE_DAYS_MAX {
        return Err(ApiError::bad(
            "from",
            format!("the range covers {days} days; at most {RANGE_DAYS_MAX}"),
        ));
    }
    let points = match interval {
        "day" => days,
        "week" => days / 7 + 2,
        _ => i64::from(months_between(from, to)) + 1,
    };
    if points > SERIES_POINTS_MAX as i64 {
        return Err(ApiError::bad(
            "interval",
            format!(
                "the range has {points} {interval}s; at most {SERIES_POINTS_MAX} points: use a longer interval or a shorter range"
            ),
        ));
    }
    Ok(())
}

fn period_start(day: Date, interval: &str) -> Date {
    match interval {
        "day" => day,
        "week" => day - Duration::days(i64::from(day.weekday().number_days_from_monday())),
        _ => month_start(day),
    }
}

/// Buckets the days `from..=to`. `before` is the last row before `from` (or zeros); a day
/// without a row carries the previous row's MRR with no movements.
fn series(
    before: &DailyRow,
    rows: &[DailyRow],
    from: Date,
    to: Date,
    interval: &str,
) -> Vec<MrrPoint> {
    let mut points: Vec<MrrPoint> = Vec::new();
    let mut current = before.clone();
    let mut rows = rows.iter().peekable();
    let mut day = from;
    loop {
        let start = period_start(day, interval).max(from);
        if points
            .last()
            .is_none_or(|point| point.period_start != iso(start))
        {
            points.push(MrrPoint {
                period_start: iso(start),
                period_end: iso(day),
                mrr_minor: current.mrr,
                arr_minor: current.arr,
                paying_customers: current.paying_customers,
                movements: Movements::default(),
            });
        }
        let Some(point) = points.last_mut() else {
            break;
        };
        if let Some(row) = rows.next_if(|row| row.day == Some(day)) {
            point.movements.add(row);
            current = row.clone();
        }
        point.period_end = iso(day);
        point.mrr_minor = current.mrr;
        point.arr_minor = current.arr;
        point.paying_customers = current.paying_customers;
        match day.next_day() {
            Some(next) if next <= to => day = next,
            _ => break,
        }
    }
    points
}

/// Churn by month: customers and MRR lost, rates, ARPA and LTV.
#[utoipa::path(get, path = "/v1/metrics/churn", tag = "metrics",
    params(
        ("from" = Option<String>, Query, description = "A day of the first month (YYYY-MM-DD); default: 23 months before `to`"),
        ("to" = Option<String>, Query, description = "A day of the last month; default: the last day with data; at most 120 months"),
        ("currency" = Option<String>, Query, description = "Only this currency; default: every currency"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = ChurnTable,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn churn(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(
        &state,
        &request,
        Scope::MetricsRead,
        &["from", "to", "currency"],
    )?;
    let currency = params.currency("currency")?;
    let (given_from, given_to) = given_months(&params)?;
    answer(&state, &request, Projection::Revenue, &params, |mut client| async move {
        let (transaction, position) = snapshot(&mut client).await?;
        let code = currency.map(|currency| currency.code());
        let last: Option<Date> = transaction
            .query_one(
                "SELECT max(day) FROM revenue.daily_mrr WHERE ($1::text IS NULL OR currency = $1)",
                &[&code],
            )
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let (from, to) = month_range(given_from, given_to, last.unwrap_or_else(today))?;
        let rows = transaction
            .query(
                &format!(
                    "SELECT {CHURN_COLUMNS} FROM revenue.monthly_churn c \
                     WHERE ($1::text IS NULL OR c.currency = $1) AND c.month >= $2 AND c.month <= $3 \
                     ORDER BY c.currency, c.month"
                ),
                &[&code, &from, &to],
            )
            .await
            .map_err(db)?;
        let months = rows.iter().map(churn_month).collect::<Result<Vec<_>, _>>()?;
        Ok((
            position,
            ChurnTable {
                from: iso(from),
                to: iso(to),
                months,
            },
        ))
    })
    .await
}

/// The first days of the months of `from` and `to`; `to` defaults to `last` (the last day with
/// data), `from` to 23 months before `to`.
fn month_range(from: Option<Date>, to: Option<Date>, last: Date) -> Result<(Date, Date), ApiError> {
    let to = month_start(to.unwrap_or(last));
    let from = month_start(from.unwrap_or_else(|| add_months(to, 1 - MONTHS_DEFAULT)));
    if from > to {
        return Err(ApiError::bad("from", "must not be after `to`"));
    }
    let months = months_between(from, to) + 1;
    if months > RANGE_MONTHS_MAX {
        return Err(ApiError::bad(
            "from",
            format!("the range covers {months} months; at most {RANGE_MONTHS_MAX}"),
        ));
    }
    Ok((from, to))
}

/// `?from=` and `?to=`, checked at once when both are given.
fn given_months(params: &Params) -> Result<(Option<Date>, Option<Date>), ApiError> {
    let from = params.date("from")?;
    let to = params.date("to")?;
    if let (Some(from), Some(to)) = (from, to) {
        month_range(Some(from), Some(to), to)?;
    }
    Ok((from, to))
}

/// Cohort retention: per cohort (month of first MRR), customers still paying and their MRR
/// at the end of each later month.
#[utoipa::path(get, path = "/v1/metrics/cohorts", tag = "metrics",
    params(
        ("currency" = String, Query, description = "ISO 4217 code, e.g. USD"),
        ("from" = Option<String>, Query, description = "A day of the first cohort month; default: 23 months before `to`"),
        ("to" = Option<String>, Query, description = "A day of the last cohort month; default: the last day with data; at most 120 months"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = CohortGrid,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn cohorts(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(
        &state,
        &request,
        Scope::MetricsRead,
        &["from", "to", "currency"],
    )?;
    let currency = required_currency(&params)?;
    let (given_from, given_to) = given_months(&params)?;
    answer(
        &state,
        &request,
        Projection::Revenue,
        &params,
        |mut client| async move {
            let (transaction, position) = snapshot(&mut client).await?;
            let last = last_day(&transaction, currency.code()).await?;
            let (from, to) = month_range(given_from, given_to, last.unwrap_or_else(today))?;
            let rows = transaction
                .query(
                    "SELECT c.cohort_month, c.month, c.customers::bigint, c.mrr::bigint \
                 FROM revenue.cohorts c \
                 WHERE c.currency = $1 AND c.cohort_month >= $2 AND c.cohort_month <= $3 \
                 ORDER BY c.cohort_month, c.month",
                    &[&currency.code(), &from, &to],
                )
                .await
                .map_err(db)?;
            let mut cohorts: Vec<Cohort> = Vec::new();
            for row in rows {
                let cohort_month: Date = row.try_get(0).map_err(db)?;
                let month: Date = row.try_get(1).map_err(db)?;
                if cohorts
                    .last()
                    .is_none_or(|cohort| cohort.cohort_month != iso(cohort_month))
                {
                    cohorts.push(Cohort {
                        cohort_month: iso(cohort_month),
                        months: Vec::new(),
                    });
                }
                if let Some(cohort) = cohorts.last_mut() {
                    cohort.months.push(CohortMonth {
                        month: iso(month),
                        month_index: months_between(cohort_month, month),
                        customers: row.try_get(2).map_err(db)?,
                        mrr_minor: row.try_get(3).map_err(db)?,
                    });
                }
            }
            Ok((
                position,
                CohortGrid {
                    currency: currency.code().to_owned(),
                    exponent: currency.exponent(),
                    from: iso(from),
                    to: iso(to),
                    cohorts,
                },
            ))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn row(day: Date, mrr: i64, new: i64, churn: i64) -> DailyRow {
        DailyRow {
            day: Some(day),
            mrr,
            arr: mrr * 12,
            new,
            churn,
            paying_customers: 1,
            ..DailyRow::default()
        }
    }

    #[test]
    fn weekly_series_carries_mrr_and_sums_movements() {
        let before = row(date!(2026 - 01 - 02), 1_000, 1_000, 0);
        let rows = [
            row(date!(2026 - 01 - 06), 3_000, 2_000, 0),
            row(date!(2026 - 01 - 13), 2_500, 0, -500),
        ];
        // 2026-01-05 is a Monday.
        let points = series(
            &before,
            &rows,
            date!(2026 - 01 - 03),
            date!(2026 - 01 - 14),
            "week",
        );
        let summary: Vec<(String, String, i64, i64, i64)> = points
            .iter()
            .map(|point| {
                (
                    point.period_start.clone(),
                    point.period_end.clone(),
                    point.mrr_minor,
                    point.movements.new_minor,
                    point.movements.churn_minor,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("2026-01-03".into(), "2026-01-04".into(), 1_000, 0, 0),
                ("2026-01-05".into(), "2026-01-11".into(), 3_000, 2_000, 0),
                ("2026-01-12".into(), "2026-01-14".into(), 2_500, 0, -500),
            ]
        );
    }

    #[test]
    fn months_arithmetic() {
        assert_eq!(add_months(date!(2026 - 01 - 31), -1), date!(2025 - 12 - 01));
        assert_eq!(add_months(date!(2026 - 12 - 15), 1), date!(2027 - 01 - 01));
        assert_eq!(
            months_between(date!(2025 - 11 - 01), date!(2026 - 02 - 01)),
            3
        );
    }
}
