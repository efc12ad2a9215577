//! `/v1/metrics/*`: read model `revenue` (its views are the contract: `settings`,
//! `daily_mrr`, `monthly_churn`, `cohorts`) and `reference.fx_rates`.
//!
//! Each answer reads in one repeatable-read, read-only transaction, so the figures and the
//! checkpoint reported with them come from one snapshot. Amounts are integer minor units of
//! the currency (`exponent` says how many decimals), exact: read as `numeric` text into `i128`
//! (a sum over many customers may pass `i64`) and answered as JSON integers; movements are sums
//! of exact MRR units rounded once. Rates are decimal strings (fractions, `0.05` = 5 %), never
//! floats. Every period carries `partial` (see [`Coverage`]).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use deadpool_postgres::Transaction;
use ledger_domain::minor_of_units;
use serde::{Deserialize, Serialize};
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

/// MRR movements over a period, in minor units (contraction and churn negative): each the
/// exact sum of the period's movements in MRR units, rounded once (half away from zero).
#[derive(Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Movements {
    #[schema(value_type = i64)]
    new_minor: i128,
    #[schema(value_type = i64)]
    expansion_minor: i128,
    #[schema(value_type = i64)]
    contraction_minor: i128,
    #[schema(value_type = i64)]
    churn_minor: i128,
    #[schema(value_type = i64)]
    reactivation_minor: i128,
    /// MRR at the period's end minus MRR at its start (each rounded as shown), so that the
    /// periods of a series add up to the MRR; it may differ from the sum of the five rounded
    /// movements by a minor unit or two.
    #[schema(value_type = i64)]
    net_new_minor: i128,
}

/// Movements of a period in exact MRR units, by kind, in the order of [`Movements`].
type MovementUnits = [i128; 5];

impl Movements {
    /// `units` summed over the period, which starts with MRR `mrr_start_units`.
    fn of(mrr_start_units: i128, units: MovementUnits) -> Movements {
        let [new, expansion, contraction, churn, reactivation] = units.map(minor_of_units);
        let mrr_end_units = mrr_start_units + units.iter().sum::<i128>();
        Movements {
            new_minor: new,
            expansion_minor: expansion,
            contraction_minor: contraction,
            churn_minor: churn,
            reactivation_minor: reactivation,
            net_new_minor: minor_of_units(mrr_end_units) - minor_of_units(mrr_start_units),
        }
    }
}

/// One month of churn figures (`revenue.monthly_churn`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChurnMonth {
    currency: String,
    exponent: u8,
    /// First day of the month.
    month: String,
    /// The month is not covered whole: the currency's first month with data not starting on
    /// its first day, or the month in progress (see `docs/metrics.md`).
    partial: bool,
    paying_customers_start: i64,
    churned_customers: i64,
    #[schema(value_type = i64)]
    mrr_start_minor: i128,
    #[serde(flatten)]
    movements: Movements,
    /// Churned customers / paying customers at the start (decimal string, 6 places).
    customer_churn_rate: Option<String>,
    /// -(churn + contraction) / MRR at the start.
    gross_mrr_churn_rate: Option<String>,
    /// -(churn + contraction - expansion - reactivation) / MRR at the start.
    net_mrr_churn_rate: Option<String>,
    #[schema(value_type = Option<i64>)]
    arpa_start_minor: Option<i128>,
    /// Customer lifetime value: ARPA / customer churn rate.
    #[schema(value_type = Option<i64>)]
    ltv_minor: Option<i128>,
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
    #[schema(value_type = i64)]
    mrr_minor: i128,
    #[schema(value_type = i64)]
    arr_minor: i128,
}

/// A month's movements so far.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MonthMovements {
    /// The month is not covered whole: `at` is before its last day, it is the currency's first
    /// month with data not starting on its first day, or it is in progress.
    partial: bool,
    #[serde(flatten)]
    movements: Movements,
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
    #[schema(value_type = i64)]
    mrr_minor: i128,
    #[schema(value_type = i64)]
    arr_minor: i128,
    /// MRR per paying customer; null without paying customers.
    #[schema(value_type = Option<i64>)]
    arpa_minor: Option<i128>,
    paying_customers: i64,
    /// First day of `at`'s month: `this_month` covers it through `at`.
    month: String,
    this_month: MonthMovements,
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
    /// The period is not covered whole: clipped by the range, the currency's first period
    /// with data not starting on its first day, or in progress (see `docs/metrics.md`).
    partial: bool,
    /// MRR at the end of the period.
    #[schema(value_type = i64)]
    mrr_minor: i128,
    #[schema(value_type = i64)]
    arr_minor: i128,
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
    /// The month is not covered whole (the currency's first month with data not starting on
    /// its first day, or the month in progress).
    partial: bool,
    /// Cohort customers still paying at the end of the month.
    customers: i64,
    #[schema(value_type = i64)]
    mrr_minor: i128,
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

/// One row of `revenue.daily_mrr`: MRR and movements in exact MRR units.
#[derive(Debug, Clone, Default)]
struct DailyRow {
    day: Option<Date>,
    mrr_units: i128,
    movement_units: MovementUnits,
    paying_customers: i64,
    /// Minor units, rounded by the view.
    arpa: Option<i128>,
}

impl DailyRow {
    fn mrr_minor(&self) -> i128 {
        minor_of_units(self.mrr_units)
    }

    /// 12 x MRR, rounded once.
    fn arr_minor(&self) -> i128 {
        minor_of_units(12 * self.mrr_units)
    }
}

const DAILY_COLUMNS: &str = "d.day, d.mrr_units::text, d.new_units::text, \
    d.expansion_units::text, d.contraction_units::text, d.churn_units::text, \
    d.reactivation_units::text, d.paying_customers::bigint, round(d.arpa)::text";

/// An exact integer the query selected as `numeric::text` (amounts, MRR units).
fn integer(row: &tokio_postgres::Row, index: usize) -> Result<i128, ApiError> {
    let text: String = row.try_get(index).map_err(db)?;
    parse_integer(&text)
}

/// [`integer`] of a nullable column.
fn optional_integer(row: &tokio_postgres::Row, index: usize) -> Result<Option<i128>, ApiError> {
    let text: Option<String> = row.try_get(index).map_err(db)?;
    text.as_deref().map(parse_integer).transpose()
}

fn parse_integer(text: &str) -> Result<i128, ApiError> {
    text.parse().map_err(|_| {
        tracing::error!(value = text, "read model holds an amount beyond i128");
        ApiError::ReadModelData {
            projection: PROJECTION,
        }
    })
}

fn movement_units(row: &tokio_postgres::Row, first: usize) -> Result<MovementUnits, ApiError> {
    Ok([
        integer(row, first)?,
        integer(row, first + 1)?,
        integer(row, first + 2)?,
        integer(row, first + 3)?,
        integer(row, first + 4)?,
    ])
}

fn daily_row(row: &tokio_postgres::Row) -> Result<DailyRow, ApiError> {
    Ok(DailyRow {
        day: Some(row.try_get(0).map_err(db)?),
        mrr_units: integer(row, 1)?,
        movement_units: movement_units(row, 2)?,
        paying_customers: row.try_get(7).map_err(db)?,
        arpa: optional_integer(row, 8)?,
    })
}

const CHURN_COLUMNS: &str = "c.currency, c.month, c.paying_customers_start::bigint, \
    c.churned_customers::bigint, c.mrr_start_units::text, c.new_units::text, \
    c.expansion_units::text, c.contraction_units::text, c.churn_units::text, \
    c.reactivation_units::text, \
    round(c.customer_churn_rate, 6)::text, round(c.gross_mrr_churn_rate, 6)::text, \
    round(c.net_mrr_churn_rate, 6)::text, round(c.arpa_start)::text, round(c.ltv)::text";

fn churn_month(row: &tokio_postgres::Row, coverage: &Coverage) -> Result<ChurnMonth, ApiError> {
    let currency: String = row.try_get(0).map_err(db)?;
    let month: Date = row.try_get(1).map_err(db)?;
    let mrr_start_units = integer(row, 4)?;
    Ok(ChurnMonth {
        exponent: exponent(&currency),
        partial: coverage.partial(&currency, month, month_end(month)),
        currency,
        month: iso(month),
        paying_customers_start: row.try_get(2).map_err(db)?,
        churned_customers: row.try_get(3).map_err(db)?,
        mrr_start_minor: minor_of_units(mrr_start_units),
        movements: Movements::of(mrr_start_units, movement_units(row, 5)?),
        customer_churn_rate: row.try_get(10).map_err(db)?,
        gross_mrr_churn_rate: row.try_get(11).map_err(db)?,
        net_mrr_churn_rate: row.try_get(12).map_err(db)?,
        arpa_start_minor: optional_integer(row, 13)?,
        ltv_minor: optional_integer(row, 14)?,
    })
}

/// The days the revenue read model covers: per currency its first and last day with data,
/// and today. A period `start..=end` is partial when the currency's first day with data falls
/// inside it after its start, when it ends after the read model's last day (of any currency),
/// or when it is in progress (ends today or later).
#[derive(Debug)]
struct Coverage {
    days: BTreeMap<String, (Date, Date)>,
    today: Date,
}

impl Coverage {
    async fn read(transaction: &Transaction<'_>) -> Result<Coverage, ApiError> {
        let rows = transaction
            .query(
                "SELECT currency::text, min(day), max(day) FROM revenue.daily_mrr \
                 GROUP BY currency ORDER BY currency",
                &[],
            )
            .await
            .map_err(db)?;
        let mut days = BTreeMap::new();
        for row in rows {
            days.insert(
                row.try_get(0).map_err(db)?,
                (row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?),
            );
        }
        Ok(Coverage {
            days,
            today: today(),
        })
    }

    /// The currency's first and last day with data.
    fn of(&self, currency: &str) -> Option<(Date, Date)> {
        self.days.get(currency).copied()
    }

    /// The read model's last day with data, in any currency.
    fn last_day(&self) -> Option<Date> {
        self.days.values().map(|(_, last)| *last).max()
    }

    fn partial(&self, currency: &str, start: Date, end: Date) -> bool {
        let starts_inside = self
            .of(currency)
            .is_some_and(|(first, _)| start < first && first <= end);
        let after_data = self.last_day().is_some_and(|last| end > last);
        starts_inside || after_data || end >= self.today
    }
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

/// The last day of `date`'s month.
fn month_end(date: Date) -> Date {
    add_months(date, 1).previous_day().unwrap_or(date)
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
            let currencies = Coverage::read(&transaction)
                .await?
                .days
                .into_iter()
                .map(|(currency, (first_day, last_day))| CurrencyRange {
                    exponent: exponent(&currency),
                    currency,
                    first_day: iso(first_day),
                    last_day: iso(last_day),
                })
                .collect();
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
            let coverage = Coverage::read(&transaction).await?;
            let last = coverage.of(code).map(|(_, last)| last);
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
            let mut month_units = MovementUnits::default();
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
                let row = daily_row(&row)?;
                for (sum, units) in month_units.iter_mut().zip(row.movement_units) {
                    *sum += units;
                }
            }
            // MRR before the month: at `at` less the month's movements through `at`.
            let month_start_units = on_or_before.mrr_units - month_units.iter().sum::<i128>();
            let this_month = MonthMovements {
                partial: at < month_end(month) || coverage.partial(code, month, at),
                movements: Movements::of(month_start_units, month_units),
            };
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
                .map(|row| churn_month(row, &coverage))
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
                         round($3::text::numeric * r.rate * power(10::numeric, $4::integer))::text, \
                         round($5::text::numeric * r.rate * power(10::numeric, $4::integer))::text \
                         FROM reference.fx_rates r \
                         WHERE r.currency = $1 AND r.reporting_currency = $2 AND r.day <= $6 \
                         ORDER BY r.day DESC LIMIT 1",
                            &[
                                &code,
                                &reporting.code(),
                                &on_or_before.mrr_minor().to_string(),
                                &shift,
                                &on_or_before.arr_minor().to_string(),
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
                                mrr_minor: integer(&row, 2)?,
                                arr_minor: integer(&row, 3)?,
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
                    mrr_minor: on_or_before.mrr_minor(),
                    arr_minor: on_or_before.arr_minor(),
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
            let coverage = Coverage::read(&transaction).await?;
            let last = coverage.of(code).map_or_else(today, |(_, last)| last);
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
            let points = series(&before, &rows, from, to, interval, |start, end| {
                coverage.partial(code, start, end)
            });
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

/// The last day of the period starting on `start`.
fn period_end(start: Date, interval: &str) -> Date {
    match interval {
        "day" => start,
        "week" => start + Duration::days(6),
        _ => month_end(start),
    }
}

/// A period of a series being summed.
struct Bucket {
    /// The period's first day (before the range's start when the range clips it).
    start: Date,
    /// Its last day so far.
    end: Date,
    mrr_start_units: i128,
    units: MovementUnits,
    /// The last row on or before `end`.
    last: DailyRow,
}

/// Buckets the days `from..=to`. `before` is the last row before `from` (or zeros); a day
/// without a row carries the previous row's MRR with no movements. Movements are summed in
/// MRR units and rounded once per period. `partial(start, end)` says whether a whole period
/// is partial; a period the range clips is partial too.
fn series(
    before: &DailyRow,
    rows: &[DailyRow],
    from: Date,
    to: Date,
    interval: &str,
    partial: impl Fn(Date, Date) -> bool,
) -> Vec<MrrPoint> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut current = before.clone();
    let mut rows = rows.iter().peekable();
    let mut day = from;
    loop {
        let start = period_start(day, interval);
        if buckets.last().is_none_or(|bucket| bucket.start != start) {
            buckets.push(Bucket {
                start,
                end: day,
                mrr_start_units: current.mrr_units,
                units: MovementUnits::default(),
                last: current.clone(),
            });
        }
        let Some(bucket) = buckets.last_mut() else {
            break;
        };
        if let Some(row) = rows.next_if(|row| row.day == Some(day)) {
            for (sum, units) in bucket.units.iter_mut().zip(row.movement_units) {
                *sum += units;
            }
            current = row.clone();
            bucket.last = row.clone();
        }
        bucket.end = day;
        match day.next_day() {
            Some(next) if next <= to => day = next,
            _ => break,
        }
    }
    buckets
        .into_iter()
        .map(|bucket| {
            let shown_start = bucket.start.max(from);
            let whole_end = period_end(bucket.start, interval);
            MrrPoint {
                period_start: iso(shown_start),
                period_end: iso(bucket.end),
                partial: shown_start != bucket.start
                    || bucket.end != whole_end
                    || partial(bucket.start, whole_end),
                mrr_minor: bucket.last.mrr_minor(),
                arr_minor: bucket.last.arr_minor(),
                paying_customers: bucket.last.paying_customers,
                movements: Movements::of(bucket.mrr_start_units, bucket.units),
            }
        })
        .collect()
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
        let coverage = Coverage::read(&transaction).await?;
        let last = match code {
            Some(code) => coverage.of(code).map(|(_, last)| last),
            None => coverage.last_day(),
        };
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
        let months = rows
            .iter()
            .map(|row| churn_month(row, &coverage))
            .collect::<Result<Vec<_>, _>>()?;
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
            let coverage = Coverage::read(&transaction).await?;
            let last = coverage.of(currency.code()).map(|(_, last)| last);
            let (from, to) = month_range(given_from, given_to, last.unwrap_or_else(today))?;
            let rows = transaction
                .query(
                    "SELECT c.cohort_month, c.month, c.customers::bigint, c.mrr_units::text \
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
                        partial: coverage.partial(currency.code(), month, month_end(month)),
                        customers: row.try_get(2).map_err(db)?,
                        mrr_minor: minor_of_units(integer(&row, 3)?),
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

    use ledger_domain::MRR_UNITS_PER_MINOR;

    use super::*;

    const UNITS: i128 = MRR_UNITS_PER_MINOR;

    /// A day with MRR, a new and a churn movement, in minor units.
    fn row(day: Date, mrr: i128, new: i128, churn: i128) -> DailyRow {
        DailyRow {
            day: Some(day),
            mrr_units: mrr * UNITS,
            movement_units: [new * UNITS, 0, 0, churn * UNITS, 0],
            paying_customers: 1,
            arpa: None,
        }
    }

    #[test]
    fn weekly_series_carries_mrr_sums_movements_and_marks_clipped_weeks() {
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
            |_, _| false,
        );
        let summary: Vec<(String, String, bool, i128, i128, i128, i128)> = points
            .iter()
            .map(|point| {
                (
                    point.period_start.clone(),
                    point.period_end.clone(),
                    point.partial,
                    point.mrr_minor,
                    point.movements.new_minor,
                    point.movements.churn_minor,
                    point.movements.net_new_minor,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "2026-01-03".into(),
                    "2026-01-04".into(),
                    true,
                    1_000,
                    0,
                    0,
                    0
                ),
                (
                    "2026-01-05".into(),
                    "2026-01-11".into(),
                    false,
                    3_000,
                    2_000,
                    0,
                    2_000
                ),
                (
                    "2026-01-12".into(),
                    "2026-01-14".into(),
                    true,
                    2_500,
                    0,
                    -500,
                    -500
                ),
            ]
        );
    }

    #[test]
    fn a_month_sums_exact_units_and_rounds_once() {
        // Three new movements of 0.4 minor units: 0 each when rounded, 1.2 together.
        let tenth = UNITS / 10;
        let rows: Vec<DailyRow> = (1..=3)
            .map(|index| DailyRow {
                day: Date::from_calendar_date(2026, Month::March, index).ok(),
                mrr_units: 4 * tenth * i128::from(index),
                movement_units: [4 * tenth, 0, 0, 0, 0],
                paying_customers: i64::from(index),
                arpa: None,
            })
            .collect();
        let points = series(
            &DailyRow::default(),
            &rows,
            date!(2026 - 03 - 01),
            date!(2026 - 03 - 31),
            "month",
            |start, _| start == date!(2026 - 03 - 01),
        );
        assert_eq!(points.len(), 1);
        assert_eq!(
            (
                points[0].partial,
                points[0].mrr_minor,
                points[0].arr_minor,
                &points[0].movements
            ),
            (
                true,
                1,
                14,
                &Movements {
                    new_minor: 1,
                    net_new_minor: 1,
                    ..Movements::default()
                }
            )
        );
    }

    #[test]
    fn net_new_is_the_change_of_the_rounded_mrr() {
        // MRR 0.5 -> 1.4 minor units: both round to 1, so the net is 0 though 0.9 was added.
        let half = UNITS / 2;
        let movements = Movements::of(half, [9 * UNITS / 10, 0, 0, 0, 0]);
        assert_eq!((movements.new_minor, movements.net_new_minor), (1, 0));
    }

    #[test]
    fn partial_periods() {
        let coverage = Coverage {
            days: BTreeMap::from([
                (
                    "USD".to_owned(),
                    (date!(2025 - 11 - 10), date!(2026 - 01 - 20)),
                ),
                (
                    "JPY".to_owned(),
                    (date!(2026 - 01 - 01), date!(2026 - 01 - 06)),
                ),
            ]),
            today: date!(2026 - 03 - 15),
        };
        let month = |start: Date| (start, month_end(start));
        let cases = [
            // The first month with data, from its 10th: partial; the next one is whole.
            ("USD", month(date!(2025 - 11 - 01)), true),
            ("USD", month(date!(2025 - 12 - 01)), false),
            // Months before the data hold nothing: whole.
            ("USD", month(date!(2025 - 10 - 01)), false),
            // The read model's last day is 2026-01-20: January is not complete.
            ("USD", month(date!(2026 - 01 - 01)), true),
            // JPY's data starts on the 1st, and ends with the read model's last day.
            ("JPY", month(date!(2026 - 01 - 01)), true),
            // The month in progress.
            ("USD", month(date!(2026 - 03 - 01)), true),
        ];
        for (currency, (start, end), partial) in cases {
            assert_eq!(
                coverage.partial(currency, start, end),
                partial,
                "{currency} {start}"
            );
        }
        let later = Coverage {
            today: date!(2026 - 06 - 01),
            days: BTreeMap::from([(
                "EUR".to_owned(),
                (date!(2026 - 02 - 01), date!(2026 - 04 - 30)),
            )]),
        };
        assert!(!later.partial("EUR", date!(2026 - 02 - 01), date!(2026 - 02 - 28)));
        assert!(!later.partial("EUR", date!(2026 - 04 - 01), date!(2026 - 04 - 30)));
    }

    #[test]
    fn months_arithmetic() {
        assert_eq!(add_months(date!(2026 - 01 - 31), -1), date!(2025 - 12 - 01));
        assert_eq!(add_months(date!(2026 - 12 - 15), 1), date!(2027 - 01 - 01));
        assert_eq!(
            months_between(date!(2025 - 11 - 01), date!(2026 - 02 - 01)),
            3
        );
        assert_eq!(month_end(date!(2024 - 02 - 10)), date!(2024 - 02 - 29));
        assert_eq!(month_end(date!(2025 - 12 - 31)), date!(2025 - 12 - 31));
    }
}

/// One change of a customer's MRR in one currency, and the MRR after it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CustomerMrrPoint {
    /// The business day of the change (YYYY-MM-DD).
    day: String,
    /// new, expansion, contraction, churn or reactivation.
    movement: String,
    /// The change in minor units (negative for contraction and churn), rounded half away from
    /// zero from the exact amount.
    #[schema(value_type = i64)]
    delta_minor: i128,
    /// The customer's MRR at the end of `day` in minor units: the exact sum of the changes so
    /// far, rounded once (not a sum of rounded deltas).
    #[schema(value_type = i64)]
    mrr_minor: i128,
}

/// A customer's MRR history in one currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CustomerMrrSeries {
    currency: String,
    /// Decimal places of the minor unit (2 for USD, 0 for JPY).
    #[serde(default)]
    exponent: u8,
    /// Oldest first; the MRR holds from one point's day to the next.
    points: Vec<CustomerMrrPoint>,
}

/// A customer's MRR over time, per currency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CustomerMrr {
    /// A UUID.
    customer_id: String,
    /// One series per currency the customer has had MRR in, by currency code; empty for a
    /// customer who never had MRR (or is unknown: the revenue read model only knows
    /// customers with movements).
    currencies: Vec<CustomerMrrSeries>,
}

const CUSTOMER_MRR_SQL: &str = "\
    SELECT coalesce(json_agg(json_build_object('currency', s.currency, 'points', s.points) \
        ORDER BY s.currency), '[]')::text \
    FROM (SELECT m.currency, json_agg(json_build_object('day', m.day::text, \
            'movement', m.movement, 'delta_minor', revenue.minor(m.delta_units), \
            'mrr_minor', revenue.minor(m.mrr_units)) ORDER BY m.day) AS points \
          FROM (SELECT currency, day, movement, delta_units, \
                  sum(delta_units) OVER (PARTITION BY currency ORDER BY day) AS mrr_units \
                FROM revenue.movements WHERE customer_id = $1) m \
          GROUP BY m.currency) s";

/// A customer's MRR over time: each day it changed, the movement and the MRR after it, per
/// currency (from the revenue read model's movements).
#[utoipa::path(get, path = "/v1/customers/{id}/mrr", tag = "metrics",
    params(("id" = String, Path, description = "The customer id"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses((status = 200, body = CustomerMrr,
        headers(("X-Ledger-Position" = u64, description = "Position of the revenue read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["metrics:read"])))]
pub(crate) async fn customer_mrr(
    state: web::Data<State>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(&state, &request, Scope::MetricsRead, &[])?;
    let customer_id = crate::customers::customer_id(&path)?;
    answer(
        &state,
        &request,
        Projection::Revenue,
        &params,
        |mut client| async move {
            let (transaction, position) = snapshot(&mut client).await?;
            let json: String = transaction
                .query_one(CUSTOMER_MRR_SQL, &[&customer_id])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(db)?;
            let mut currencies: Vec<CustomerMrrSeries> =
                serde_json::from_str(&json).map_err(|error| {
                    ApiError::internal(
                        "the revenue read model does not have the expected shape",
                        &error,
                    )
                })?;
            for series in &mut currencies {
                series.exponent = exponent(&series.currency);
            }
            Ok((
                position,
                CustomerMrr {
                    customer_id: customer_id.to_string(),
                    currencies,
                },
            ))
        },
    )
    .await
}
