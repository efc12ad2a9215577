-- A stand-in for the revenue projector's views, as tables with known rows (see the revenue
-- read-model contract in docs/api.md). USD: two customers from November 2025 with an
-- expansion, a churn, a reactivation and a contraction; JPY: one customer in January 2026.
CREATE SCHEMA revenue;
CREATE TABLE revenue.projector_checkpoint (global_position bigint NOT NULL);
INSERT INTO revenue.projector_checkpoint VALUES (42);

CREATE TABLE revenue.settings (
    churn_recognition text NOT NULL, past_due_churn_days integer, discounts text NOT NULL,
    unpaid_subscriptions text NOT NULL);
INSERT INTO revenue.settings VALUES ('effective', NULL, 'recurring', 'excluded');

CREATE TABLE revenue.mrr_movements (
    customer_id uuid, currency text, day date, movement text, delta numeric);

CREATE TABLE revenue.daily_mrr (
    currency text, day date, mrr numeric, arr numeric, new numeric, expansion numeric,
    contraction numeric, churn numeric, reactivation numeric, paying_customers bigint,
    arpa numeric);

WITH moves (day, new, expansion, contraction, churn, reactivation, paying_delta) AS (
    VALUES ('2025-11-10'::date, 10000, 0, 0, 0, 0, 1),
           ('2025-11-20', 5000, 0, 0, 0, 0, 1),
           ('2025-12-05', 0, 2000, 0, 0, 0, 0),
           ('2025-12-15', 0, 0, 0, -5000, 0, -1),
           ('2026-01-03', 0, 0, 0, 0, 5000, 1),
           ('2026-01-10', 0, 0, -1000, 0, 0, 0)
), days AS (
    SELECT d::date AS day FROM generate_series('2025-11-10'::date, '2026-01-20'::date, '1 day') d
), joined AS (
    SELECT days.day, coalesce(m.new, 0) AS new, coalesce(m.expansion, 0) AS expansion,
           coalesce(m.contraction, 0) AS contraction, coalesce(m.churn, 0) AS churn,
           coalesce(m.reactivation, 0) AS reactivation, coalesce(m.paying_delta, 0) AS paying_delta
    FROM days LEFT JOIN moves m USING (day)
)
INSERT INTO revenue.daily_mrr
SELECT 'USD', day, mrr, mrr * 12, new, expansion, contraction, churn, reactivation, paying,
       CASE WHEN paying = 0 THEN NULL ELSE mrr::numeric / paying END
FROM (
    SELECT day, new, expansion, contraction, churn, reactivation,
           sum(new + expansion + contraction + churn + reactivation) OVER w AS mrr,
           sum(paying_delta) OVER w AS paying
    FROM joined WINDOW w AS (ORDER BY day)
) running;

INSERT INTO revenue.daily_mrr VALUES
    ('JPY', '2026-01-05', 3000, 36000, 3000, 0, 0, 0, 0, 1, 3000),
    ('JPY', '2026-01-06', 3000, 36000, 0, 0, 0, 0, 0, 1, 3000);

CREATE TABLE revenue.monthly_churn (
    currency text, month date, paying_customers_start bigint, churned_customers bigint,
    mrr_start numeric, new numeric, expansion numeric, contraction numeric, churn numeric,
    reactivation numeric, customer_churn_rate numeric, gross_mrr_churn_rate numeric,
    net_mrr_churn_rate numeric, arpa_start numeric, ltv numeric);
INSERT INTO revenue.monthly_churn VALUES
    ('USD', '2025-11-01', 0, 0, 0, 15000, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL),
    ('USD', '2025-12-01', 2, 1, 15000, 0, 2000, 0, -5000, 0,
        0.5, 5000::numeric / 15000, 3000::numeric / 15000, 7500, 15000),
    ('USD', '2026-01-01', 1, 0, 12000, 0, 0, -1000, 0, 5000,
        0, 1000::numeric / 12000, -4000::numeric / 12000, 12000, NULL),
    ('JPY', '2026-01-01', 0, 0, 0, 3000, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE revenue.cohorts (
    currency text, cohort_month date, month date, customers bigint, mrr numeric);
INSERT INTO revenue.cohorts VALUES
    ('USD', '2025-11-01', '2025-11-01', 2, 15000),
    ('USD', '2025-11-01', '2025-12-01', 1, 12000),
    ('USD', '2025-11-01', '2026-01-01', 2, 16000),
    ('JPY', '2026-01-01', '2026-01-01', 1, 3000);

-- The views' exact columns, in MRR units (3,326,400,000 per minor unit).
ALTER TABLE revenue.daily_mrr ADD COLUMN mrr_units numeric, ADD COLUMN new_units numeric,
    ADD COLUMN expansion_units numeric, ADD COLUMN contraction_units numeric,
    ADD COLUMN churn_units numeric, ADD COLUMN reactivation_units numeric;
UPDATE revenue.daily_mrr SET mrr_units = mrr * 3326400000, new_units = new * 3326400000,
    expansion_units = expansion * 3326400000, contraction_units = contraction * 3326400000,
    churn_units = churn * 3326400000, reactivation_units = reactivation * 3326400000;
ALTER TABLE revenue.monthly_churn ADD COLUMN mrr_start_units numeric,
    ADD COLUMN new_units numeric, ADD COLUMN expansion_units numeric,
    ADD COLUMN contraction_units numeric, ADD COLUMN churn_units numeric,
    ADD COLUMN reactivation_units numeric;
UPDATE revenue.monthly_churn SET mrr_start_units = mrr_start * 3326400000,
    new_units = new * 3326400000, expansion_units = expansion * 3326400000,
    contraction_units = contraction * 3326400000, churn_units = churn * 3326400000,
    reactivation_units = reactivation * 3326400000;
ALTER TABLE revenue.cohorts ADD COLUMN mrr_units numeric;
UPDATE revenue.cohorts SET mrr_units = mrr * 3326400000;

INSERT INTO reference.fx_rates VALUES
    ('2026-01-01', 'USD', 'EUR', 0.9),
    ('2026-01-15', 'USD', 'EUR', 0.85),
    ('2026-01-01', 'USD', 'JPY', 150.5);

GRANT USAGE ON SCHEMA revenue TO ledger_query;
GRANT SELECT ON ALL TABLES IN SCHEMA revenue TO ledger_query;
