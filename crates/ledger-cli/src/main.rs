//! `ledger`: the single binary of the billing ledger.
//!
//! Operational commands (`migrate`, `audit verify`) talk to the database named by
//! `DATABASE_URL`; `demo`, `bench` and `with-services` find or start PostgreSQL and NATS
//! themselves (see `ledger-testkit`'s `services`).

mod audit;
mod bench;
mod demo;
mod progress;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ledger", version, about = "Event-sourced billing ledger")]
struct Cli {
    /// PostgreSQL database of the event store.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ledger",
        global = true
    )]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the event store's migrations.
    Migrate,
    /// Audit the event store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Load a generated, deterministic customer history and verify it (starts private
    /// PostgreSQL and NATS when none are configured or running).
    Demo(demo::DemoArgs),
    /// Run a benchmark and print its figures next to a raw PostgreSQL baseline.
    Bench {
        #[command(subcommand)]
        target: bench::BenchTarget,
    },
    /// Run a command with DATABASE_URL and NATS_URL pointing at running servers, starting
    /// private ones (stopped afterwards) when none are configured or running.
    WithServices {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and name the first position that does not match.
    Verify(audit::VerifyArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Migrate => {
            let (mut client, connection) =
                tokio_postgres::connect(&cli.database_url, tokio_postgres::NoTls)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot connect to {}: is PostgreSQL running and DATABASE_URL right?",
                            cli.database_url
                        )
                    })?;
            tokio::spawn(connection);
            ledger_store::migrate(&mut client).await?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify(args),
        } => audit::verify(&cli.database_url, args).await,
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench { target } => bench::run(target).await.map(|()| ExitCode::SUCCESS),
        Command::WithServices { command } => with_services(command).await,
    }
}

async fn with_services(command: Vec<String>) -> anyhow::Result<ExitCode> {
    let services = ledger_testkit::services::ensure().await?;
    let (program, arguments) = command
        .split_first()
        .context("with-services needs a command to run")?;
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .env("DATABASE_URL", services.database_url())
        .env("NATS_URL", services.nats_url())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = tokio::signal::ctrl_c() => {
            // The child got the same interrupt from the terminal; let it finish.
            child.wait().await?
        }
    };
    drop(services);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
