//! A real SMTP server (Python's aiosmtpd) for the email notification tests.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the SMTP server may take to start listening.
const SMTP_START_MS: u64 = 10_000;

/// A real SMTP server (Python's aiosmtpd) on a free local port, storing each message in a
/// maildir. Stopped on `Drop`.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// Starts `python3 -m aiosmtpd` with the `Mailbox` handler.
    ///
    /// # Panics
    ///
    /// If aiosmtpd is not installed (the message says how to install it) or does not start
    /// listening within 10 s.
    pub fn start() -> SmtpServer {
        let installed = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            installed,
            "the email tests need a local SMTP server: install aiosmtpd \
             (Debian: `apt-get install python3-aiosmtpd`, or `pip install aiosmtpd`)"
        );
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free local port")
            .port();
        let maildir = std::env::temp_dir().join(crate::unique_name("maildir"));
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd starts");
        let server = SmtpServer {
            port,
            maildir,
            child,
        };
        let deadline = Instant::now() + Duration::from_millis(SMTP_START_MS);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {port} within {SMTP_START_MS} ms"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The raw messages received so far (headers and MIME body).
    pub fn messages(&self) -> Vec<String> {
        read_dir(&self.maildir.join("new"))
    }
}

fn read_dir(directory: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}
