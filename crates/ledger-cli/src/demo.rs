//! `ledger demo`: the whole pipeline in one process on the private or configured services —
//! writer, projectors and the query service with its dashboard — fed a deterministic,
//! realistic customer history through NATS commands, as any client sends them.
//!
//! Customers join over the demo's months through Stripe, PayPal or Xendit, in USD, EUR or JPY;
//! they trial, convert, pay monthly or yearly invoices, fail payments and recover, upgrade,
//! downgrade, cancel at period end (some change their mind), get refunds and open disputes.
//! The generator (`ledger_devenv::demo`) runs `decide` locally to know each customer's state,
//! so every command is one the writer accepts; the writer decides again and appends. A sample
//! webhook integration hears about the history's notifications (`ledger_devenv::demo_notify`).
//!
//! Apart from the registrations, the history is what the payment providers reported (issuer
//! `payment_provider`: a customer changes plan or cancels in the provider's portal and its
//! webhook tells the ledger), so provider-sync, which the demo runs when connected to a Stripe
//! API (`--stripe-api-base`, `demo_stripe`), has nothing of it to carry out at the provider.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use ledger_bus::BusConfig;
use ledger_devenv::demo::{DemoCustomer, Generator, month_start_seconds, wait_for_projections};
use ledger_devenv::progress;
use ledger_domain::proto;
use ledger_domain::{decide, evolve, occurred_at_unix_micros};
use ledger_projector::{Projector, ProjectorConfig};
use ledger_query::{Projection, QueryConfig, QueryService, Scope, Tokens};
use ledger_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit;
use crate::demo_stripe::StripeConnection;
use ledger_devenv::demo_notify;

/// Customers whose commands are in flight at once (each customer's own commands go one after
/// the other, in order).
const SEND_CUSTOMERS_IN_FLIGHT_MAX: usize = 64;
/// How long one command may wait for the writer's answer before the client retries it.
const SEND_TIMEOUT_S: u64 = 30;
/// How long the projectors may take to catch up with the loaded history.
const CATCH_UP_TIMEOUT_S: u64 = 600;
/// The demo's API token (every query scope: metrics:read, customers:read, connectors:read,
/// and commands:write at the demo's ingest, so the dashboard offers operator actions);
/// the services listen on 127.0.0.1 unless told otherwise.
pub(crate) const DEMO_TOKEN: &str = "demo-token-change-me-0001";
/// A read-only token (metrics:read, customers:read; unknown to ingest): its dashboard offers
/// no actions.
const DEMO_READ_ONLY_TOKEN: &str = "demo-read-only-token-change-me-0001";
/// The login role the demo's query service uses: a member of `ledger_query` only.
const DEMO_QUERY_ROLE: &str = "ledger_query_demo";
/// Its password, for servers that ask for one (URL-safe characters).
const DEMO_QUERY_PASSWORD: &str = "demo-query-change-me-0001";

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Customers to generate.
    #[arg(long, default_value_t = 2_000)]
    customers: u32,
    /// Months of history.
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// Seed of the generator: the same seed gives the same history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The demo's database on the server; dropped and recreated by every run.
    #[arg(long, default_value = "ledger_demo")]
    database: String,
    /// Where the query service and dashboard listen.
    #[arg(long, env = "LEDGER_DEMO_BIND", default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// Load, verify, print the figures and exit instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Connects the demo to the Stripe API at this base URL (Stripe's test mode, or
    /// localstripe): provider-sync carries the dashboard's cancellations out there, and the
    /// demo's ingest takes its webhooks at /v1/webhooks/stripe. Needs LEDGER_STRIPE_API_KEY
    /// and LEDGER_STRIPE_WEBHOOK_SECRETS (or their _FILE variables).
    #[arg(long, value_name = "URL")]
    stripe_api_base: Option<String>,
}

/// Where the demo runs, from the global flags: a value the user gave (on the command line or
/// in the environment), or `None` when the demo chooses.
///
/// - `database_url`: the PostgreSQL server; the demo recreates `--database` on it (the URL's
///   own database is left alone). `None`: the server on 127.0.0.1:5432, else a private one.
/// - `nats_url`: the NATS server (JetStream required). `None`: 127.0.0.1:4222, else a private
///   one.
/// - `subject_prefix` / `stream_name`: `None`: `demo_<database>` / `DEMO_<DATABASE>`, deleted
///   and recreated by every run. A stream named here must be missing or empty: the demo does
///   not delete a stream it did not name itself.
#[derive(Debug)]
pub(crate) struct DemoTargets {
    pub(crate) database_url: Option<String>,
    pub(crate) nats_url: Option<String>,
    pub(crate) subject_prefix: Option<String>,
    pub(crate) stream_name: Option<String>,
    /// The NATS user every component of the demo connects as.
    pub(crate) nats_auth: ledger_bus::NatsAuth,
    /// The same credentials as flags, for the printed `ledger send` line.
    pub(crate) nats_auth_flags: Vec<String>,
}

/// The read models the demo keeps up to date: adding one is a line here (and, when the query
/// service reads it, its name in [`DEMO_PROJECTIONS`]).
fn spawn_projectors(context: &ProjectorContext) -> Vec<JoinHandle<anyhow::Result<()>>> {
    vec![
        context.spawn(projector_customers::CustomersProjector::new(
            context.store.clone(),
        )),
        context.spawn(projector_revenue::RevenueProjector::new(
            context.store.clone(),
            projector_revenue::RevenueSettings::default(),
        )),
        context.spawn_notify(),
    ]
}

/// The read models [`spawn_projectors`] starts, for readiness and the catch-up wait.
const DEMO_PROJECTIONS: [Projection; 2] = [Projection::Customers, Projection::Revenue];

/// What a projector needs to run in the demo.
struct ProjectorContext {
    store: Store,
    database_url: String,
    nats: async_nats::Client,
    config: ProjectorConfig,
    stop: watch::Receiver<bool>,
}

impl ProjectorContext {
    fn spawn<P: Projector>(&self, projector: P) -> JoinHandle<anyhow::Result<()>> {
        let database_url = self.database_url.clone();
        let nats = self.nats.clone();
        let config = self.config.clone();
        let stop = stopped(self.stop.clone());
        tokio::spawn(async move {
            ledger_projector::run(projector, &database_url, nats, &config, stop, |_| {}).await?;
            Ok(())
        })
    }

    /// The notify projector and its delivery worker.
    fn spawn_notify(&self) -> JoinHandle<anyhow::Result<()>> {
        let store = self.store.clone();
        let database_url = self.database_url.clone();
        let nats = self.nats.clone();
        let config = self.config.clone();
        let stop = stopped(self.stop.clone());
        tokio::spawn(async move {
            let delivery = demo_notify::loopback_delivery_config()?;
            projector_notify::run(
                store,
                &database_url,
                nats,
                &config,
                delivery,
                projector_notify::Rules::default(),
                false,
                stop,
                |_| {},
            )
            .await?;
            Ok(())
        })
    }
}

/// Runs ingest on `listener` (on a thread of its own: its server is not `Send`, as `ledger run
/// ingest` runs it on its main thread) until `stop`, admitting [`DEMO_TOKEN`] to send
/// customer commands and the dashboard's origin (`http://<query address>`) to call it.
fn spawn_ingest(
    listener: std::net::TcpListener,
    query_address: SocketAddr,
    client: ledger_bus::Client,
    webhooks: ledger_ingest::WebhookConfig,
    stop: watch::Receiver<bool>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || -> anyhow::Result<()> {
        let mut tokens = Tokens::default();
        tokens.add(DEMO_TOKEN, &[Scope::CommandsWrite]);
        let config = ledger_ingest::IngestConfig {
            bind: listener.local_addr()?,
            tokens,
            rate_limit: Some(ledger_ingest::RATE_LIMIT_DEFAULT),
            webhooks,
            cors_origins: ledger_ingest::AllowedOrigins::parse(&format!("http://{query_address}"))?,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ledger_ingest::serve_on(
                listener,
                config,
                client,
                stopped(stop),
            ))?;
        Ok(())
    })
}

/// Completes when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

pub(crate) async fn run(args: DemoArgs, targets: DemoTargets) -> anyhow::Result<()> {
    // Every check that can fail fast comes before the demo drops anything.
    check_bind(args.bind)?;
    let stripe = match &args.stripe_api_base {
        Some(api_base) => Some(StripeConnection::connect(api_base).await?),
        None => None,
    };
    let services =
        ledger_devenv::services::ensure_at(targets.database_url.clone(), targets.nats_url.clone())
            .await?;
    let nats = ledger_bus::connect(services.nats_url(), &targets.nats_auth, "ledger-demo").await?;
    check_jetstream(&nats, &ledger_bus::redact_url(services.nats_url())).await?;
    let bus = demo_bus(&args.database, &targets);
    prepare_stream(&nats, &bus.stream_name, targets.stream_name.is_some()).await?;

    let database_url =
        ledger_devenv::services::recreate_database(services.database_url(), &args.database).await?;
    let (mut client, connection) =
        tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    ledger_store::migrate(&mut client).await?;
    // The password matters only on a server that asks for one; like the demo's API token, it
    // is public.
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {DEMO_QUERY_ROLE} LOGIN IN ROLE ledger_query; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             ALTER ROLE {DEMO_QUERY_ROLE} PASSWORD '{DEMO_QUERY_PASSWORD}'"
        ))
        .await
        .context("creating the demo's query role")?;
    let query_url = ledger_devenv::services::database_url_with_user(
        &database_url,
        DEMO_QUERY_ROLE,
        DEMO_QUERY_PASSWORD,
    );
    let store = Store::connect(&database_url)?;

    let (stop, stop_seen) = watch::channel(false);
    let writer = tokio::spawn(ledger_writer::run(
        store.clone(),
        nats.clone(),
        ledger_writer::WriterConfig {
            bus: bus.clone(),
            secrets: Some(demo_notify::demo_secret_keys()?),
            ..ledger_writer::WriterConfig::default()
        },
        stopped(stop_seen.clone()),
    ));
    let projector_config = ProjectorConfig {
        bus: bus.clone(),
        ..ProjectorConfig::default()
    };
    let mut projectors = spawn_projectors(&ProjectorContext {
        store: store.clone(),
        database_url: database_url.clone(),
        nats: nats.clone(),
        config: projector_config.clone(),
        stop: stop_seen.clone(),
    });
    let (webhooks, stripe_api_base) = match stripe {
        Some(stripe) => {
            let webhooks = stripe.webhooks.clone();
            let api_base = stripe.api_base.clone();
            projectors.push(stripe.spawn_provider_sync(
                database_url.clone(),
                nats.clone(),
                projector_config,
                stopped(stop_seen.clone()),
            ));
            (webhooks, Some(api_base))
        }
        None => (ledger_ingest::WebhookConfig::default(), None),
    };
    let mut tokens = Tokens::default();
    tokens.add(DEMO_TOKEN, Scope::QUERY);
    tokens.add(
        DEMO_READ_ONLY_TOKEN,
        &[Scope::MetricsRead, Scope::CustomersRead],
    );
    // Ingest's port is taken first, so the dashboard can be told where it is.
    let ingest_listener = std::net::TcpListener::bind(SocketAddr::new(args.bind.ip(), 0))
        .map_err(|error| listen_error(SocketAddr::new(args.bind.ip(), 0), &error))?;
    let ingest_address = ingest_listener.local_addr()?;
    let mut query_config = QueryConfig::new(args.bind, query_url.clone(), tokens);
    query_config.bus = bus.clone();
    query_config.ready_projections = DEMO_PROJECTIONS.to_vec();
    query_config.ingest_url = Some(format!("http://{ingest_address}"));
    let service = QueryService::start(query_config, nats.clone()).await?;
    let (bound, bound_address) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(service.serve(stopped(stop_seen.clone()), move |addresses| {
        let _ = bound.send(addresses.first().copied());
    }));
    let Some(address) = bound_address.await.ok().flatten() else {
        return Err(match server.await {
            Ok(Err(ledger_query::QueryError::Bind { bind, error })) => listen_error(bind, &error),
            Ok(Err(error)) => anyhow::Error::new(error).context("the query service did not start"),
            Ok(Ok(())) => anyhow::anyhow!("the query service stopped before it listened"),
            Err(error) => anyhow::Error::new(error).context("the query service did not start"),
        });
    };

    // A long timeout: on a busy machine a retry of a command still in the writer's pipeline is
    // wasted work.
    let client = ledger_bus::Client::new(nats.clone(), bus.clone())
        .with_request_timeout(Duration::from_secs(SEND_TIMEOUT_S));
    let ingest = spawn_ingest(
        ingest_listener,
        address,
        ledger_bus::Client::new(nats.clone(), bus.clone()),
        webhooks,
        stop_seen.clone(),
    );
    let sample_webhook = demo_notify::register(&client, month_start_seconds(0) * 1_000_000).await?;
    let events_by_type = load(&args, &client).await?;
    let total: u64 = events_by_type.values().sum();
    println!(
        "demo: {} customers over {} months, {total} events sent through NATS to database {}",
        args.customers, args.months, args.database
    );
    for (event_type, count) in &events_by_type {
        println!("  {event_type:<28} {count:>8}");
    }
    anyhow::ensure!(
        audit::verify_store(&store, 1, None).await?,
        "the demo's own history failed verification"
    );
    let last_position = store.last_position().await?;
    wait_for_projections(
        &client_for(&query_url).await?,
        &DEMO_PROJECTIONS.map(Projection::name),
        last_position,
        Duration::from_secs(CATCH_UP_TIMEOUT_S),
    )
    .await?;
    print_figures(&client_for(&query_url).await?).await?;
    demo_notify::report(&sample_webhook, &database_url, last_position).await?;
    println!();
    if args.exit && services.postgres_is_private() {
        println!(
            "demo: stopped; its private PostgreSQL and nats-server are stopped and removed \
             (point --database-url / --nats-url at servers of your own to keep the history)"
        );
    } else if args.exit {
        println!(
            "demo: stopped; database {} stays for `ledger audit verify`",
            args.database
        );
    } else {
        print_how_to_reach(
            address,
            ingest_address,
            &ledger_devenv::services::redact_password(&database_url),
            &ledger_bus::redact_url(services.nats_url()),
            &bus,
            &targets.nats_auth_flags,
        )?;
        if let Some(api_base) = stripe_api_base {
            println!(
                "stripe:    provider-sync calls {api_base}; its webhooks go to \
                 http://{ingest_address}/v1/webhooks/stripe"
            );
        }
        println!("serving until Ctrl-C");
        crate::shutdown().await;
    }
    let _ = stop.send(true);
    server.await??;
    ingest
        .join()
        .map_err(|_| anyhow::anyhow!("the demo's ingest thread panicked"))??;
    writer.await??;
    for projector in projectors {
        projector.await??;
    }
    Ok(())
}

/// Generates the history month by month and sends it, customers in parallel, each customer's
/// commands in order. Returns the appended events by type.
async fn load(
    args: &DemoArgs,
    client: &ledger_bus::Client,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut generator = Generator::new(args.seed);
    let mut customers: Vec<DemoCustomer> = (0..args.customers)
        .map(|index| generator.customer(index, args.months))
        .collect();
    let bar = progress::events_bar(u64::from(args.months), "months");
    let mut events_by_type: BTreeMap<String, u64> = BTreeMap::new();
    for month in 0..args.months {
        let mut batches: Vec<Vec<proto::Command>> = Vec::new();
        for customer in &mut customers {
            let commands = generator.commands(customer, month);
            for command in &commands {
                let events = decide(&customer.state, command).with_context(|| {
                    format!("the demo generated a rejected command {command:?}")
                })?;
                customer.state = events.iter().fold(customer.state.clone(), |state, event| {
                    evolve(state, event, occurred_at_unix_micros(command))
                });
            }
            if !commands.is_empty() {
                batches.push(commands);
            }
        }
        let answers: Vec<Vec<proto::Accepted>> =
            futures_util::stream::iter(batches)
                .map(|commands| {
                    let client = client.clone();
                    async move {
                        let mut answers = Vec::with_capacity(commands.len());
                        for command in &commands {
                            answers.push(client.send(command).await.with_context(|| {
                                format!("the writer did not accept {command:?}")
                            })?);
                        }
                        anyhow::Ok(answers)
                    }
                })
                .buffer_unordered(SEND_CUSTOMERS_IN_FLIGHT_MAX)
                .try_collect()
                .await?;
        for accepted in answers.iter().flatten() {
            for event in &accepted.events {
                *events_by_type.entry(event.event_type.clone()).or_default() += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let statuses = customers
        .iter()
        .fold(BTreeMap::new(), |mut counts, customer| {
            for subscription in customer.state.subscriptions.values() {
                *counts
                    .entry(format!("{:?}", subscription.status))
                    .or_insert(0u64) += 1;
            }
            counts
        });
    println!("subscriptions by status: {statuses:?}");
    Ok(events_by_type)
}

/// The dashboard, API and OpenAPI addresses, the servers, and a `ledger send` line that
/// registers a customer through the running demo, ready to paste.
fn print_how_to_reach(
    address: SocketAddr,
    ingest_address: SocketAddr,
    database_url: &str,
    nats_url: &str,
    bus: &BusConfig,
    nats_auth_flags: &[String],
) -> anyhow::Result<()> {
    let ledger = std::env::current_exe()
        .context("cannot find the path of the running ledger binary")?
        .display()
        .to_string();
    let mut send = vec![
        ledger,
        "--nats-url".to_owned(),
        nats_url.to_owned(),
        "--subject-prefix".to_owned(),
        bus.subject_prefix.clone(),
    ];
    send.extend(nats_auth_flags.iter().cloned());
    send.extend(
        [
            "send",
            "register_customer",
            "--json",
            r#"{"email": "ada@example.com", "name": "Ada Lovelace"}"#,
        ]
        .map(str::to_owned),
    );
    let deliveries = shlex::try_join([send[0].as_str(), "notify", "deliveries"])
        .context("the path of the ledger binary holds a NUL byte")?;
    let send = shlex::try_join(send.iter().map(String::as_str))
        .context("a path or flag of the `ledger send` line holds a NUL byte")?;
    println!("dashboard: http://{address}/#token={DEMO_TOKEN}");
    println!(
        "API:       curl -H 'Authorization: Bearer {DEMO_TOKEN}' http://{address}/v1/metrics/summary?currency=USD"
    );
    println!("OpenAPI:   http://{address}/v1/openapi.json");
    println!(
        "ingest:    http://{ingest_address} (operator actions from the dashboard, token {DEMO_TOKEN})"
    );
    println!(
        "read-only: http://{address}/#token={DEMO_READ_ONLY_TOKEN} (a dashboard without actions)"
    );
    println!("database:  {database_url}");
    println!(
        "NATS:      {nats_url}, subjects {}.cmd.<command>, stream {}",
        bus.subject_prefix, bus.stream_name
    );
    println!(
        "notifications: DATABASE_URL={} {deliveries}{}",
        shlex::try_quote(database_url).context("the database URL holds a NUL byte")?,
        if database_url.contains(":***@") {
            "  (with the password in place of ***)"
        } else {
            ""
        }
    );
    println!("send a command:");
    println!(
        "  {send}{}",
        if nats_url.contains("***@") {
            "  (with the NATS password or token in place of ***)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The demo's subjects and stream: the ones given, else named after its database.
fn demo_bus(database: &str, targets: &DemoTargets) -> BusConfig {
    let token = database
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    BusConfig {
        subject_prefix: targets
            .subject_prefix
            .clone()
            .unwrap_or_else(|| format!("demo_{token}")),
        stream_name: targets
            .stream_name
            .clone()
            .unwrap_or_else(|| format!("DEMO_{}", token.to_uppercase())),
        ..BusConfig::default()
    }
}

/// Fails with the address, the cause and the flag to choose another when `bind` cannot be
/// listened on. The query service binds again later (the port could be taken in between; that
/// failure gets the same message).
fn check_bind(bind: SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(bind)
        .map(drop)
        .map_err(|error| listen_error(bind, &error))
}

fn listen_error(bind: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    let cause = match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process listens on port {} (`ss -ltnp 'sport = :{}'` names it)",
            bind.port(),
            bind.port()
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{} is not an address of this machine", bind.ip())
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("port {} needs privileges", bind.port())
        }
        _ => error.to_string(),
    };
    anyhow::anyhow!(
        "the demo's dashboard cannot listen on {bind}: {cause}; choose another address with \
         --bind 127.0.0.1:8091 (or LEDGER_DEMO_BIND), or --bind 127.0.0.1:0 for any free port"
    )
}

/// Fails with the fix when the NATS server at `url` has no JetStream (the demo's writer
/// publishes every event to a stream). Asks `$JS.API.INFO` directly: a server without
/// JetStream has no responder there.
async fn check_jetstream(nats: &async_nats::Client, url: &str) -> anyhow::Result<()> {
    use async_nats::RequestErrorKind;
    let reply = match nats.request("$JS.API.INFO", bytes::Bytes::new()).await {
        Ok(reply) => reply,
        Err(error) if error.kind() == RequestErrorKind::NoResponders => anyhow::bail!(
            "NATS at {url} does not have JetStream enabled, and the ledger keeps its events in a \
             JetStream stream: start nats-server with -js (or with a `jetstream {{}}` block in \
             its configuration, as deploy/nats-server.conf has), or point --nats-url / NATS_URL \
             at a server that has it"
        ),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("cannot ask NATS at {url} about JetStream"));
        }
    };
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("NATS at {url} answered $JS.API.INFO with something not JSON"))?;
    if let Some(error) = info.get("error") {
        let description = error
            .get("description")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no description");
        anyhow::bail!(
            "NATS at {url} refuses JetStream to this connection ({description}): enable \
             JetStream for its account (`jetstream: enabled` in the account's configuration)"
        );
    }
    Ok(())
}

/// Deletes the demo's own stream left by an earlier run; a stream the user named is only
/// accepted when missing or empty.
async fn prepare_stream(
    nats: &async_nats::Client,
    stream_name: &str,
    named_by_user: bool,
) -> anyhow::Result<()> {
    let jetstream = async_nats::jetstream::new(nats.clone());
    if !named_by_user {
        let _ = jetstream.delete_stream(stream_name).await;
        return Ok(());
    }
    let Ok(mut stream) = jetstream.get_stream(stream_name).await else {
        return Ok(());
    };
    let messages = stream
        .info()
        .await
        .with_context(|| format!("cannot read stream {stream_name}"))?
        .state
        .messages;
    anyhow::ensure!(
        messages == 0,
        "stream {stream_name} already holds {messages} messages and the demo starts from an \
         empty stream: choose another --stream-name (or LEDGER_STREAM_NAME), or delete the \
         stream if it is an earlier demo's (`nats stream rm {stream_name}`)"
    );
    Ok(())
}

async fn client_for(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Headline figures per currency on its last day with data, read with the query role from
/// the read models (the dashboard shows the same).
async fn print_figures(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let customers: i64 = client
        .query_one("SELECT count(*) FROM customers.customers", &[])
        .await?
        .get(0);
    println!("customers: {customers}; headline figures on each currency's last day:");
    let rows = client
        .query(
            "SELECT DISTINCT ON (d.currency) d.currency, d.day::text, d.mrr::bigint, \
               d.arr::bigint, round(d.arpa)::bigint, d.paying_customers, \
               (SELECT round(c.customer_churn_rate * 100, 2)::text FROM revenue.monthly_churn c \
                WHERE c.currency = d.currency \
                  AND c.month = (date_trunc('month', d.day) - interval '1 month')::date) \
             FROM revenue.daily_mrr d ORDER BY d.currency, d.day DESC",
            &[],
        )
        .await?;
    for row in rows {
        let currency: String = row.get(0);
        let day: String = row.get(1);
        let exponent =
            ledger_domain::Currency::parse(&currency).map_or(2, ledger_domain::Currency::exponent);
        let amount = |index: usize| {
            row.get::<_, Option<i64>>(index)
                .map_or_else(|| "-".to_owned(), |minor| format_minor(minor, exponent))
        };
        let churn: Option<String> = row.get(6);
        println!(
            "  {currency} on {day}: MRR {}  ARR {}  ARPA {}  paying customers {}  customer churn last month {}",
            amount(2),
            amount(3),
            amount(4),
            row.get::<_, i64>(5),
            churn.map_or_else(|| "-".to_owned(), |rate| format!("{rate} %")),
        );
    }
    Ok(())
}

/// `minor` units with `exponent` decimals and thousands separators, exactly.
fn format_minor(minor: i64, exponent: u8) -> String {
    let digits = minor.unsigned_abs().to_string();
    let exponent = usize::from(exponent);
    let digits = format!("{digits:0>width$}", width = exponent + 1);
    let (whole, fraction) = digits.split_at(digits.len() - exponent);
    let mut grouped = String::new();
    for (index, char) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(char);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units_exactly() {
        assert_eq!(format_minor(123_456_789, 2), "1,234,567.89");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(1_000, 0), "1,000");
    }
}
