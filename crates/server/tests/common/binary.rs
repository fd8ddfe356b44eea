//! The `starling` binary as a child process, for the hostile-input tests:
//! they run against the release build in CI (`STARLING_BIN`), and against
//! the test profile's binary under a plain `cargo test`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use server::store::prelude::*;
use server::{AccountRecord, Redb};
use stanza::BareJid;

use super::DOMAIN;

/// A running `starling serve` with its own data directory.
pub struct Binary {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// The binary under test: `STARLING_BIN`, or the one cargo built for tests.
pub fn path() -> String {
    std::env::var("STARLING_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_starling").to_owned())
}

/// Runs `starling --data-dir DIR --domain DOMAIN ARGS…` with `stdin` on
/// its standard input: whether it succeeded, its stdout and its stderr.
pub fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(path())
        .args(["--data-dir", dir.to_str().unwrap(), "--domain", DOMAIN])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text of a `key=value` field in a tracing line, up to a space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..].split_whitespace().next()
}

impl Binary {
    /// Starts on loopback with plaintext PLAIN allowed, the given accounts,
    /// and `extra` TOML appended to the configuration (its own `[limits]`
    /// section, if any, must come last).
    pub fn start(accounts: &[(&str, &str)], extra: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), accounts, extra)
    }

    /// The same on an existing data directory.
    pub fn start_in(dir: tempfile::TempDir, accounts: &[(&str, &str)], extra: &str) -> Self {
        Self::start_as(DOMAIN, dir, accounts, &format!("s2s.listen = []\n{extra}"))
    }

    /// A server for `domain`; `extra` sets `s2s.listen` (and any other
    /// federation keys) itself.
    pub fn start_as(
        domain: &str,
        dir: tempfile::TempDir,
        accounts: &[(&str, &str)],
        extra: &str,
    ) -> Self {
        {
            let store = Redb::open(dir.path()).unwrap();
            for (user, pass) in accounts {
                let jid = BareJid::new(&format!("{user}@{domain}")).unwrap();
                store
                    .create_account(&jid, &AccountRecord::new(pass, 4096))
                    .unwrap();
            }
        }
        let config = dir.path().join("starling.toml");
        let text = format!(
            "domains = ['{domain}']\nc2s_listen = ['127.0.0.1:0']\nc2s_tls_listen = []\n\
             data_dir = '{}'\ntls = false\nrequire_encryption = false\n\
             allow_plaintext_auth = true\nmetrics_listen = '127.0.0.1:0'\n{extra}\n",
            dir.path().display()
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(path())
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the starling binary runs");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[starling] {line}");
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("starling starts within 30 s");
            if let Some(v) = field(&line, "c2s=[") {
                addr = v.trim_end_matches(']').parse().ok();
            }
            if line.contains("serving Prometheus metrics") {
                metrics =
                    field(&line, "addr=Some(").and_then(|v| v.trim_end_matches(')').parse().ok());
            }
        }
        Self {
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
            dir,
            child,
        }
    }

    /// The sum of every sample of a Prometheus metric (all label sets).
    pub fn metric(&self, name: &str) -> f64 {
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let full = format!("starling_{name}");
        text.lines()
            .filter(|l| {
                l.strip_prefix(&full)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Runs another `starling` command on this server's data directory;
    /// returns whether it succeeded, and its stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let (ok, _, err) = self.cli_output(args);
        (ok, err)
    }

    /// [`Self::cli`], with its stdout too.
    pub fn cli_output(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_input(args, "")
    }

    /// [`Self::cli_output`], with `stdin` on its standard input (a
    /// password, for `adduser` and `passwd`).
    pub fn cli_input(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        cli(self.dir.path(), args, stdin)
    }

    /// The process's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// Stops with SIGTERM (then SIGKILL after 15 s) and returns the data
    /// directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..150 {
            if self.child.try_wait().unwrap().is_some() {
                return self.take_dir();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.take_dir()
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
