-- Read model `revenue`. Every amount is kept exact in MRR units (3,326,400,000 per minor unit
-- of the currency: see docs/metrics.md) as `numeric`, so that no sum over customers can
-- overflow, and rounded half away from zero only by the views. A sum over days or months is
-- taken of the `*_units` columns and rounded once (never a sum of rounded figures).
-- The tables hold changes; the views (`settings`, `mrr_movements`, `daily_mrr`,
-- `monthly_churn`, `cohorts`) are what readers use.

-- Minor units of an amount in MRR units.
CREATE FUNCTION minor(units numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT round(units / 3326400000) $$;

-- The definitions the figures were computed with (a change rebuilds the read model).
CREATE TABLE settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    churn_recognition text NOT NULL CHECK (churn_recognition IN ('requested', 'effective')),
    past_due_churn_days integer CHECK (past_due_churn_days > 0),
    discounts text NOT NULL CHECK (discounts IN ('none', 'recurring', 'all')),
    units_per_minor bigint NOT NULL,
    unpaid_subscriptions text NOT NULL CHECK (unpaid_subscriptions IN ('excluded', 'counted'))
);
INSERT INTO settings VALUES
    (true, '{churn_recognition}', {past_due_churn_days}, '{discounts}', 3326400000,
     '{unpaid_subscriptions}');

-- A customer's net MRR change in a currency on a day, when it is not zero.
CREATE TABLE movements (
    customer_id uuid NOT NULL,
    currency text NOT NULL,
    day date NOT NULL,
    movement text NOT NULL
        CHECK (movement IN ('new', 'expansion', 'contraction', 'churn', 'reactivation')),
    delta_units numeric NOT NULL,
    PRIMARY KEY (customer_id, currency, day)
);
CREATE INDEX movements_by_day ON movements (currency, day);

-- Per currency and day: the sum of each kind of movement (churn and contraction negative) and
-- the change in paying customers. Only days with movements have a row.
CREATE TABLE daily_changes (
    currency text NOT NULL,
    day date NOT NULL,
    new_units numeric NOT NULL,
    expansion_units numeric NOT NULL,
    contraction_units numeric NOT NULL,
    churn_units numeric NOT NULL,
    reactivation_units numeric NOT NULL,
    paying_change bigint NOT NULL,
    PRIMARY KEY (currency, day)
);

-- Per currency and month: customers paying at the month's start who churned in it.
CREATE TABLE churned_months (
    currency text NOT NULL,
    month date NOT NULL,
    churned_customers bigint NOT NULL,
    PRIMARY KEY (currency, month)
);

-- Per currency, cohort (month of the first MRR) and month: the change of the cohort's paying
-- customers and MRR at the month's end against the previous month's end.
CREATE TABLE cohort_changes (
    currency text NOT NULL,
    cohort_month date NOT NULL,
    month date NOT NULL,
    customers_change bigint NOT NULL,
    mrr_units_change numeric NOT NULL,
    PRIMARY KEY (currency, cohort_month, month)
);

CREATE VIEW mrr_movements AS
SELECT customer_id, currency, day, movement, minor(delta_units) AS delta, delta_units
FROM movements;

-- One row per currency and day, from its first day with a movement to its last.
CREATE VIEW daily_mrr AS
WITH days AS (
    SELECT currency, generate_series(min(day), max(day), interval '1 day')::date AS day
    FROM daily_changes
    GROUP BY currency
), running AS (
    SELECT days.currency, days.day,
        coalesce(c.new_units, 0) AS new_units,
        coalesce(c.expansion_units, 0) AS expansion_units,
        coalesce(c.contraction_units, 0) AS contraction_units,
        coalesce(c.churn_units, 0) AS churn_units,
        coalesce(c.reactivation_units, 0) AS reactivation_units,
        sum(coalesce(c.new_units + c.expansion_units + c.contraction_units + c.churn_units
            + c.reactivation_units, 0)) OVER w AS mrr_units,
        sum(coalesce(c.paying_change, 0)) OVER w AS paying_customers
    FROM days LEFT JOIN daily_changes c USING (currency, day)
    WINDOW w AS (PARTITION BY days.currency ORDER BY days.day)
)
SELECT currency, day,
    minor(mrr_units) AS mrr,
    minor(12 * mrr_units) AS arr,
    minor(new_units) AS new,
    minor(expansion_units) AS expansion,
    minor(contraction_units) AS contraction,
    minor(churn_units) AS churn,
    minor(reactivation_units) AS reactivation,
    paying_customers::bigint AS paying_customers,
    CASE WHEN paying_customers > 0 THEN minor(mrr_units / paying_customers) END AS arpa,
    mrr_units, new_units, expansion_units, contraction_units, churn_units, reactivation_units
FROM running;

-- One row per currency and month, from its first month with a movement to its last.
CREATE VIEW monthly_churn AS
WITH months AS (
    SELECT currency,
        generate_series(date_trunc('month', min(day)), date_trunc('month', max(day)),
            interval '1 month')::date AS month
    FROM daily_changes
    GROUP BY currency
), figures AS (
    SELECT months.currency, months.month,
        coalesce(start.mrr_units, 0) AS mrr_start_units,
        coalesce(start.paying, 0) AS paying_start,
        coalesce(churned.churned_customers, 0) AS churned,
        coalesce(inside.new_units, 0) AS new_units,
        coalesce(inside.expansion_units, 0) AS expansion_units,
        coalesce(inside.contraction_units, 0) AS contraction_units,
        coalesce(inside.churn_units, 0) AS churn_units,
        coalesce(inside.reactivation_units, 0) AS reactivation_units
    FROM months
    LEFT JOIN LATERAL (
        SELECT sum(new_units + expansion_units + contraction_units + churn_units
                + reactivation_units) AS mrr_units,
            sum(paying_change) AS paying
        FROM daily_changes c
        WHERE c.currency = months.currency AND c.day < months.month
    ) start ON true
    LEFT JOIN LATERAL (
        SELECT sum(new_units) AS new_units, sum(expansion_units) AS expansion_units,
            sum(contraction_units) AS contraction_units, sum(churn_units) AS churn_units,
            sum(reactivation_units) AS reactivation_units
        FROM daily_changes c
        WHERE c.currency = months.currency
            AND c.day >= months.month AND c.day < months.month + interval '1 month'
    ) inside ON true
    LEFT JOIN churned_months churned
        ON churned.currency = months.currency AND churned.month = months.month
)
SELECT currency, month,
    paying_start::bigint AS paying_customers_start,
    churned AS churned_customers,
    minor(mrr_start_units) AS mrr_start,
    minor(new_units) AS new,
    minor(expansion_units) AS expansion,
    minor(contraction_units) AS contraction,
    minor(churn_units) AS churn,
    minor(reactivation_units) AS reactivation,
    CASE WHEN paying_start > 0 THEN round(churned / paying_start, 6) END
        AS customer_churn_rate,
    CASE WHEN mrr_start_units > 0
        THEN round(-(churn_units + contraction_units) / mrr_start_units, 6) END
        AS gross_mrr_churn_rate,
    CASE WHEN mrr_start_units > 0
        THEN round(-(churn_units + contraction_units + expansion_units + reactivation_units)
            / mrr_start_units, 6) END
        AS net_mrr_churn_rate,
    CASE WHEN paying_start > 0 THEN minor(mrr_start_units / paying_start) END AS arpa_start,
    CASE WHEN churned > 0 THEN minor(mrr_start_units / churned) END AS ltv,
    mrr_start_units, new_units, expansion_units, contraction_units, churn_units,
    reactivation_units
FROM figures;

-- One row per currency, cohort and month from the cohort's month to the currency's last month.
CREATE VIEW cohorts AS
WITH last_months AS (
    SELECT currency, date_trunc('month', max(day))::date AS last_month
    FROM daily_changes
    GROUP BY currency
), grid AS (
    SELECT c.currency, c.cohort_month,
        generate_series(c.cohort_month, l.last_month, interval '1 month')::date AS month
    FROM (SELECT DISTINCT currency, cohort_month FROM cohort_changes) c
    JOIN last_months l USING (currency)
)
SELECT grid.currency, grid.cohort_month, grid.month,
    (sum(coalesce(x.customers_change, 0)) OVER w)::bigint AS customers,
    minor(sum(coalesce(x.mrr_units_change, 0)) OVER w) AS mrr,
    sum(coalesce(x.mrr_units_change, 0)) OVER w AS mrr_units
FROM grid LEFT JOIN cohort_changes x USING (currency, cohort_month, month)
WINDOW w AS (PARTITION BY grid.currency, grid.cohort_month ORDER BY grid.month);
