//! A batch's changes to the tables, collected from customers' contributions and written with
//! one statement per table.

use std::collections::BTreeMap;

use ledger_domain::Currency;
use time::Date;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::contributions::{Contributions, Movement};

type DayFigures = ([i128; Movement::ALL.len()], i64);

#[derive(Debug, Default)]
pub(crate) struct BatchChanges {
    movements: BTreeMap<(Uuid, Currency, Date), Option<(Movement, i128)>>,
    daily: BTreeMap<(Currency, Date), DayFigures>,
    churned_months: BTreeMap<(Currency, Date), i64>,
    cohorts: BTreeMap<(Currency, Date, Date), (i64, i128)>,
}

impl BatchChanges {
    /// Replaces `customer`'s contributions `before` with `after`.
    pub(crate) fn replace(
        &mut self,
        customer: Uuid,
        before: &Contributions,
        after: &Contributions,
    ) {
        for (sign, contributions) in [(-1, before), (1, after)] {
            for (&(currency, day), &(movement, delta)) in &contributions.movements {
                let figures = self.daily.entry((currency, day)).or_default();
                figures.0[movement as usize] += i128::from(sign) * delta;
                figures.1 += sign * movement.paying_change();
            }
            for (&key, &churned) in &contributions.churned_months {
                *self.churned_months.entry(key).or_default() += sign * churned;
            }
            for (&key, &(customers, units)) in &contributions.cohorts {
                let change = self.cohorts.entry(key).or_default();
                change.0 += sign * customers;
                change.1 += i128::from(sign) * units;
            }
        }
        for &(currency, day) in before.movements.keys() {
            if !after.movements.contains_key(&(currency, day)) {
                self.movements.insert((customer, currency, day), None);
            }
        }
        for (&(currency, day), &movement) in &after.movements {
            if before.movements.get(&(currency, day)) != Some(&movement) {
                self.movements
                    .insert((customer, currency, day), Some(movement));
            }
        }
    }

    pub(crate) async fn write(
        self,
        transaction: &Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        self.write_movements(transaction).await?;
        self.write_daily(transaction).await?;
        self.write_churned_months(transaction).await?;
        self.write_cohorts(transaction).await
    }

    async fn write_movements(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let (mut gone, mut set) = (Columns3::default(), Columns3::default());
        let (mut kinds, mut deltas) = (Vec::new(), Vec::new());
        for (&(customer, currency, day), movement) in &self.movements {
            match movement {
                None => gone.push(customer, currency, day),
                Some((movement, delta)) => {
                    set.push(customer, currency, day);
                    kinds.push(movement.as_str());
                    deltas.push(delta.to_string());
                }
            }
        }
        if !gone.customers.is_empty() {
            transaction
                .execute(
                    "DELETE FROM revenue.movements m \
                     USING unnest($1::uuid[], $2::text[], $3::date[]) AS d (customer_id, currency, day) \
                     WHERE m.customer_id = d.customer_id AND m.currency = d.currency AND m.day = d.day",
                    &[&gone.customers, &gone.currencies, &gone.days],
                )
                .await?;
        }
        if !set.customers.is_empty() {
            transaction
                .execute(
                    "INSERT INTO revenue.movements \
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[], $4::text[], $5::text[]::numeric[]) \
                     ON CONFLICT (customer_id, currency, day) DO UPDATE \
                     SET movement = excluded.movement, delta_units = excluded.delta_units",
                    &[&set.customers, &set.currencies, &set.days, &kinds, &deltas],
                )
                .await?;
        }
        Ok(())
    }

    async fn write_daily(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let changed: Vec<_> = self
            .daily
            .iter()
            .filter(|(_, figures)| **figures != DayFigures::default())
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let currencies: Vec<&str> = changed
            .iter()
            .map(|((currency, _), _)| currency.code())
            .collect();
        let days: Vec<Date> = changed.iter().map(|((_, day), _)| *day).collect();
        let by_movement = |movement: Movement| -> Vec<String> {
            changed
                .iter()
                .map(|(_, (units, _))| units[movement as usize].to_string())
                .collect()
        };
        let paying: Vec<i64> = changed.iter().map(|(_, (_, paying))| *paying).collect();
        transaction
            .execute(
                "INSERT INTO revenue.daily_changes AS t \
                 SELECT * FROM unnest($1::text[], $2::date[], $3::text[]::numeric[], $4::text[]::numeric[], \
                     $5::text[]::numeric[], $6::text[]::numeric[], $7::text[]::numeric[], $8::int8[]) \
                 ON CONFLICT (currency, day) DO UPDATE SET \
                     new_units = t.new_units + excluded.new_units, \
                     expansion_units = t.expansion_units + excluded.expansion_units, \
                     contraction_units = t.contraction_units + excluded.contraction_units, \
                     churn_units = t.churn_units + excluded.churn_units, \
                     reactivation_units = t.reactivation_units + excluded.reactivation_units, \
                     paying_change = t.paying_change + excluded.paying_change",
                &[
                    &currencies,
                    &days,
                    &by_movement(Movement::New),
                    &by_movement(Movement::Expansion),
                    &by_movement(Movement::Contraction),
                    &by_movement(Movement::Churn),
                    &by_movement(Movement::Reactivation),
                    &paying,
                ],
            )
            .await?;
        // A day whose movements all went (a late event moved them) has no row.
        transaction
            .execute(
                "DELETE FROM revenue.daily_changes t \
                 USING unnest($1::text[], $2::date[]) AS d (currency, day) \
                 WHERE t.currency = d.currency AND t.day = d.day \
                     AND t.new_units = 0 AND t.expansion_units = 0 AND t.contraction_units = 0 \
                     AND t.churn_units = 0 AND t.reactivation_units = 0 AND t.paying_change = 0",
                &[&currencies, &days],
            )
            .await?;
        Ok(())
    }

    async fn write_churned_months(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let changed: Vec<_> = self
            .churned_months
            .iter()
            .filter(|(_, n)| **n != 0)
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let currencies: Vec<&str> = changed
            .iter()
            .map(|((currency, _), _)| currency.code())
            .collect();
        let months: Vec<Date> = changed.iter().map(|((_, month), _)| *month).collect();
        let counts: Vec<i64> = changed.iter().map(|(_, count)| **count).collect();
        transaction
            .execute(
                "INSERT INTO revenue.churned_months AS t \
                 SELECT * FROM unnest($1::text[], $2::date[], $3::int8[]) \
                 ON CONFLICT (currency, month) DO UPDATE \
                 SET churned_customers = t.churned_customers + excluded.churned_customers",
                &[&currencies, &months, &counts],
            )
            .await?;
        transaction
            .execute(
                "DELETE FROM revenue.churned_months WHERE churned_customers = 0",
                &[],
            )
            .await?;
        Ok(())
    }

    async fn write_cohorts(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let changed: Vec<_> = self
            .cohorts
            .iter()
            .filter(|(_, change)| **change != (0, 0))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let currencies: Vec<&str> = changed
            .iter()
            .map(|((currency, _, _), _)| currency.code())
            .collect();
        let cohorts: Vec<Date> = changed.iter().map(|((_, cohort, _), _)| *cohort).collect();
        let months: Vec<Date> = changed.iter().map(|((_, _, month), _)| *month).collect();
        let customers: Vec<i64> = changed
            .iter()
            .map(|(_, (customers, _))| *customers)
            .collect();
        let units: Vec<String> = changed
            .iter()
            .map(|(_, (_, units))| units.to_string())
            .collect();
        transaction
            .execute(
                "INSERT INTO revenue.cohort_changes AS t \
                 SELECT * FROM unnest($1::text[], $2::date[], $3::date[], $4::int8[], $5::text[]::numeric[]) \
                 ON CONFLICT (currency, cohort_month, month) DO UPDATE SET \
                     customers_change = t.customers_change + excluded.customers_change, \
                     mrr_units_change = t.mrr_units_change + excluded.mrr_units_change",
                &[&currencies, &cohorts, &months, &customers, &units],
            )
            .await?;
        // A cohort is listed while one of its months has a change.
        transaction
            .execute(
                "DELETE FROM revenue.cohort_changes \
                 WHERE customers_change = 0 AND mrr_units_change = 0",
                &[],
            )
            .await?;
        Ok(())
    }
}

/// Key columns of `movements`, one vector each.
#[derive(Default)]
struct Columns3 {
    customers: Vec<Uuid>,
    currencies: Vec<&'static str>,
    days: Vec<Date>,
}

impl Columns3 {
    fn push(&mut self, customer: Uuid, currency: Currency, day: Date) {
        self.customers.push(customer);
        self.currencies.push(currency.code());
        self.days.push(day);
    }
}
