//! `ledger fx load FILE`: reference exchange rates into `reference.fx_rates`.
//!
//! The file is CSV, one rate per line: `day,currency,reporting_currency,rate`, e.g.
//! `2026-01-31,EUR,USD,1.0842` (an amount in EUR times the rate is in USD). A header line
//! starting with `day` is skipped. Rates are exact decimals, never floats. Loading a rate again
//! replaces it; the whole file loads in one transaction or not at all.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ledger_domain::Currency;
use time::Date;
use time::macros::format_description;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum FxCommand {
    /// Load (or replace) rates from a CSV file: day,currency,reporting_currency,rate.
    Load {
        /// The CSV file.
        file: PathBuf,
    },
}

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
struct Rate {
    day: Date,
    currency: Currency,
    reporting_currency: Currency,
    /// A positive decimal, as written.
    rate: String,
}

fn parse_line(line: &str) -> anyhow::Result<Rate> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [day, currency, reporting_currency, rate] = fields[..] else {
        bail!(
            "expected 4 fields (day,currency,reporting_currency,rate), found {}",
            fields.len()
        );
    };
    let day = Date::parse(day, format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("day {day:?} is not a date like 2026-01-31"))?;
    let currency = Currency::parse(currency)?;
    let reporting_currency = Currency::parse(reporting_currency)?;
    let (whole, fraction) = rate.split_once('.').unwrap_or((rate, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || rate.trim_matches(['0', '.']).is_empty()
    {
        bail!("rate {rate:?} is not a positive decimal like 1.0842");
    }
    Ok(Rate {
        day,
        currency,
        reporting_currency,
        rate: rate.to_owned(),
    })
}

pub(crate) async fn run(database_url: &str, command: FxCommand) -> anyhow::Result<ExitCode> {
    let FxCommand::Load { file } = command;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut rates = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (index == 0 && line.trim_start().starts_with("day")) {
            continue;
        }
        let rate = parse_line(line).with_context(|| {
            format!("{}, line {}: nothing was loaded", file.display(), index + 1)
        })?;
        rates.push(rate);
    }
    let mut client = crate::database::connect(database_url).await?;
    let transaction = client.transaction().await?;
    let days: Vec<Date> = rates.iter().map(|rate| rate.day).collect();
    let currencies: Vec<&str> = rates.iter().map(|rate| rate.currency.code()).collect();
    let reporting: Vec<&str> = rates
        .iter()
        .map(|rate| rate.reporting_currency.code())
        .collect();
    let values: Vec<&str> = rates.iter().map(|rate| rate.rate.as_str()).collect();
    let loaded = transaction
        .execute(
            "INSERT INTO reference.fx_rates (day, currency, reporting_currency, rate) \
             SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[]::numeric[]) \
             ON CONFLICT (reporting_currency, currency, day) DO UPDATE SET rate = excluded.rate",
            &[&days, &currencies, &reporting, &values],
        )
        .await
        .context("loading the rates failed (has `ledger migrate` run?)")?;
    transaction.commit().await?;
    println!("loaded {loaded} exchange rates from {}", file.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_exactly_or_fail_with_the_reason() {
        let rate = parse_line("2026-01-31, EUR ,USD,1.0842").expect("valid");
        assert_eq!(rate.rate, "1.0842");
        assert_eq!(rate.currency.code(), "EUR");
        for (line, reason) in [
            ("2026-01-31,EUR,USD", "expected 4 fields"),
            ("31/01/2026,EUR,USD,1.1", "not a date"),
            ("2026-01-31,EUR,USD,-1.1", "not a positive decimal"),
            ("2026-01-31,EUR,USD,0.000", "not a positive decimal"),
            ("2026-01-31,EUR,USD,1e3", "not a positive decimal"),
            ("2026-01-31,EURO,USD,1.1", "EURO"),
        ] {
            let error = format!("{:#}", parse_line(line).expect_err(line));
            assert!(error.contains(reason), "{line}: {error}");
        }
    }
}
