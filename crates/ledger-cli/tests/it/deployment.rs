//! Issue 16: `deploy/` is checked against the real binary. Docker is not needed: the compose
//! file is parsed, and every `ledger` command line in it and in the systemd units must be one
//! the binary accepts, every environment variable one the binary reads (its `--help`) or that
//! docs/operations.md documents, every long-running service must have a health check, and
//! secrets must reach the processes as files. Where `docker compose` is installed, `docker
//! compose config` validates the file as well.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ledger_testkit::TestDb;
use serde_yaml::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// `ledger <args> --help`; panics with clap's message if the binary refuses the line.
fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run ledger");
    assert!(
        output.status.success(),
        "`ledger {} --help` is refused:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The environment variables a help text names (`[env: NAME=]`).
fn help_variables(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

/// Checks one `ledger` command line: the binary accepts it (subcommands, flags, values), and
/// each of `variables` is read by that command or documented in docs/operations.md. Returns
/// the command's help.
fn check_command_line(origin: &str, args: &[&str], variables: &[String], operations: &str) {
    let text = help(args);
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(
            text.contains(name),
            "{origin}: `ledger {}`: no flag {name}",
            args.join(" ")
        );
    }
    let read = help_variables(&text);
    for variable in variables {
        assert!(
            read.contains(variable) || operations.contains(&format!("`{variable}`")),
            "{origin}: {variable} is neither read by `ledger {}` (its --help) nor documented in \
             docs/operations.md",
            args.join(" ")
        );
    }
}

fn compose() -> Value {
    let mut compose: Value =
        serde_yaml::from_str(&read("deploy/compose.yaml")).expect("deploy/compose.yaml is YAML");
    // One pass merges one level: a merged mapping's own `<<` (an anchor built on another
    // anchor) is merged by the next pass.
    while has_merge_key(&compose) {
        compose.apply_merge().expect("merge keys resolve");
    }
    compose
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => {
            mapping.contains_key("<<") || mapping.values().any(has_merge_key)
        }
        Value::Sequence(items) => items.iter().any(has_merge_key),
        _ => false,
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A service's environment as (name, value) pairs.
fn environment(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .map(|mapping| {
            mapping
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => serde_yaml::to_string(other)
                            .expect("a value")
                            .trim()
                            .to_owned(),
                    };
                    (name.as_str().expect("a name").to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an environment variable's name says it carries a secret.
fn names_a_secret(name: &str) -> bool {
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "KEY",
        "DATABASE_URL",
        "CREDS",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn is_ledger(service: &Value) -> bool {
    service["image"].as_str() == Some("ledger:latest")
}

#[test]
fn every_compose_service_runs_a_command_the_binary_accepts_with_a_health_check_and_file_secrets() {
    let compose = compose();
    let operations = read("docs/operations.md");
    let services = compose["services"].as_mapping().expect("services");
    let declared_secrets = compose["secrets"].as_mapping().expect("top-level secrets");
    let mut ledger_roles = BTreeSet::new();
    let mut scraped = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("a service name");
        let environment = environment(service);
        if is_ledger(service) {
            let command = strings(&service["command"]);
            assert!(!command.is_empty(), "{name}: no command");
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let variables: Vec<String> = environment.iter().map(|(name, _)| name.clone()).collect();
            check_command_line(name, &args, &variables, &operations);
            ledger_roles.insert(command.join(" "));
        }
        let one_shot = service["restart"].as_str() == Some("no");
        if !one_shot {
            let test = strings(&service["healthcheck"]["test"]);
            assert!(
                test.len() >= 2 && test[0] != "NONE",
                "{name}: a long-running service needs a health check"
            );
            if is_ledger(service) {
                // An HTTP probe of the process's own server, not a look at its process state.
                assert!(
                    test[1] == "curl"
                        && test
                            .last()
                            .is_some_and(|url| url.starts_with("http://127.0.0.1:")),
                    "{name}: the health check probes the process over HTTP: {test:?}"
                );
                assert!(
                    environment
                        .contains(&("LEDGER_METRICS_BIND".to_owned(), "0.0.0.0:9464".to_owned())),
                    "{name}: serves its metrics on :9464 for Prometheus"
                );
                scraped.insert(format!("{name}:9464"));
            }
        }
        let service_secrets = strings(&service["secrets"]);
        for (variable, value) in &environment {
            if variable.ends_with("_FILE") {
                let secret = value
                    .strip_prefix("/run/secrets/")
                    .unwrap_or_else(|| panic!("{name}: {variable} is not under /run/secrets/"));
                assert!(
                    service_secrets.iter().any(|granted| granted == secret),
                    "{name}: {variable} names secret {secret}, which the service is not given"
                );
                assert!(
                    declared_secrets
                        .get(secret)
                        .and_then(|declared| declared["file"].as_str())
                        .is_some(),
                    "{name}: secret {secret} is not declared as a file"
                );
            } else {
                assert!(
                    !names_a_secret(variable),
                    "{name}: {variable} carries a secret inline; use {variable}_FILE"
                );
                assert!(
                    !value.contains('@'),
                    "{name}: {variable}={value} looks like a URL with credentials"
                );
            }
        }
    }
    for role in [
        "migrate",
        "run writer",
        "run ingest",
        "run projector customers",
        "run projector revenue",
        "run projector notify",
        "run provider-sync",
        "run query",
    ] {
        assert!(ledger_roles.contains(role), "compose runs `ledger {role}`");
    }
    let prometheus: Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).expect("prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|config| strings(&config["targets"]))
        .collect();
    assert_eq!(
        targets, scraped,
        "Prometheus scrapes every long-running ledger process"
    );
    let writers = services
        .values()
        .filter(|service| strings(&service["command"]) == ["run", "writer"])
        .count();
    assert_eq!(writers, 2, "a leading writer and a standby");
    let nats_nodes = services
        .keys()
        .filter(|name| name.as_str().is_some_and(|name| name.starts_with("nats-")))
        .count();
    assert_eq!(nats_nodes, 3, "a three-node NATS cluster");
    let replicas = services
        .values()
        .filter(|service| strings(&service["command"]) == ["run", "writer"])
        .flat_map(environment)
        .filter(|(name, value)| name == "LEDGER_STREAM_REPLICAS" && value == "3")
        .count();
    assert_eq!(
        replicas, 2,
        "both writers create the stream with three replicas"
    );

    let compose_plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if compose_plugin {
        let config = Command::new("docker")
            .args(["compose", "-f"])
            .arg(repository().join("deploy/compose.yaml"))
            .args(["config", "--quiet"])
            .output()
            .expect("docker compose config");
        assert!(
            config.status.success(),
            "{}",
            String::from_utf8_lossy(&config.stderr)
        );
    } else {
        eprintln!("no `docker compose` here: `docker compose config` not run");
    }
}

#[test]
fn compose_gives_ingest_and_provider_sync_each_providers_settings_and_make_secrets_writes_them() {
    let compose = compose();
    let expected: [(&str, &[&str]); 2] = [
        (
            "ingest",
            &[
                "LEDGER_STRIPE_WEBHOOK_SECRETS_FILE",
                "LEDGER_PAYPAL_WEBHOOK_IDS_FILE",
                "LEDGER_PAYPAL_CLIENT_ID_FILE",
                "LEDGER_PAYPAL_CLIENT_SECRET_FILE",
                "LEDGER_PAYPAL_API_BASE",
                "LEDGER_XENDIT_CALLBACK_TOKENS_FILE",
            ],
        ),
        (
            "provider-sync",
            &[
                "LEDGER_STRIPE_API_KEY_FILE",
                "LEDGER_PAYPAL_CLIENT_ID_FILE",
                "LEDGER_PAYPAL_CLIENT_SECRET_FILE",
                "LEDGER_PAYPAL_API_BASE",
                "LEDGER_XENDIT_API_KEY_FILE",
            ],
        ),
    ];
    for (service, settings) in expected {
        let environment = environment(&compose["services"][service]);
        for setting in settings {
            assert!(
                environment.iter().any(|(name, _)| name == setting),
                "{service}: no {setting}"
            );
        }
    }
    // Every secret file compose reads is written by make-secrets.sh (a provider's empty: off).
    let dir = std::env::temp_dir().join(ledger_testkit::unique_name("make-secrets"));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::copy(
        repository().join("deploy/make-secrets.sh"),
        dir.join("make-secrets.sh"),
    )
    .expect("a copy of make-secrets.sh");
    let made = Command::new("sh")
        .arg(dir.join("make-secrets.sh"))
        .output()
        .expect("sh runs make-secrets.sh");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (secret, declared) in compose["secrets"].as_mapping().expect("top-level secrets") {
        let file = declared["file"].as_str().expect("a file secret");
        assert!(
            dir.join(file).is_file(),
            "make-secrets.sh does not write {file} (secret {secret:?})"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("secrets/paypal_client_secret")).expect("written"),
        "",
        "a provider's secret is left empty"
    );
    std::fs::remove_dir_all(&dir).expect("removed");
}

#[test]
fn every_systemd_unit_runs_a_command_the_binary_accepts_with_its_secrets_as_credentials() {
    let operations = read("docs/operations.md");
    let directory = repository().join("deploy/systemd");
    let mut units = 0;
    for entry in std::fs::read_dir(&directory).expect("deploy/systemd") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("service") {
            continue;
        }
        units += 1;
        let origin = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let unit = std::fs::read_to_string(&path).expect("a unit");
        let line = |key: &str| -> Vec<String> {
            unit.lines()
                .filter_map(|line| line.strip_prefix(key))
                .map(str::to_owned)
                .collect()
        };
        let oneshot = line("Type=") == ["oneshot"];
        assert_eq!(
            line("Restart="),
            [if oneshot { "no" } else { "always" }],
            "{origin}: a service restarts, the one-shot does not"
        );
        let exec = line("ExecStart=");
        assert_eq!(exec.len(), 1, "{origin}: one ExecStart");
        let command = exec[0]
            .strip_prefix("/usr/local/bin/ledger ")
            .unwrap_or_else(|| panic!("{origin}: runs /usr/local/bin/ledger"));
        // A projector instance is named after its read model.
        let command = command.replace("%i", "customers");
        let args: Vec<&str> = command.split_whitespace().collect();
        let environment: Vec<(String, String)> = line("Environment=")
            .iter()
            .map(|setting| {
                let (name, value) = setting.split_once('=').expect("NAME=value");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let variables: Vec<String> = environment.iter().map(|(name, _)| name.clone()).collect();
        check_command_line(&origin, &args, &variables, &operations);
        let credentials: Vec<String> = line("LoadCredential=")
            .iter()
            .map(|credential| {
                let (name, source) = credential.split_once(':').expect("name:path");
                assert!(
                    source.starts_with("/etc/ledger/secrets/"),
                    "{origin}: credential {name} from {source}"
                );
                name.to_owned()
            })
            .collect();
        for (variable, value) in &environment {
            if variable.ends_with("_FILE") {
                let credential = value
                    .strip_prefix("%d/")
                    .unwrap_or_else(|| panic!("{origin}: {variable} is not a credential"));
                assert!(
                    credentials.iter().any(|loaded| loaded == credential),
                    "{origin}: {variable} names credential {credential}, which is not loaded"
                );
            } else {
                assert!(!names_a_secret(variable), "{origin}: {variable} inline");
            }
        }
    }
    assert_eq!(
        units, 6,
        "migrate, writer, projector, ingest, query, provider-sync"
    );
    let common = read("deploy/systemd/ledger-.service.d/10-common.conf");
    for hardening in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "EnvironmentFile=/etc/ledger/ledger.env",
    ] {
        assert!(common.contains(hardening), "every unit has {hardening}");
    }
}

/// Every setting of every role, as the binary's `--help` names it, is documented in
/// docs/operations.md.
#[test]
fn docs_operations_documents_every_setting_of_every_role() {
    let operations = read("docs/operations.md");
    let roles: [&[&str]; 11] = [
        &["migrate"],
        &["run", "writer"],
        &["run", "ingest"],
        &["run", "projector", "customers"],
        &["run", "provider-sync"],
        &["run", "query"],
        &["replay", "customers"],
        &["audit", "verify"],
        &["send", "register_customer"],
        &["with-services"],
        &["notify", "test", "00000000-0000-0000-0000-000000000000"],
    ];
    let mut missing = Vec::new();
    for args in roles {
        for variable in help_variables(&help(args)) {
            if !operations.contains(&format!("`{variable}`")) {
                missing.push(format!("{variable} (ledger {})", args.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

/// `DATABASE_URL_FILE`: the URL (and its password) from a file, for secrets as files; both it
/// and `DATABASE_URL` set is refused.
#[tokio::test]
async fn the_database_url_can_come_from_a_file() {
    let database = TestDb::new().await;
    let file = std::env::temp_dir().join(ledger_testkit::unique_name("database-url"));
    std::fs::write(&file, format!("{}\n", database.url())).expect("write the URL");
    let migrate = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("DATABASE_URL_FILE", &file)
        .output()
        .expect("run ledger");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL");
    tokio::spawn(connection);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'customer_payment_events'",
            &[],
        )
        .await
        .expect("a count")
        .get(0);
    assert_eq!(tables, 1, "migrated through the URL in the file");

    let both = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .arg("migrate")
        .env("DATABASE_URL", database.url())
        .env("DATABASE_URL_FILE", &file)
        .output()
        .expect("run ledger");
    assert_eq!(both.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&both.stderr).trim_end(),
        "error: set DATABASE_URL (--database-url) or DATABASE_URL_FILE (--database-url-file), \
         not both"
    );
    std::fs::remove_file(&file).expect("remove the file");
}
