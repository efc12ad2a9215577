//! A PostgreSQL and a NATS (JetStream) server to talk to.
//!
//! [`ensure`] picks, for each server, the first that applies:
//!
//! 1. the URL in `DATABASE_URL` / `NATS_URL`;
//! 2. the shared server answering on `127.0.0.1:5432` / `127.0.0.1:4222`;
//! 3. a private instance on a free port, started from the installed binaries with the settings in
//!    `deploy/postgresql.conf` / `deploy/nats-server.conf`, its data under
//!    `<workspace>/target/ledger-services/`. It is stopped and its data removed when the
//!    [`Services`] (or [`PrivatePostgres`] / [`PrivateNats`]) is dropped.
//!
//! [`ensure_with_nats_cluster`] does the same for PostgreSQL and always starts a private NATS
//! JetStream cluster ([`start_private_nats_cluster`]): `ledger with-services --nats-cluster 3`.
//!
//! PostgreSQL refuses to run as root: as root, the private instance runs as the `postgres`
//! system user.

use std::error::Error as _;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use std::{env, process};

use tracing::{info, warn};

/// The shared PostgreSQL server used when `DATABASE_URL` is not set and it answers.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_POSTGRES_PORT: u16 = 5432;
/// The shared NATS server used when `NATS_URL` is not set and it answers.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const DEFAULT_NATS_PORT: u16 = 4222;

/// How long to wait for a TCP connection when checking whether a server answers on a port.
const PROBE_TIMEOUT_MS: u64 = 500;
/// How long `pg_ctl` may wait for a private PostgreSQL to start (`pg_ctl -t`, whole seconds).
const POSTGRES_STARTUP_TIMEOUT_S: u64 = 30;
/// How long `pg_ctl` may wait for a private PostgreSQL to stop (`pg_ctl -t`, whole seconds).
const POSTGRES_STOP_TIMEOUT_S: u64 = 30;
/// How long to wait for a private nats-server to accept connections.
const NATS_STARTUP_TIMEOUT_MS: u64 = 10_000;
/// How often to check whether a starting nats-server accepts connections.
const NATS_STARTUP_POLL_MS: u64 = 20;
/// How long a private NATS cluster may take to elect its JetStream meta leader.
const NATS_CLUSTER_READY_TIMEOUT_MS: u64 = 30_000;
/// How long one JetStream request to a starting NATS cluster may take.
const NATS_CLUSTER_PROBE_TIMEOUT_MS: u64 = 2_000;
/// How often to ask a starting NATS cluster whether JetStream answers.
const NATS_CLUSTER_READY_POLL_MS: u64 = 100;
/// The `cluster.name` of private NATS clusters.
const NATS_CLUSTER_NAME: &str = "ledger";
/// JetStream keeps at most 5 replicas of a stream, so a larger cluster adds nothing to it.
pub const NATS_CLUSTER_NODES_MAX: usize = 5;
/// How many lines of a server's log to quote in an error.
const LOG_TAIL_LINES_MAX: usize = 20;

/// Settings for every private PostgreSQL, appended to its `postgresql.conf`.
const POSTGRESQL_CONF: &str = include_str!("../../../deploy/postgresql.conf");
/// Settings for every private nats-server, passed with `-c`.
const NATS_SERVER_CONF: &str = include_str!("../../../deploy/nats-server.conf");

/// Binaries a private PostgreSQL needs, all from one directory (`pg_ctl` starts the `postgres`
/// next to it).
const POSTGRES_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// Where Debian installs the PostgreSQL server binaries, one directory per major version.
const DEBIAN_POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// Where nats-server is looked for after `PATH`.
const NATS_SERVER_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/bin"];
/// The system user a private PostgreSQL runs as when this process runs as root.
const POSTGRES_SYSTEM_USER: &str = "postgres";
/// Directory under the workspace's target directory holding private instances' data.
const INSTANCES_DIR_NAME: &str = "ledger-services";

/// Why a server could not be provided, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// No directory holds `initdb`, `pg_ctl` and `postgres`: install PostgreSQL or configure a
    /// server.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under \
         /usr/lib/postgresql/*/bin: install the Debian package `postgresql` or set DATABASE_URL"
    )]
    PostgresNotInstalled,
    /// No `nats-server` binary: install it or configure a server.
    #[error(
        "nats-server not found on PATH, /usr/sbin or /usr/local/bin: install the Debian package \
         `nats-server` or set NATS_URL"
    )]
    NatsNotInstalled,
    /// Running as root, and there is no `postgres` user to run PostgreSQL as.
    #[error(
        "running as root and there is no `postgres` system user to run PostgreSQL as (PostgreSQL \
         refuses to run as root): install the Debian package `postgresql` (it creates the user), \
         run as another user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// A file system or process operation failed.
    #[error("{action}: {error}")]
    Io {
        /// What was being done, e.g. "creating /path".
        action: String,
        /// The underlying error (in the message, so not also reported as the source).
        error: io::Error,
    },
    /// A helper command (`initdb`, `pg_ctl`, `id`) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its output, and the tail of the server log where there is one.
        output: String,
    },
    /// A statement on the PostgreSQL server failed (e.g. creating a database).
    #[error("PostgreSQL at {url}: {action} failed: {reason}")]
    Database {
        /// The server, its password (if any) replaced by `***`.
        url: String,
        /// What was being done.
        action: String,
        /// What the server or the client library said, once.
        reason: String,
    },
    /// The PostgreSQL server wants a password the URL does not have, or refused the one it has.
    #[error(
        "PostgreSQL at {url} {problem}: put the password in DATABASE_URL (or --database-url), \
         e.g. postgres://{user}:PASSWORD@HOST:PORT/postgres, with special characters \
         percent-encoded (`@` as %40)"
    )]
    DatabaseAuthentication {
        /// The server, its password (if any) replaced by `***`.
        url: String,
        /// The user it was connecting as.
        user: String,
        /// "asks for a password and the URL has none" or what the server said.
        problem: String,
    },
    /// The private nats-server exited before accepting connections.
    #[error("nats-server exited during startup ({status}); last lines of {log}:\n{log_tail}")]
    NatsExited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: String,
        /// The last lines of its log file.
        log_tail: String,
    },
    /// The private NATS cluster's JetStream did not answer in time (no meta leader elected).
    #[error(
        "the private NATS cluster ({url}) did not answer JetStream requests within {timeout_ms} \
         ms (last answer: {last_error}); last lines of {log}:\n{log_tail}"
    )]
    NatsClusterNotReady {
        /// The cluster's servers.
        url: String,
        /// Why the last request failed.
        last_error: String,
        /// How long we waited.
        timeout_ms: u64,
        /// The first node's log file.
        log: String,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A cluster size JetStream cannot use.
    #[error("a NATS cluster needs 1 to {NATS_CLUSTER_NODES_MAX} nodes, not {0}")]
    NatsClusterSize(usize),
    /// The private nats-server did not accept connections in time.
    #[error(
        "nats-server did not accept connections on 127.0.0.1:{port} within {timeout_ms} ms; \
         last lines of {log}:\n{log_tail}"
    )]
    NatsStartupTimeout {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        timeout_ms: u64,
        /// Its log file.
        log: String,
        /// The last lines of its log file.
        log_tail: String,
    },
}

/// A PostgreSQL and a NATS server to talk to; private instances among them stop on `Drop`.
#[derive(Debug)]
pub struct Services {
    database_url: String,
    nats_url: String,
    // Dropped with `Services`, which stops the private instances.
    postgres: Option<PrivatePostgres>,
    _nats: Option<PrivateNats>,
    _nats_cluster: Option<PrivateNatsCluster>,
}

impl Services {
    /// URL of the PostgreSQL server's `postgres` database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// URL of the NATS server, e.g. `nats://127.0.0.1:4222`; for a cluster, its servers' URLs
    /// separated by commas.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// `true` when the PostgreSQL server is a private instance, removed with `Services`.
    pub fn postgres_is_private(&self) -> bool {
        self.postgres.is_some()
    }
}

/// Provides a PostgreSQL and a NATS server, in the order described in the [module docs](self).
pub async fn ensure() -> Result<Services, ServicesError> {
    ensure_at(env_url("DATABASE_URL"), env_url("NATS_URL")).await
}

/// [`ensure`] with the URLs given instead of read from `DATABASE_URL` / `NATS_URL` (a command's
/// `--database-url` / `--nats-url`): a given URL is used as it is; without one, the shared
/// server on the default port, else a private instance.
pub async fn ensure_at(
    database_url: Option<String>,
    nats_url: Option<String>,
) -> Result<Services, ServicesError> {
    let (database_url, postgres) = ensure_postgres(database_url).await?;
    let (nats_url, nats) = match nats_url {
        Some(url) => {
            info!(
                url = ledger_bus::redact_url(&url),
                "using the configured NATS"
            );
            (url, None)
        }
        None if port_answers(DEFAULT_NATS_PORT).await => {
            info!(
                url = DEFAULT_NATS_URL,
                "using the NATS server on the default port"
            );
            (DEFAULT_NATS_URL.to_owned(), None)
        }
        None => {
            let nats = start_private_nats().await?;
            (nats.url().to_owned(), Some(nats))
        }
    };
    Ok(Services {
        database_url,
        nats_url,
        postgres,
        _nats: nats,
        _nats_cluster: None,
    })
}

/// PostgreSQL as [`ensure`] chooses it, and a private NATS JetStream cluster of `nodes`
/// servers ([`start_private_nats_cluster`]) whatever `NATS_URL` says: for running the ledger
/// with replicated streams and killing a node.
pub async fn ensure_with_nats_cluster(nodes: usize) -> Result<Services, ServicesError> {
    let (database_url, postgres) = ensure_postgres(env_url("DATABASE_URL")).await?;
    let cluster = start_private_nats_cluster(nodes).await?;
    Ok(Services {
        database_url,
        nats_url: cluster.url().to_owned(),
        postgres,
        _nats: None,
        _nats_cluster: Some(cluster),
    })
}

/// The configured PostgreSQL, else the shared one on the default port, else a private one.
async fn ensure_postgres(
    database_url: Option<String>,
) -> Result<(String, Option<PrivatePostgres>), ServicesError> {
    Ok(match database_url {
        Some(url) => {
            info!(
                url = redact_password(&url),
                "using the configured PostgreSQL"
            );
            (url, None)
        }
        None if port_answers(DEFAULT_POSTGRES_PORT).await => {
            info!(
                url = DEFAULT_DATABASE_URL,
                "using the PostgreSQL server on the default port"
            );
            (DEFAULT_DATABASE_URL.to_owned(), None)
        }
        None => {
            let postgres = start_private_postgres().await?;
            (postgres.url().to_owned(), Some(postgres))
        }
    })
}

/// Drops database `dbname` on the server at `server_url` if it exists (closing its
/// connections) and creates it empty; returns its URL. For the demo and benchmark databases.
pub async fn recreate_database(server_url: &str, dbname: &str) -> Result<String, ServicesError> {
    let client = admin_connection(server_url).await?;
    drop_database_with(&client, server_url, dbname).await?;
    client
        .batch_execute(&format!("CREATE DATABASE {}", quote_identifier(dbname)))
        .await
        .map_err(|error| {
            database_error(server_url, format!("creating database {dbname}"), error)
        })?;
    info!(database = dbname, "created an empty database");
    Ok(database_url_with_name(server_url, dbname))
}

/// Drops database `dbname` on the server at `server_url` if it exists, closing its connections.
pub async fn drop_database(server_url: &str, dbname: &str) -> Result<(), ServicesError> {
    let client = admin_connection(server_url).await?;
    drop_database_with(&client, server_url, dbname).await
}

async fn admin_connection(server_url: &str) -> Result<tokio_postgres::Client, ServicesError> {
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .map_err(|error| database_error(server_url, "connecting".to_owned(), error))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn drop_database_with(
    client: &tokio_postgres::Client,
    server_url: &str,
    dbname: &str,
) -> Result<(), ServicesError> {
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(dbname)
        ))
        .await
        .map_err(|error| database_error(server_url, format!("dropping database {dbname}"), error))
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn database_error(url: &str, action: String, source: tokio_postgres::Error) -> ServicesError {
    let config = url.parse::<tokio_postgres::Config>().ok();
    let user = config
        .as_ref()
        .and_then(|config| config.get_user().map(str::to_owned))
        .unwrap_or_else(|| "USER".to_owned());
    // tokio-postgres says "password missing" (a client-side configuration error) when the
    // server asks for a password and the URL has none; SQLSTATE 28P01 when it refuses one.
    let password_missing = source
        .source()
        .is_some_and(|cause| cause.to_string() == "password missing");
    let problem = if password_missing {
        Some("asks for a password and the URL has none".to_owned())
    } else if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) {
        source.as_db_error().map(|error| error.message().to_owned())
    } else {
        None
    };
    let url = redact_password(url);
    match problem {
        Some(problem) => ServicesError::DatabaseAuthentication { url, user, problem },
        None => ServicesError::Database {
            url,
            action,
            reason: source
                .as_db_error()
                .map_or_else(|| ledger_store::error_text(&source), ToString::to_string),
        },
    }
}

/// `url` with the password of a `postgres://user:password@host` URL or of a `password=`
/// key/value pair replaced by `***`, for messages and logs.
pub fn redact_password(url: &str) -> String {
    if url.contains("://") {
        return ledger_bus::redact_url(url);
    }
    url.split(' ')
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***"
            } else {
                pair
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `base_url` pointed at database `dbname` instead of the one it names (if any).
///
/// Supported forms of `base_url`:
/// - URLs `postgres://…` and `postgresql://…`, with or without a path and a `?query`:
///   `postgres://user:pass@host:5432`, `postgres://host/db?sslmode=disable`,
///   `postgres:///db?host=/run/postgresql`. The path is replaced, the query kept. `dbname` is
///   percent-encoded.
/// - Anything else is taken as a key/value connection string (`host=… user=…`) and gets
///   ` dbname='…'` appended, which overrides an earlier `dbname`.
pub fn database_url_with_name(base_url: &str, dbname: &str) -> String {
    let url_scheme = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|scheme| base_url.starts_with(scheme));
    let Some(scheme) = url_scheme else {
        let quoted = dbname.replace('\\', "\\\\").replace('\'', "\\'");
        return format!("{base_url} dbname='{quoted}'");
    };
    let after_scheme = &base_url[scheme.len()..];
    let authority_len = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_len);
    let query = rest.find('?').map_or("", |start| &rest[start..]);
    format!("{scheme}{authority}/{}{query}", percent_encode(dbname))
}

/// `url` with its user and password replaced by `user` and `password` (URL-safe characters).
pub fn database_url_with_user(url: &str, user: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url} user='{user}' password='{password}'");
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://{user}:{password}@{host}")
}

/// A PostgreSQL server started by [`start_private_postgres`]; stopped (`pg_ctl stop -m fast`) and
/// its data removed on `Drop`.
#[derive(Debug)]
pub struct PrivatePostgres {
    url: String,
    port: u16,
    instance_dir: PathBuf,
    pg_ctl: PathBuf,
    run_as: Option<UserIds>,
}

impl PrivatePostgres {
    /// URL of its `postgres` database as user `postgres`, with the password when it has one.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding its data directory (`data/`) and log (`postgres.log`).
    pub fn instance_dir(&self) -> &Path {
        &self.instance_dir
    }

    fn data_dir(&self) -> PathBuf {
        self.instance_dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.instance_dir.join("postgres.log")
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its data, to simulate an outage;
    /// [`PrivatePostgres::start_server`] brings it back on the same port.
    pub async fn stop_server(&self) {
        tokio::task::block_in_place(|| self.stop());
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no shutdown checkpoint,
    /// crash recovery at the next start), keeping its data; [`PrivatePostgres::start_server`]
    /// brings it back.
    pub async fn crash_server(&self) {
        tokio::task::block_in_place(|| self.stop_in_mode("immediate"));
    }

    /// Starts the server again after [`PrivatePostgres::stop_server`], waiting until it
    /// accepts connections.
    pub async fn start_server(&self) -> Result<(), ServicesError> {
        run(self.start_command(), self, Some(&self.log_file())).await
    }

    fn start_command(&self) -> tokio::process::Command {
        let mut pg_ctl = tokio::process::Command::new(&self.pg_ctl);
        pg_ctl
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", &POSTGRES_STARTUP_TIMEOUT_S.to_string()]);
        pg_ctl
    }

    fn stop(&self) {
        self.stop_in_mode("fast");
    }

    fn stop_in_mode(&self, mode: &str) {
        let data_dir = self.data_dir();
        if !data_dir.join("postmaster.pid").exists() {
            return;
        }
        let mut command = process::Command::new(&self.pg_ctl);
        command
            .arg("stop")
            .arg("-D")
            .arg(&data_dir)
            .args(["-m", mode, "-w", "-t", &POSTGRES_STOP_TIMEOUT_S.to_string()])
            .current_dir(&self.instance_dir)
            .stdin(Stdio::null());
        if let Some(ids) = self.run_as {
            command.uid(ids.uid).gid(ids.gid);
        }
        match command.output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => warn!(
                data_dir = %data_dir.display(),
                status = %output.status,
                output = %combined_output(&output),
                "pg_ctl stop failed"
            ),
            Err(error) => warn!(data_dir = %data_dir.display(), %error, "cannot run pg_ctl stop"),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        remove_instance_dir(&self.instance_dir);
        info!(url = self.url, "stopped private PostgreSQL");
    }
}

/// Starts a private PostgreSQL on a free port of 127.0.0.1, whatever `DATABASE_URL` says.
pub async fn start_private_postgres() -> Result<PrivatePostgres, ServicesError> {
    start_private_postgres_with(&PostgresServerOptions::default()).await
}

/// What a private PostgreSQL runs with beyond `deploy/postgresql.conf`.
#[derive(Debug, Default, Clone)]
pub struct PostgresServerOptions {
    /// The `postgres` user's password, required by the server (`scram-sha-256` for every
    /// connection) and part of [`PrivatePostgres::url`]; `None`: trust authentication.
    pub password: Option<String>,
}

/// [`start_private_postgres`] with `options` (a required password, for example).
pub async fn start_private_postgres_with(
    options: &PostgresServerOptions,
) -> Result<PrivatePostgres, ServicesError> {
    let started_at = Instant::now();
    let bin_dir = find_postgres_bin_dir(&postgres_search_dirs())?;
    let run_as = if effective_uid()? == 0 {
        Some(postgres_user_ids()?)
    } else {
        None
    };
    let port = free_port()?;
    let instance_dir = instances_root(run_as.is_some())?.join(format!("pg-{port}"));
    create_instance_dir(&instance_dir)?;
    if let Some(ids) = run_as {
        std::os::unix::fs::chown(&instance_dir, Some(ids.uid), Some(ids.gid)).map_err(io_error(
            format!("handing {} to user postgres", instance_dir.display()),
        ))?;
    }
    // From here on, dropping `postgres` stops the server (if running) and removes the directory.
    let postgres = PrivatePostgres {
        url: match &options.password {
            Some(password) => format!(
                "postgres://postgres:{}@127.0.0.1:{port}/postgres",
                percent_encode(password)
            ),
            None => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        },
        port,
        instance_dir,
        pg_ctl: bin_dir.join("pg_ctl"),
        run_as,
    };
    let data_dir = postgres.data_dir();

    let mut initdb = tokio::process::Command::new(bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data_dir)
        // Throwaway data: skipping initdb's fsync saves seconds; the server itself keeps fsync on.
        .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
    match &options.password {
        Some(password) => {
            let password_file = postgres.instance_dir.join("password");
            fs::write(&password_file, password)
                .map_err(io_error(format!("writing {}", password_file.display())))?;
            if let Some(ids) = run_as {
                std::os::unix::fs::chown(&password_file, Some(ids.uid), Some(ids.gid)).map_err(
                    io_error(format!(
                        "handing {} to user postgres",
                        password_file.display()
                    )),
                )?;
            }
            initdb
                .arg("--auth=scram-sha-256")
                .arg(format!("--pwfile={}", password_file.display()));
        }
        None => {
            initdb.arg("--auth=trust");
        }
    }
    run(initdb, &postgres, None).await?;

    let conf_path = data_dir.join("postgresql.conf");
    let settings = format!(
        "\n# ---- ledger-devenv: deploy/postgresql.conf ----\n{POSTGRESQL_CONF}\n\
         # ---- ledger-devenv: this instance (TCP only, no Unix socket) ----\n\
         port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
    );
    fs::OpenOptions::new()
        .append(true)
        .open(&conf_path)
        .and_then(|mut file| io::Write::write_all(&mut file, settings.as_bytes()))
        .map_err(io_error(format!(
            "appending settings to {}",
            conf_path.display()
        )))?;

    postgres.start_server().await?;

    info!(
        url = postgres.url,
        data_dir = %data_dir.display(),
        elapsed_ms = started_at.elapsed().as_millis(),
        "started private PostgreSQL"
    );
    Ok(postgres)
}

/// A nats-server started by [`start_private_nats`]; killed and its data removed on `Drop`.
#[derive(Debug)]
pub struct PrivateNats {
    url: String,
    port: u16,
    instance_dir: PathBuf,
    child: Child,
    /// How it was started, to start it again after [`PrivateNats::stop_server`].
    command: process::Command,
    /// Its place in a cluster.
    cluster: Option<NatsClusterNode>,
}

impl PrivateNats {
    /// Its URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its place in a cluster: `server_name` (the name JetStream reports as a stream's
    /// leader), route and monitoring ports.
    pub fn cluster_node(&self) -> Option<&NatsClusterNode> {
        self.cluster.as_ref()
    }

    /// Directory holding its configuration, log (`nats-server.log`) and JetStream store
    /// (`jetstream/`).
    pub fn instance_dir(&self) -> &Path {
        &self.instance_dir
    }

    fn log_file(&self) -> PathBuf {
        self.instance_dir.join("nats-server.log")
    }

    /// Kills the server, keeping its JetStream store, to simulate an outage;
    /// [`PrivateNats::start_server`] brings it back on the same port.
    pub fn stop_server(&mut self) {
        if let Err(error) = self.child.kill() {
            warn!(%error, pid = self.child.id(), "cannot kill nats-server");
        }
        if let Err(error) = self.child.wait() {
            warn!(%error, pid = self.child.id(), "cannot wait for nats-server");
        }
    }

    /// Starts the server again after [`PrivateNats::stop_server`], waiting until its port
    /// answers.
    pub async fn start_server(&mut self) -> Result<(), ServicesError> {
        self.child = self
            .command
            .spawn()
            .map_err(io_error("starting nats-server again".into()))?;
        let deadline = Instant::now() + Duration::from_millis(NATS_STARTUP_TIMEOUT_MS);
        while !port_answers(self.port).await {
            if Instant::now() >= deadline {
                let log = self.log_file();
                return Err(ServicesError::NatsStartupTimeout {
                    port: self.port,
                    timeout_ms: NATS_STARTUP_TIMEOUT_MS,
                    log_tail: log_tail(&log),
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(NATS_STARTUP_POLL_MS)).await;
        }
        Ok(())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            warn!(%error, pid = self.child.id(), "cannot kill nats-server");
        }
        if let Err(error) = self.child.wait() {
            warn!(%error, pid = self.child.id(), "cannot wait for nats-server");
        }
        remove_instance_dir(&self.instance_dir);
        info!(url = self.url, "stopped private nats-server");
    }
}

/// The shipped NATS users and subject permissions (`deploy/nats-auth.conf`), for
/// [`NatsServerOptions::includes`].
pub const NATS_AUTH_CONF: &str = include_str!("../../../deploy/nats-auth.conf");

/// What a private nats-server runs with beyond `deploy/nats-server.conf`.
#[derive(Debug, Default, Clone)]
pub struct NatsServerOptions {
    /// Configuration files (name, content) written into the instance directory and included
    /// from its configuration, e.g. `("nats-auth.conf", NATS_AUTH_CONF)`.
    pub includes: Vec<(String, String)>,
    /// Environment variables of the server process, which its configuration may reference
    /// (`$LEDGER_NATS_WRITER_PASSWORD`).
    pub environment: Vec<(String, String)>,
    /// Runs the server without JetStream (`jetstream: disabled`), as `nats-server` without
    /// `-js` does: for the ledger's message when a server lacks it.
    pub without_jetstream: bool,
    /// Makes the server a node of a cluster (see [`start_private_nats_cluster`]).
    pub cluster: Option<NatsClusterNode>,
}

/// A server's place in a NATS cluster on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsClusterNode {
    /// Its `server_name`, unique in the cluster (JetStream in a cluster requires one).
    pub server_name: String,
    /// The port it accepts the other nodes' routes on.
    pub route_port: u16,
    /// Every node's route port, its own included (a server skips the route to itself).
    pub route_ports: Vec<u16>,
    /// The port of its HTTP monitoring endpoints (`/healthz`, `/connz`, `/jsz`).
    pub monitoring_port: u16,
}

impl NatsClusterNode {
    /// The node's settings for the server's configuration file.
    fn conf(&self) -> String {
        let routes = self
            .route_ports
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "\nserver_name: {}\nhttp: 127.0.0.1:{}\ncluster {{\n  name: {NATS_CLUSTER_NAME}\n  \
             listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
            self.server_name, self.monitoring_port, self.route_port
        )
    }
}

/// Starts a private nats-server with JetStream on a free port of 127.0.0.1, whatever `NATS_URL`
/// says.
pub async fn start_private_nats() -> Result<PrivateNats, ServicesError> {
    start_private_nats_with(&NatsServerOptions::default()).await
}

/// [`start_private_nats`] with `options` (users and permissions, for example).
pub async fn start_private_nats_with(
    options: &NatsServerOptions,
) -> Result<PrivateNats, ServicesError> {
    let started_at = Instant::now();
    let nats_server = find_nats_server(&nats_search_dirs())?;
    let port = free_port()?;
    let instance_dir = instances_root(false)?.join(format!("nats-{port}"));
    create_instance_dir(&instance_dir)?;
    let conf_path = instance_dir.join("nats-server.conf");
    let mut conf = NATS_SERVER_CONF.to_owned();
    for (name, content) in &options.includes {
        let path = instance_dir.join(name);
        if let Err(error) = fs::write(&path, content) {
            remove_instance_dir(&instance_dir);
            return Err(io_error(format!("writing {}", path.display()))(error));
        }
        conf.push_str(&format!("\ninclude ./{name}\n"));
    }
    if options.without_jetstream {
        conf.push_str("\njetstream: disabled\n");
    }
    if let Some(node) = &options.cluster {
        conf.push_str(&node.conf());
    }
    if let Err(error) = fs::write(&conf_path, conf) {
        remove_instance_dir(&instance_dir);
        return Err(io_error(format!("writing {}", conf_path.display()))(error));
    }
    let log_path = instance_dir.join("nats-server.log");
    let log = File::create(&log_path)
        .and_then(|log| Ok((log.try_clone()?, log)))
        .map_err(io_error(format!("creating {}", log_path.display())));
    let (stdout_log, stderr_log) = match log {
        Ok(logs) => logs,
        Err(error) => {
            remove_instance_dir(&instance_dir);
            return Err(error);
        }
    };
    let mut command = process::Command::new(&nats_server);
    command
        .arg("-c")
        .arg(&conf_path)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&instance_dir)
        .envs(
            options
                .environment
                .iter()
                .map(|(name, value)| (name, value)),
        )
        .stdin(Stdio::null())
        .stdout(stdout_log)
        .stderr(stderr_log);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            remove_instance_dir(&instance_dir);
            return Err(io_error(format!("starting {}", nats_server.display()))(
                error,
            ));
        }
    };
    // From here on, dropping `nats` kills the server and removes the directory.
    let mut nats = PrivateNats {
        url: format!("nats://127.0.0.1:{port}"),
        port,
        instance_dir,
        child,
        command,
        cluster: options.cluster.clone(),
    };

    let deadline = Instant::now() + Duration::from_millis(NATS_STARTUP_TIMEOUT_MS);
    loop {
        let exited = nats
            .child
            .try_wait()
            .map_err(io_error("waiting for nats-server".into()))?;
        if let Some(status) = exited {
            let log = nats.log_file();
            return Err(ServicesError::NatsExited {
                status,
                log_tail: log_tail(&log),
                log: log.display().to_string(),
            });
        }
        if port_answers(port).await {
            break;
        }
        if Instant::now() >= deadline {
            let log = nats.log_file();
            return Err(ServicesError::NatsStartupTimeout {
                port,
                timeout_ms: NATS_STARTUP_TIMEOUT_MS,
                log_tail: log_tail(&log),
                log: log.display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(NATS_STARTUP_POLL_MS)).await;
    }
    info!(
        url = nats.url,
        data_dir = %nats.instance_dir.display(),
        elapsed_ms = started_at.elapsed().as_millis(),
        "started private nats-server"
    );
    Ok(nats)
}

/// The nats-servers of one JetStream cluster, started by [`start_private_nats_cluster`]; each is
/// killed and its data removed on `Drop`.
#[derive(Debug)]
pub struct PrivateNatsCluster {
    nodes: Vec<PrivateNats>,
    url: String,
}

impl PrivateNatsCluster {
    /// The nodes' URLs separated by commas, `nats://127.0.0.1:<port>,...`: the form `NATS_URL`
    /// takes for a cluster.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The nodes, in the order of [`PrivateNatsCluster::url`].
    pub fn nodes(&self) -> &[PrivateNats] {
        &self.nodes
    }

    /// Node `index`, to stop and start it.
    ///
    /// # Panics
    ///
    /// If `index` is not below the number of nodes.
    pub fn node_mut(&mut self, index: usize) -> &mut PrivateNats {
        &mut self.nodes[index]
    }

    /// Waits until JetStream answers in the cluster (its meta leader is elected): until then a
    /// stream with replicas cannot be created.
    pub async fn wait_for_jetstream(&self) -> Result<(), ServicesError> {
        let deadline = Instant::now() + Duration::from_millis(NATS_CLUSTER_READY_TIMEOUT_MS);
        loop {
            let last_error = match jetstream_answers(&self.url).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                let log = self.nodes[0].log_file();
                return Err(ServicesError::NatsClusterNotReady {
                    url: self.url.clone(),
                    last_error,
                    timeout_ms: NATS_CLUSTER_READY_TIMEOUT_MS,
                    log_tail: log_tail(&log),
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(NATS_CLUSTER_READY_POLL_MS)).await;
        }
    }
}

/// Whether the cluster at `url` answers a JetStream account request; else why not.
async fn jetstream_answers(url: &str) -> Result<(), String> {
    let nats = ledger_bus::connect(url, &ledger_bus::NatsAuth::default(), "ledger-services")
        .await
        .map_err(|error| error.to_string())?;
    // The account's JetStream information: an `error` member (503 "JetStream system
    // temporarily unavailable") until the meta leader is elected.
    let answer = tokio::time::timeout(
        Duration::from_millis(NATS_CLUSTER_PROBE_TIMEOUT_MS),
        nats.request("$JS.API.INFO", Default::default()),
    )
    .await
    .map_err(|_| format!("no answer within {NATS_CLUSTER_PROBE_TIMEOUT_MS} ms"))?
    .map_err(|error| error.to_string())?;
    let info: serde_json::Value =
        serde_json::from_slice(&answer.payload).map_err(|error| error.to_string())?;
    match info.get("error") {
        None => Ok(()),
        Some(error) => Err(error.to_string()),
    }
}

/// Starts `nodes` private nats-servers with JetStream on free ports of 127.0.0.1 as one cluster
/// (`cluster.name` `ledger`, server names `ledger-1`, `ledger-2`, ..., each routed to all the
/// others, each with its own store directory and an HTTP monitoring port), and waits until the cluster's JetStream answers.
///
/// # Errors
///
/// [`ServicesError::NatsClusterSize`] for 0 or more than [`NATS_CLUSTER_NODES_MAX`] nodes, the
/// errors of [`start_private_nats_with`] for each node, and
/// [`ServicesError::NatsClusterNotReady`].
pub async fn start_private_nats_cluster(nodes: usize) -> Result<PrivateNatsCluster, ServicesError> {
    if !(1..=NATS_CLUSTER_NODES_MAX).contains(&nodes) {
        return Err(ServicesError::NatsClusterSize(nodes));
    }
    let started_at = Instant::now();
    // A route and a monitoring port per node, distinct: each listener stays bound until all
    // are chosen.
    let listeners = (0..2 * nodes)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error("finding free ports on 127.0.0.1".into()))?;
    let ports = listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error("finding free ports on 127.0.0.1".into()))?;
    drop(listeners);
    let (route_ports, monitoring_ports) = ports.split_at(nodes);
    let mut servers = Vec::with_capacity(nodes);
    for (index, (route_port, monitoring_port)) in
        route_ports.iter().zip(monitoring_ports).enumerate()
    {
        let options = NatsServerOptions {
            cluster: Some(NatsClusterNode {
                server_name: format!("{NATS_CLUSTER_NAME}-{}", index + 1),
                route_port: *route_port,
                route_ports: route_ports.to_vec(),
                monitoring_port: *monitoring_port,
            }),
            ..NatsServerOptions::default()
        };
        servers.push(start_private_nats_with(&options).await?);
    }
    let url = servers
        .iter()
        .map(PrivateNats::url)
        .collect::<Vec<_>>()
        .join(",");
    let cluster = PrivateNatsCluster {
        nodes: servers,
        url,
    };
    cluster.wait_for_jetstream().await?;
    info!(
        url = cluster.url,
        elapsed_ms = started_at.elapsed().as_millis(),
        "started a private NATS cluster"
    );
    Ok(cluster)
}

/// The first of `search_dirs` holding `initdb`, `pg_ctl` and `postgres`.
///
/// [`start_private_postgres`] searches `PATH`, then `/usr/lib/postgresql/*/bin` from the highest
/// version down.
pub fn find_postgres_bin_dir(search_dirs: &[PathBuf]) -> Result<PathBuf, ServicesError> {
    search_dirs
        .iter()
        .find(|dir| {
            POSTGRES_BINARIES
                .iter()
                .all(|name| is_executable(&dir.join(name)))
        })
        .cloned()
        .ok_or(ServicesError::PostgresNotInstalled)
}

/// `nats-server` in the first of `search_dirs` that has it.
///
/// [`start_private_nats`] searches `PATH`, then `/usr/sbin` and `/usr/local/bin`.
pub fn find_nats_server(search_dirs: &[PathBuf]) -> Result<PathBuf, ServicesError> {
    search_dirs
        .iter()
        .map(|dir| dir.join("nats-server"))
        .find(|path| is_executable(path))
        .ok_or(ServicesError::NatsNotInstalled)
}

fn postgres_search_dirs() -> Vec<PathBuf> {
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(DEBIAN_POSTGRES_LIB_DIR)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|(left, _), (right, _)| right.cmp(left));
    path_dirs()
        .chain(versioned.into_iter().map(|(_, dir)| dir))
        .collect()
}

fn nats_search_dirs() -> Vec<PathBuf> {
    path_dirs()
        .chain(NATS_SERVER_DIRS.into_iter().map(PathBuf::from))
        .collect()
}

fn path_dirs() -> impl Iterator<Item = PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .into_iter()
        .flatten()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn env_url(name: &str) -> Option<String> {
    env::var(name).ok().filter(|url| !url.is_empty())
}

async fn port_answers(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), connect).await,
        Ok(Ok(_))
    )
}

/// A port that was free a moment ago (the listener is dropped before the server binds it).
fn free_port() -> Result<u16, ServicesError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(io_error("finding a free port on 127.0.0.1".into()))
}

/// User and group ids to run PostgreSQL as.
#[derive(Debug, Clone, Copy)]
struct UserIds {
    uid: u32,
    gid: u32,
}

fn effective_uid() -> Result<u32, ServicesError> {
    id_output(&["-u"])?.ok_or_else(|| ServicesError::Io {
        action: "running `id -u`".into(),
        error: io::Error::other("no numeric user id in its output"),
    })
}

fn postgres_user_ids() -> Result<UserIds, ServicesError> {
    let uid = id_output(&["-u", POSTGRES_SYSTEM_USER])?;
    let gid = id_output(&["-g", POSTGRES_SYSTEM_USER])?;
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok(UserIds { uid, gid }),
        _ => Err(ServicesError::NoPostgresUser),
    }
}

/// The number `id <args>` prints, or `None` if it fails (e.g. no such user).
fn id_output(args: &[&str]) -> Result<Option<u32>, ServicesError> {
    let output = process::Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("running `id {}`", args.join(" "))))?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse().ok())
}

/// The directory holding private instances: `<target dir>/ledger-services`, or
/// `<temp dir>/ledger-services` if another user must reach it and some directory above the
/// target directory is not traversable by others.
fn instances_root(for_other_user: bool) -> Result<PathBuf, ServicesError> {
    let preferred = target_dir().join(INSTANCES_DIR_NAME);
    create_traversable_dir(&preferred)?;
    if !for_other_user || all_traversable(&preferred) {
        return Ok(preferred);
    }
    let fallback = env::temp_dir().join(INSTANCES_DIR_NAME);
    create_traversable_dir(&fallback)?;
    info!(
        preferred = %preferred.display(),
        fallback = %fallback.display(),
        "the postgres user cannot reach the target directory; using the temp directory"
    );
    Ok(fallback)
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, else `target/` next to the nearest
/// `Cargo.lock` above the current directory, else the temp directory.
fn target_dir() -> PathBuf {
    let current_dir = env::current_dir().unwrap_or_else(|_| env::temp_dir());
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return current_dir.join(dir);
    }
    current_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or_else(env::temp_dir, |workspace| workspace.join("target"))
}

fn create_traversable_dir(dir: &Path) -> Result<(), ServicesError> {
    fs::create_dir_all(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
        .map_err(io_error(format!("creating {}", dir.display())))
}

/// Whether `dir` and every directory above it can be traversed by any user.
fn all_traversable(dir: &Path) -> bool {
    dir.ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0))
}

/// Creates `instance_dir` empty. A leftover from a crashed run on the same port is removed: the
/// port was free, so nothing uses it.
fn create_instance_dir(instance_dir: &Path) -> Result<(), ServicesError> {
    if instance_dir.exists() {
        fs::remove_dir_all(instance_dir).map_err(io_error(format!(
            "removing stale {}",
            instance_dir.display()
        )))?;
    }
    fs::create_dir(instance_dir).map_err(io_error(format!("creating {}", instance_dir.display())))
}

fn remove_instance_dir(instance_dir: &Path) {
    if let Err(error) = fs::remove_dir_all(instance_dir) {
        warn!(dir = %instance_dir.display(), %error, "cannot remove private server data");
    }
}

/// Runs a PostgreSQL helper in the instance directory, as the instance's user; on failure the
/// error quotes its output and the tail of `log`.
async fn run(
    mut command: tokio::process::Command,
    postgres: &PrivatePostgres,
    log: Option<&Path>,
) -> Result<(), ServicesError> {
    command
        .current_dir(&postgres.instance_dir)
        .stdin(Stdio::null());
    if let Some(ids) = postgres.run_as {
        command.uid(ids.uid).gid(ids.gid);
    }
    let command_line = {
        let std_command = command.as_std();
        let mut line = std_command.get_program().to_string_lossy().into_owned();
        for arg in std_command.get_args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    };
    let output = command
        .output()
        .await
        .map_err(io_error(format!("running `{command_line}`")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = combined_output(&output);
    if let Some(log) = log {
        text.push_str(&format!(
            "\nlast lines of {}:\n{}",
            log.display(),
            log_tail(log)
        ));
    }
    Err(ServicesError::CommandFailed {
        command: command_line,
        status: output.status,
        output: text,
    })
}

fn combined_output(output: &process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!("{stdout}{stderr}").trim_end().to_owned()
}

/// The last [`LOG_TAIL_LINES_MAX`] lines of `log`, or why it could not be read.
fn log_tail(log: &Path) -> String {
    match fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES_MAX)..].join("\n")
        }
        Err(error) => format!("(cannot read the log: {error})"),
    }
}

fn io_error(action: String) -> impl FnOnce(io::Error) -> ServicesError {
    move |error| ServicesError::Io { action, error }
}

/// `text` with everything but URL-unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
