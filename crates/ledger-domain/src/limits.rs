//! Bounds on command fields, checked by [`decide`](crate::decide). Units last.
//!
//! Text must also be free of NUL (PostgreSQL rejects it in `text`); ids, keys and emails must
//! be free of all control characters and whitespace.

/// The longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// The longest email, in bytes (RFC 5321's limit on a path).
pub const EMAIL_BYTES_MAX: usize = 254;
/// The longest customer name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// The longest id (subscription, plan, coupon, invoice, payment, refund, dispute, provider
/// account), in bytes. Stripe's ids fit in 255.
pub const ID_BYTES_MAX: usize = 255;
/// The longest free text (a reason, a failure message), in bytes.
pub const TEXT_BYTES_MAX: usize = 1000;
/// The longest provider failure code (`card_declined`), in bytes.
pub const FAILURE_CODE_BYTES_MAX: usize = 100;
/// The largest percentage discount, in basis points (100 %).
pub const PERCENT_OFF_BASIS_POINTS_MAX: u32 = 10_000;
/// The longest billing period is three years (Stripe's limit), in each interval's unit.
pub const INTERVAL_DAYS_MAX: u32 = 1095;
/// See [`INTERVAL_DAYS_MAX`].
pub const INTERVAL_WEEKS_MAX: u32 = 156;
/// See [`INTERVAL_DAYS_MAX`].
pub const INTERVAL_MONTHS_MAX: u32 = 36;
/// See [`INTERVAL_DAYS_MAX`].
pub const INTERVAL_YEARS_MAX: u32 = 3;
/// The longest integration URL (a Slack incoming webhook, a webhook endpoint), in bytes.
pub const URL_BYTES_MAX: usize = 2048;
/// The shortest webhook signing secret, in bytes (128 bits of a random hex or base64 string).
pub const SIGNING_SECRET_BYTES_MIN: usize = 16;
/// The longest webhook signing secret or SMTP password, in bytes.
pub const SECRET_BYTES_MAX: usize = 255;
/// The most email recipients of one integration.
pub const EMAIL_RECIPIENTS_MAX: usize = 20;

/// The largest money amount of a command, in minor units, as an absolute value: a price, an
/// invoice, a payment, a refund, a dispute, an amount discount, and a subscription's price x
/// quantity (what one period bills). 10^15 minor units is ten trillion dollars or a quadrillion
/// yen, far above any real charge, and small enough that every figure derived from one
/// subscription is exact where it is stored: its ARR (at most 365 x 10^15 minor units, a daily
/// price over a year) fits a PostgreSQL `bigint` / `i64` with room to spare, and its MRR in
/// [`MRR_UNITS_PER_MINOR`](crate::MRR_UNITS_PER_MINOR) units (under 1.1 x 10^26) leaves room in
/// `i128` for sums over more than 10^12 subscriptions. Sums over customers are kept in
/// `numeric` / `i128` (see `docs/metrics.md`), never in `i64`.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;
/// The most units of a subscription: `i32::MAX`, what the read models' `integer` quantity column
/// holds.
pub const QUANTITY_MAX: u32 = 2_147_483_647;
/// The latest time a command may carry, in Unix seconds: 9999-12-31T23:59:59Z, the end of the
/// calendar range that ISO 8601 dates, PostgreSQL `timestamptz` and the `time` crate (without
/// its `large-dates` feature) all represent. Times before 1970 are refused too: Unix seconds
/// are 0 or more. Applies to period ends, trial ends, `resumes_at`, invoice periods and, in
/// microseconds, to `metadata.occurred_at_unix_micros`.
pub const UNIX_SECONDS_MAX: i64 = 253_402_300_799;
