//! `/v1/customers*`: read model `customers` (schema of `projector-customers`).
//!
//! Each answer is one SQL statement, so its figures and the checkpoint it reports come from
//! one snapshot; PostgreSQL builds the nested JSON, which is checked against the typed
//! answer below (the OpenAPI schema) before it is sent.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::State;
use crate::error::ApiError;
use crate::handlers::{answer, authorise};
use crate::positions::Projection;
use ledger_access::Scope;

/// Customers per page by default and at most.
const PAGE_CUSTOMERS_DEFAULT: u32 = 50;
const PAGE_CUSTOMERS_MAX: u32 = 500;
/// Timeline events per page by default and at most.
const PAGE_EVENTS_DEFAULT: u32 = 100;
const PAGE_EVENTS_MAX: u32 = 1_000;
/// Payments in a customer's answer at most: the newest.
const DETAIL_PAYMENTS_MAX: i64 = 100;

/// Statuses a customer can have (`customers.status`).
const STATUSES: &[&str] = &[
    "active",
    "past_due",
    "trialing",
    "cancel_pending",
    "paused",
    "canceled",
    "none",
];
const PROVIDERS: &[&str] = &["stripe", "paypal", "xendit", "internal"];

const PROJECTION: &str = "customers";

/// One row of the customer list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CustomerListItem {
    /// A UUID.
    customer_id: String,
    email: String,
    name: String,
    /// The provider account the customer registered through.
    account_id: String,
    provider: String,
    /// active, past_due, trialing, cancel_pending, paused, canceled, or none.
    status: String,
    /// Monthly recurring revenue in minor units of `mrr_currency`; null without
    /// subscriptions or with subscriptions in several currencies. An exact integer (it may
    /// pass `i64`: a sum over any number of subscriptions).
    #[schema(value_type = Option<i64>)]
    mrr_minor: Option<i128>,
    mrr_currency: Option<String>,
    /// Decimal places of `mrr_currency`'s minor unit (2 for USD, 0 for JPY).
    #[serde(default)]
    mrr_currency_exponent: Option<u8>,
    /// ISO 8601, UTC.
    created_at: String,
    last_payment_status: Option<String>,
    last_payment_at: Option<String>,
}

/// A page of customers, in customer id order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CustomerPage {
    items: Vec<CustomerListItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Subscription {
    subscription_id: String,
    status: String,
    plan_id: String,
    /// day, week, month or year.
    billing_interval: String,
    interval_count: i32,
    quantity: i32,
    unit_amount_minor: i64,
    mrr_minor: i64,
    currency: String,
    #[serde(default)]
    currency_exponent: Option<u8>,
    trial_end: Option<String>,
    current_period_end: String,
    cancel_at_period_end: bool,
    /// The provider holding the subscription: stripe, paypal, xendit, or internal (the
    /// company's own billing). The one its `subscription_started` came through, which may
    /// differ from the customer's registration `provider`; provider-sync carries out a
    /// `request_cancellation` or `request_subscription_update` of it there (decision 0032).
    provider: String,
}

/// Lifetime money of the customer in one currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LifetimeTotals {
    currency: String,
    #[serde(default)]
    currency_exponent: Option<u8>,
    /// Exact sums over any number of payments (they may pass `i64`).
    #[schema(value_type = i64)]
    paid_minor: i128,
    #[schema(value_type = i64)]
    refunded_minor: i128,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProviderAccount {
    provider: String,
    account_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LastPayment {
    /// succeeded, failed or refunded, as the last payment event says.
    status: String,
    at: String,
}

/// A payment attempt of the customer and its refunds (decision 0025).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Payment {
    /// The provider's payment id (a Stripe charge `ch_...` or payment intent `pi_...`, a
    /// PayPal sale): the `payment_id` of `request_refund`.
    payment_id: String,
    /// Business time of its `payment_succeeded` / `payment_failed`, ISO 8601 UTC.
    occurred_at: String,
    /// succeeded or failed.
    status: String,
    /// Minor units of `currency`, positive.
    amount_minor: i64,
    currency: String,
    #[serde(default)]
    currency_exponent: Option<u8>,
    /// The sum of its refunds.
    refunded_minor: i64,
    /// The sum of its refund requests still processing (`refund_requested`).
    refund_requested_minor: i64,
    /// What a `request_refund` may still ask for: `amount_minor` minus `refunded_minor` and
    /// `refund_requested_minor` of a succeeded payment, 0 of a failed one. The ledger also
    /// refuses a refund while a dispute of the payment is open or lost (`payment_disputed`).
    #[serde(default)]
    refundable_minor: i64,
}

impl Payment {
    fn refundable_minor(&self) -> i64 {
        if self.status != "succeeded" {
            return 0;
        }
        self.amount_minor
            .saturating_sub(self.refunded_minor)
            .saturating_sub(self.refund_requested_minor)
            .max(0)
    }
}

/// One customer's metrics.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CustomerDetail {
    /// A UUID.
    customer_id: String,
    email: String,
    name: String,
    account_id: String,
    provider: String,
    status: String,
    /// As in the list; an exact integer that may pass `i64`.
    #[schema(value_type = Option<i64>)]
    mrr_minor: Option<i128>,
    mrr_currency: Option<String>,
    #[serde(default)]
    mrr_currency_exponent: Option<u8>,
    created_at: String,
    last_event_at: String,
    last_payment: Option<LastPayment>,
    subscriptions: Vec<Subscription>,
    /// Paid and refunded per currency.
    lifetime: Vec<LifetimeTotals>,
    provider_accounts: Vec<ProviderAccount>,
    /// Its 100 newest payments, newest first.
    #[serde(default)]
    payments: Vec<Payment>,
}

/// One event of a customer's timeline.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TimelineEvent {
    global_position: i64,
    occurred_at: String,
    event_type: String,
    status: String,
    issuer: String,
    provider: String,
    amount_minor: Option<i64>,
    currency: Option<String>,
    #[serde(default)]
    currency_exponent: Option<u8>,
    /// The event's cause (UUID); for a provider's event (`issuer` `payment_provider`), the
    /// webhook delivery behind it: `GET /v1/provider-messages/{causation_id}` (scope
    /// `connectors:read`).
    causation_id: Option<String>,
    /// The subscription the event is about, if any: an operator's request
    /// (`cancellation_requested`, status `processing`) and the provider's answer
    /// (`subscription_cancelled` complete, `cancellation_failed` failed) share it.
    #[serde(default)]
    subscription_id: Option<String>,
    /// A failed event's reason as the provider gave it (`cancellation_failed`,
    /// `payment_failed`), e.g. `resource_missing`.
    #[serde(default)]
    failure_code: Option<String>,
    #[serde(default)]
    failure_message: Option<String>,
}

/// A page of a customer's events, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TimelinePage {
    items: Vec<TimelineEvent>,
    /// Pass as `cursor` for older events; null on the last page.
    next_cursor: Option<String>,
}

fn exponent(currency: Option<&str>) -> Option<u8> {
    currency
        .and_then(|code| ledger_domain::Currency::parse(code).ok())
        .map(ledger_domain::Currency::exponent)
}

/// Parses PostgreSQL's JSON for `what` into the typed answer.
fn decode<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json).map_err(|error| {
        ApiError::internal(
            "the customers read model does not have the expected shape",
            &error,
        )
    })
}

/// `to_char` of a timestamptz column as ISO 8601 UTC.
macro_rules! iso {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}

const LIST_SQL: &str = concat!(
    "SELECT (SELECT global_position FROM customers.projector_checkpoint), ",
    "(SELECT coalesce(json_agg(row_to_json(page) ORDER BY page.customer_id), '[]')::text FROM (",
    " SELECT c.customer_id, c.email, c.name, c.account_id, c.payment_provider_type AS provider,",
    " c.status, c.mrr_minor, c.mrr_currency, ",
    iso!("c.created_at"),
    " AS created_at, c.last_payment_status, ",
    iso!("c.last_payment_at"),
    " AS last_payment_at",
    " FROM customers.customers c",
    " WHERE ($1::text IS NULL OR c.status = $1)",
    " AND ($2::text IS NULL OR c.payment_provider_type = $2)",
    " AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM customers.subscriptions s",
    "      WHERE s.customer_id = c.customer_id AND s.plan_id = $3))",
    " AND ($4::text IS NULL OR strpos(lower(c.email), lower($4)) > 0 OR c.account_id = $4",
    "      OR EXISTS (SELECT 1 FROM customers.provider_accounts p",
    "                 WHERE p.customer_id = c.customer_id AND p.account_id = $4))",
    " AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM customers.subscriptions s",
    "      WHERE s.customer_id = c.customer_id AND s.currency = $7))",
    " AND ($5::uuid IS NULL OR c.customer_id > $5)",
    " ORDER BY c.customer_id LIMIT $6) page)"
);

/// Customers, filtered and searched, a page at a time (keyset on the customer id).
#[utoipa::path(get, path = "/v1/customers", tag = "customers",
    params(
        ("status" = Option<String>, Query, description = "active, past_due, trialing, cancel_pending, paused, canceled or none"),
        ("provider" = Option<String>, Query, description = "stripe, paypal, xendit or internal: the registration provider"),
        ("plan" = Option<String>, Query, description = "Customers with a subscription to this plan id"),
        ("q" = Option<String>, Query, description = "Part of the email (case-insensitive), or an exact provider account id"),
        ("currency" = Option<String>, Query, description = "Customers with a subscription in this ISO 4217 currency (any status)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "Customers per page, 1 to 500 (default 50)"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position"),
    ),
    responses(
        (status = 200, description = "A page of customers", body = CustomerPage,
         headers(("X-Ledger-Position" = u64, description = "Position of the customers read model"))),
        (status = 400, description = "A bad parameter, named in details.parameter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["customers:read"])))]
pub(crate) async fn list(
    state: web::Data<State>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(
        &state,
        &request,
        Scope::CustomersRead,
        &[
            "status", "provider", "plan", "q", "currency", "cursor", "limit",
        ],
    )?;
    let currency = params
        .currency("currency")?
        .map(|currency| currency.code().to_owned());
    let status = params.choice("status", STATUSES)?;
    let provider = params.choice("provider", PROVIDERS)?;
    let plan = params.text("plan").map(str::to_owned);
    let search = params.text("q").map(str::to_owned);
    let cursor = params.uuid("cursor")?;
    let limit = params.limit("limit", PAGE_CUSTOMERS_DEFAULT, PAGE_CUSTOMERS_MAX)?;
    answer(
        &state,
        &request,
        Projection::Customers,
        &params,
        |client| async move {
            let statement = client
                .prepare_cached(LIST_SQL)
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let fetch = i64::from(limit) + 1;
            let row = client
                .query_one(
                    &statement,
                    &[
                        &status, &provider, &plan, &search, &cursor, &fetch, &currency,
                    ],
                )
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let position = position(&row)?;
            let json: String = row
                .try_get(1)
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let mut items: Vec<CustomerListItem> = decode(&json)?;
            let next_cursor = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|item| item.customer_id.clone())
            } else {
                None
            };
            for item in &mut items {
                item.mrr_currency_exponent = exponent(item.mrr_currency.as_deref());
            }
            Ok((position, CustomerPage { items, next_cursor }))
        },
    )
    .await
}

const SINGLE_SQL: &str = concat!(
    "SELECT (SELECT global_position FROM customers.projector_checkpoint), ",
    "(SELECT row_to_json(d)::text FROM (",
    " SELECT c.customer_id, c.email, c.name, c.account_id, c.payment_provider_type AS provider,",
    " c.status, c.mrr_minor, c.mrr_currency, ",
    iso!("c.created_at"),
    " AS created_at, ",
    iso!("c.last_event_at"),
    " AS last_event_at,",
    " CASE WHEN c.last_payment_at IS NULL THEN NULL ELSE json_build_object(",
    "   'status', c.last_payment_status, 'at', ",
    iso!("c.last_payment_at"),
    ") END AS last_payment,",
    " (SELECT coalesce(json_agg(json_build_object(",
    "   'subscription_id', s.subscription_id, 'status', s.status, 'plan_id', s.plan_id,",
    "   'billing_interval', s.billing_interval, 'interval_count', s.interval_count,",
    "   'quantity', s.quantity, 'unit_amount_minor', s.unit_amount_minor,",
    "   'mrr_minor', s.mrr_minor, 'currency', s.currency, 'trial_end', ",
    iso!("s.trial_end"),
    ",   'current_period_end', ",
    iso!("s.current_period_end"),
    ",   'cancel_at_period_end', s.cancel_at_period_end,",
    "   'provider', s.payment_provider_type) ORDER BY s.subscription_id), '[]')",
    "   FROM customers.subscriptions s WHERE s.customer_id = c.customer_id) AS subscriptions,",
    " (SELECT coalesce(json_agg(json_build_object('currency', t.currency,",
    "   'paid_minor', t.paid_minor, 'refunded_minor', t.refunded_minor) ORDER BY t.currency), '[]')",
    "   FROM customers.totals t WHERE t.customer_id = c.customer_id) AS lifetime,",
    " (SELECT coalesce(json_agg(json_build_object('provider', p.provider,",
    "   'account_id', p.account_id) ORDER BY p.provider, p.account_id), '[]')",
    "   FROM customers.provider_accounts p WHERE p.customer_id = c.customer_id)",
    "   AS provider_accounts,",
    " (SELECT coalesce(json_agg(row_to_json(p) ORDER BY p.occurred_at DESC, p.payment_id), '[]')",
    "   FROM (SELECT y.payment_id, ",
    iso!("y.occurred_at"),
    "   AS occurred_at, y.status, y.amount_minor, y.currency, y.refunded_minor,",
    "   y.refund_requested_minor FROM customers.payments y WHERE y.customer_id = c.customer_id",
    "   ORDER BY y.occurred_at DESC, y.payment_id LIMIT $2) p) AS payments",
    " FROM customers.customers c WHERE c.customer_id = $1) d)"
);

/// One customer: status, subscriptions, MRR, lifetime paid and refunded, last payment,
/// provider accounts, its newest payments with what is refundable of each.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The customer id"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses(
        (status = 200, description = "The customer", body = CustomerDetail,
         headers(("X-Ledger-Position" = u64, description = "Position of the customers read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["customers:read"])))]
pub(crate) async fn single(
    state: web::Data<State>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(&state, &request, Scope::CustomersRead, &[])?;
    let customer_id = customer_id(&path)?;
    answer(
        &state,
        &request,
        Projection::Customers,
        &params,
        |client| async move {
            let statement = client
                .prepare_cached(SINGLE_SQL)
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let row = client
                .query_one(&statement, &[&customer_id, &DETAIL_PAYMENTS_MAX])
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let position = position(&row)?;
            let json: Option<String> = row
                .try_get(1)
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let json = json.ok_or_else(|| no_customer(customer_id))?;
            let mut detail: CustomerDetail = decode(&json)?;
            detail.mrr_currency_exponent = exponent(detail.mrr_currency.as_deref());
            for subscription in &mut detail.subscriptions {
                subscription.currency_exponent = exponent(Some(&subscription.currency));
            }
            for totals in &mut detail.lifetime {
                totals.currency_exponent = exponent(Some(&totals.currency));
            }
            for payment in &mut detail.payments {
                payment.currency_exponent = exponent(Some(&payment.currency));
                payment.refundable_minor = payment.refundable_minor();
            }
            Ok((position, detail))
        },
    )
    .await
}

const TIMELINE_SQL: &str = concat!(
    "SELECT (SELECT global_position FROM customers.projector_checkpoint), ",
    "EXISTS (SELECT 1 FROM customers.customers WHERE customer_id = $1), ",
    "(SELECT coalesce(json_agg(row_to_json(page) ORDER BY page.global_position DESC), '[]')::text",
    " FROM (SELECT t.global_position, ",
    iso!("t.occurred_at"),
    " AS occurred_at, t.event_type, t.status, t.issuer,",
    " t.payment_provider_type AS provider, t.amount_minor, t.currency, t.causation_id,",
    " t.subscription_id, t.failure_code, t.failure_message",
    " FROM customers.timeline t WHERE t.customer_id = $1",
    " AND ($2::bigint IS NULL OR t.global_position < $2)",
    " ORDER BY t.global_position DESC LIMIT $3) page)"
);

/// A customer's events, newest first.
#[utoipa::path(get, path = "/v1/customers/{id}/timeline", tag = "customers",
    params(("id" = String, Path, description = "The customer id"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "Events per page, 1 to 1000 (default 100)"),
        ("min_position" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model reaches this position")),
    responses(
        (status = 200, description = "A page of events", body = TimelinePage,
         headers(("X-Ledger-Position" = u64, description = "Position of the customers read model"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = ["customers:read"])))]
pub(crate) async fn timeline(
    state: web::Data<State>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = authorise(&state, &request, Scope::CustomersRead, &["cursor", "limit"])?;
    let customer_id = customer_id(&path)?;
    let cursor = params
        .unsigned("cursor")?
        .map(|cursor| i64::try_from(cursor).unwrap_or(i64::MAX));
    let limit = params.limit("limit", PAGE_EVENTS_DEFAULT, PAGE_EVENTS_MAX)?;
    answer(
        &state,
        &request,
        Projection::Customers,
        &params,
        |client| async move {
            let statement = client
                .prepare_cached(TIMELINE_SQL)
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let fetch = i64::from(limit) + 1;
            let row = client
                .query_one(&statement, &[&customer_id, &cursor, &fetch])
                .await
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let position = position(&row)?;
            let exists: bool = row
                .try_get(1)
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            if !exists {
                return Err(no_customer(customer_id));
            }
            let json: String = row
                .try_get(2)
                .map_err(|error| ApiError::database(&error, PROJECTION))?;
            let mut items: Vec<TimelineEvent> = decode(&json)?;
            let next_cursor = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|item| item.global_position.to_string())
            } else {
                None
            };
            for item in &mut items {
                item.currency_exponent = exponent(item.currency.as_deref());
            }
            Ok((position, TimelinePage { items, next_cursor }))
        },
    )
    .await
}

pub(crate) fn customer_id(path: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(path).map_err(|_| {
        ApiError::bad(
            "id",
            format!(
                "`{}` is not a customer id (a UUID)",
                path.chars().take(64).collect::<String>()
            ),
        )
    })
}

fn no_customer(customer_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no customer {customer_id}"))
}

/// The checkpoint column (0 before the projector's first batch).
fn position(row: &tokio_postgres::Row) -> Result<u64, ApiError> {
    let position: Option<i64> = row
        .try_get(0)
        .map_err(|error| ApiError::database(&error, PROJECTION))?;
    Ok(position.map_or(0, |position| u64::try_from(position).unwrap_or(0)))
}
