//! `ledger`: the single binary of the billing ledger.
//!
//! Operational commands (`migrate`, `audit verify`) talk to the database named by
//! `DATABASE_URL`; `demo`, `bench` and `with-services` find or start PostgreSQL and NATS
//! themselves (see `ledger-testkit`'s `services`).

mod access;
mod audit;
mod connectors;
mod database;
mod demo;
mod demo_stripe;
mod fx;
mod ingest;
mod notify;
mod observability;
mod projectors;
mod provider_sync;
mod query;
mod reconcile;
mod send;
mod sync;

use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::projectors::ProjectorsArgs;

/// mimalloc instead of the system allocator: projectors fold millions of small, short-lived
/// aggregates on several threads, and rebuild 15-20 % faster with it (docs/decisions/0009).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// A file holding the database URL, password included, instead of DATABASE_URL: the
    /// password then shows neither in the process's environment nor in its command line.
    #[arg(long, env = "DATABASE_URL_FILE", global = true)]
    database_url_file: Option<std::path::PathBuf>,
    /// NATS server of the command bus and the event stream; for a cluster, its servers' URLs
    /// separated by commas (`nats://n1:4222,nats://n2:4222,nats://n3:4222`).
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    nats_url: String,
    /// First token of the ledger's NATS subjects (`<prefix>.cmd.<command>`, ...).
    #[arg(
        long,
        env = "LEDGER_SUBJECT_PREFIX",
        default_value = "ledger",
        global = true
    )]
    subject_prefix: String,
    /// The JetStream stream of appended events.
    #[arg(
        long,
        env = "LEDGER_STREAM_NAME",
        default_value = "LEDGER_EVENTS",
        global = true
    )]
    stream_name: String,
    #[command(flatten)]
    nats_auth: NatsAuthArgs,
    #[command(flatten)]
    metrics: observability::MetricsArgs,
    #[command(subcommand)]
    command: Command,
}

/// Credentials of the NATS user a component connects as (docs/security.md). Without any, the
/// connection is anonymous, for a server without authorization (development).
#[derive(Debug, clap::Args)]
struct NatsAuthArgs {
    /// A `.creds` file (user JWT and nkey seed).
    #[arg(long, env = "NATS_CREDS", global = true)]
    nats_creds: Option<std::path::PathBuf>,
    /// A user of the server's authorization block (deploy/nats-auth.conf), with
    /// --nats-password-file.
    #[arg(long, env = "NATS_USER", global = true)]
    nats_user: Option<String>,
    /// The file holding the NATS user's password.
    #[arg(long, env = "NATS_PASSWORD_FILE", global = true)]
    nats_password_file: Option<std::path::PathBuf>,
    /// A file holding a user nkey seed (`SU...`).
    #[arg(long, env = "NATS_NKEY_FILE", global = true)]
    nats_nkey_file: Option<std::path::PathBuf>,
    /// Prefix of this connection's reply subjects; default `_INBOX.<user>` with --nats-user,
    /// else `_INBOX`.
    #[arg(long, env = "NATS_INBOX_PREFIX", global = true)]
    nats_inbox_prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the event store's migrations.
    Migrate,
    /// Run a service until Ctrl-C / SIGTERM.
    Run {
        #[command(subcommand)]
        component: Component,
    },
    /// Drop a projector's read model and rebuild it from the event table (with progress), then
    /// keep it up to date from the stream until Ctrl-C / SIGTERM.
    Replay(ProjectorsArgs),
    /// Send one command to the writer over NATS and print its answer as JSON.
    Send(send::SendArgs),
    /// Audit the event store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Load a generated, deterministic customer history and verify it (starts private
    /// PostgreSQL and NATS when none are configured or running).
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo(demo::DemoArgs),
    /// Reference exchange rates the read side converts totals with.
    Fx {
        #[command(subcommand)]
        command: fx::FxCommand,
    },
    /// Run a benchmark and print its figures next to a raw PostgreSQL baseline.
    Bench {
        #[command(subcommand)]
        target: ledger_bench::BenchTarget,
    },
    /// Operate the monitoring notifications: integrations, deliveries, retries, a test message.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
    /// The payment providers' inbox: list recorded webhook deliveries, re-run normalization.
    Connectors {
        #[command(subcommand)]
        command: connectors::ConnectorsCommand,
    },
    /// What provider-sync did: `ledger provider-sync attempts [--failed]` lists the requests
    /// made to the payment providers (docs/connectors.md, "Outbound: provider-sync").
    ProviderSync {
        #[command(subcommand)]
        command: provider_sync::ProviderSyncCommand,
    },
    /// Import a payment provider account's history through the writer: `ledger sync stripe
    /// [--since DATE] [--pages N]` (docs/connectors.md, "Backfill").
    Sync {
        #[command(subcommand)]
        command: sync::SyncCommand,
    },
    /// Run a command with DATABASE_URL and NATS_URL pointing at running servers, starting
    /// private ones (stopped afterwards) when none are configured or running.
    WithServices {
        /// Start a private NATS JetStream cluster of this many nodes on loopback ports (whatever
        /// NATS_URL says); NATS_URL lists them all and LEDGER_STREAM_REPLICAS defaults to it.
        #[arg(long, value_name = "NODES", value_parser = clap::value_parser!(u8).range(1..=5))]
        nats_cluster: Option<u8>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// How the demo reads the global flags (see `demo::DemoTargets`).
const DEMO_AFTER_HELP: &str = "\
In the demo, --database-url names the PostgreSQL server: the demo drops and recreates --database \
on it and leaves the URL's own database alone. Without --database-url / --nats-url it uses the \
servers on 127.0.0.1:5432 / 127.0.0.1:4222, or starts private ones when nothing answers there. \
Without --subject-prefix / --stream-name its subjects and stream are demo_<database> / \
DEMO_<DATABASE>, recreated by every run; a stream named with --stream-name must be missing or \
empty. The NATS credential flags apply to every component of the demo.";

#[derive(Debug, Subcommand)]
enum Component {
    /// The command service: the only process that appends events. Start several: one leads,
    /// the others wait as standbys.
    Writer(WriterArgs),
    /// Projectors: each keeps its read model up to date from the event stream.
    Projector(ProjectorsArgs),
    /// The HTTP front door for writes: POST /v1/customers and /v1/commands/{name}.
    Ingest(ingest::IngestArgs),
    /// The query service and dashboard: read models over HTTP (`/v1`, `/`).
    Query(query::QueryArgs),
    /// Carries the ledger's internal requests (cancellations) out at Stripe, PayPal and
    /// Xendit and records their answers; needs LEDGER_STRIPE_API_KEY, LEDGER_PAYPAL_CLIENT_ID
    /// and _SECRET, or LEDGER_XENDIT_API_KEY (docs/connectors.md, "Outbound: provider-sync").
    ProviderSync(provider_sync::RunArgs),
}

/// Settings of the writer and of the JetStream stream it creates when it is missing.
#[derive(Debug, clap::Args)]
struct WriterArgs {
    /// Copies JetStream keeps of each event: 1 on a single server, 3 in a cluster.
    #[arg(long, env = "LEDGER_STREAM_REPLICAS", default_value_t = 1)]
    stream_replicas: usize,
    /// Days events stay in the stream; 0 keeps them forever (the event table is the truth). At
    /// most 36,500 (a hundred years): JetStream holds the age in nanoseconds as a signed 64-bit
    /// number, which a larger value would overflow.
    #[arg(long, env = "LEDGER_STREAM_MAX_AGE_DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    stream_max_age_days: u64,
    /// Commands waiting to be decided; beyond it, commands are answered `busy`.
    #[arg(
        long,
        env = "LEDGER_WRITER_QUEUE_COMMANDS_MAX",
        default_value_t = 10_000
    )]
    queue_commands_max: usize,
    /// Commands appended in one transaction at most.
    #[arg(
        long,
        env = "LEDGER_WRITER_BATCH_COMMANDS_MAX",
        default_value_t = 1_000
    )]
    batch_commands_max: usize,
    /// MiB of customer states kept in memory (by their estimated size; a state grows with its
    /// customer's history, every payment kept for refunds and disputes). Commands for a
    /// customer not kept read its events from the store first.
    #[arg(long, env = "LEDGER_WRITER_CACHE_MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    cache_mib: u64,
    /// The keys that seal integration secrets before they are recorded; without them
    /// integrations are refused.
    #[command(flatten)]
    secrets: notify::SecretsArgs,
}

impl Cli {
    /// The NATS user the command connects as.
    fn nats_auth(&self) -> ledger_bus::NatsAuth {
        ledger_bus::NatsAuth {
            creds_file: self.nats_auth.nats_creds.clone(),
            user: self.nats_auth.nats_user.clone(),
            password_file: self.nats_auth.nats_password_file.clone(),
            nkey_seed_file: self.nats_auth.nats_nkey_file.clone(),
            inbox_prefix: self.nats_auth.nats_inbox_prefix.clone(),
        }
    }

    /// The NATS credential flags as a command line repeats them (for the demo's `ledger send`
    /// line).
    fn nats_auth_flags(&self) -> Vec<String> {
        let auth = &self.nats_auth;
        let paths = [
            ("--nats-creds", &auth.nats_creds),
            ("--nats-password-file", &auth.nats_password_file),
            ("--nats-nkey-file", &auth.nats_nkey_file),
        ];
        let texts = [
            ("--nats-user", &auth.nats_user),
            ("--nats-inbox-prefix", &auth.nats_inbox_prefix),
        ];
        let paths = paths.into_iter().filter_map(|(flag, path)| {
            let path = path.as_ref()?;
            // An absolute path, so the line works from any directory.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            Some((flag, path.display().to_string()))
        });
        let texts = texts
            .into_iter()
            .filter_map(|(flag, text)| Some((flag, text.clone()?)));
        paths
            .chain(texts)
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect()
    }

    /// The servers and names the demo was told to use: a value given on the command line or in
    /// the environment, `None` for a default (the demo then chooses).
    fn demo_targets(&self, matches: &clap::ArgMatches) -> demo::DemoTargets {
        let given = |id: &str, value: &String| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
            .then(|| value.clone())
        };
        demo::DemoTargets {
            database_url: given("database_url", &self.database_url).or_else(|| {
                self.database_url_file
                    .is_some()
                    .then(|| self.database_url.clone())
            }),
            nats_url: given("nats_url", &self.nats_url),
            subject_prefix: given("subject_prefix", &self.subject_prefix),
            stream_name: given("stream_name", &self.stream_name),
            nats_auth: self.nats_auth(),
            nats_auth_flags: self.nats_auth_flags(),
        }
    }

    /// Reads `--database-url-file` into `database_url`; both given is an error.
    fn read_database_url_file(&mut self, matches: &clap::ArgMatches) -> anyhow::Result<()> {
        let Some(path) = &self.database_url_file else {
            return Ok(());
        };
        anyhow::ensure!(
            !matches!(
                matches.value_source("database_url"),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ),
            "set DATABASE_URL (--database-url) or DATABASE_URL_FILE (--database-url-file), not both"
        );
        self.database_url = database::url_from_file("DATABASE_URL_FILE", path)?;
        Ok(())
    }

    /// The role this process plays, as logs and metrics name it (`service`).
    fn service(&self) -> &'static str {
        match &self.command {
            Command::Run { component } => match component {
                Component::Writer(_) => "writer",
                Component::Projector(_) => "projector",
                Component::Ingest(_) => "ingest",
                Component::Query(_) => "query",
                Component::ProviderSync(_) => "provider-sync",
            },
            Command::Replay(_) => "replay",
            _ => "ledger",
        }
    }

    fn bus(&self) -> ledger_bus::BusConfig {
        ledger_bus::BusConfig {
            subject_prefix: self.subject_prefix.clone(),
            stream_name: self.stream_name.clone(),
            ..ledger_bus::BusConfig::default()
        }
    }
}

impl WriterArgs {
    fn config(&self, bus: ledger_bus::BusConfig) -> anyhow::Result<ledger_writer::WriterConfig> {
        let defaults = ledger_writer::WriterConfig::default();
        Ok(ledger_writer::WriterConfig {
            bus: ledger_bus::BusConfig {
                stream_replicas: self.stream_replicas,
                stream_max_age: std::time::Duration::from_secs(self.stream_max_age_days * 86_400),
                ..bus
            },
            queue_commands_max: self.queue_commands_max,
            batch_commands_max: self.batch_commands_max,
            cache_bytes_max: self.cache_mib * 1024 * 1024,
            secrets: self.secrets.keys()?,
            ..defaults
        })
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain, name the first position that does not match, and compare the
    /// table's head with the stream's last message and the projectors' checkpoints (a copy
    /// ahead of the table: its tail was deleted). Exit 1: tampered; 2: incomplete.
    Verify(audit::VerifyArgs),
}

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => naming_the_environment_variable(error).exit(),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Err(error) = observability::init_logging(cli.service()) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = cli.read_database_url_file(&matches) {
        observability::fatal(&format!("{error:#}"));
        return ExitCode::FAILURE;
    }
    let demo_targets = cli.demo_targets(&matches);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, demo_targets)) {
        Ok(code) => code,
        Err(error) => {
            observability::fatal(&ledger_store::error_text(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `error` naming the environment variable its refused value came from: clap names only the
/// flag (`invalid value '0' for '--cache-mib <CACHE_MIB>'`) even when the value is its `env`
/// setting's. The flag then reads `--cache-mib <CACHE_MIB> / LEDGER_WRITER_CACHE_MIB`, as the
/// settings checked after parsing name theirs (`--metrics-allow / LEDGER_METRICS_ALLOW`). Any
/// other error, or a value given on the command line, is left as it is.
fn naming_the_environment_variable(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let (flag, value) = (flag.clone(), value.clone());
    let arguments: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|argument| argument.to_string_lossy().into_owned())
        .collect();
    // The command and the subcommands the arguments name: their own flags and the globals
    // (built, so that each flag shows as clap names it).
    let mut root = Cli::command();
    root.build();
    let mut commands = vec![root];
    for argument in &arguments {
        let subcommand = commands
            .last()
            .and_then(|command| command.find_subcommand(argument))
            .cloned();
        commands.extend(subcommand);
    }
    let given = |spelling: String| {
        arguments
            .iter()
            .any(|argument| *argument == spelling || argument.starts_with(&format!("{spelling}=")))
    };
    let variable = commands
        .iter()
        .flat_map(|command| command.get_arguments())
        .filter(|argument| argument.to_string() == flag)
        .filter(|argument| {
            !argument
                .get_long()
                .is_some_and(|long| given(format!("--{long}")))
                && !argument
                    .get_short()
                    .is_some_and(|short| given(format!("-{short}")))
        })
        .find_map(|argument| {
            let variable = argument.get_env()?;
            // A list setting's text is split at its delimiter; clap refuses one of the values.
            let holds = |set: &str| match argument.get_value_delimiter() {
                Some(delimiter) => set.split(delimiter).any(|part| part == value),
                None => set == value,
            };
            std::env::var_os(variable)
                .is_some_and(|set| holds(&set.to_string_lossy()))
                .then(|| variable.to_string_lossy().into_owned())
        });
    if let Some(variable) = variable {
        error.insert(
            ContextKind::InvalidArg,
            ContextValue::String(format!("{flag} / {variable}")),
        );
    }
    error
}

async fn run(cli: Cli, demo_targets: demo::DemoTargets) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Run { .. } | Command::Replay(_)) {
        cli.metrics.install(cli.service())?;
    }
    let bus = cli.bus();
    let nats_auth = cli.nats_auth();
    let connect_nats = |component| ledger_bus::connect(&cli.nats_url, &nats_auth, component);
    let connect_service =
        |component| ledger_bus::connect_service(&cli.nats_url, &nats_auth, component);
    match cli.command {
        Command::Migrate => {
            let mut client = database::connect(&cli.database_url).await?;
            ledger_store::migrate(&mut client).await?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            component: Component::Writer(args),
        } => {
            let store = ledger_store::Store::connect(&cli.database_url)?;
            let nats = connect_service("ledger-writer").await?;
            ledger_writer::serve(store, nats, args.config(bus)?, shutdown()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            component: Component::Ingest(args),
        } => {
            let config = args.config()?;
            let nats = connect_service("ledger-ingest").await?;
            let client = ledger_bus::Client::new(nats, bus);
            ledger_ingest::serve(config, client, shutdown()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            component: Component::Query(args),
        } => {
            let config = args.config(bus)?;
            let nats = connect_service("ledger-query").await?;
            let service = ledger_query::QueryService::start(config, nats).await?;
            service.serve(shutdown(), |_| {}).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            component: Component::Projector(ref args),
        } => {
            let nats = connect_service("ledger-projector").await?;
            run_projectors(&cli.database_url, nats, bus, args, false).await
        }
        Command::Run {
            component: Component::ProviderSync(ref args),
        } => {
            let nats = connect_service("ledger-provider-sync").await?;
            provider_sync::run(&cli.database_url, nats, bus, args).await
        }
        Command::ProviderSync { command } => {
            provider_sync::command(&cli.database_url, command).await
        }
        Command::Replay(ref args) => {
            let nats = connect_service("ledger-replay").await?;
            run_projectors(&cli.database_url, nats, bus, args, true).await
        }
        Command::Fx { command } => fx::run(&cli.database_url, command).await,
        Command::Send(ref args) => {
            let nats = connect_nats("ledger-send").await?;
            send::run(nats, bus, args).await
        }
        Command::Audit {
            command: AuditCommand::Verify(args),
        } => {
            let stream = audit::StreamLocation {
                nats_url: &cli.nats_url,
                nats_auth: &nats_auth,
                stream_name: &cli.stream_name,
            };
            audit::verify(&cli.database_url, stream, args).await
        }
        Command::Demo(args) => demo::run(args, demo_targets)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Bench { target } => ledger_bench::run(target).await.map(|()| ExitCode::SUCCESS),
        Command::Notify { command } => notify::run(&cli.database_url, command).await,
        Command::Connectors {
            command:
                connectors::ConnectorsCommand::Messages {
                    provider,
                    outcome,
                    limit,
                },
        } => connectors::messages(&cli.database_url, provider, outcome, limit).await,
        Command::Connectors {
            command: connectors::ConnectorsCommand::Renormalize { provider, since },
        } => {
            let nats = connect_nats("ledger-connectors").await?;
            connectors::renormalize(&cli.database_url, nats, bus, provider, since).await
        }
        Command::Sync {
            command: sync::SyncCommand::Stripe(ref args),
        } => {
            let nats = connect_nats("ledger-sync").await?;
            sync::stripe(&cli.database_url, nats, bus, args).await
        }
        Command::Sync {
            command: sync::SyncCommand::Paypal(ref args),
        } => {
            let nats = connect_nats("ledger-sync").await?;
            sync::paypal(&cli.database_url, nats, bus, args).await
        }
        Command::Sync {
            command: sync::SyncCommand::Xendit(ref args),
        } => {
            let nats = connect_nats("ledger-sync").await?;
            sync::xendit(&cli.database_url, nats, bus, args).await
        }
        Command::WithServices {
            nats_cluster,
            command,
        } => with_services(nats_cluster, command).await,
    }
}

/// Runs (or replays, then runs) projectors until Ctrl-C / SIGTERM.
async fn run_projectors(
    database_url: &str,
    nats: async_nats::Client,
    bus: ledger_bus::BusConfig,
    args: &ProjectorsArgs,
    replay: bool,
) -> anyhow::Result<ExitCode> {
    let store = ledger_store::Store::connect(database_url)?;
    let config = ledger_projector::ProjectorConfig {
        bus,
        table_page_events: args.page_events,
        states_bytes_max: usize::try_from(args.states_mib * 1024 * 1024).unwrap_or(usize::MAX),
        ..ledger_projector::ProjectorConfig::default()
    };
    projectors::run(store, database_url, nats, &config, args, replay).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM: services stop taking work, finish what is in flight, exit.
pub(crate) async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

async fn with_services(nats_cluster: Option<u8>, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let services = match nats_cluster {
        Some(nodes) => {
            ledger_devenv::services::ensure_with_nats_cluster(usize::from(nodes)).await?
        }
        None => ledger_devenv::services::ensure().await?,
    };
    let (program, arguments) = command
        .split_first()
        .context("with-services needs a command to run")?;
    let mut child = tokio::process::Command::new(program);
    child
        .args(arguments)
        .env("DATABASE_URL", services.database_url())
        .env("NATS_URL", services.nats_url());
    // Every node keeps a copy of each event, unless the caller chose otherwise.
    if let Some(nodes) = nats_cluster
        && std::env::var_os("LEDGER_STREAM_REPLICAS").is_none()
    {
        child.env("LEDGER_STREAM_REPLICAS", nodes.to_string());
    }
    let mut child = child
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
