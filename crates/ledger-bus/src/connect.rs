//! Connecting to NATS as one of the ledger's users (docs/security.md, "NATS users and subject
//! permissions").

use std::path::{Path, PathBuf};

use async_nats::{ConnectErrorKind, ConnectOptions};

/// The inbox prefix of a connection without a user: NATS's own default.
const INBOX_PREFIX_DEFAULT: &str = "_INBOX";

/// How a component proves who it is to NATS. At most one of `creds_file`, `user` (with
/// `password_file`) and `nkey_seed_file` is set; none connects without credentials (a server
/// without authorization, as in development).
///
/// Secrets are read from files, never from the command line or the environment, so they do not
/// show in process listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// A `.creds` file (a user JWT and its nkey seed), for servers run with accounts and JWTs.
    pub creds_file: Option<PathBuf>,
    /// A user of the server's `authorization` block (`deploy/nats-auth.conf`: `writer`,
    /// `projector`, `query`, `auditor`, `ingest`, `client`).
    pub user: Option<String>,
    /// The file holding `user`'s password (trailing newlines are ignored).
    pub password_file: Option<PathBuf>,
    /// A file holding a user nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// The prefix of this connection's reply subjects. Default: `_INBOX.<user>` when a user is
    /// set, else `_INBOX`. The shipped permissions let each user subscribe to its own prefix
    /// only, so no user can read the replies sent to another.
    pub inbox_prefix: Option<String>,
}

/// Why [`connect`] failed; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials given do not fit together.
    #[error("invalid NATS credentials: {0}")]
    Configuration(&'static str),
    /// A credentials file cannot be read.
    #[error("cannot read the NATS {what} file {path}: {error}")]
    File {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The server refused the credentials (or demands some and none were given).
    #[error(
        "NATS at {url} refused the connection as {who}: check NATS_USER / NATS_PASSWORD_FILE, \
         NATS_CREDS or NATS_NKEY_FILE against the server's users"
    )]
    Refused { url: String, who: String },
    /// The server cannot be reached.
    #[error("cannot connect to NATS at {url} ({kind}): is nats-server running and NATS_URL right?")]
    Unreachable { url: String, kind: ConnectErrorKind },
}

impl NatsAuth {
    /// The inbox prefix this connection uses (see [`NatsAuth::inbox_prefix`]).
    pub fn effective_inbox_prefix(&self) -> String {
        match (&self.inbox_prefix, &self.user) {
            (Some(prefix), _) => prefix.clone(),
            (None, Some(user)) => format!("{INBOX_PREFIX_DEFAULT}.{user}"),
            (None, None) => INBOX_PREFIX_DEFAULT.to_owned(),
        }
    }

    fn who(&self) -> String {
        match (&self.user, &self.creds_file, &self.nkey_seed_file) {
            (Some(user), _, _) => format!("user {user:?}"),
            (None, Some(path), _) => format!("the credentials in {}", path.display()),
            (None, None, Some(path)) => format!("the nkey in {}", path.display()),
            (None, None, None) => "an anonymous client".to_owned(),
        }
    }

    async fn options(&self) -> Result<ConnectOptions, ConnectError> {
        let options = match (
            &self.creds_file,
            &self.user,
            &self.password_file,
            &self.nkey_seed_file,
        ) {
            (None, None, None, None) => ConnectOptions::new(),
            (Some(path), None, None, None) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|error| ConnectError::File {
                    what: "credentials",
                    path: path.clone(),
                    error,
                })?,
            (None, Some(user), Some(path), None) => {
                ConnectOptions::with_user_and_password(user.clone(), read_secret(path, "password")?)
            }
            (None, Some(_), None, None) => {
                return Err(ConnectError::Configuration(
                    "NATS_USER needs NATS_PASSWORD_FILE",
                ));
            }
            (None, None, Some(_), None) => {
                return Err(ConnectError::Configuration(
                    "NATS_PASSWORD_FILE needs NATS_USER",
                ));
            }
            (None, None, None, Some(path)) => {
                ConnectOptions::with_nkey(read_secret(path, "nkey seed")?)
            }
            _ => {
                return Err(ConnectError::Configuration(
                    "give one of NATS_CREDS, NATS_USER with NATS_PASSWORD_FILE, or NATS_NKEY_FILE",
                ));
            }
        };
        Ok(options.custom_inbox_prefix(self.effective_inbox_prefix()))
    }
}

/// The servers of `url`: one URL, or a comma-separated list of the servers of one cluster
/// (`nats://n1:4222,nats://n2:4222,nats://n3:4222`), which the client tries in turn and
/// reconnects among.
fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .collect()
}

/// Connects to the NATS server at `url` (one URL, or a comma-separated list of a cluster's
/// servers) as `auth` says; `name` (the component, e.g. `ledger-writer`) shows in the server's
/// connection list.
///
/// # Errors
///
/// [`ConnectError`]: credentials that do not fit together or cannot be read, a server that
/// refuses them, or one that cannot be reached.
pub async fn connect(
    url: &str,
    auth: &NatsAuth,
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    auth.options()
        .await?
        .name(name)
        .connect(servers(url).as_slice())
        .await
        .map_err(|error| match error.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                ConnectError::Refused {
                    url: redact_url(url),
                    who: auth.who(),
                }
            }
            kind => ConnectError::Unreachable {
                url: redact_url(url),
                kind,
            },
        })
}

/// `url` (or a comma-separated list of URLs) with the secret of its user info replaced by
/// `***`, for logs and messages: the password of `scheme://user:password@host`, and the token of
/// `nats://token@host` (NATS reads a bare user info as a token). Other URLs are returned as they
/// are.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let Some((scheme, rest)) = one.split_once("://") else {
                return one.to_owned();
            };
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                    None if scheme.starts_with("nats") || scheme == "tls" || scheme == "ws" => {
                        format!("{scheme}://***@{host}{tail}")
                    }
                    None => one.to_owned(),
                },
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Like [`connect`] (`url` also one URL or a cluster's comma-separated list), for a
/// long-running component (`ledger run ...`): returns at once even
/// while the server is unreachable, and the connection keeps reconnecting for as long as it
/// takes, at NATS's reconnect pace (capped backoff with jitter). Each change between connected
/// and disconnected is logged once, with the server's address.
///
/// # Errors
///
/// [`ConnectError`] only for credentials that do not fit together or cannot be read: a
/// configuration error, which waiting cannot fix.
pub async fn connect_service(
    url: &str,
    auth: &NatsAuth,
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let address = redact_url(url);
    let component = name.to_owned();
    // Set while the server is unreachable: the first failure of an outage is a warning, the
    // next attempts are debug lines, and the connection that ends it is logged once.
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nats = auth
        .options()
        .await?
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let (address, component, failing) =
                (address.clone(), component.clone(), failing.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                match event {
                    async_nats::Event::Connected => {
                        if failing.swap(false, SeqCst) {
                            tracing::info!(component, nats = address, "NATS is back; connected");
                        } else {
                            tracing::info!(component, nats = address, "connected to NATS");
                        }
                    }
                    async_nats::Event::Disconnected => {
                        if !failing.swap(true, SeqCst) {
                            tracing::warn!(
                                component,
                                nats = address,
                                "lost NATS; reconnecting until it is back"
                            );
                        }
                    }
                    async_nats::Event::ClientError(error) => {
                        if failing.swap(true, SeqCst) {
                            tracing::debug!(component, nats = address, %error, "NATS still unreachable");
                        } else {
                            tracing::warn!(
                                component,
                                nats = address,
                                %error,
                                "cannot reach NATS; retrying with backoff until it answers"
                            );
                        }
                    }
                    other => {
                        tracing::debug!(component, nats = address, event = %other, "NATS event")
                    }
                }
            }
        })
        .connect(servers(url).as_slice())
        .await
        .map_err(|error| ConnectError::Unreachable {
            url: redact_url(url),
            kind: error.kind(),
        })?;
    // A server that is up answers within milliseconds: start connected then, as [`connect`]
    // would; one that is down is left to reconnect in the background.
    let _ = tokio::time::timeout(FIRST_CONNECT_WAIT, connected(&nats)).await;
    Ok(nats)
}

/// How often [`connected`] looks at the connection's state.
const CONNECTED_POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// How long [`connect_service`] waits for its first connection before returning anyway.
const FIRST_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Completes once `nats` is connected (at once when it is): a component waits here rather than
/// failing on a server that is down; [`connect_service`] logs the outage and the return.
pub async fn connected(nats: &async_nats::Client) {
    while nats.connection_state() != async_nats::connection::State::Connected {
        tokio::time::sleep(CONNECTED_POLL).await;
    }
}

fn read_secret(path: &Path, what: &'static str) -> Result<String, ConnectError> {
    std::fs::read_to_string(path)
        .map(|secret| secret.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|error| ConnectError::File {
            what,
            path: path.to_owned(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_replies_on_its_own_inbox_prefix() {
        let anonymous = NatsAuth::default();
        assert_eq!(anonymous.effective_inbox_prefix(), "_INBOX");
        let writer = NatsAuth {
            user: Some("writer".to_owned()),
            ..NatsAuth::default()
        };
        assert_eq!(writer.effective_inbox_prefix(), "_INBOX.writer");
        let chosen = NatsAuth {
            inbox_prefix: Some("_INBOX.billing".to_owned()),
            ..writer
        };
        assert_eq!(chosen.effective_inbox_prefix(), "_INBOX.billing");
    }

    #[tokio::test]
    async fn credentials_that_do_not_fit_together_are_refused_before_connecting() {
        let user_only = NatsAuth {
            user: Some("writer".to_owned()),
            ..NatsAuth::default()
        };
        let both = NatsAuth {
            creds_file: Some("/dev/null".into()),
            nkey_seed_file: Some("/dev/null".into()),
            ..NatsAuth::default()
        };
        for auth in [user_only, both] {
            let error = connect("nats://127.0.0.1:1", &auth, "test")
                .await
                .expect_err("refused");
            assert!(matches!(error, ConnectError::Configuration(_)), "{error}");
        }
        let missing_file = NatsAuth {
            user: Some("writer".to_owned()),
            password_file: Some("/nonexistent/password".into()),
            ..NatsAuth::default()
        };
        let error = connect("nats://127.0.0.1:1", &missing_file, "test")
            .await
            .expect_err("refused");
        assert!(
            matches!(
                error,
                ConnectError::File {
                    what: "password",
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[cfg(test)]
mod servers_tests {
    use super::{NatsAuth, connect, servers};

    #[test]
    fn a_comma_separated_url_names_each_server_of_a_cluster() {
        assert_eq!(servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            servers("nats://n1:4222, nats://n2:4222,,nats://n3:4222"),
            ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
        );
    }

    /// One server of the list down: the client connects to another (the shared development
    /// server on 127.0.0.1:4222 answers).
    #[tokio::test]
    async fn a_list_with_one_server_down_connects_to_another() {
        for _ in 0..4 {
            let nats = connect(
                "nats://127.0.0.1:1,nats://127.0.0.1:4222",
                &NatsAuth::default(),
                "test",
            )
            .await
            .expect("the server that answers");
            assert_eq!(nats.server_info().port, 4222);
        }
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn secrets_in_urls_are_replaced_and_the_rest_kept() {
        let cases = [
            (
                "nats://alice:s3cret@127.0.0.1:4222",
                "nats://alice:***@127.0.0.1:4222",
            ),
            (
                "nats://t0ken@nats.internal:4222",
                "nats://***@nats.internal:4222",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://a:b@n1:4222,nats://n2:4222",
                "nats://a:***@n1:4222,nats://n2:4222",
            ),
            (
                "postgres://postgres:pw@127.0.0.1:5432/ledger?sslmode=disable",
                "postgres://postgres:***@127.0.0.1:5432/ledger?sslmode=disable",
            ),
            (
                "postgres://postgres@127.0.0.1/ledger",
                "postgres://postgres@127.0.0.1/ledger",
            ),
            ("127.0.0.1:4222", "127.0.0.1:4222"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
